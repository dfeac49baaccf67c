"""Authentication services: passwords, logins and sessions, refresh, logout, API keys, and turning
a presented credential into the acting party.

Roles always come from the database (`actor_for`), never from a token. A verified credential is
trusted for at most `Settings.auth_cache_seconds` before the database is asked again, so a
logout, a disabled account or a revoked key made through another replica takes effect within
that bound; the process that made the change forgets at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from governance.approvals.records import iso, parse_time
from governance.audit import store as audit
from governance.auth import jwt
from governance.auth.passwords import hash_password, verify_password
from governance.errors import ForbiddenError, GovernanceError, NotFoundError, WorkflowError
from governance.identity.roles import Actor, Role, user_actor
from governance.identity.tokens import normalise_email
from governance.storage.tables import ApiKeyRow, AuthSessionRow, LoginFailureRow, PasswordRow, UserRow
from governance.workspace import Workspace

USERS = UserRow.__table__  # type: ignore[attr-defined]
PASSWORDS = PasswordRow.__table__  # type: ignore[attr-defined]
SESSIONS = AuthSessionRow.__table__  # type: ignore[attr-defined]
API_KEYS = ApiKeyRow.__table__  # type: ignore[attr-defined]
FAILURES = LoginFailureRow.__table__  # type: ignore[attr-defined]

API_KEY_MARK = "gk_"
_LAST_USED_EVERY = 60.0  # seconds between writes of an API key's last-used time
_CACHE_LIMIT = 10_000


class AuthenticationError(GovernanceError):
    """The caller could not be authenticated (wrong password, bad or ended token, revoked key).
    The message is the same whatever the cause."""

    def __init__(self, msg: str = "authentication failed") -> None:
        super().__init__(msg)


class RateLimitedError(GovernanceError):
    """Too many failed logins for one account in the window; try again later."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed logins for this account; try again in {retry_after} seconds")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the actor with their stored roles, and how they authenticated."""

    actor: Actor
    kind: str  # "session" | "api_key" | "console"
    credential: str  # session id or API key id
    datasets: frozenset[str] | None = None  # an API key's dataset scope; None: all

    @property
    def user_id(self) -> str:
        assert self.actor.user_id is not None
        return self.actor.user_id

    @property
    def email(self) -> str:
        assert self.actor.email is not None
        return self.actor.email


@dataclass(frozen=True)
class LoginResult:
    access_token: str
    refresh_token: str
    expires_in: int
    email: str


@dataclass(frozen=True)
class ApiKeyRecord:
    id: int
    prefix: str
    name: str
    email: str
    datasets: list[str] | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None

    @classmethod
    def from_row(cls, row: Any, email: str) -> ApiKeyRecord:
        return cls(id=row.id, prefix=row.prefix, name=row.name, email=email,
                   datasets=json.loads(row.datasets) if row.datasets is not None else None,
                   created_at=row.created_at, last_used_at=row.last_used_at, revoked_at=row.revoked_at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _actor(conn: Connection, user_id: str) -> Actor | None:
    row = conn.execute(select(USERS.c.email, USERS.c.disabled).where(USERS.c.id == user_id)).first()
    if row is None or row.disabled:
        return None
    return user_actor(conn, user_id, row.email)


@dataclass
class _Cache:
    """Verified credentials, each trusted until a monotonic deadline. Bounded in size and age."""

    ttl: float
    entries: dict[str, tuple[float, Principal]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> Principal | None:
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self.entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: str, principal: Principal, not_after: float) -> None:
        if self.ttl <= 0:
            return
        with self.lock:
            if len(self.entries) >= _CACHE_LIMIT:
                self.entries.clear()
            self.entries[key] = (min(time.monotonic() + self.ttl, not_after), principal)

    def forget_user(self, user_id: str) -> None:
        with self.lock:
            for key in [k for k, (_, p) in self.entries.items() if p.actor.user_id == user_id]:
                self.entries.pop(key, None)


class Authenticator:
    """One per process (held by the workspace): the token keys, the credential cache, and the
    throttle for API keys' last-used writes."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.settings = ws.settings
        self.cache = _Cache(ttl=ws.settings.auth_cache_seconds)
        self._last_used: dict[int, float] = {}

    @cached_property
    def keys(self) -> jwt.TokenKeys:
        return jwt.TokenKeys.load(self.settings.jwt_keys_dir)

    # ---------------------------------------------------------------- presented credentials

    def cached(self, credential: str) -> Principal | None:
        """The principal for a credential verified within the cache bound, without any I/O (so an
        async adapter can answer it without a thread hop); None means call `authenticate`."""
        if not isinstance(credential, str) or not credential or len(credential) > jwt.MAX_TOKEN_BYTES:
            return None
        return self.cache.get(hashlib.sha256(credential.encode()).hexdigest())

    def authenticate(self, credential: str, *, now: datetime) -> Principal:
        """The principal behind a bearer credential (an access token or an API key), or
        `AuthenticationError`. Never raises anything else."""
        if not isinstance(credential, str) or not credential or len(credential) > jwt.MAX_TOKEN_BYTES:
            raise AuthenticationError()
        cache_key = hashlib.sha256(credential.encode()).hexdigest()
        found = self.cache.get(cache_key)
        if found is not None:
            return found
        try:
            if credential.startswith(API_KEY_MARK):
                principal = self._api_key(credential, now=now)
                not_after = float("inf")
            else:
                claims = jwt.verify(credential, self.keys, issuer=self.settings.jwt_issuer, audience=self.settings.jwt_audience,
                                    now=now, max_lifetime=self.settings.access_token_seconds)
                principal = self._session(claims, now=now)
                not_after = time.monotonic() + (claims.expires_at - now.timestamp())
        except AuthenticationError:
            raise
        except Exception:  # noqa: BLE001 - SECURITY: a credential that cannot be checked is refused
            raise AuthenticationError() from None
        self.cache.put(cache_key, principal, not_after)
        return principal

    def _session(self, claims: jwt.TokenClaims, *, now: datetime) -> Principal:
        with self.ws.connect() as conn:
            row = conn.execute(select(SESSIONS.c.user_id, SESSIONS.c.revoked_at, SESSIONS.c.expires_at, SESSIONS.c.kind)
                               .where(SESSIONS.c.id == claims.session)).first()
            # INVARIANT: an access token never outlives its session, even one refreshed just before
            # the session's end.
            if (row is None or row.kind != "api" or row.revoked_at is not None or row.user_id != claims.subject
                    or (parse_time(row.expires_at) or now) <= now):
                raise AuthenticationError()
            actor = _actor(conn, row.user_id)
            conn.rollback()
        if actor is None:
            raise AuthenticationError()
        return Principal(actor=actor, kind="session", credential=claims.session)

    def _api_key(self, credential: str, *, now: datetime) -> Principal:
        _, _, rest = credential.partition(API_KEY_MARK)
        prefix, sep, secret = rest.partition("_")
        if not sep or not prefix or not secret or len(prefix) > 16:
            raise AuthenticationError()
        with self.ws.connect() as conn:
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.prefix == prefix)).first()
            # SECURITY: compare digests in constant time; an unknown prefix costs the same digest
            expected = row.digest if row is not None else "0" * 64
            if not hmac.compare_digest(expected, _digest(secret)) or row is None or row.revoked_at is not None:
                raise AuthenticationError()
            actor = _actor(conn, row.user_id)
            conn.rollback()
        if actor is None:
            raise AuthenticationError()
        self._touch(row.id, now)
        scope = frozenset(json.loads(row.datasets)) if row.datasets is not None else None
        return Principal(actor=actor, kind="api_key", credential=str(row.id), datasets=scope)

    def _touch(self, key_id: int, now: datetime) -> None:
        """Record an API key's last use, at most once a minute per key and process."""
        mono = time.monotonic()
        if mono - self._last_used.get(key_id, -_LAST_USED_EVERY) < _LAST_USED_EVERY:
            return
        self._last_used[key_id] = mono
        if len(self._last_used) > _CACHE_LIMIT:
            self._last_used.clear()
        with self.ws.begin() as conn:
            conn.execute(update(API_KEYS).where(API_KEYS.c.id == key_id).values(last_used_at=iso(now)))

    # ---------------------------------------------------------------- logins and sessions

    def login(self, *, email: str, password: str, now: datetime, client: str) -> LoginResult:
        """A new session and its first tokens, or `AuthenticationError` (the same whether the
        address is unknown, the password wrong or the account disabled). Failures are audited
        and counted; too many in the window give `RateLimitedError` before any password check."""
        user_id, address = self.check_password(email=email, password=password, now=now, client=client)
        session, refresh_secret = self.open_session(user_id=user_id, now=now, client=client, kind="api",
                                                    lifetime=self.settings.refresh_token_seconds)
        return self._tokens(user_id=user_id, email=address, session=session, refresh_secret=refresh_secret, now=now)

    def check_password(self, *, email: str, password: str, now: datetime, client: str) -> tuple[str, str]:
        """The (user id, address) whose password this is, or `AuthenticationError`. Every failure
        is audited and counted against the address, so logins and re-authentications share one
        throttle: too many in the window give `RateLimitedError` before any password check."""
        try:
            address = normalise_email(email)
        except GovernanceError:
            raise AuthenticationError("the e-mail address or password is wrong") from None
        window_start = now - timedelta(seconds=self.settings.login_failure_window_seconds)
        with self.ws.connect() as conn:
            failures = conn.execute(select(func.count(), func.min(FAILURES.c.at)).where(
                FAILURES.c.email == address, FAILURES.c.at > iso(window_start))).one()
            user = conn.execute(select(USERS.c.id, USERS.c.disabled).where(USERS.c.email == address)).first()
            stored = None
            if user is not None:
                found = conn.execute(select(PASSWORDS.c.hash).where(PASSWORDS.c.user_id == user.id)).first()
                stored = found.hash if found is not None else None
            conn.rollback()
        if failures[0] >= self.settings.login_failures_allowed:
            oldest = parse_time(failures[1]) or now
            retry = int((oldest - window_start).total_seconds()) + 1
            with self.ws.begin() as conn:
                audit.append(conn, at=now, actor=f"client:{client[:64]}", action="auth.login", target=_target(user, address),
                             outcome="denied", reasons=["rate_limited"])
            raise RateLimitedError(max(retry, 1))
        ok = verify_password(stored, password) and user is not None and not user.disabled
        if not ok:
            with self.ws.begin() as conn:
                conn.execute(insert(FAILURES).values(email=address, at=iso(now)))
                audit.append(conn, at=now, actor=f"client:{client[:64]}", action="auth.login", target=_target(user, address),
                             outcome="denied", reasons=["bad_credentials"])
            raise AuthenticationError("the e-mail address or password is wrong")
        assert user is not None
        with self.ws.begin() as conn:
            conn.execute(delete(FAILURES).where(FAILURES.c.email == address))
        return str(user.id), address

    def open_session(self, *, user_id: str, now: datetime, client: str, kind: str, lifetime: int) -> tuple[str, str]:
        """Record a new session of `kind` ("api" or "console") for a user whose password was just
        checked; returns its id and secret (only the secret's digest is stored)."""
        session = secrets.token_hex(16)
        secret = secrets.token_urlsafe(32)
        with self.ws.begin() as conn:
            conn.execute(insert(SESSIONS).values(
                id=session, user_id=user_id, refresh_digest=_digest(secret), created_at=iso(now),
                expires_at=iso(now + timedelta(seconds=lifetime)), client=client[:256], kind=kind,
                last_seen_at=iso(now)))
            audit.append(conn, at=now, actor=f"user:{user_id}", action="auth.login", target=f"session:{session}", outcome="ok",
                         details={"kind": kind})
        return session, secret

    def _tokens(self, *, user_id: str, email: str, session: str, refresh_secret: str, now: datetime) -> LoginResult:
        token, _ = jwt.issue(self.keys, issuer=self.settings.jwt_issuer, audience=self.settings.jwt_audience, subject=user_id,
                             session=session, now=now, lifetime=self.settings.access_token_seconds)
        return LoginResult(access_token=token, refresh_token=f"{session}.{refresh_secret}",
                           expires_in=self.settings.access_token_seconds, email=email)

    def refresh(self, *, refresh_token: str, now: datetime) -> LoginResult:
        """New tokens for a live session; the refresh token rotates. Presenting the refresh token
        that the last refresh spent ends the whole session (it may have been stolen)."""
        session, sep, secret = (refresh_token or "").partition(".")
        if not sep or len(session) != 32 or not secret or len(secret) > 128:
            raise AuthenticationError()
        new_secret = secrets.token_urlsafe(32)
        with self.ws.begin() as conn:
            row = conn.execute(select(SESSIONS).where(SESSIONS.c.id == session)).first()
            # A console session's cookie is not a refresh token: it never mints bearer tokens.
            if (row is None or row.kind != "api" or row.revoked_at is not None
                    or (parse_time(row.expires_at) or now) <= now):
                raise AuthenticationError()
            presented = _digest(secret)
            if not hmac.compare_digest(row.refresh_digest, presented):
                # Only the token this session's last refresh spent counts as reuse (a stolen copy
                # used twice); anything else is a guess by someone who read the session id from an
                # access token, and must not be able to end the session.
                if row.previous_digest is None or not hmac.compare_digest(row.previous_digest, presented):
                    raise AuthenticationError()
                conn.execute(update(SESSIONS).where(SESSIONS.c.id == session).values(revoked_at=iso(now)))
                audit.append(conn, at=now, actor=f"user:{row.user_id}", action="auth.session_end", target=f"session:{session}",
                             outcome="ok", reasons=["refresh_token_reused"])
                reused = True
                actor = None
            else:
                reused = False
                actor = None
                done = conn.execute(update(SESSIONS).where(SESSIONS.c.id == session, SESSIONS.c.refresh_digest == row.refresh_digest)
                                    .values(refresh_digest=_digest(new_secret), previous_digest=row.refresh_digest,
                                            last_refresh_at=iso(now)))
                if done.rowcount != 1:
                    raise AuthenticationError()
                actor = _actor(conn, row.user_id)
                if actor is None:
                    raise AuthenticationError()
        if reused or actor is None or actor.email is None:
            self.cache.forget_user(row.user_id)
            raise AuthenticationError()
        return self._tokens(user_id=row.user_id, email=actor.email, session=session, refresh_secret=new_secret, now=now)

    def logout(self, *, principal: Principal, now: datetime) -> None:
        """End the caller's session: every access and refresh token of it stops working at once
        on this replica, and within `auth_cache_seconds` on the others."""
        if principal.kind != "session":
            raise WorkflowError("an API key has no session to end; revoke the key instead")
        with self.ws.begin() as conn:
            conn.execute(update(SESSIONS).where(SESSIONS.c.id == principal.credential, SESSIONS.c.revoked_at.is_(None))
                         .values(revoked_at=iso(now)))
            audit.append(conn, at=now, actor=principal.actor.label, action="auth.logout", target=f"session:{principal.credential}",
                         outcome="ok")
        self.cache.forget_user(principal.user_id)

    # ---------------------------------------------------------------- passwords

    def set_password(self, *, actor: Actor, now: datetime, email: str, password: str, current: str | None = None) -> None:
        """Set a user's password: the user themselves (giving the current one, if they have one)
        or an administrator. Every session of the user ends."""
        address = normalise_email(email)
        digest = hash_password(password)
        with self.ws.begin() as conn:
            user = conn.execute(select(USERS.c.id).where(USERS.c.email == address)).first()
            if user is None:
                raise NotFoundError(f"no user with the address {address}")
            stored = conn.execute(select(PASSWORDS.c.hash).where(PASSWORDS.c.user_id == user.id)).first()
            if actor.user_id == user.id and not actor.has(Role.ADMIN):
                if stored is not None and not verify_password(stored.hash, current or ""):
                    raise ForbiddenError("the current password is wrong")
            elif actor.user_id != user.id:
                actor.require(Role.ADMIN)
            if stored is None:
                conn.execute(insert(PASSWORDS).values(user_id=user.id, hash=digest, set_at=iso(now)))
            else:
                conn.execute(update(PASSWORDS).where(PASSWORDS.c.user_id == user.id).values(hash=digest, set_at=iso(now)))
            conn.execute(update(SESSIONS).where(SESSIONS.c.user_id == user.id, SESSIONS.c.revoked_at.is_(None))
                         .values(revoked_at=iso(now)))
            audit.append(conn, at=now, actor=actor.label, action="user.set_password", target=f"user:{user.id}", outcome="ok")
        self.cache.forget_user(str(user.id))

    def forget_user(self, user_id: str) -> None:
        """Drop a user's cached credentials (after disabling them or changing their roles here)."""
        self.cache.forget_user(user_id)

    # ---------------------------------------------------------------- API keys

    def create_api_key(self, *, actor: Actor, now: datetime, name: str, datasets: list[str] | None = None,
                       email: str | None = None) -> tuple[ApiKeyRecord, str]:
        """A new API key for the actor (or, for an administrator, for `email`). Returns the record
        and the key itself, which is shown this once and stored only as a digest."""
        label = name.strip()
        if not label or len(label) > 128:
            raise WorkflowError("an API key needs a name of 1 to 128 characters")
        scope: list[str] | None = None
        if datasets is not None:
            known = self.ws.policies.datasets
            unknown = [d for d in datasets if d not in known]
            if unknown or not datasets:
                raise WorkflowError("an API key's datasets must be known dataset ids (known: " + ", ".join(sorted(known)) + ")")
            scope = sorted(set(datasets))
        prefix = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self.ws.begin() as conn:
            owner = _owner(conn, actor, email)
            key = conn.execute(insert(API_KEYS).values(
                prefix=prefix, digest=_digest(secret), user_id=owner, name=label,
                datasets=json.dumps(scope) if scope is not None else None, created_at=iso(now))).inserted_primary_key
            assert key is not None
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.id == int(key[0]))).one()
            address = conn.execute(select(USERS.c.email).where(USERS.c.id == owner)).scalar_one()
            audit.append(conn, at=now, actor=actor.label, action="api_key.create", target=f"api_key:{row.id}", outcome="ok",
                         details={"user": owner, "prefix": prefix, "datasets": scope})
        return ApiKeyRecord.from_row(row, address), f"{API_KEY_MARK}{prefix}_{secret}"

    def list_api_keys(self, *, actor: Actor, email: str | None = None) -> list[ApiKeyRecord]:
        with self.ws.connect() as conn:
            owner = _owner(conn, actor, email)
            address = conn.execute(select(USERS.c.email).where(USERS.c.id == owner)).scalar_one()
            rows = conn.execute(select(API_KEYS).where(API_KEYS.c.user_id == owner).order_by(API_KEYS.c.id)).all()
            conn.rollback()
        return [ApiKeyRecord.from_row(r, address) for r in rows]

    def revoke_api_key(self, *, actor: Actor, now: datetime, key_id: int) -> ApiKeyRecord:
        """Revoke a key: its owner or an administrator. Someone else's key is reported as not
        found, so ids cannot be probed."""
        with self.ws.begin() as conn:
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.id == key_id)).first()
            if row is None or (row.user_id != actor.user_id and not actor.has(Role.ADMIN)):
                raise NotFoundError(f"no API key with id {key_id}")
            if row.revoked_at is None:
                conn.execute(update(API_KEYS).where(API_KEYS.c.id == key_id).values(revoked_at=iso(now)))
                audit.append(conn, at=now, actor=actor.label, action="api_key.revoke", target=f"api_key:{key_id}", outcome="ok")
            row = conn.execute(select(API_KEYS).where(API_KEYS.c.id == key_id)).one()
            address = conn.execute(select(USERS.c.email).where(USERS.c.id == row.user_id)).scalar_one()
        self.cache.forget_user(row.user_id)
        return ApiKeyRecord.from_row(row, address)


def _target(user: Any, address: str) -> str:
    return f"user:{user.id}" if user is not None else f"email:{address}"


def _owner(conn: Connection, actor: Actor, email: str | None) -> str:
    """The user an API-key operation is about: the actor, or another user for an administrator."""
    if email is None or (actor.email is not None and normalise_email(email) == actor.email):
        if actor.user_id is None:
            raise WorkflowError("the local operator has no API keys of its own; name the user")
        return actor.user_id
    actor.require(Role.ADMIN)
    address = normalise_email(email)
    row = conn.execute(select(USERS.c.id).where(USERS.c.email == address)).first()
    if row is None:
        raise NotFoundError(f"no user with the address {address}")
    return str(row.id)
