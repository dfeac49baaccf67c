"""Crypt4GH v1 headers: build, parse, open for a reader, and re-seal for another recipient.

Layout (GA4GH Crypt4GH, all integers little-endian)::

    "crypt4gh" | version u32 = 1 | packet count u32 | packets...
    packet = length u32 (counts itself) | method u32 = 0 (X25519_chacha20_ietf_poly1305)
             | writer public key (32) | nonce (12) | ChaCha20-Poly1305(plaintext) with MAC (16)
    plaintext = type u32: 0 data_encryption_parameters -> method u32 = 0 | data key (32)
                          1 data_edit_list             -> count u32 | count x u64

The packet key is the first 32 bytes of BLAKE2b-512(X25519(sk, peer) || reader_pk || writer_pk):
the reader's public key comes first whichever side computes it (the spec's K_shared; the
reference package gets the same bytes from libsodium's crypto_kx, writer = server).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from governance.crypto.errors import Crypt4GHHeaderError, Crypt4GHWrongKeyError

MAGIC = b"crypt4gh"
VERSION = 1
PREAMBLE = struct.Struct("<8sII")  # magic, version, packet count
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
KEY_SIZE = 32
NONCE_SIZE = 12
MAC_SIZE = 16

METHOD_X25519_CHACHA20_POLY1305 = 0
PACKET_DATA_ENCRYPTION = 0
PACKET_EDIT_LIST = 1
DATA_CHACHA20_POLY1305 = 0

# Bounds that keep a hostile header from costing memory or time; real headers hold a few
# packets of ~108 bytes.
MAX_PACKETS = 256
MAX_PACKET_LENGTH = 1 << 16
_PACKET_OVERHEAD = 4 + 4 + KEY_SIZE + NONCE_SIZE + MAC_SIZE  # length, method, pk, nonce, MAC


class DataKeys:
    """The data keys and edit list recovered from a header; the key bytes never print."""

    __slots__ = ("keys", "edit_list")

    def __init__(self, keys: tuple[bytes, ...], edit_list: tuple[int, ...] | None) -> None:
        self.keys = keys
        self.edit_list = edit_list

    def __repr__(self) -> str:
        edits = "none" if self.edit_list is None else f"{len(self.edit_list)} lengths"
        return f"DataKeys(<{len(self.keys)} key(s) redacted>, edit_list={edits})"


@dataclass(frozen=True, slots=True)
class RawPacket:
    """One header packet as stored: its encryption method and the bytes after the method field."""

    method: int
    body: bytes


def _public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes_raw()


def _packet_key(shared: bytes, reader_pk: bytes, writer_pk: bytes) -> bytes:
    # The spec's K_shared = Blake2b(K_dh || K_pr || K_pw), first 32 bytes.
    return hashlib.blake2b(shared + reader_pk + writer_pk, digest_size=64).digest()[:KEY_SIZE]


def data_encryption_packet(data_key: bytes) -> bytes:
    """The plaintext of a data_encryption_parameters packet for `data_key` (ChaCha20-Poly1305)."""
    if len(data_key) != KEY_SIZE:
        raise ValueError("a Crypt4GH data key is 32 bytes")
    return U32.pack(PACKET_DATA_ENCRYPTION) + U32.pack(DATA_CHACHA20_POLY1305) + data_key


class _Sealer:
    """Seals packets from one writer key to one recipient; the exchange is done once."""

    __slots__ = ("aead", "prefix")

    def __init__(self, writer: X25519PrivateKey, recipient: X25519PublicKey) -> None:
        writer_pk = _public_bytes(writer)
        self.aead = ChaCha20Poly1305(_packet_key(writer.exchange(recipient), _public_bytes(recipient), writer_pk))
        self.prefix = U32.pack(METHOD_X25519_CHACHA20_POLY1305) + writer_pk

    def seal(self, plaintext: bytes, nonce: bytes) -> bytes:
        sealed = self.aead.encrypt(nonce, plaintext, None)
        return U32.pack(4 + len(self.prefix) + NONCE_SIZE + len(sealed)) + self.prefix + nonce + sealed


def _serialize(sealers: Sequence[_Sealer], plaintexts: Sequence[bytes]) -> bytes:
    count = len(plaintexts) * len(sealers)
    if not count:
        raise ValueError("a Crypt4GH header needs at least one packet and one recipient")
    if count > MAX_PACKETS:
        raise ValueError(f"a header of {count} packets exceeds the limit of {MAX_PACKETS}")
    nonces = os.urandom(NONCE_SIZE * count)
    parts = [PREAMBLE.pack(MAGIC, VERSION, count)]
    i = 0
    for sealer in sealers:
        for plaintext in plaintexts:
            parts.append(sealer.seal(plaintext, nonces[i:i + NONCE_SIZE]))
            i += NONCE_SIZE
    return b"".join(parts)


def seal_packets(plaintexts: Sequence[bytes], *, recipients: Sequence[X25519PublicKey],
                 writer: X25519PrivateKey | None = None) -> bytes:
    """A serialized header holding each plaintext packet sealed to each recipient.

    Without `writer` a fresh ephemeral key is used (and dropped), as the spec recommends.
    """
    writer = writer if writer is not None else X25519PrivateKey.generate()
    return _serialize([_Sealer(writer, r) for r in recipients], plaintexts)


def split_header(header: bytes | bytearray | memoryview) -> tuple[list[RawPacket], int]:
    """The packets of a serialized header and the header's length in bytes (trailing bytes allowed)."""
    view = memoryview(header)
    if len(view) < PREAMBLE.size:
        raise Crypt4GHHeaderError(f"the header is {len(view)} bytes, shorter than the 16-byte preamble")
    count = parse_preamble(bytes(view[:PREAMBLE.size]))
    packets: list[RawPacket] = []
    pos = PREAMBLE.size
    for index in range(count):
        if pos + 4 > len(view):
            raise Crypt4GHHeaderError(f"the header ends inside packet {index} of {count}")
        length = check_packet_length(U32.unpack_from(view, pos)[0], index)
        if pos + length > len(view):
            raise Crypt4GHHeaderError(f"the header ends inside packet {index} of {count}")
        packets.append(RawPacket(U32.unpack_from(view, pos + 4)[0], bytes(view[pos + 8:pos + length])))
        pos += length
    return packets, pos


