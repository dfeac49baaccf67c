"""Audit services for adapters: verifying the chain on behalf of an auditor."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from governance.audit import store
from governance.audit.chain import AuditEvent, Checkpoint, Verification
from governance.identity.roles import Actor, Role
from governance.storage.tables import UserRow
from governance.workspace import Workspace

USERS = UserRow.__table__  # type: ignore[attr-defined]


def verify_audit(ws: Workspace, *, actor: Actor) -> Verification:
    """Check every link of the chain and the latest signed checkpoint (auditors, administrators)."""
    actor.require(Role.AUDITOR)
    checkpoint_file = ws.settings.checkpoint_path
    key = (store.load_public_key(store.public_key_path(ws.settings.audit_key_path))
           if checkpoint_file.exists() else None)
    return store.verify(ws.db, checkpoint_file=checkpoint_file, key=key)


def recent_events(ws: Workspace, *, actor: Actor, limit: int = 50, before: int | None = None,
                  action: str | None = None) -> list[AuditEvent]:
    """The latest events, newest first (auditors, administrators): at most `limit`, with sequence
    numbers below `before`, optionally of one action or action family (`request.` for all of a kind)."""
    actor.require(Role.AUDITOR)
    limit = max(1, min(limit, 500))
    query = select(store.EVENTS).order_by(store.EVENTS.c.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(store.EVENTS.c.seq < before)
    if action:
        query = query.where(store.EVENTS.c.action.startswith(action) if action.endswith(".") else store.EVENTS.c.action == action)
    with ws.connect() as conn:
        rows = conn.execute(query).all()
        conn.rollback()
    return [store.row_to_event(r) for r in rows]


@dataclass(frozen=True)
class ChainState:
    """The chain's head and its newest signed checkpoint, for the audit page."""

    verification: Verification
    head_seq: int | None
    head_at: str | None
    head_hash: str | None
    checkpoint_seq: int | None
    checkpoint_at: str | None


def chain_state(ws: Workspace, *, actor: Actor) -> ChainState:
    """Verify the chain (auditors, administrators) and say where its head and checkpoint stand."""
    result = verify_audit(ws, actor=actor)
    with ws.connect() as conn:
        top = store.head(conn)
        conn.rollback()
    cp_file = ws.settings.checkpoint_path
    cp = Checkpoint.from_json(cp_file.read_text()) if cp_file.exists() else None
    return ChainState(verification=result, head_seq=top.seq if top else None, head_at=top.at if top else None,
                      head_hash=top.hash if top else None, checkpoint_seq=cp.seq if cp else None,
                      checkpoint_at=cp.at if cp else None)


def people(ws: Workspace, *, actor: Actor, events: list[AuditEvent]) -> dict[str, str]:
    """Readable names for the `user:<id>` actors and targets of these events ("user:<e-mail>"),
    for auditors, who may see every user."""
    actor.require(Role.AUDITOR)
    ids = {label.removeprefix("user:") for ev in events for label in (ev.actor, ev.target) if label.startswith("user:")}
    if not ids:
        return {}
    with ws.connect() as conn:
        rows = conn.execute(select(USERS.c.id, USERS.c.email).where(USERS.c.id.in_(sorted(ids)))).all()
        conn.rollback()
    return {f"user:{r.id}": f"user:{r.email}" for r in rows}
