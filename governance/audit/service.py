"""Audit services for adapters: verifying the chain on behalf of an auditor."""

from __future__ import annotations

from governance.audit import store
from governance.audit.chain import Verification
from governance.identity.roles import Actor, Role
from governance.workspace import Workspace


def verify_audit(ws: Workspace, *, actor: Actor) -> Verification:
    """Check every link of the chain and the latest signed checkpoint (auditors, administrators)."""
    actor.require(Role.AUDITOR)
    checkpoint_file = ws.settings.checkpoint_path
    key = (store.load_public_key(store.public_key_path(ws.settings.audit_key_path))
           if checkpoint_file.exists() else None)
    return store.verify(ws.db, checkpoint_file=checkpoint_file, key=key)
