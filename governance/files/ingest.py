"""Ingest: encrypt a dataset's files into the Crypt4GH store and register them in the manifest.

A run has two phases. The *scan* lists the source, assigns each file its subset by the
policy's globs, checks the source tags, and compares with what is already registered; any
refusal (a file in no subset, a tag the subset does not allow, a registered file whose
content changed) stops the run here, listing the offenders, with nothing written. The *write*
phase encrypts each pending file straight from the source to the dataset's current public
key and registers it, in batches of files per transaction with one `manifest.ingest` audit
event each (counts only).

Object store layout: `objects_dir/<dataset>/<2 hex>/<sha256 of the path>.c4gh` holds the
Crypt4GH *payload* only; the header, sealed to the dataset key, is in the file's row, which is
what key release re-seals and key rotation rewrites. Header plus payload is a Crypt4GH file.

# INVARIANT: plaintext is never written to disk: the source streams into the encryptor.
# INVARIANT: object first, row after. A payload is written to `<dataset>/.tmp/`, fsynced and
# renamed into place, its directory fsynced, and only then is its row committed. A kill leaves
# at most ciphertext temp files (removed by the next run) and objects without rows (garbage
# the next run overwrites); never a row without its object.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import and_, insert, select

from governance.approvals.workflow import dataset as find_dataset
from governance.audit import store as audit
from governance.crypto.crypt4gh import encrypt
from governance.crypto.master import fsync_dir
from governance.errors import display_path
from governance.files.sources import IngestError, IngestSourceError, Member, Plaintext, Source
from governance.identity.roles import Actor, Role
from governance.policy.compile import CSubset
from governance.storage.tables import EncryptedFileRow, ManifestFileRow
from governance.workspace import Workspace

FILES = EncryptedFileRow.__table__  # type: ignore[attr-defined]
MANIFEST = ManifestFileRow.__table__  # type: ignore[attr-defined]
BATCH_FILES = 64
BATCH_BYTES = 256 << 20
SHOWN = 10  # offenders named in a one-line message; the exception holds them all


class UnassignedFilesError(IngestError):
    """Some files of the source match no subset of the dataset (or have unusable names)."""

    def __init__(self, dataset: str, paths: list[str]) -> None:
        self.paths = paths
        super().__init__(f"{len(paths)} file(s) match no subset of {dataset} or cannot be ingested, so nothing was "
                         f"ingested: {_sample(paths)}")


class SourceTagError(IngestError):
    """The source mapping names files not in the source, or sources their subset does not list."""

    def __init__(self, problems: list[str]) -> None:
        self.paths = problems
        super().__init__(f"{len(problems)} problem(s) in the source mapping, so nothing was ingested: {_sample(problems)}")


class ChangedFilesError(IngestError):
    """Files already registered differ from the source's: ingest never replaces a registered file."""

    def __init__(self, dataset: str, paths: list[str]) -> None:
        self.paths = paths
        super().__init__(f"{len(paths)} file(s) of {dataset} are registered with other content than the source's, so "
                         f"nothing was ingested: {_sample(paths)}")


def _sample(items: list[str]) -> str:
    more = f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


class Progress(Protocol):
    """Told how much there is to do, then of every chunk of plaintext read (files done, bytes read)."""

    def start(self, *, files: int, size: int) -> None: ...

    def advance(self, *, files: int = 0, size: int = 0) -> None: ...


@dataclass
class IngestResult:
    """What a run did; counts only."""

    dataset: str
    source: str
    ingested: int = 0
    skipped: int = 0  # already registered with the same content
    ignored: int = 0  # archiver clutter (__MACOSX/, .DS_Store)
    bytes: int = 0
    subsets: dict[str, int] = field(default_factory=dict)
    key_version: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "source": self.source, "ingested": self.ingested, "skipped": self.skipped,
                "ignored": self.ignored, "bytes": self.bytes, "subsets": dict(sorted(self.subsets.items())),
                "key_version": self.key_version}


@dataclass(frozen=True, slots=True)
class _Planned:
    member: Member
    subset: str
    sources: tuple[str, ...]


def object_name(dataset: str, path: str) -> str:
    """A file's payload location below the object store: `<dataset>/<2 hex>/<sha256 of path>.c4gh`."""
    digest = hashlib.sha256(path.encode("utf-8")).hexdigest()
    return f"{dataset}/{digest[:2]}/{digest}.c4gh"


