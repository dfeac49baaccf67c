"""The keystore: one X25519 key pair per dataset, the private keys sealed by a master key.

`KeyStore` is the port the services use. It is operation-style on purpose: it opens and
re-seals Crypt4GH headers for a dataset and never hands out a dataset's private key, so a KMS
or an HSM can fill it without exporting keys. `FileKeyStore` is the embedded implementation.

On disk (`directory`, normally `$GOVERNANCE_DATA_DIR/keys`, every file 0600, directories 0700)::

    gen-<master key id>/<dataset>/v0001.json   the private key, sealed (ChaCha20-Poly1305)
    gen-<master key id>/<dataset>/v0001.pub    its public key, Crypt4GH public key format
    .lock                                      serialises writers (flock)

A *generation* is a complete copy of the store sealed under one master key; the directory is
named by the master key's id (a one-way digest of it, never the key). A sealed record is JSON
(format, dataset, version, created, public key, nonce, sealed private key); its AAD binds the
dataset id and version taken from the file's *path*, and the created time and public key from
the record, so a record copied to another dataset's or version's name does not open.

Rotating a dataset key writes a new version; old versions stay, and opening a header tries
the versions newest first, so files ingested under an old version keep opening. Rotating the
master key writes a new generation beside the old one (each file: temp name, fsync, rename),
renames it into place, and only then commits: with a master key file, by renaming the new
master key file over the old one. An interruption before the commit leaves the old master key
and its generation untouched; a generation that never became current is pruned by the next
write. With the master key in an environment variable the commit is the new generation's
rename; the old generation is removed after it.

# SECURITY: no key byte, no master key and no base64 of either enters a message, a repr, a
# log or an exception; errors name the path and what is wrong with it.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from governance.crypto.errors import (
    Crypt4GHWrongKeyError,
    DatasetKeyExistsError,
    DatasetKeyNotFoundError,
    KeyRecordError,
    KeyStoreError,
    MasterKeyError,
    WrongMasterKeyError,
)
from governance.crypto.header import DataKeys, open_header, reseal_headers
from governance.crypto.keys import format_public_key
from governance.crypto.master import MASTER_ENV, MasterKey, fsync_dir, load_master_key, write_atomic, write_temp
from governance.errors import display_path

__all__ = ["MASTER_ENV", "FileKeyStore", "KeyInfo", "KeyStore", "MasterKey", "fingerprint", "load_master_key"]

FORMAT = "governance-keystore/1"
NONCE_SIZE = 12
_DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RECORD_NAME = re.compile(r"v(\d{4,})\.json")
_GENERATION = re.compile(r"gen-[0-9a-f]{16}")


# ------------------------------------------------------------------ the port


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One version of a dataset's key pair: public facts only."""

    dataset: str
    version: int
    created: datetime
    fingerprint: str  # sha256 of the raw public key, hex
    current: bool

    def as_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "version": self.version, "created": self.created.isoformat(),
                "fingerprint": self.fingerprint, "current": self.current}


def fingerprint(key: X25519PublicKey) -> str:
    """The sha256 of a public key's 32 raw bytes, in hex."""
    return hashlib.sha256(key.public_bytes_raw()).hexdigest()


class KeyStore(Protocol):
    """Dataset key pairs. Operations never return a dataset private key, so a KMS can fill this."""

    def datasets(self) -> list[str]:
        """The datasets that have a key, sorted."""
        ...

    def versions(self, dataset: str) -> list[KeyInfo]:
        """Every key version of `dataset`, oldest first; the last is current."""
        ...

    def public_key(self, dataset: str, *, version: int | None = None) -> X25519PublicKey:
        """The public key new files of `dataset` are encrypted to (the current version by default)."""
        ...

    def create(self, dataset: str, *, now: datetime) -> KeyInfo:
        """A first key pair for `dataset`; DatasetKeyExistsError when it has one."""
        ...

    def rotate(self, dataset: str, *, now: datetime) -> KeyInfo:
        """A new current key version for `dataset`; the old versions stay to open old headers."""
        ...

    def open_header(self, dataset: str, header: bytes, *, version: int | None = None) -> DataKeys:
        """The data keys a Crypt4GH header of `dataset` holds (any version, newest first, by default)."""
        ...

    def reseal_headers(self, dataset: str, headers: Sequence[bytes], *, recipient: X25519PublicKey,
                       version: int | None = None) -> list[bytes]:
        """Each header re-sealed to `recipient` only; the payloads are untouched."""
        ...


