"""Audit services for adapters: verifying the chain on behalf of an auditor."""

from __future__ import annotations

from sqlalchemy import select

from governance.audit import store
from governance.audit.chain import AuditEvent, Verification
from governance.identity.roles import Actor, Role
from governance.workspace import Workspace


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