def parse_preamble(preamble: bytes) -> int:
    """The packet count of a 16-byte preamble, after checking magic and version."""
    magic, version, count = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise Crypt4GHHeaderError("the input is not a Crypt4GH file (the magic bytes are wrong)")
    if version != VERSION:
        raise Crypt4GHHeaderError(f"Crypt4GH version {version} is not supported (only version 1)")
    if count == 0:
        raise Crypt4GHHeaderError("the Crypt4GH header has no packets")
    if count > MAX_PACKETS:
        raise Crypt4GHHeaderError(f"the Crypt4GH header claims {count} packets, more than the limit of {MAX_PACKETS}")
    return int(count)


def check_packet_length(length: int, index: int) -> int:
    """`length` if it is plausible for header packet `index`, else a header error."""
    if length < 8 or length > MAX_PACKET_LENGTH:
        raise Crypt4GHHeaderError(f"header packet {index} has an impossible length of {length} bytes")
    return length


class ReaderKey:
    """A reader's private key with the packet keys derived from it, one per writer key seen.

    A loader opens thousands of headers that the service re-sealed with one writer key (the
    dataset's), so deriving each packet key once saves an X25519 exchange per file. Bounded:
    past `limit` writer keys it starts afresh. Never printed.
    """

    def __init__(self, key: X25519PrivateKey, *, limit: int = 1024) -> None:
        self.key = key
        self.public = _public_bytes(key)
        self._limit = limit
        self._aeads: dict[bytes, ChaCha20Poly1305 | None] = {}

    def __repr__(self) -> str:
        return "ReaderKey(<secret>)"

    def aead_for(self, writer_pk: bytes) -> ChaCha20Poly1305 | None:
        """The packet cipher for packets from `writer_pk`, or None for a low-order point."""
        found = self._aeads.get(writer_pk, False)
        if found is not False:
            return found  # type: ignore[return-value]
        try:
            shared = self.key.exchange(X25519PublicKey.from_public_bytes(writer_pk))
        except ValueError:  # a low-order point: no shared secret, so not a packet for us
            aead = None
        else:
            aead = ChaCha20Poly1305(_packet_key(shared, self.public, writer_pk))
        if len(self._aeads) >= self._limit:
            self._aeads.clear()
        self._aeads[bytes(writer_pk)] = aead
        return aead


def open_packets(packets: Sequence[RawPacket], *, reader: X25519PrivateKey | ReaderKey) -> list[bytes]:
    """The plaintexts of the packets sealed to `reader`; others are skipped, as the spec says."""
    # One exchange per distinct writer key: within a header (several recipients share one) and,
    # with a `ReaderKey`, across every header it opens.
    keyring = reader if isinstance(reader, ReaderKey) else ReaderKey(reader)
    opened: list[bytes] = []
    for packet in packets:
        if packet.method != METHOD_X25519_CHACHA20_POLY1305 or len(packet.body) < _PACKET_OVERHEAD - 8:
            continue  # another method, or too short to be ours: meant for another reader
        aead = keyring.aead_for(bytes(packet.body[:KEY_SIZE]))
        if aead is None:
            continue
        nonce = packet.body[KEY_SIZE:KEY_SIZE + NONCE_SIZE]
        try:
            opened.append(aead.decrypt(nonce, packet.body[KEY_SIZE + NONCE_SIZE:], None))
        except InvalidTag:
            continue  # sealed to another reader
    return opened


