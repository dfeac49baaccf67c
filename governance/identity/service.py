"""Identity services: register users, change and verify e-mail addresses.

Each operation is one transaction that also appends its audit event, so a state change and its
record commit or vanish together. A changed address is unverified until its own link is used.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from governance.audit import store as audit
from governance.errors import GovernanceError
from governance.identity.mail import Mailer, Message
from governance.identity.tokens import InvalidTokenError, claimed_user, mint_token, normalise_email, verify_token
from governance.storage.db import Transactional
from governance.storage.tables import OrganisationRow, RedeemedTokenRow, SiteRow, UserRow

USERS = UserRow.__table__  # type: ignore[attr-defined]
ORGS = OrganisationRow.__table__  # type: ignore[attr-defined]
SITES = SiteRow.__table__  # type: ignore[attr-defined]
REDEEMED = RedeemedTokenRow.__table__  # type: ignore[attr-defined]
VERIFY_PURPOSE = "verify-email"


class IdentityError(GovernanceError):
    """An identity operation cannot be done as asked."""


@dataclass(frozen=True)
class User:
    id: str
    email: str
    email_verified: bool
    organisation: str | None
    site: str | None


def _user(conn: Connection, *, user_id: str | None = None, email: str | None = None) -> User | None:
    query = select(USERS, SITES.c.name.label("site_name")).select_from(USERS.outerjoin(SITES, USERS.c.site_id == SITES.c.id))
    query = query.where(USERS.c.id == user_id) if user_id is not None else query.where(USERS.c.email == email)
    row = conn.execute(query).first()
    if row is None:
        return None
    return User(id=row.id, email=row.email, email_verified=row.email_verified_at is not None,
                organisation=row.organisation_id, site=row.site_name)


def get_user(*, engine: Transactional, email: str) -> User:
    with engine.connect() as conn:
        user = _user(conn, email=normalise_email(email))
    if user is None:
        raise IdentityError(f"no user with the address {normalise_email(email)}")
    return user


def _site_id(conn: Connection, organisation: str, site: str | None) -> int | None:
    if conn.execute(select(ORGS.c.id).where(ORGS.c.id == organisation)).first() is None:
        conn.execute(insert(ORGS).values(id=organisation, name=organisation))
    if site is None:
        return None
    found = conn.execute(select(SITES.c.id).where(SITES.c.organisation_id == organisation, SITES.c.name == site)).first()
    if found is not None:
        return int(found.id)
    key = conn.execute(insert(SITES).values(organisation_id=organisation, name=site)).inserted_primary_key
    assert key is not None
    return int(key[0])


def register_user(*, engine: Transactional, now: datetime, email: str, organisation: str | None = None,
                  site: str | None = None, actor: str = "system") -> User:
    """A new, unverified user; the address is normalised and must be unique."""
    address = normalise_email(email)
    if site is not None and organisation is None:
        raise IdentityError("a site belongs to an organisation: give the organisation too")
    user_id = str(uuid.uuid4())
    try:
        with engine.begin() as conn:
            site_id = _site_id(conn, organisation, site) if organisation is not None else None
            conn.execute(insert(USERS).values(id=user_id, email=address, email_verified_at=None, organisation_id=organisation,
                                              site_id=site_id, created_at=now.isoformat(), disabled=False))
            audit.append(conn, at=now, actor=actor, action="user.register", target=f"user:{user_id}", outcome="ok",
                         details={"organisation": organisation, "site": site})
    except IntegrityError:
        raise IdentityError(f"a user with the address {address} already exists") from None
    return User(id=user_id, email=address, email_verified=False, organisation=organisation, site=site)


def change_email(*, engine: Transactional, now: datetime, user_id: str, email: str, actor: str) -> User:
    """Give a user a new address; it counts only once verified (DESIGN §3.4)."""
    address = normalise_email(email)
    try:
        with engine.begin() as conn:
            done = conn.execute(update(USERS).where(USERS.c.id == user_id).values(email=address, email_verified_at=None))
            if done.rowcount != 1:
                raise IdentityError(f"no user with id {user_id}")
            audit.append(conn, at=now, actor=actor, action="user.change_email", target=f"user:{user_id}", outcome="ok")
            user = _user(conn, user_id=user_id)
    except IntegrityError:
        raise IdentityError(f"a user with the address {address} already exists") from None
    assert user is not None
    return user


def send_verification(*, engine: Transactional, mailer: Mailer, secret: bytes, now: datetime, user_id: str, link: str,
                      ttl: timedelta = timedelta(hours=24), actor: str = "system") -> None:
    """Mail a single-use link for the user's current address; audited, the token never is."""
    with engine.begin() as conn:
        user = _user(conn, user_id=user_id)
        if user is None:
            raise IdentityError(f"no user with id {user_id}")
        expires = now + ttl
        token = mint_token(secret=secret, purpose=VERIFY_PURPOSE, user=user.id, email=user.email, expires=expires)
        audit.append(conn, at=now, actor=actor, action="email.verification_sent", target=f"user:{user.id}", outcome="ok",
                     details={"expires": expires.isoformat()})
        # The mail goes last: if it fails, the transaction (and its audit record) rolls back.
        mailer.send(Message(to=user.email, subject="Verify your e-mail address",
                            body=f"Open this link within {int(ttl.total_seconds() // 3600)} hours to verify {user.email}:\n"
                                 f"{link}?token={token}\n"))


def verify_email(*, engine: Transactional, secret: bytes, now: datetime, token: str) -> User:
    """Redeem a verification link once; refusals are audited and raise `InvalidTokenError`."""
    claimed = claimed_user(token)
    try:
        with engine.begin() as conn:
            user = _user(conn, user_id=claimed) if claimed is not None else None
            claims = verify_token(token, secret=secret, purpose=VERIFY_PURPOSE,
                                  current_email=user.email if user is not None else None, now=now)
            try:
                with conn.begin_nested():
                    conn.execute(insert(REDEEMED).values(nonce_digest=claims.nonce_digest, redeemed_at=now.isoformat()))
            except IntegrityError:
                raise InvalidTokenError() from None  # already used
            conn.execute(update(USERS).where(USERS.c.id == claims.user, USERS.c.email == claims.email)
                         .values(email_verified_at=now.isoformat()))
            audit.append(conn, at=now, actor=f"user:{claims.user}", action="email.verify", target=f"user:{claims.user}", outcome="ok")
            verified = _user(conn, user_id=claims.user)
    except InvalidTokenError:
        _audit_refusal(engine, now, claimed)
        raise
    assert verified is not None
    return verified


def _audit_refusal(engine: Transactional, now: datetime, claimed: str | None) -> None:
    details: dict[str, Any] = {"claimed_user": claimed} if claimed is not None and len(claimed) <= 64 else {}
    with engine.begin() as conn:
        audit.append(conn, at=now, actor="anonymous", action="email.verify", target="email-token", outcome="refused",
                     reasons=("invalid_token",), details=details)


def set_disabled(*, engine: Transactional, now: datetime, email: str, disabled: bool, actor: str) -> User:
    """Disable an account (every later check is denied) or enable it again."""
    address = normalise_email(email)
    with engine.begin() as conn:
        user = _user(conn, email=address)
        if user is None:
            raise IdentityError(f"no user with the address {address}")
        conn.execute(update(USERS).where(USERS.c.id == user.id).values(disabled=disabled))
        audit.append(conn, at=now, actor=actor, action="user.disable" if disabled else "user.enable", target=f"user:{user.id}",
                     outcome="ok")
    return user
