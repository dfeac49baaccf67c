"""The audit chain in the database: append inside the caller's transaction, read, verify.

The append path uses SQLAlchemy Core (the ORM is several times slower for this). Appends are
serialised so the chain stays linear under concurrent writers: PostgreSQL takes a
transaction-scoped advisory lock, SQLite's `BEGIN IMMEDIATE` already holds the write lock.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import Connection, Engine, insert, select, text

from governance.audit.chain import AuditEvent, Checkpoint, Verification, next_event, sign_checkpoint, verify_chain
from governance.errors import GovernanceError
from governance.storage import version
from governance.storage.tables import AuditCheckpointRow, AuditEventRow

EVENTS = AuditEventRow.__table__  # type: ignore[attr-defined]
CHECKPOINTS = AuditCheckpointRow.__table__  # type: ignore[attr-defined]
# Keys in `Connection.info` where append() notes the sequence numbers of the open transaction's
# events, so a unit of work can sign a checkpoint after it commits.
FIRST_SEQ = "governance.audit.first_seq"
LAST_SEQ = "governance.audit.last_seq"
_LOCK_ID = 0x61756469  # "audi": the advisory lock that serialises appends on PostgreSQL


class AuditKeyError(GovernanceError):
    """The checkpoint signing key is missing, unreadable or too widely readable."""


def row_to_event(row: Any) -> AuditEvent:
    return AuditEvent(seq=row.seq, at=row.at, actor=row.actor, action=row.action, target=row.target,
                      outcome=row.outcome, reasons=tuple(json.loads(row.reasons)), details=json.loads(row.details),
                      prev_hash=row.prev_hash, hash=row.hash)


def head(conn: Connection) -> AuditEvent | None:
    row = conn.execute(select(EVENTS).order_by(EVENTS.c.seq.desc()).limit(1)).first()
    return row_to_event(row) if row is not None else None


def lock_chain(conn: Connection) -> None:
    """Serialise appenders for the rest of this transaction (SQLite's write lock already does)."""
    if conn.dialect.name == "postgresql":
        # INVARIANT: one appender at a time, so seq and prev_hash form a single line.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_ID})


_DETAILS = json.JSONEncoder(sort_keys=True)  # built once; json.dumps(sort_keys=True) builds one per call


def event_row(ev: AuditEvent) -> dict[str, Any]:
    """The table row for an event (JSON columns serialised as they were hashed)."""
    return {"seq": ev.seq, "at": ev.at, "actor": ev.actor, "action": ev.action, "target": ev.target,
            "outcome": ev.outcome, "reasons": json.dumps(list(ev.reasons)),
            "details": _DETAILS.encode(dict(ev.details)), "prev_hash": ev.prev_hash, "hash": ev.hash}


_COLUMNS = ("seq", "at", "actor", "action", "target", "outcome", "reasons", "details", "prev_hash", "hash")
_COPY = f"COPY audit_events ({', '.join(_COLUMNS)}) FROM STDIN"
_INSERT = f"INSERT INTO audit_events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def _row_tuple(ev: AuditEvent) -> tuple[object, ...]:
    return (ev.seq, ev.at, ev.actor, ev.action, ev.target, ev.outcome, json.dumps(list(ev.reasons)),
            _DETAILS.encode(dict(ev.details)), ev.prev_hash, ev.hash)


def insert_events(conn: Connection, batch: list[AuditEvent]) -> None:
    """Insert a batch of events in the caller's transaction, by the fastest path the driver has:
    COPY on PostgreSQL (psycopg), a driver-level executemany on SQLite, Core elsewhere."""
    if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(_COPY) as copy:
            for ev in batch:
                copy.write_row(_row_tuple(ev))
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql(_INSERT, [_row_tuple(ev) for ev in batch])
    else:
        conn.execute(insert(EVENTS), [event_row(ev) for ev in batch])


# Events that record no change to the state decisions depend on: they leave the state version as
# it is (everything else increments it, so a new kind of state change cannot be forgotten).
NOT_STATE_CHANGES = frozenset({"access.check", "auth.login", "auth.logout", "auth.session_end", "email.verification_sent",
                               "api_key.create", "api_key.revoke", "public_key.register", "public_key.revoke",
                               "key.release", "file.read", "manifest.ingest", "audit.checkpoint"})


def append(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    reasons: Iterable[str] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's open transaction (it commits or rolls back with it)."""
    lock_chain(conn)
    ev = next_event(head(conn), at=at, actor=actor, action=action, target=target, outcome=outcome,
                    reasons=reasons, details=details)
    conn.execute(insert(EVENTS).values(**event_row(ev)))
    if action not in NOT_STATE_CHANGES:
        version.bump(conn)
    conn.info.setdefault(FIRST_SEQ, ev.seq)
    conn.info[LAST_SEQ] = ev.seq
    return ev


def events(conn: Connection, *, chunk: int = 5000) -> Iterator[AuditEvent]:
    """Every event in sequence order, read in chunks (constant memory)."""
    last = 0
    while True:
        rows = conn.execute(select(EVENTS).where(EVENTS.c.seq > last).order_by(EVENTS.c.seq).limit(chunk)).all()
        if not rows:
            return
        for row in rows:
            yield row_to_event(row)
        last = rows[-1].seq


def public_key_path(key_path: Path) -> Path:
    """Where the verification key beside a signing key lives (`….pub`, readable by anyone)."""
    return key_path.with_suffix(".pub")


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A checkpoint verification key (PEM). Auditors need only this, never the signing key."""
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise AuditKeyError(f"audit verification key {path} is missing") from None
    except (ValueError, TypeError, OSError):
        raise AuditKeyError(f"audit verification key {path} cannot be read as an Ed25519 PEM public key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise AuditKeyError(f"audit verification key {path} is not an Ed25519 key")
    return loaded


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The checkpoint signing key: created 0600 on first use, refused if readable by others."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        _write_public(key, path)
        return key
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuditKeyError(f"audit signing key {path} is readable by others (mode {mode:o}); chmod 600 it")
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError):
        raise AuditKeyError(f"audit signing key {path} cannot be read as an Ed25519 PEM key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditKeyError(f"audit signing key {path} is not an Ed25519 key")
    _write_public(loaded, path, only_if_missing=True)
    return loaded


def _write_public(key: Ed25519PrivateKey, key_path: Path, *, only_if_missing: bool = False) -> None:
    pub = public_key_path(key_path)
    if only_if_missing and pub.exists():
        return
    tmp = pub.with_suffix(".pub.tmp")
    tmp.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    os.replace(tmp, pub)


def checkpoint(engine: Engine, *, key: Ed25519PrivateKey, at: datetime, out: Path, log_id: str = "main") -> Checkpoint | None:
    """Sign the current head, store it in the database and write it to `out` (outside the
    database, where a rewrite of the table cannot reach it). None for an empty chain."""
    with engine.begin() as conn:
        current = head(conn)
        if current is None:
            return None
        cp = sign_checkpoint(key, log_id=log_id, head=current, at=at)
        conn.execute(insert(CHECKPOINTS).values(log_id=cp.log_id, seq=cp.seq, head=cp.head, at=cp.at, signature=cp.signature))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(cp.to_json())
    os.replace(tmp, out)  # never a half-written checkpoint under the final name
    return cp


def verify(
    engine: Engine,
    *,
    checkpoint_file: Path | None = None,
    key: Ed25519PrivateKey | Ed25519PublicKey | None = None,
) -> Verification:
    """Verify the whole chain, against the checkpoint file when there is one."""
    cp = Checkpoint.from_json(checkpoint_file.read_text()) if checkpoint_file is not None and checkpoint_file.exists() else None
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    with engine.connect() as conn:
        return verify_chain(events(conn), checkpoint=cp, public_key=public)
