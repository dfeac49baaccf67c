"""Gated plaintext reads for tools that cannot decrypt: decide, audit, then decrypt server-side.

A read is a release the service performs on the caller's behalf, so it follows the same order
(`governance.files.release`): decide `read`, commit a `file.read` audit event, and only then
open the header with the dataset key and decrypt.

Before a byte leaves, the payload's length must be exactly what the manifest's size implies
and the digest of its sequence of segment MACs (the last 16 bytes of every segment, read in
place) must match the manifest. That catches truncation, reordering and duplication even for a
range, which then decrypts only the segments it covers; each of those is authenticated as it
is decrypted. A whole-file read also checks the plaintext sha256 at its end (a mismatch there,
possible only if the data key changed, aborts the stream).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from governance.approvals import state
from governance.audit import store as audit
from governance.crypto.crypt4gh import CIPHER_SEGMENT_SIZE, MAC_SIZE, NONCE_SIZE, SEGMENT_SIZE, encrypted_size
from governance.crypto.errors import (
    Crypt4GHHeaderError,
    Crypt4GHIntegrityError,
    Crypt4GHSegmentError,
    Crypt4GHTruncatedError,
)
from governance.errors import WorkflowError
from governance.files.release import StoredFile, not_ingested, parse_resource, stored_files
from governance.identity.roles import Actor
from governance.policy.decision import Decision
from governance.workspace import Workspace

CHUNK_SEGMENTS = 16  # segments decrypted per chunk streamed: 1 MiB


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An HTTP byte range as asked: `first-last`, `first-` (last None) or the suffix `-length`."""

    first: int | None
    last: int | None

    def resolve(self, size: int) -> tuple[int, int] | None:
        """The inclusive (start, end) this range selects in `size` bytes; None if unsatisfiable."""
        if self.first is None:  # a suffix: the last `last` bytes
            if not self.last or size == 0:
                return None
            return max(0, size - self.last), size - 1
        if self.first >= size:
            return None
        end = size - 1 if self.last is None else min(self.last, size - 1)
        return (self.first, end) if end >= self.first else None


@dataclass(frozen=True)
class FileRead:
    """The outcome of a read: denied (a decision), unsatisfiable (the size), or a stream."""

    resource: str
    decision: Decision
    size: int = 0
    start: int = 0
    end: int = -1  # inclusive; -1 with start 0: an empty file
    partial: bool = False
    satisfiable: bool = True
    chunks: Iterator[bytes] | None = None
    sha256: str | None = None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def read_file(ws: Workspace, *, actor: Actor, now: datetime, dataset: str, path: str, purpose: str,
              byte_range: ByteRange | None = None, datasets: frozenset[str] | None = None) -> FileRead:
    """Decide, audit and open `dataset:path` for the caller; the plaintext streams from `chunks`.

    The payload is checked (length, MAC sequence) before the audit event is written, so a
    damaged file is an error and not a read on record."""
    if actor.user_id is None or actor.email is None:
        raise WorkflowError("the local operator reads files with the CLI, not through the API")
    resource = f"{dataset}:{path}"
    parse_resource(resource)
    decision = state.check(ws, email=actor.email, resources=[resource], action="read", purpose=purpose, now=now,
                           actor=actor.label, datasets=datasets).decisions[0]
    if not decision.permitted:
        return FileRead(resource=resource, decision=decision)
    with ws.connect() as conn:
        found = stored_files(conn, [resource]).get(resource)
        conn.rollback()
    if found is None:
        return FileRead(resource=resource, decision=not_ingested(resource))
    span = (0, found.size - 1) if byte_range is None else byte_range.resolve(found.size)
    if span is None:
        return FileRead(resource=resource, decision=decision, size=found.size, satisfiable=False)
    payload = ws.settings.objects_dir / found.object
    check_payload(payload, found)
    # SECURITY: the audit row commits before the header is opened; no audit, no plaintext.
    with ws.begin() as conn:
        audit.append(conn, at=now, actor=actor.label, action="file.read", target=f"user:{actor.user_id}", outcome="ok",
                     details={"resource": resource[:300], "purpose": purpose[:128], "size": found.size,
                              "range": None if byte_range is None else [span[0], span[1]]})
    keys = ws.keystore.open_header(found.dataset, found.header, version=found.key_version)
    if keys.edit_list is not None:
        raise Crypt4GHHeaderError(f"the header of {resource[:300]} holds an edit list, which we do not apply")
    aeads = [ChaCha20Poly1305(k) for k in keys.keys]
    whole = byte_range is None
    return FileRead(resource=resource, decision=decision, size=found.size, start=span[0], end=span[1], partial=not whole,
                    chunks=_decrypt_span(payload, aeads, span[0], span[1], sha256=found.sha256 if whole else None))


