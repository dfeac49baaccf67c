"""Dataset key rotation: a new key version, then every stored header re-sealed to it.

A file's header lives in its `encrypted_files` row (ADR 007), so rotation rewrites rows only:
each header is opened with the key version the row names and re-sealed to the new version's
public key alone; the payload objects are never read or written. Rows are rewritten in
batches (500 per transaction), each batch with one `keys.reseal` audit event holding counts
only, in path order.

# INVARIANT: every row stays openable throughout. Old key versions are never deleted, and a
# row's header and key_version change together in one transaction, so an interruption leaves
# each row either at its old version (whose key is kept) or at the new one. Running the
# re-seal again skips rows already at the current version and completes the work.
# INVARIANT: re-seal and ingest of one dataset exclude each other (the ingest lock), so no
# ingest that read the old public key can register rows behind a finished re-seal.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import Row, and_, bindparam, func, select, update

from governance.audit import store as audit
from governance.crypto.keystore import KeyInfo
from governance.files.ingest import FILES, dataset_lock
from governance.identity.roles import Actor, Role
from governance.workspace import Workspace

BATCH_ROWS = 500


class ResealProgress(Protocol):
    """Told how many headers there are to re-seal, then of each batch done."""

    def start(self, *, total: int) -> None: ...

    def advance(self, *, done: int) -> None: ...


@dataclass
class ResealResult:
    """What a re-seal run did; counts only."""

    dataset: str
    key_version: int  # every row re-sealed is now at this version
    resealed: int = 0
    skipped: int = 0  # rows already at `key_version` when the run began
    batches: int = 0
    from_versions: dict[int, int] = field(default_factory=dict)  # version -> rows moved off it

    def as_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "key_version": self.key_version, "resealed": self.resealed,
                "skipped": self.skipped, "batches": self.batches,
                "from_versions": {str(v): n for v, n in sorted(self.from_versions.items())}}


@dataclass(frozen=True, slots=True)
class RotationResult:
    """The new key version and, unless it was skipped, the re-seal of the stored headers."""

    key: KeyInfo
    reseal: ResealResult | None

    def as_dict(self) -> dict[str, object]:
        return self.key.as_dict() | {"reseal": self.reseal.as_dict() if self.reseal is not None else None}


def rotate_dataset_key(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, reseal: bool = True,
                       progress: ResealProgress | None = None, batch_rows: int = BATCH_ROWS) -> RotationResult:
    """Give `dataset_id` a new current key version and (unless `reseal` is False) re-seal every
    stored header of it to that version. The old versions stay, so an interrupted re-seal leaves
    every file openable; `reseal_stored_headers` completes it."""
    actor.require(Role.ADMIN)
    root = ws.settings.objects_dir / dataset_id
    if not reseal:
        return RotationResult(key=ws.keystore.rotate(dataset_id, now=now), reseal=None)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with dataset_lock(root):  # INVARIANT: no ingest between the new version and the re-seal
        info = ws.keystore.rotate(dataset_id, now=now)
        result = _reseal(ws, actor=actor, now=now, dataset_id=dataset_id, progress=progress, batch_rows=batch_rows)
    return RotationResult(key=info, reseal=result)


def reseal_stored_headers(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str,
                          progress: ResealProgress | None = None, batch_rows: int = BATCH_ROWS) -> ResealResult:
    """Re-seal every stored header of `dataset_id` not at its current key version to that version.

    Resumable: rows already at the current version are skipped, so running it again after an
    interruption finishes the work. Payloads are not touched."""
    actor.require(Role.ADMIN)
    root = ws.settings.objects_dir / dataset_id
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with dataset_lock(root):
        return _reseal(ws, actor=actor, now=now, dataset_id=dataset_id, progress=progress, batch_rows=batch_rows)


def _reseal(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, progress: ResealProgress | None,
            batch_rows: int) -> ResealResult:
    if batch_rows < 1:
        raise ValueError("batch_rows must be at least 1")
    target = ws.keystore.versions(dataset_id)[-1].version  # DatasetKeyNotFoundError if it has no key
    recipient = ws.keystore.public_key(dataset_id, version=target)
    result = ResealResult(dataset=dataset_id, key_version=target)
    ours = FILES.c.dataset == dataset_id
    with ws.connect() as conn:
        counts = {int(v): int(n) for v, n in
                  conn.execute(select(FILES.c.key_version, func.count()).where(ours).group_by(FILES.c.key_version))}
    result.skipped = counts.pop(target, 0)
    if progress is not None:
        progress.start(total=sum(counts.values()))
    last: str | None = None
    while True:
        # Keyset pagination by path: a row that could not be updated is never read again.
        query = select(FILES.c.path, FILES.c.header, FILES.c.key_version).where(and_(ours, FILES.c.key_version != target))
        if last is not None:
            query = query.where(FILES.c.path > last)
        with ws.connect() as conn:
            rows = conn.execute(query.order_by(FILES.c.path).limit(batch_rows)).all()
        if not rows:
            break
        last = str(rows[-1].path)
        moved = _write_batch(ws, actor=actor, now=now, dataset_id=dataset_id, rows=rows, target=target,
                             sealed=_reseal_rows(ws, dataset_id=dataset_id, rows=rows, recipient=recipient))
        result.batches += 1
        result.resealed += sum(moved.values())
        for version, n in moved.items():
            result.from_versions[version] = result.from_versions.get(version, 0) + n
        if progress is not None:
            progress.advance(done=len(rows))
    return result


def _reseal_rows(ws: Workspace, *, dataset_id: str, rows: Sequence[Row[tuple[str, str, int]]],
                 recipient: X25519PublicKey) -> list[str]:
    """Each row's header, opened with the version the row names, re-sealed to `recipient` (base64)."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(int(row.key_version), []).append(i)
    out = [""] * len(rows)
    for version, indexes in groups.items():  # one recipient exchange per key version in the batch
        sealed = ws.keystore.reseal_headers(dataset_id, [base64.b64decode(rows[i].header) for i in indexes],
                                            recipient=recipient, version=version)
        for i, header in zip(indexes, sealed, strict=True):
            out[i] = base64.b64encode(header).decode("ascii")
    return out


def _write_batch(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, rows: Sequence[Row[tuple[str, str, int]]],
                 target: int, sealed: Sequence[str]) -> dict[int, int]:
    """One transaction: the batch's new headers and key version, and one audit event with counts.

    A row is updated only if it still has the header that was re-sealed (compare and set), so a
    concurrent writer's change is never overwritten; returns rows moved per old version."""
    params = [{"b_path": row.path, "b_old_header": row.header, "b_old_version": row.key_version,
               "b_header": header} for row, header in zip(rows, sealed, strict=True)]
    statement = (update(FILES)
                 .where(and_(FILES.c.dataset == dataset_id, FILES.c.path == bindparam("b_path"),
                             FILES.c.key_version == bindparam("b_old_version"), FILES.c.header == bindparam("b_old_header")))
                 .values(header=bindparam("b_header"), key_version=target))
    moved: Counter[int] = Counter()
    with ws.begin() as conn:
        for p in params:  # one statement per row: rowcount says which rows were still as read
            if conn.execute(statement, p).rowcount == 1:
                moved[int(p["b_old_version"])] += 1
        audit.append(conn, at=now, actor=actor.label, action="keys.reseal", target=f"dataset:{dataset_id}", outcome="ok",
                     details={"files": sum(moved.values()), "to_version": target,
                              "from_versions": {str(v): n for v, n in sorted(moved.items())},
                              "unchanged": len(rows) - sum(moved.values())})
    return dict(moved)
