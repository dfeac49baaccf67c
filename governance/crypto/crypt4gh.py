"""Crypt4GH v1 payloads: encrypt and decrypt streams in constant memory.

The payload is the plaintext cut into 64 KiB segments, each stored as
`nonce (12) || ChaCha20-Poly1305 ciphertext || MAC (16)` under the header's data key.

Crypt4GH authenticates each segment but not their order, their number, or the file's length:
a file cut at a segment boundary, or with segments swapped or duplicated, still decrypts.
So `encrypt` reports the plaintext size and a digest of the sequence of segment MACs (sha256
over the concatenated 16-byte MACs), the manifest keeps them, and `decrypt` checks them
against an `ExpectedFile`. Checking costs nothing extra: the MACs are already at hand.
"""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from governance.crypto.errors import (
    Crypt4GHHeaderError,
    Crypt4GHIntegrityError,
    Crypt4GHSegmentError,
    Crypt4GHTruncatedError,
    Crypt4GHWrongKeyError,
)
from governance.crypto.header import (
    PREAMBLE,
    U32,
    DataKeys,
    ReaderKey,
    check_packet_length,
    data_encryption_packet,
    interpret,
    open_header,
    open_packets,
    parse_preamble,
    reseal_header,
    reseal_headers,
    seal_packets,
    split_header,
)

SEGMENT_SIZE = 65536
NONCE_SIZE = 12
MAC_SIZE = 16
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + NONCE_SIZE + MAC_SIZE
# Segments handled per read and write: 1 MiB of plaintext keeps memory constant and calls few.
BATCH = 16

__all__ = [
    "CIPHER_SEGMENT_SIZE", "SEGMENT_SIZE", "DataKeys", "DecryptedInfo", "EncryptedInfo", "ExpectedFile",
    "decrypt", "decrypt_payload", "decrypt_to_path", "encrypt", "encrypted_size", "open_header", "payload_keys", "payload_length",
    "read_header", "reseal_header", "reseal_headers",
]


