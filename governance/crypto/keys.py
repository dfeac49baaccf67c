"""Crypt4GH key files, as the reference `crypt4gh` package reads and writes them.

Public key: a PEM-like block "CRYPT4GH PUBLIC KEY" around base64 of the 32 raw X25519 bytes.

Private key: a block "CRYPT4GH PRIVATE KEY" around base64 of::

    b"c4gh-v1" | string kdf name ("none", "scrypt", "bcrypt", "pbkdf2_hmac_sha256")
               | string kdf options (u32 big-endian rounds || salt)      -- absent when kdf is none
               | string cipher ("none" or "chacha20_poly1305")
               | string key blob (the raw 32 bytes, or nonce(12) || ChaCha20-Poly1305(key))
               | optional string comment

where a string is a u16 big-endian length and the bytes. scrypt uses N=2^14, r=8, p=1 and a
16-byte salt (its stored rounds are 0 and unused), as the reference does. We write "none" and
"scrypt"; we read "none", "scrypt" and "pbkdf2_hmac_sha256". bcrypt needs a package outside
this pure module, so such files are refused with a clear error (re-lock them with scrypt).

# SECURITY: passphrases and key bytes never enter a message, a repr, or a log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from governance.crypto.errors import Crypt4GHKeyFileError

PUBLIC_LABEL = "CRYPT4GH PUBLIC KEY"
PRIVATE_LABEL = "CRYPT4GH PRIVATE KEY"
MAGIC = b"c4gh-v1"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_SCRYPT = {"n": 1 << 14, "r": 8, "p": 1, "dklen": 32}
_SALT_SIZE = 16


class SupportsSecret(Protocol):
    """Anything that hides its value until asked (pydantic's SecretStr and SecretBytes fit)."""

    def get_secret_value(self) -> str | bytes: ...


Passphrase = bytes | SupportsSecret


def _passphrase_bytes(passphrase: Passphrase) -> bytes:
    if isinstance(passphrase, bytes):
        return passphrase
    value = passphrase.get_secret_value()
    return value.encode("utf-8") if isinstance(value, str) else value


def _armor(label: str, data: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n".encode() + base64.b64encode(data) + f"\n-----END {label}-----\n".encode()


def _unarmor(text: str | bytes, label: str, where: str) -> bytes:
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    lines = [line.strip() for line in raw.splitlines() if line.strip()]
    if len(lines) < 3 or lines[0] != f"-----BEGIN {label}-----".encode() or lines[-1] != f"-----END {label}-----".encode():
        raise Crypt4GHKeyFileError(f"{where}: not a {label.lower()} file (its BEGIN/END lines are missing or wrong)")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise Crypt4GHKeyFileError(f"{where}: the key's base64 body is malformed") from None


def format_public_key(key: X25519PublicKey) -> bytes:
    """The Crypt4GH public key file for `key`."""
    return _armor(PUBLIC_LABEL, key.public_bytes_raw())


def parse_public_key(text: str | bytes, *, where: str = "public key") -> X25519PublicKey:
    """The X25519 public key in a Crypt4GH public key file's text."""
    raw = _unarmor(text, PUBLIC_LABEL, where)
    if len(raw) != 32:
        raise Crypt4GHKeyFileError(f"{where}: holds {len(raw)} key bytes; an X25519 public key has 32")
    return X25519PublicKey.from_public_bytes(raw)


def _string(data: bytes) -> bytes:
    return _U16.pack(len(data)) + data


class _Reader:
    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.where = data, 0, where

    def string(self, what: str) -> bytes:
        if self.pos + 2 > len(self.data):
            raise Crypt4GHKeyFileError(f"{self.where}: the private key ends before its {what}")
        (n,) = _U16.unpack_from(self.data, self.pos)
        start, self.pos = self.pos + 2, self.pos + 2 + n
        if self.pos > len(self.data):
            raise Crypt4GHKeyFileError(f"{self.where}: the private key ends inside its {what}")
        return self.data[start:self.pos]


def format_private_key(key: X25519PrivateKey, *, passphrase: Passphrase | None = None,
                       comment: bytes | None = None, salt: bytes | None = None) -> bytes:
    """The Crypt4GH private key file for `key`: scrypt + ChaCha20-Poly1305 with a passphrase,
    plain without one (an empty passphrase counts as none, as in the reference)."""
    secret = key.private_bytes_raw()
    tail = _string(comment) if comment is not None else b""
    pw = _passphrase_bytes(passphrase) if passphrase is not None else b""
    if not pw:
        return _armor(PRIVATE_LABEL, MAGIC + _string(b"none") + _string(b"none") + _string(secret) + tail)
    salt = salt if salt is not None else os.urandom(_SALT_SIZE)
    derived = hashlib.scrypt(pw, salt=salt, **_SCRYPT)
    nonce = os.urandom(12)
    blob = nonce + ChaCha20Poly1305(derived).encrypt(nonce, secret, None)
    body = (MAGIC + _string(b"scrypt") + _string(_U32.pack(0) + salt)
            + _string(b"chacha20_poly1305") + _string(blob) + tail)
    return _armor(PRIVATE_LABEL, body)


def _derive(kdf: bytes, options: bytes, passphrase: bytes, where: str) -> bytes:
    if len(options) < 4:
        raise Crypt4GHKeyFileError(f"{where}: the private key's kdf options are too short")
    rounds, salt = _U32.unpack_from(options)[0], options[4:]
    if kdf == b"scrypt":
        return hashlib.scrypt(passphrase, salt=salt, **_SCRYPT)
    if kdf == b"pbkdf2_hmac_sha256":
        return hashlib.pbkdf2_hmac("sha256", passphrase, salt, rounds, dklen=32)
    if kdf == b"bcrypt":
        raise Crypt4GHKeyFileError(f"{where}: bcrypt-protected private keys are not supported; re-lock the key with scrypt")
    raise Crypt4GHKeyFileError(f"{where}: the private key uses an unknown kdf")


def parse_private_key(text: str | bytes, *, passphrase: Passphrase | None = None,
                      where: str = "private key") -> X25519PrivateKey:
    """The X25519 private key in a Crypt4GH private key file; `passphrase` unlocks a locked one."""
    data = _unarmor(text, PRIVATE_LABEL, where)
    if not data.startswith(MAGIC):
        raise Crypt4GHKeyFileError(f"{where}: not a Crypt4GH (c4gh-v1) private key")
    r = _Reader(data[len(MAGIC):], where)
    kdf = r.string("kdf name")
    options = r.string("kdf options") if kdf != b"none" else b""
    cipher = r.string("cipher name")
    blob = r.string("key material")
    if cipher == b"none":
        if kdf != b"none":
            raise Crypt4GHKeyFileError(f"{where}: the private key names a kdf but no cipher")
        secret = blob
    elif cipher == b"chacha20_poly1305":
        if kdf == b"none":
            raise Crypt4GHKeyFileError(f"{where}: the private key is encrypted but names no kdf")
        pw = _passphrase_bytes(passphrase) if passphrase is not None else b""
        if not pw:
            raise Crypt4GHKeyFileError(f"{where}: the private key is passphrase-protected and no passphrase was given")
        derived = _derive(kdf, options, pw, where)
        if len(blob) < 12 + 16:
            raise Crypt4GHKeyFileError(f"{where}: the private key's encrypted material is too short")
        try:
            secret = ChaCha20Poly1305(derived).decrypt(blob[:12], blob[12:], None)
        except InvalidTag:
            raise Crypt4GHKeyFileError(f"{where}: the passphrase is wrong or the private key file is corrupt") from None
    else:
        raise Crypt4GHKeyFileError(f"{where}: the private key uses an unsupported cipher")
    if len(secret) != 32:
        raise Crypt4GHKeyFileError(f"{where}: the private key holds {len(secret)} bytes; an X25519 key has 32")
    return X25519PrivateKey.from_private_bytes(secret)


def load_public_key(path: str | os.PathLike[str]) -> X25519PublicKey:
    """Read a Crypt4GH public key file."""
    return parse_public_key(Path(path).read_bytes(), where=str(path))


def load_private_key(path: str | os.PathLike[str], *, passphrase: Passphrase | None = None) -> X25519PrivateKey:
    """Read a Crypt4GH private key file."""
    return parse_private_key(Path(path).read_bytes(), passphrase=passphrase, where=str(path))


def save_public_key(path: str | os.PathLike[str], key: X25519PublicKey) -> None:
    """Write a Crypt4GH public key file."""
    Path(path).write_bytes(format_public_key(key))


def save_private_key(path: str | os.PathLike[str], key: X25519PrivateKey, *, passphrase: Passphrase | None = None,
                     comment: bytes | None = None) -> None:
    """Write a Crypt4GH private key file, created 0600 and never over an existing file."""
    data = format_private_key(key, passphrase=passphrase, comment=comment)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