def interpret(plaintexts: Sequence[bytes]) -> DataKeys:
    """The data keys and edit list in opened packets; refuses unknown types and mixed methods."""
    keys: list[bytes] = []
    edit_list: tuple[int, ...] | None = None
    for plaintext in plaintexts:
        if len(plaintext) < 4:
            raise Crypt4GHHeaderError("a header packet is too short to hold its type")
        kind = U32.unpack_from(plaintext)[0]
        if kind == PACKET_DATA_ENCRYPTION:
            if len(plaintext) < 8 + KEY_SIZE:
                raise Crypt4GHHeaderError("a data encryption packet is too short to hold its key")
            method = U32.unpack_from(plaintext, 4)[0]
            if method != DATA_CHACHA20_POLY1305:
                raise Crypt4GHHeaderError(f"data encryption method {method} is not supported (only chacha20_ietf_poly1305)")
            keys.append(plaintext[8:8 + KEY_SIZE])  # anything after the key is padding
        elif kind == PACKET_EDIT_LIST:
            if edit_list is not None:
                raise Crypt4GHHeaderError("the header holds more than one edit list")
            if len(plaintext) < 8:
                raise Crypt4GHHeaderError("an edit list packet is too short to hold its count")
            n = U32.unpack_from(plaintext, 4)[0]
            if len(plaintext) < 8 + 8 * n:
                raise Crypt4GHHeaderError(f"an edit list packet claims {n} lengths but holds fewer")
            edit_list = tuple(U64.unpack_from(plaintext, 8 + 8 * i)[0] for i in range(n))
        else:
            raise Crypt4GHHeaderError(f"header packet type {kind} is not supported")
    if not keys:
        raise Crypt4GHHeaderError("the header opened for this key holds no data encryption packet")
    return DataKeys(tuple(keys), edit_list)


def open_header(header: bytes | bytearray | memoryview, *, reader: X25519PrivateKey | ReaderKey) -> DataKeys:
    """The data keys (and edit list, if any) that `header` holds for `reader`."""
    packets, _ = split_header(header)
    opened = open_packets(packets, reader=reader)
    if not opened:
        raise Crypt4GHWrongKeyError("no header packet opens with this private key")
    return interpret(opened)


def reseal_header(header: bytes | bytearray | memoryview, *, reader: X25519PrivateKey,
                  recipient: X25519PublicKey, writer: X25519PrivateKey | None = None) -> bytes:
    """A new header holding the packets `reader` can open, sealed to `recipient` only.

    The payload is untouched: the data key moves, the data does not. Packets meant for other
    readers are dropped so a released header names nobody else. `writer` defaults to the
    reader's own key (see `reseal_headers`).
    """
    return reseal_headers([header], reader=reader, recipient=recipient, writer=writer)[0]


def reseal_headers(headers: Sequence[bytes | bytearray | memoryview], *, reader: X25519PrivateKey,
                   recipient: X25519PublicKey, writer: X25519PrivateKey | None = None) -> list[bytes]:
    """`reseal_header` for many headers to one recipient, with one writer-side exchange in all.

    # SECURITY: the writer key defaults to the reader's (the dataset key) rather than a fresh
    # ephemeral key. The spec allows a static writer key; discarding an ephemeral one only
    # keeps the *writer* from re-opening the packet, and the holder of the dataset key can open
    # the original header anyway. Nonces stay random (96 bits) under the fixed packet key, so
    # uniqueness holds far beyond any release volume. It saves one X25519 operation per
    # header, and for a batch the recipient exchange is shared. Pass an ephemeral `writer`
    # (X25519PrivateKey.generate()) to get unlinkable writer keys instead.
    """
    sealer = _Sealer(writer if writer is not None else reader, recipient)
    out: list[bytes] = []
    for header in headers:
        packets, _ = split_header(header)
        opened = open_packets(packets, reader=reader)
        if not opened:
            raise Crypt4GHWrongKeyError("no header packet opens with this private key, so it cannot be re-sealed")
        interpret(opened)  # INVARIANT: we only pass on headers we could decrypt the file with ourselves
        out.append(_serialize([sealer], opened))
    return out