class Source(Protocol):
    """A binary stream we read from (a file opened "rb", `io.BytesIO`, a socket file)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int | None: ...


class Sink(Protocol):
    """A binary stream we write to."""

    def write(self, data: memoryview | bytes, /) -> int | None: ...


@dataclass(frozen=True, slots=True)
class EncryptedInfo:
    """What a manifest records about a file we encrypted; holds no secret."""

    size: int  # plaintext bytes
    sha256: str | None  # hex digest of the plaintext (None when encrypt was told not to hash)
    mac_digest: str  # hex sha256 over the concatenated 16-byte segment MACs, in order
    header: bytes  # the serialized header, exactly as written at the start of the file
    segments: int

    @property
    def header_length(self) -> int:
        return len(self.header)


@dataclass(frozen=True, slots=True)
class ExpectedFile:
    """What the manifest says a file decrypts to; `sha256` is checked when given."""

    size: int
    mac_digest: str
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class DecryptedInfo:
    """What a decryption saw: plaintext size, MAC-sequence digest, and sha256 when computed."""

    size: int
    mac_digest: str
    sha256: str | None
    segments: int


def encrypted_size(size: int, header_length: int) -> int:
    """The size of the Crypt4GH file holding `size` plaintext bytes behind a header."""
    full, rest = divmod(size, SEGMENT_SIZE)
    return header_length + full * CIPHER_SEGMENT_SIZE + (rest + NONCE_SIZE + MAC_SIZE if rest else 0)


def _fill(src: Source, view: memoryview) -> int:
    """Read until `view` is full or the stream ends; short reads (pipes, sockets) are retried."""
    got = src.readinto(view) or 0
    total = got
    while got and total < len(view):
        got = src.readinto(view[total:]) or 0
        total += got
    return total


class _HashingThread:
    """A plaintext sha256 computed in a second thread while the caller encrypts.

    hashlib releases the GIL while it hashes a buffer of more than 2 KiB, and so does the AEAD
    of `cryptography` while it seals one (measured: two threads sealing reach 1.7x one), so on
    two cores the digest and the encryption of a batch overlap instead of adding up. The caller
    takes a buffer, fills it, hands it over with `submit`, and encrypts it while it is hashed;
    the hasher gives each buffer back once hashed, so memory stays at `count` batches and the
    digest sees the buffers in the order they were submitted.
    """

    __slots__ = ("_sha", "_todo", "_free", "_error", "_thread")

    def __init__(self, sha: hashlib._Hash, *, count: int, size: int) -> None:
        self._sha = sha
        self._todo: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(count):
            self._free.put(memoryview(bytearray(size)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="crypt4gh-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buf, n = item
            if self._error is None:
                try:
                    self._sha.update(buf[:n])
                except BaseException as exc:  # handed to the caller by take() or finish()
                    self._error = exc
            self._free.put(buf)  # always: the caller may be waiting for it

    def take(self) -> memoryview:
        """A buffer the hasher is done with (waits for one when all are in its queue)."""
        buf = self._free.get()
        if self._error is not None:
            raise self._error
        return buf

    def submit(self, buf: memoryview, n: int) -> None:
        """Hash `buf[:n]` next; the caller only reads `buf` until `take` returns it again."""
        self._todo.put((buf, n))

    def stop(self) -> None:
        """Wait until everything submitted is hashed and end the thread."""
        self._todo.put(None)
        self._thread.join()

    def finish(self) -> None:
        """`stop`, then raise what the hasher raised, if anything."""
        self.stop()
        if self._error is not None:
            raise self._error


_HASH_BUFFERS = 2  # plaintext batches in flight: one being read and encrypted while the other is hashed


def _seal_batch(aead: ChaCha20Poly1305, pv: memoryview, n: int, cv: memoryview, macs: hashlib._Hash) -> tuple[int, int]:
    """Encrypt `pv[:n]` into `cv` as whole segments; returns the bytes written and the segment count."""
    count = -(-n // SEGMENT_SIZE)
    nonces = os.urandom(NONCE_SIZE * count)
    out = 0
    for i in range(count):
        start = i * SEGMENT_SIZE
        length = min(SEGMENT_SIZE, n - start)
        nonce = nonces[i * NONCE_SIZE:(i + 1) * NONCE_SIZE]
        cv[out:out + NONCE_SIZE] = nonce
        end = out + NONCE_SIZE + length + MAC_SIZE
        aead.encrypt_into(nonce, pv[start:start + length], None, cv[out + NONCE_SIZE:end])
        macs.update(cv[end - MAC_SIZE:end])
        out = end
    return out, count


def encrypt(src: Source, dst: Sink, *, recipients: Sequence[X25519PublicKey],
            writer: X25519PrivateKey | None = None, sha256: bool = True) -> EncryptedInfo:
    """Encrypt `src` into `dst` as a Crypt4GH file readable by every recipient.

    A fresh random data key per file; `writer` defaults to an ephemeral key. Streams in
    constant memory (at most about 3 MiB: two plaintext batches and one ciphertext batch).
    The returned facts are what the manifest keeps; `sha256=False` skips the plaintext digest
    for callers that hash elsewhere or not at all, and then `EncryptedInfo.sha256` is None.
    Past the first segment and batch (1.06 MiB) the digest is computed in a second thread, concurrently with the
    encryption (`_HashingThread`); the output and the digest are the same either way.
    """
    data_key = secrets.token_bytes(32)
    header = seal_packets([data_encryption_packet(data_key)], recipients=recipients, writer=writer)
    dst.write(header)
    aead = ChaCha20Poly1305(data_key)
    # One segment's buffers first: small files (the common case) never pay for the batch.
    pv, cv = memoryview(bytearray(SEGMENT_SIZE)), memoryview(bytearray(CIPHER_SEGMENT_SIZE))
    sha = hashlib.sha256() if sha256 else None
    hasher: _HashingThread | None = None
    macs = hashlib.sha256()
    size = segments = 0
    try:
        while True:
            n = _fill(src, pv)
            if not n:
                break
            if hasher is not None:
                hasher.submit(pv, n)  # hashed in the other thread while this one encrypts it
            elif sha is not None:
                sha.update(pv[:n])
            out, count = _seal_batch(aead, pv, n, cv, macs)
            dst.write(cv[:out])
            size += n
            segments += count
            if n < len(pv):
                break  # _fill stops short only at the end of the stream
            if hasher is not None:
                pv = hasher.take()
            elif len(pv) < SEGMENT_SIZE * BATCH:  # past one segment: batch-sized buffers
                pv, cv = memoryview(bytearray(SEGMENT_SIZE * BATCH)), memoryview(bytearray(CIPHER_SEGMENT_SIZE * BATCH))
            elif sha is not None:  # past a segment and a batch: a large file, worth a second thread
                hasher = _HashingThread(sha, count=_HASH_BUFFERS, size=SEGMENT_SIZE * BATCH)
                pv = hasher.take()
    except BaseException:
        if hasher is not None:
            hasher.stop()  # the error that brought us here is the one to raise
        raise
    if hasher is not None:
        hasher.finish()
    return EncryptedInfo(size=size, sha256=sha.hexdigest() if sha is not None else None, mac_digest=macs.hexdigest(),
                         header=header, segments=segments)


def _read_exact(src: Source, size: int) -> bytes:
    """Up to `size` bytes, fewer only at the end of the stream (a raw stream may read short)."""
    data = src.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    have = len(data)
    while have < size:
        more = src.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def read_header(src: Source) -> bytes:
    """Read exactly the header from `src`, leaving the stream at the first payload byte."""
    preamble = _read_exact(src, PREAMBLE.size)
    if len(preamble) < PREAMBLE.size:
        raise Crypt4GHHeaderError(f"the input is {len(preamble)} bytes, shorter than a Crypt4GH preamble")
    count = parse_preamble(preamble)
    parts = [preamble]
    for index in range(count):
        raw = _read_exact(src, 4)
        if len(raw) < 4:
            raise Crypt4GHHeaderError(f"the input ends inside header packet {index} of {count}")
        length = check_packet_length(U32.unpack(raw)[0], index)
        rest = _read_exact(src, length - 4)
        if len(rest) < length - 4:
            raise Crypt4GHHeaderError(f"the input ends inside header packet {index} of {count}")
        parts += (raw, rest)
    return b"".join(parts)


def _keys_for(header: bytes, reader: X25519PrivateKey | ReaderKey) -> DataKeys:
    packets, _ = split_header(header)
    opened = open_packets(packets, reader=reader)
    if not opened:
        raise Crypt4GHWrongKeyError("no header packet opens with this private key")
    keys = interpret(opened)
    if keys.edit_list is not None:
        raise Crypt4GHHeaderError("the header holds an edit list, which we do not apply; re-encrypt the file whole")
    return keys


def payload_keys(header: bytes, *, reader: X25519PrivateKey | ReaderKey) -> tuple[bytes, ...]:
    """The data keys `header` holds for `reader`, for `decrypt_payload`; refuses edit lists as `decrypt` does.

    A loader opens each released header once, when it is released, rather than per read.
    The keys are secrets: keep them where the private key is kept, and never print them.
    """
    return _keys_for(header, reader).keys


def payload_length(size: int) -> int:
    """The length of the payload (the file after its header) holding `size` plaintext bytes."""
    return encrypted_size(size, 0)


def decrypt_payload(payload: bytes | bytearray | memoryview, keys: Sequence[bytes], expected: ExpectedFile) -> bytes:
    """The plaintext of a whole payload held in memory (the bytes after the header), all checked.

    For files small enough to read in one call, as a loader reads them: no stream, no
    per-segment buffers, and a one-segment file decrypts straight into the bytes returned.
    Nothing is returned unless all of it holds: the payload length matches `expected.size`
    (truncation or extension is refused before any decryption), every segment
    authenticates under one of `keys`, the sequence of segment MACs matches, and, when
    `expected.sha256` is set, the plaintext sha256 matches.
    """
    size = expected.size
    have = len(payload)
    full, rest = divmod(size, SEGMENT_SIZE)
    want = full * CIPHER_SEGMENT_SIZE + (rest + NONCE_SIZE + MAC_SIZE if rest else 0)
    if have != want:
        if have < want:
            raise Crypt4GHTruncatedError(f"the payload is {have} bytes, shorter than the {want} that hold the {size} "
                                         "plaintext bytes the manifest records")
        raise Crypt4GHIntegrityError(f"the payload is longer than the {want} bytes that hold the {size} plaintext "
                                     "bytes the manifest records")
    if not keys:
        raise Crypt4GHHeaderError("no data key to decrypt the payload with")
    if have <= CIPHER_SEGMENT_SIZE:  # zero or one segment: the common case of a loader's small files
        if have and len(keys) == 1:  # the usual header: one data key
            try:
                plain = ChaCha20Poly1305(keys[0]).decrypt(payload[:NONCE_SIZE], payload[NONCE_SIZE:], None)
            except InvalidTag:
                raise Crypt4GHSegmentError(_SEGMENT_0_FAILED) from None
            macs = hashlib.sha256(payload[have - MAC_SIZE:])
        elif have:
            plain = _open_whole_segment(keys, payload[:NONCE_SIZE], payload[NONCE_SIZE:])
            macs = hashlib.sha256(payload[have - MAC_SIZE:])
        else:
            plain, macs = b"", hashlib.sha256()
    else:
        view = memoryview(payload)
        out = bytearray(size)
        ov = memoryview(out)
        aeads = [ChaCha20Poly1305(k) for k in keys]
        macs = hashlib.sha256()
        pos = start = index = 0
        while pos < have:
            seg = view[pos:pos + CIPHER_SEGMENT_SIZE]
            length = len(seg) - NONCE_SIZE - MAC_SIZE
            _open_segment(aeads, seg, ov[start:start + length], index)
            macs.update(seg[-MAC_SIZE:])
            pos += len(seg)
            start += length
            index += 1
        plain = bytes(out)
    digest = macs.hexdigest()
    if digest != expected.mac_digest and digest != expected.mac_digest.lower():
        raise Crypt4GHIntegrityError("the sequence of segment MACs differs from the manifest "
                                     "(segments reordered, duplicated or replaced)")
    if expected.sha256 is not None:
        digest = hashlib.sha256(plain).hexdigest()
        if digest != expected.sha256 and digest != expected.sha256.lower():
            raise Crypt4GHIntegrityError("the plaintext sha256 differs from the manifest")
    return plain


def _open_whole_segment(keys: Sequence[bytes], nonce: bytes | bytearray | memoryview,
                        body: bytes | bytearray | memoryview) -> bytes:
    # A cipher per call, not per file kept: one costs ~1 us to make but holds ~2.2 KB, which a
    # loader over a million files (in each worker process) cannot keep.
    for key in keys:
        try:
            return ChaCha20Poly1305(key).decrypt(nonce, body, None)
        except InvalidTag:
            continue
    raise Crypt4GHSegmentError(_SEGMENT_0_FAILED)


_SEGMENT_0_FAILED = "segment 0 failed authentication (tampered, cut mid-segment, or encrypted under another key)"


class _Verifier:
    """Running checks of one decryption against what the manifest expects."""

    __slots__ = ("expected", "macs", "sha", "size", "segments")

    def __init__(self, expected: ExpectedFile | None, want_sha: bool) -> None:
        self.expected = expected
        self.macs = hashlib.sha256()
        self.sha = hashlib.sha256() if want_sha else None
        self.size = 0
        self.segments = 0

    def finish(self) -> DecryptedInfo:
        info = DecryptedInfo(size=self.size, mac_digest=self.macs.hexdigest(),
                             sha256=self.sha.hexdigest() if self.sha else None, segments=self.segments)
        e = self.expected
        if e is None:
            return info
        if info.size < e.size:
            raise Crypt4GHTruncatedError(f"the payload ends after {info.size} plaintext bytes; the manifest records {e.size}")
        if info.size > e.size:
            raise Crypt4GHIntegrityError(f"the payload holds {info.size} plaintext bytes; the manifest records {e.size}")
        if info.mac_digest != e.mac_digest.lower():
            raise Crypt4GHIntegrityError("the sequence of segment MACs differs from the manifest "
                                         "(segments reordered, duplicated or replaced)")
        if e.sha256 is not None and info.sha256 != e.sha256.lower():
            raise Crypt4GHIntegrityError("the plaintext sha256 differs from the manifest")
        return info


def decrypt(src: Source, dst: Sink, *, reader: X25519PrivateKey | ReaderKey, expected: ExpectedFile | None = None,
            sha256: bool = False) -> DecryptedInfo:
    """Decrypt the Crypt4GH stream `src` into `dst`, authenticating every segment.

    With `expected`, also check the plaintext size and the sequence of segment MACs (and the
    sha256 when `expected.sha256` is set): this catches truncation at a segment boundary,
    reordering and duplication, which the format itself cannot. Output is written as it is
    verified segment by segment; the whole-file checks conclude at the end, so a caller who
    must never expose wrong output uses `decrypt_to_path`. `sha256=True` computes the
    plaintext digest even without an expected one.
    """
    keys = _keys_for(read_header(src), reader)
    aeads = [ChaCha20Poly1305(k) for k in keys.keys]
    check = _Verifier(expected, want_sha=sha256 or (expected is not None and expected.sha256 is not None))
    limit = expected.size if expected is not None else None
    cv, pv = memoryview(bytearray(CIPHER_SEGMENT_SIZE)), memoryview(bytearray(SEGMENT_SIZE))
    hasher: _HashingThread | None = None  # past a segment and a batch, the sha256 runs beside (as in encrypt)
    try:
        while True:
            n = _fill(src, cv)
            if not n:
                break
            pos = out = 0
            while pos < n:
                length = min(CIPHER_SEGMENT_SIZE, n - pos)
                index = check.segments
                if length <= NONCE_SIZE + MAC_SIZE:
                    raise Crypt4GHTruncatedError(f"the payload ends inside segment {index} ({length} bytes, too short for a segment)")
                plain_len = length - NONCE_SIZE - MAC_SIZE
                if limit is not None and check.size + out + plain_len > limit:
                    raise Crypt4GHIntegrityError(f"the payload is longer than the {limit} plaintext bytes the manifest records "
                                                 f"(segment {index})")
                if limit is not None and length < CIPHER_SEGMENT_SIZE and check.size + out + plain_len < limit:
                    raise Crypt4GHTruncatedError(f"the payload ends inside segment {index}, before the {limit} plaintext bytes "
                                                 "the manifest records")
                seg = cv[pos:pos + length]
                _open_segment(aeads, seg, pv[out:out + plain_len], index)
                check.macs.update(seg[length - MAC_SIZE:])
                check.segments += 1
                pos += length
                out += plain_len
            if hasher is not None:
                hasher.submit(pv, out)  # hashed while it is written and the next batch decrypts
            elif check.sha is not None:
                check.sha.update(pv[:out])
            dst.write(pv[:out])
            check.size += out
            if n < len(cv):
                break
            if hasher is not None:
                pv = hasher.take()
            elif len(cv) < CIPHER_SEGMENT_SIZE * BATCH:  # a large file: switch to batch-sized buffers
                cv, pv = memoryview(bytearray(CIPHER_SEGMENT_SIZE * BATCH)), memoryview(bytearray(SEGMENT_SIZE * BATCH))
            elif check.sha is not None:
                hasher = _HashingThread(check.sha, count=_HASH_BUFFERS, size=SEGMENT_SIZE * BATCH)
                pv = hasher.take()
    except BaseException:
        if hasher is not None:
            hasher.stop()
        raise
    if hasher is not None:
        hasher.finish()  # INVARIANT: the digest is complete before finish() compares it
    return check.finish()


def _open_segment(aeads: list[ChaCha20Poly1305], seg: memoryview, out: memoryview, index: int) -> None:
    nonce = seg[:NONCE_SIZE]
    body = seg[NONCE_SIZE:]
    for i, aead in enumerate(aeads):
        try:
            aead.decrypt_into(nonce, body, None, out)
        except InvalidTag:
            continue
        if i:  # keep the key that worked first: files rarely switch keys
            aeads.insert(0, aeads.pop(i))
        return
    raise Crypt4GHSegmentError(f"segment {index} failed authentication (tampered, cut mid-segment, or encrypted under another key)")


def decrypt_to_path(src: Source, target: str | os.PathLike[str], *, reader: X25519PrivateKey,
                    expected: ExpectedFile, mode: int = 0o600) -> DecryptedInfo:
    """Decrypt into a temporary file beside `target`, verify it all, then rename it into place.

    # INVARIANT: nothing unverified ever appears under `target`; on any failure the temporary
    # file is removed and `target` is left as it was. The sha256 is checked when expected.
    """
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            info = decrypt(src, out, reader=reader, expected=expected)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info