def check_payload(payload: Path, f: StoredFile) -> None:
    """Refuse a payload whose length or sequence of segment MACs differs from the manifest."""
    want = encrypted_size(f.size, 0)
    try:
        have = payload.stat().st_size
    except FileNotFoundError:
        raise Crypt4GHTruncatedError(f"the payload of {f.resource[:300]} is missing from the object store") from None
    if have < want:
        raise Crypt4GHTruncatedError(f"the payload of {f.resource[:300]} is {have} bytes; the manifest implies {want}")
    if have > want:
        raise Crypt4GHIntegrityError(f"the payload of {f.resource[:300]} is {have} bytes; the manifest implies {want}")
    macs = hashlib.sha256()
    with payload.open("rb", buffering=0) as src:
        for end in _segment_ends(f.size):
            src.seek(end - MAC_SIZE)
            macs.update(src.read(MAC_SIZE))
    if macs.hexdigest() != f.mac_digest.lower():
        raise Crypt4GHIntegrityError(f"the sequence of segment MACs of {f.resource[:300]} differs from the manifest "
                                     "(segments reordered, duplicated or replaced)")


def _segment_ends(size: int) -> Iterator[int]:
    full, rest = divmod(size, SEGMENT_SIZE)
    for i in range(full):
        yield (i + 1) * CIPHER_SEGMENT_SIZE
    if rest:
        yield full * CIPHER_SEGMENT_SIZE + NONCE_SIZE + rest + MAC_SIZE


def _decrypt_span(payload: Path, aeads: list[ChaCha20Poly1305], start: int, end: int, *,
                  sha256: str | None) -> Iterator[bytes]:
    """The plaintext bytes start..end (inclusive), decrypting only the segments they lie in."""
    if end < start:
        return
    first, last = start // SEGMENT_SIZE, end // SEGMENT_SIZE
    sha = hashlib.sha256() if sha256 is not None else None
    fd = os.open(payload, os.O_RDONLY)
    try:
        index = first
        while index <= last:
            count = min(CHUNK_SEGMENTS, last - index + 1)
            raw = os.pread(fd, count * CIPHER_SEGMENT_SIZE, index * CIPHER_SEGMENT_SIZE)
            out = bytearray()
            pos = 0
            for i in range(count):
                seg = raw[pos:pos + CIPHER_SEGMENT_SIZE]
                if len(seg) <= NONCE_SIZE + MAC_SIZE:
                    raise Crypt4GHTruncatedError(f"the payload ends inside segment {index + i}")
                out += _open(aeads, seg, index + i)
                pos += len(seg)
            lo = start - index * SEGMENT_SIZE if index == first else 0
            hi = end - index * SEGMENT_SIZE + 1 if index + count - 1 == last else len(out)
            piece = bytes(out[lo:hi]) if (lo or hi != len(out)) else bytes(out)
            if sha is not None:
                sha.update(piece)
            yield piece
            index += count
    finally:
        os.close(fd)
    if sha is not None and sha256 is not None and sha.hexdigest() != sha256.lower():
        raise Crypt4GHIntegrityError("the plaintext sha256 differs from the manifest")


def _open(aeads: list[ChaCha20Poly1305], seg: bytes, index: int) -> bytes:
    for aead in aeads:
        try:
            return aead.decrypt(seg[:NONCE_SIZE], seg[NONCE_SIZE:], None)
        except InvalidTag:
            continue
    raise Crypt4GHSegmentError(f"segment {index} failed authentication (tampered, or encrypted under another key)")
