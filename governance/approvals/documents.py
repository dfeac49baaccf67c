"""Uploaded documents (signed forms, licensors' letters): checked by content, size-limited and
stored by their sha256, so the same bytes are stored once and a record names exactly them."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, insert, select

from governance.errors import WorkflowError
from governance.storage.tables import DocumentRow

DOCUMENTS = DocumentRow.__table__  # type: ignore[attr-defined]
MAX_DOCUMENT_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Document:
    sha256: str
    media_type: str
    size: int


def sniff(data: bytes) -> str | None:
    """The media type the bytes really are (PDF, PNG or JPEG), or None. Names and claimed
    types are ignored: a renamed executable is not a PDF."""
    if data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]:
        return "application/pdf"
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and b"IEND" in data[-12:]:
        return "image/png"
    if data.startswith(b"\xff\xd8\xff") and b"\xff\xd9" in data[-64:]:
        return "image/jpeg"
    return None


def check_document(data: bytes, *, what: str, limit: int = MAX_DOCUMENT_BYTES) -> Document:
    if not data:
        raise WorkflowError(f"the {what} is empty")
    if len(data) > limit:
        raise WorkflowError(f"the {what} is {len(data):,} bytes; the limit is {limit:,}")
    media = sniff(data)
    if media is None:
        raise WorkflowError(f"the {what} is not a PDF, PNG or JPEG file (checked by its content)")
    return Document(hashlib.sha256(data).hexdigest(), media, len(data))


def blob_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


def store_document(conn: Connection, root: Path, data: bytes, *, what: str, now: datetime) -> Document:
    """Check and store `data`; the row joins the caller's transaction. The file is written
    first (temporary name, fsync, rename), so a committed row always has its bytes; a rolled-back
    transaction can leave an unreferenced blob, never a referenced missing one."""
    doc = check_document(data, what=what)
    path = blob_path(root, doc.sha256)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    if conn.execute(select(DOCUMENTS.c.sha256).where(DOCUMENTS.c.sha256 == doc.sha256)).first() is None:
        conn.execute(insert(DOCUMENTS).values(sha256=doc.sha256, media_type=doc.media_type, size=doc.size,
                                              stored_at=now.isoformat()))
    return doc


def read_document(root: Path, sha256: str) -> bytes:
    """A stored document's bytes, checked against its address."""
    data = blob_path(root, sha256).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise WorkflowError(f"stored document {sha256[:12]}… does not match its sha256; it was altered on disk")
    return data
