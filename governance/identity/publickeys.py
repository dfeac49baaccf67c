"""Users' registered X25519 public keys (the Crypt4GH key file format), for key release."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from governance.approvals.records import iso
from governance.audit import store as audit
from governance.errors import NotFoundError, WorkflowError
from governance.identity.roles import Actor, Role
from governance.storage.tables import PublicKeyRow
from governance.workspace import Workspace

KEYS = PublicKeyRow.__table__  # type: ignore[attr-defined]
_PEM = re.compile(r"-----BEGIN CRYPT4GH PUBLIC KEY-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CRYPT4GH PUBLIC KEY-----")


@dataclass(frozen=True)
class PublicKeyRecord:
    id: int
    name: str
    key: str
    created_at: str
    revoked_at: str | None

    @classmethod
    def from_row(cls, row: Any) -> PublicKeyRecord:
        return cls(id=row.id, name=row.name, key=row.key, created_at=row.created_at, revoked_at=row.revoked_at)


def parse_public_key(text: str) -> bytes:
    """The 32 raw bytes of an X25519 public key given as a Crypt4GH public key file or base64."""
    found = _PEM.search(text)
    body = found.group(1) if found else text.strip()
    try:
        raw = base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise WorkflowError("the public key is neither a Crypt4GH public key file nor base64") from None
    if len(raw) != 32:
        raise WorkflowError(f"an X25519 public key is 32 bytes; this one is {len(raw)}")
    if raw == bytes(32):
        raise WorkflowError("the all-zero key is not a usable X25519 public key")
    return raw


def register_public_key(ws: Workspace, *, actor: Actor, now: datetime, key: str, name: str) -> PublicKeyRecord:
    if actor.user_id is None:
        raise WorkflowError("the local operator has no keys of its own")
    raw = parse_public_key(key)
    encoded = base64.b64encode(raw).decode()
    label = name.strip() or "default"
    try:
        with ws.begin() as conn:
            new = conn.execute(insert(KEYS).values(user_id=actor.user_id, key=encoded, name=label[:128],
                                                   created_at=iso(now))).inserted_primary_key
            assert new is not None
            audit.append(conn, at=now, actor=actor.label, action="public_key.register", target=f"public_key:{new[0]}",
                         outcome="ok", details={"key": encoded})
            row = conn.execute(select(KEYS).where(KEYS.c.id == int(new[0]))).one()
    except IntegrityError:
        raise WorkflowError("this public key is already registered") from None
    return PublicKeyRecord.from_row(row)


def list_public_keys(ws: Workspace, *, actor: Actor) -> list[PublicKeyRecord]:
    with ws.connect() as conn:
        rows = conn.execute(select(KEYS).where(KEYS.c.user_id == actor.user_id).order_by(KEYS.c.id)).all()
        conn.rollback()
    return [PublicKeyRecord.from_row(r) for r in rows]


def revoke_public_key(ws: Workspace, *, actor: Actor, now: datetime, key_id: int) -> PublicKeyRecord:
    with ws.begin() as conn:
        row = conn.execute(select(KEYS).where(KEYS.c.id == key_id)).first()
        if row is None or (row.user_id != actor.user_id and not actor.has(Role.ADMIN)):
            raise NotFoundError(f"no public key with id {key_id}")
        if row.revoked_at is None:
            conn.execute(update(KEYS).where(KEYS.c.id == key_id).values(revoked_at=iso(now)))
            audit.append(conn, at=now, actor=actor.label, action="public_key.revoke", target=f"public_key:{key_id}", outcome="ok")
        row = conn.execute(select(KEYS).where(KEYS.c.id == key_id)).one()
    return PublicKeyRecord.from_row(row)