# ------------------------------------------------------------------ the file-backed store


@dataclass(frozen=True, slots=True)
class _Record:
    dataset: str
    version: int
    created: datetime
    public: X25519PublicKey


def _check_dataset(dataset: str) -> str:
    if not _DATASET_ID.fullmatch(dataset) or ".." in dataset:
        raise KeyStoreError(f"'{dataset[:80]}' is not a usable dataset id (letters, digits, '.', '_', '-')")
    return dataset


def _aad(dataset: str, version: int, created: str, public_raw: bytes) -> bytes:
    # INVARIANT: dataset and version come from the record's path, not its contents.
    return b"\0".join([FORMAT.encode(), dataset.encode(), str(version).encode(), created.encode(), public_raw])


class FileKeyStore:
    """The embedded keystore: sealed key files in a directory, under one master key."""

    def __init__(self, directory: str | os.PathLike[str], master: MasterKey) -> None:
        self.directory = Path(directory)
        self._master = master
        self._aead = ChaCha20Poly1305(master.get_secret_value())
        # Versions never change once written, so an opened key can be kept for this store's life.
        self._opened: dict[tuple[str, int], tuple[_Record, X25519PrivateKey]] = {}

    def __repr__(self) -> str:
        return f"FileKeyStore({display_path(self.directory)!r})"

    # ---------------------------------------------------------------- reading

    def datasets(self) -> list[str]:
        gen = self._generation()
        if gen is None:
            return []
        return sorted(d.name for d in gen.iterdir() if d.is_dir() and self._version_numbers(d))

    def versions(self, dataset: str) -> list[KeyInfo]:
        numbers = self._numbers_of(dataset)
        infos = []
        for n in numbers:
            record, _ = self._open(dataset, n)
            infos.append(KeyInfo(dataset, n, record.created, fingerprint(record.public), n == numbers[-1]))
        return infos

    def public_key(self, dataset: str, *, version: int | None = None) -> X25519PublicKey:
        number = self._numbers_of(dataset)[-1] if version is None else version
        record, _ = self._open(dataset, number)
        return record.public

    def open_header(self, dataset: str, header: bytes, *, version: int | None = None) -> DataKeys:
        for number in self._candidates(dataset, version):
            try:
                return open_header(header, reader=self._open(dataset, number)[1])
            except Crypt4GHWrongKeyError:
                continue
        raise Crypt4GHWrongKeyError(f"no key version of dataset {dataset} opens this header")

    def reseal_headers(self, dataset: str, headers: Sequence[bytes], *, recipient: X25519PublicKey,
                       version: int | None = None) -> list[bytes]:
        candidates = self._candidates(dataset, version)
        try:  # the common case: one version opens them all, with one recipient exchange
            return reseal_headers(headers, reader=self._open(dataset, candidates[0])[1], recipient=recipient)
        except Crypt4GHWrongKeyError:
            if len(candidates) == 1:
                raise
        out = []
        for index, header in enumerate(headers):
            for number in candidates:
                try:
                    out.append(reseal_headers([header], reader=self._open(dataset, number)[1], recipient=recipient)[0])
                    break
                except Crypt4GHWrongKeyError:
                    continue
            else:
                raise Crypt4GHWrongKeyError(f"no key version of dataset {dataset} opens header {index} of the batch")
        return out

    # ---------------------------------------------------------------- writing

    def create(self, dataset: str, *, now: datetime) -> KeyInfo:
        _check_dataset(dataset)
        with self._lock():
            gen = self._writable_generation()
            if self._version_numbers(gen / dataset):
                raise DatasetKeyExistsError(f"dataset {dataset} already has a key; use `govern keys rotate {dataset}`")
            return self._write_new(gen, dataset, 1, now)

    def rotate(self, dataset: str, *, now: datetime) -> KeyInfo:
        _check_dataset(dataset)
        with self._lock():
            gen = self._writable_generation()
            numbers = self._numbers_of(dataset)
            return self._write_new(gen, dataset, numbers[-1] + 1, now)

    def rotate_master(self, new: MasterKey, *, master_file: str | os.PathLike[str] | None = None) -> FileKeyStore:
        """Re-seal every dataset key under `new`, all or nothing; returns the store under `new`.

        With `master_file`, the new key replaces that file's as the commit (the caller keeps
        the master key there); without it the caller must hand `new` to every process itself.
        """
        if new.key_id == self._master.key_id:
            raise MasterKeyError("the new master key is the current one")
        new_aead = ChaCha20Poly1305(new.get_secret_value())
        with self._lock():
            old = self._writable_generation()
            final = self.directory / f"gen-{new.key_id}"
            tmp = self.directory / f"gen-{new.key_id}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(mode=0o700)
            try:
                for dataset in self.datasets():
                    (tmp / dataset).mkdir(mode=0o700)
                    for number in self._numbers_of(dataset):
                        record, private = self._open(dataset, number)
                        self._write_record(tmp, record, private, new_aead)
                    fsync_dir(tmp / dataset)
                fsync_dir(tmp)
                os.rename(tmp, final)
                fsync_dir(self.directory)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if master_file is not None:
                # INVARIANT: the commit point. Until this rename the old master key file and
                # its generation are untouched; the new generation is pruned by the next write.
                target = Path(master_file)
                try:
                    staged = write_temp(target, new.file_bytes())
                    try:
                        os.replace(staged, target)
                    except BaseException:
                        staged.unlink(missing_ok=True)
                        raise
                except BaseException:
                    shutil.rmtree(final, ignore_errors=True)
                    raise
                fsync_dir(target.parent)
            shutil.rmtree(old, ignore_errors=True)
            fsync_dir(self.directory)
        return FileKeyStore(self.directory, new)

    # ---------------------------------------------------------------- internals

    def _generation(self) -> Path | None:
        """Our master key's generation; None for an empty store; WrongMasterKeyError if only others exist."""
        ours = self.directory / f"gen-{self._master.key_id}"
        if ours.is_dir():
            return ours
        if self._other_generations(ours):
            raise WrongMasterKeyError(f"the master key does not open the keystore in {display_path(self.directory)}: "
                                      "its dataset keys are sealed under another master key")
        return None

    def _other_generations(self, ours: Path) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.iterdir() if p != ours and p.is_dir() and _GENERATION.fullmatch(p.name)]

    def _writable_generation(self) -> Path:
        """Our generation, created if the store is empty, with every other generation pruned.

        # INVARIANT: the generation of the master key in use is authoritative. Another one is
        # the leftover of an interrupted master rotation that never committed for this key, or
        # the old one of a rotation that did; either way it must not go stale silently.
        """
        ours = self.directory / f"gen-{self._master.key_id}"
        gen = self._generation()
        if gen is None:
            ours.mkdir(mode=0o700)
            fsync_dir(self.directory)
            gen = ours
        for stale in self._other_generations(ours):
            shutil.rmtree(stale, ignore_errors=True)
        for leftover in self.directory.glob("gen-*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        return gen

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _version_numbers(directory: Path) -> list[int]:
        if not directory.is_dir():
            return []
        return sorted(int(m.group(1)) for p in directory.iterdir() if (m := _RECORD_NAME.fullmatch(p.name)))

    def _numbers_of(self, dataset: str) -> list[int]:
        _check_dataset(dataset)
        gen = self._generation()
        numbers = self._version_numbers(gen / dataset) if gen is not None else []
        if not numbers:
            raise DatasetKeyNotFoundError(f"dataset {dataset} has no key in {display_path(self.directory)}; "
                                          "create one with `govern keys init`")
        return numbers

    def _candidates(self, dataset: str, version: int | None) -> list[int]:
        numbers = self._numbers_of(dataset)
        if version is None:
            return numbers[::-1]
        if version not in numbers:
            raise DatasetKeyNotFoundError(f"dataset {dataset} has no key version {version}")
        return [version]

    def _write_new(self, gen: Path, dataset: str, version: int, now: datetime) -> KeyInfo:
        if now.tzinfo is None:
            raise ValueError("`now` must carry a time zone")
        (gen / dataset).mkdir(mode=0o700, exist_ok=True)
        private = X25519PrivateKey.generate()
        record = _Record(dataset, version, now, private.public_key())
        self._write_record(gen, record, private, self._aead)
        self._opened[(dataset, version)] = (record, private)
        return KeyInfo(dataset, version, now, fingerprint(record.public), True)

    @staticmethod
    def _write_record(gen: Path, record: _Record, private: X25519PrivateKey, aead: ChaCha20Poly1305) -> None:
        stem = gen / record.dataset / f"v{record.version:04d}"
        public_raw = record.public.public_bytes_raw()
        created = record.created.isoformat()
        nonce = os.urandom(NONCE_SIZE)
        sealed = aead.encrypt(nonce, private.private_bytes_raw(),
                              _aad(record.dataset, record.version, created, public_raw))
        body = {"format": FORMAT, "dataset": record.dataset, "version": record.version, "created": created,
                "public_key": base64.b64encode(public_raw).decode(), "nonce": base64.b64encode(nonce).decode(),
                "sealed_private_key": base64.b64encode(sealed).decode()}
        # The public file first: a version exists once its sealed record does.
        write_atomic(stem.with_suffix(".pub"), format_public_key(record.public))
        write_atomic(stem.with_suffix(".json"), (json.dumps(body, indent=2) + "\n").encode())

    def _open(self, dataset: str, version: int) -> tuple[_Record, X25519PrivateKey]:
        cached = self._opened.get((dataset, version))
        if cached is not None:
            return cached
        gen = self._generation()
        if gen is None:
            raise DatasetKeyNotFoundError(f"dataset {dataset} has no key in {display_path(self.directory)}")
        path = gen / dataset / f"v{version:04d}.json"
        shown = display_path(path)
        try:
            body = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise DatasetKeyNotFoundError(f"dataset {dataset} has no key version {version}") from None
        except (OSError, ValueError):
            raise KeyRecordError(f"{shown}: the sealed key file cannot be read as JSON") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise KeyRecordError(f"{shown}: not a sealed key file of format {FORMAT}")
        if body.get("dataset") != dataset or body.get("version") != version:
            raise KeyRecordError(f"{shown}: the file names another dataset or version than its path; "
                                 "sealed key files cannot be moved or renamed")
        try:
            created_text = str(body["created"])
            created = datetime.fromisoformat(created_text)
            public_raw = base64.b64decode(body["public_key"], validate=True)
            nonce = base64.b64decode(body["nonce"], validate=True)
            sealed = base64.b64decode(body["sealed_private_key"], validate=True)
            public = X25519PublicKey.from_public_bytes(public_raw)
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise KeyRecordError(f"{shown}: the sealed key file lacks a field or holds a malformed one") from None
        if len(nonce) != NONCE_SIZE:
            raise KeyRecordError(f"{shown}: the nonce is {len(nonce)} bytes; it must be {NONCE_SIZE}")
        try:
            secret = self._aead.decrypt(nonce, sealed, _aad(dataset, version, created_text, public_raw))
        except InvalidTag:
            raise KeyRecordError(f"{shown}: the sealed key does not authenticate: the file was altered, "
                                 "or copied from another dataset or version") from None
        private = X25519PrivateKey.from_private_bytes(secret)
        if private.public_key().public_bytes_raw() != public_raw:
            raise KeyRecordError(f"{shown}: the sealed private key does not match the public key beside it")
        opened = (_Record(dataset, version, created, public), private)
        self._opened[(dataset, version)] = opened
        return opened