def read_source_tags(path: Path) -> dict[str, list[str]]:
    """A mapping CSV: `path,source[,source…]` per line (';' also separates sources); '#' comments."""
    tags: dict[str, list[str]] = {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or not row[0].strip() or row[0].startswith("#"):
                    continue
                names = [s.strip() for cell in row[1:] for s in cell.split(";") if s.strip()]
                if not names:
                    raise IngestError(f"{display_path(path)}:{lineno}: expected 'path,source[,source…]'")
                key = row[0].strip()
                if key in tags:
                    raise IngestError(f"{display_path(path)}:{lineno}: {key!r} appears twice")
                tags[key] = names
    except OSError as exc:
        raise IngestError(f"cannot read {display_path(path)} ({exc.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise IngestError(f"{display_path(path)} is not a UTF-8 CSV file") from None
    return tags


# ------------------------------------------------------------------ the service


def ingest_files(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, source: Source,
                 tags: Mapping[str, Sequence[str]] | None = None, quick: bool = False,
                 progress: Progress | None = None, batch_files: int = BATCH_FILES) -> IngestResult:
    """Encrypt and register every file of `source` for `dataset_id` that is not registered yet.

    Refuses the whole run, before writing anything, when a file lies in no subset, the tags are
    wrong, or a registered file's content differs (by size, or by sha256 unless `quick`, which
    trusts path and size). Running it again after an interruption completes the work.
    """
    actor.require(Role.ADMIN)
    ds = find_dataset(ws, dataset_id)
    public = ws.keystore.public_key(ds.id)  # DatasetKeyNotFoundError (says `govern keys init`) if none
    key_version = ws.keystore.versions(ds.id)[-1].version
    result = IngestResult(dataset=ds.id, source=source.label, key_version=key_version)
    root = ws.settings.objects_dir / ds.id
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with dataset_lock(root):
        plan, skipped = _scan(ws, ds_id=ds.id, find=ds.find_subset, source=source, tags=tags or {}, quick=quick,
                              result=result)
        result.skipped = skipped
        tmp_dir = root / ".tmp"
        shutil.rmtree(tmp_dir, ignore_errors=True)  # ciphertext left by an interrupted run
        tmp_dir.mkdir(mode=0o700)
        if progress is not None:
            progress.start(files=len(plan), size=sum(p.member.size for p in plan))
        batch: list[dict[str, object]] = []
        batch_bytes = 0
        for item in plan:
            batch.append(_write_object(ws, ds_id=ds.id, item=item, source=source, public=public,
                                       key_version=key_version, tmp_dir=tmp_dir, now=now, progress=progress))
            batch_bytes += item.member.size
            if len(batch) >= batch_files or batch_bytes >= BATCH_BYTES:
                _register(ws, actor=actor, now=now, ds_id=ds.id, rows=batch, result=result)
                batch, batch_bytes = [], 0
        if batch:
            _register(ws, actor=actor, now=now, ds_id=ds.id, rows=batch, result=result)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        _remove_orphans(ws, ds_id=ds.id, root=root)
    return result


def _remove_orphans(ws: Workspace, *, ds_id: str, root: Path) -> None:
    """Objects no row names: written by a run killed before its commit, never re-ingested since.

    # INVARIANT: safe under the ingest lock: nothing reads an object that no row names.
    """
    with ws.connect() as conn:
        named = {str(o) for o in conn.execute(select(FILES.c.object).where(FILES.c.dataset == ds_id)).scalars()}
    for obj in root.glob("??/*.c4gh"):
        if f"{ds_id}/{obj.parent.name}/{obj.name}" not in named:
            obj.unlink(missing_ok=True)


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    """One writer of a dataset's files at a time (ingest, or the header re-seal after a key
    rotation): two would race on the same objects and rows."""
    fd = os.open(root / ".ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(f"another ingest or key re-seal of {root.name} is running (lock {display_path(root / '.ingest.lock')})") from None
        yield
    finally:
        os.close(fd)


def _scan(ws: Workspace, *, ds_id: str, find: Callable[[str], CSubset | None], source: Source, tags: Mapping[str, Sequence[str]], quick: bool,
          result: IngestResult) -> tuple[list[_Planned], int]:
    """Every refusal, before anything is written; returns the files to write and how many are done."""
    members, refused, result.ignored = source.members()
    members.sort(key=lambda m: m.path)
    planned: list[_Planned] = []
    unassigned = list(refused)
    tag_problems: list[str] = []
    paths = {m.path for m in members}
    for key in sorted(set(tags) - paths):
        tag_problems.append(f"{key!r} is not in the source")
    for m in members:
        sub = find(m.path)
        if sub is None:
            unassigned.append(m.path)
            continue
        names = tuple(sorted(set(tags.get(m.path, ()))))
        stray = [s for s in names if s not in sub.file_sources]
        if stray:
            tag_problems.append(f"{m.path}: subset {sub.id} does not list {', '.join(stray)} among its file sources")
        planned.append(_Planned(m, sub.id, names))
    if unassigned:
        raise UnassignedFilesError(ds_id, sorted(unassigned))
    if tag_problems:
        raise SourceTagError(tag_problems)
    with ws.connect() as conn:
        known = {r.path: (int(r.size), str(r.sha256)) for r in
                 conn.execute(select(FILES.c.path, FILES.c.size, FILES.c.sha256).where(FILES.c.dataset == ds_id))}
    pending: list[_Planned] = []
    changed: list[str] = []
    skipped = 0
    for p in planned:
        have = known.get(p.member.path)
        if have is None:
            pending.append(p)
        elif have[0] != p.member.size or (not quick and _sha256(source, p.member) != have[1]):
            changed.append(p.member.path)
        else:
            skipped += 1
    if changed:
        raise ChangedFilesError(ds_id, changed)
    return pending, skipped


def _sha256(source: Source, member: Member) -> str:
    sha = hashlib.sha256()
    buf = memoryview(bytearray(1 << 20))
    with source.open(member) as f:
        while n := f.readinto(buf):
            sha.update(buf[:n])
    return sha.hexdigest()


class _Counting:
    """The plaintext stream, reporting bytes read to the progress display."""

    def __init__(self, stream: Plaintext, progress: Progress | None) -> None:
        self._stream = stream
        self._progress = progress

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        if self._progress is not None and data:
            self._progress.advance(size=len(data))
        return data

    def readinto(self, buffer: memoryview, /) -> int | None:
        n = self._stream.readinto(buffer)
        if self._progress is not None and n:
            self._progress.advance(size=n)
        return n


class _PayloadSink:
    """Writes what `encrypt` emits after the header: the header goes to the row, not the object."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self.header: bytes | None = None

    def write(self, data: memoryview | bytes, /) -> int:
        if self.header is None:  # `encrypt` writes the whole header first, in one call
            self.header = bytes(data)
        else:
            self._out.write(data)
        return len(data)


def _write_object(ws: Workspace, *, ds_id: str, item: _Planned, source: Source, public: X25519PublicKey, key_version: int,
                  tmp_dir: Path, now: datetime, progress: Progress | None) -> dict[str, object]:
    """Encrypt one file into its object (temp file, fsync, rename); returns its row, not yet registered."""
    name = object_name(ds_id, item.member.path)
    final = ws.settings.objects_dir / name
    tmp = tmp_dir / f"{final.stem}.{secrets.token_hex(4)}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            sink = _PayloadSink(out)
            with source.open(item.member) as plain:
                info = encrypt(_Counting(plain, progress), sink, recipients=[public])
            out.flush()
            os.fsync(out.fileno())
        if sink.header != info.header:
            raise AssertionError("encrypt did not write its header first and whole")
        if info.size != item.member.size:
            raise IngestSourceError(f"{item.member.path} changed while it was read ({item.member.size} bytes listed, "
                                    f"{info.size} read); run the ingest again")
        final.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress.advance(files=1)
    assert info.sha256 is not None
    return {"dataset": ds_id, "path": item.member.path, "subset": item.subset, "size": info.size, "sha256": info.sha256,
            "mac_digest": info.mac_digest, "segments": info.segments, "header": base64.b64encode(info.header).decode("ascii"),
            "key_version": key_version, "object": name, "sources": json.dumps(list(item.sources)),
            "ingested_at": now.isoformat()}


def _register(ws: Workspace, *, actor: Actor, now: datetime, ds_id: str, rows: list[dict[str, object]],
              result: IngestResult) -> None:
    """One transaction: the batch's rows, their source tags, and one audit event with counts."""
    for parent in {(ws.settings.objects_dir / str(r["object"])).parent for r in rows}:
        fsync_dir(parent)  # INVARIANT: the renames are durable before any row names them
    tagged = [{"dataset": ds_id, "path": r["path"], "sources": r["sources"]} for r in rows if r["sources"] != "[]"]
    subsets = Counter(str(r["subset"]) for r in rows)
    size = sum(int(str(r["size"])) for r in rows)
    with ws.begin() as conn:
        conn.execute(insert(FILES), rows)
        if tagged:
            paths = [t["path"] for t in tagged]
            for i in range(0, len(paths), 500):
                conn.execute(MANIFEST.delete().where(and_(MANIFEST.c.dataset == ds_id, MANIFEST.c.path.in_(paths[i:i + 500]))))
            conn.execute(insert(MANIFEST), tagged)
        audit.append(conn, at=now, actor=actor.label, action="manifest.ingest", target=f"dataset:{ds_id}", outcome="ok",
                     details={"files": len(rows), "bytes": size, "tagged": len(tagged), "subsets": dict(sorted(subsets.items()))})
    result.ingested += len(rows)
    result.bytes += size
    for sub, n in subsets.items():
        result.subsets[sub] = result.subsets.get(sub, 0) + n
