"""Key release: re-seal stored Crypt4GH headers to a user's registered public key, after a permit.

The payloads never move and are never re-encrypted; what leaves is a header the user's private
key opens (DESIGN §4). The order is the point of this module:

1. resolve the files (names, or every ingested file of a subset) and the caller's own,
   unrevoked public key;
2. decide `read` for every file in one batch (`state.check`; its denials are audited there);
3. commit the `key.release` audit event in its own transaction;
4. only then re-seal the permitted headers.

# SECURITY: no audit record, no header. The event names the user, the key id and fingerprint,
# how many files and a sample of their names, and the purpose; never key bytes or headers.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from sqlalchemy import Connection, and_, select

from governance.approvals import state
from governance.audit import store as audit
from governance.crypto.keystore import fingerprint
from governance.errors import NotFoundError, WorkflowError
from governance.identity.roles import Actor
from governance.policy.decision import Decision, Reason, Remedy
from governance.storage.tables import EncryptedFileRow, PublicKeyRow
from governance.types import ReasonCode
from governance.workspace import Workspace

FILES = EncryptedFileRow.__table__  # type: ignore[attr-defined]
KEYS = PublicKeyRow.__table__  # type: ignore[attr-defined]
MAX_FILES = 100_000  # files in one release, as in one batch check
SAMPLE = 20  # file names named in one audit event
_CHUNK = 500  # names per IN (...) query


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A manifest row's public facts: what a decryption must find, and where the payload is."""

    dataset: str
    path: str
    subset: str
    size: int
    sha256: str
    mac_digest: str
    header: bytes  # sealed to the dataset key: useless without it
    key_version: int
    object: str

    @property
    def resource(self) -> str:
        return f"{self.dataset}:{self.path}"

    @classmethod
    def from_row(cls, row: Any) -> StoredFile:
        return cls(dataset=row.dataset, path=row.path, subset=row.subset, size=int(row.size), sha256=row.sha256,
                   mac_digest=row.mac_digest, header=base64.b64decode(row.header), key_version=int(row.key_version),
                   object=row.object)


@dataclass(frozen=True, slots=True)
class ReleasedFile:
    """One released file: the header re-sealed to the user's key and what decryption must find."""

    resource: str
    header: bytes
    size: int
    sha256: str
    mac_digest: str
    object: str


@dataclass(frozen=True, slots=True)
class DeniedFile:
    resource: str
    decision: Decision


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    released: list[ReleasedFile]
    denied: list[DeniedFile]
    public_key_id: int
    audit_seq: int | None  # the key.release event; None when nothing was released


def not_ingested(resource: str) -> Decision:
    """The deny for a file the engine would permit but that no ingest has registered."""
    return Decision(effect="deny",
                    reasons=(Reason(code=ReasonCode.UNKNOWN_RESOURCE,
                                    message=f"no encrypted file named {resource[:300]} is registered (ingested)"),),
                    remedies=(Remedy(code=ReasonCode.UNKNOWN_RESOURCE,
                                     text="check the name against the dataset's manifest, or ask the steward to ingest it"),))


# ------------------------------------------------------------------ look-ups


def own_public_key(conn: Connection, *, actor: Actor, key_id: int) -> tuple[X25519PublicKey, str]:
    """The caller's registered, unrevoked public key `key_id` and its fingerprint.

    Another user's key, or a revoked one, is *not found*: ids cannot be probed (ADR 004)."""
    row = conn.execute(select(KEYS).where(KEYS.c.id == key_id)).first()
    if row is None or row.user_id != actor.user_id or row.revoked_at is not None:
        raise NotFoundError(f"no usable public key with id {key_id} (registered by you and not revoked)")
    key = X25519PublicKey.from_public_bytes(base64.b64decode(row.key))
    return key, fingerprint(key)


def parse_resource(resource: str) -> tuple[str, str]:
    """`dataset:path` split in two; WorkflowError for anything else."""
    dataset, sep, path = resource.partition(":")
    if not sep or not dataset or not path:
        raise WorkflowError(f"'{resource[:120]}' is not a file name of the form dataset:path")
    return dataset, path


def stored_files(conn: Connection, resources: Sequence[str]) -> dict[str, StoredFile]:
    """The manifest rows of those `resources` (dataset:path) that are registered."""
    by_dataset: dict[str, list[str]] = {}
    for r in resources:
        dataset, path = parse_resource(r)
        by_dataset.setdefault(dataset, []).append(path)
    found: dict[str, StoredFile] = {}
    for dataset, paths in by_dataset.items():
        for i in range(0, len(paths), _CHUNK):
            rows = conn.execute(select(FILES).where(and_(FILES.c.dataset == dataset,
                                                          FILES.c.path.in_(paths[i:i + _CHUNK])))).all()
            for row in rows:
                f = StoredFile.from_row(row)
                found[f.resource] = f
    return found


def subset_files(conn: Connection, subset: str) -> list[StoredFile]:
    """Every registered file of `dataset/subset`, ordered by path."""
    dataset, sep, name = subset.partition("/")
    if not sep or not dataset or not name:
        raise WorkflowError(f"'{subset[:120]}' is not a subset name of the form dataset/subset")
    rows = conn.execute(select(FILES).where(and_(FILES.c.dataset == dataset, FILES.c.subset == name))
                        .order_by(FILES.c.path).limit(MAX_FILES + 1)).all()
    if not rows:
        raise NotFoundError(f"subset {subset[:120]} has no ingested files")
    if len(rows) > MAX_FILES:
        raise WorkflowError(f"subset {subset[:120]} holds more than {MAX_FILES:,} files; release them by name in batches")
    return [StoredFile.from_row(r) for r in rows]


# ------------------------------------------------------------------ the service


def release_keys(ws: Workspace, *, actor: Actor, now: datetime, public_key_id: int, purpose: str,
                 files: Sequence[str] | None = None, subset: str | None = None,
                 datasets: frozenset[str] | None = None) -> ReleaseResult:
    """Headers re-sealed to the caller's public key `public_key_id` for each permitted file.

    `files` names files (`dataset:path`), or `subset` (`dataset/subset`) asks for every
    ingested file of a subset; exactly one of them. `datasets` is an API key's scope. Denied
    files come back with their decisions; a permitted file no ingest registered is denied as
    `unknown_resource`."""
    if actor.user_id is None or actor.email is None:
        raise WorkflowError("the local operator has no keys of its own; keys are released to users")
    if (files is None) == (subset is None):
        raise WorkflowError("name either files or a subset to release keys for")
    if files is not None and not files:
        raise WorkflowError("the list of files to release keys for is empty")
    if files is not None and len(files) > MAX_FILES:
        raise WorkflowError(f"at most {MAX_FILES:,} files per release; send the rest in another call")
    with ws.connect() as conn:
        recipient, key_fp = own_public_key(conn, actor=actor, key_id=public_key_id)
        if subset is not None:
            listed = subset_files(conn, subset)
            known = {f.resource: f for f in listed}
            resources = [f.resource for f in listed]
        else:
            assert files is not None
            resources = list(dict.fromkeys(files))  # a name asked twice is released once
            known = stored_files(conn, resources)
        conn.rollback()
    # The engine decides every name, registered or not, so a denied caller learns nothing of
    # which files exist; only a permitted name that no ingest registered is unknown_resource.
    checked = state.check(ws, email=actor.email, resources=resources, action="read", purpose=purpose, now=now,
                          actor=actor.label, datasets=datasets)
    permitted: list[StoredFile] = []
    denied: list[DeniedFile] = []
    for resource, decision in zip(resources, checked.decisions, strict=True):
        if not decision.permitted:
            denied.append(DeniedFile(resource, decision))
        elif (found := known.get(resource)) is None:
            denied.append(DeniedFile(resource, not_ingested(resource)))
        else:
            permitted.append(found)
    if not permitted:
        return ReleaseResult(released=[], denied=denied, public_key_id=public_key_id, audit_seq=None)
    # SECURITY: the audit row commits before the header is resealed; no audit, no key. If the
    # append or the commit raises, the exception leaves here and nothing is released.
    with ws.begin() as conn:
        event = audit.append(conn, at=now, actor=actor.label, action="key.release", target=f"user:{actor.user_id}",
                             outcome="ok", details=_details(permitted, denied, public_key_id, key_fp, purpose, subset))
    return ReleaseResult(released=_reseal(ws, permitted, recipient), denied=denied, public_key_id=public_key_id,
                         audit_seq=event.seq)


def _details(permitted: Sequence[StoredFile], denied: Sequence[DeniedFile], key_id: int, key_fp: str, purpose: str,
             subset: str | None) -> dict[str, object]:
    return {"public_key": key_id, "fingerprint": key_fp, "files": len(permitted), "denied": len(denied),
            "datasets": sorted({f.dataset for f in permitted}), "resources": [f.resource[:300] for f in permitted[:SAMPLE]],
            "purpose": purpose[:128], "subset": subset[:130] if subset else None}


def _reseal(ws: Workspace, files: Sequence[StoredFile], recipient: X25519PublicKey) -> list[ReleasedFile]:
    """Re-seal in batches of one dataset key version each (one recipient exchange per batch)."""
    groups: dict[tuple[str, int], list[int]] = {}
    for i, f in enumerate(files):
        groups.setdefault((f.dataset, f.key_version), []).append(i)
    headers: list[bytes] = [b""] * len(files)
    for (dataset, key_version), indexes in groups.items():
        sealed = ws.keystore.reseal_headers(dataset, [files[i].header for i in indexes], recipient=recipient,
                                            version=key_version)
        for i, header in zip(indexes, sealed, strict=True):
            headers[i] = header
    return [ReleasedFile(resource=f.resource, header=h, size=f.size, sha256=f.sha256, mac_digest=f.mac_digest, object=f.object)
            for f, h in zip(files, headers, strict=True)]

