"""Console sessions: a browser's login to the admin console, held in a cookie.

A console session is a row of `auth_sessions` of kind "console". The cookie carries
`<session id>.<secret>`; only the secret's sha256 is stored. It never mints bearer tokens
(`Authenticator.refresh` refuses it), and bearer tokens never name it. It ends at logout, at a
password change, when the account is disabled, after `console_idle_seconds` without a request,
and `console_session_seconds` after login, whichever comes first.

Forms carry a CSRF token bound to the session (an HMAC of its id under the deployment's token
key), checked in constant time on every state-changing request. Sensitive operations (a
licensor's termination) need the password re-entered within `console_reauth_seconds`; the
re-entry counts against the same failed-login throttle as a login.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from governance.approvals.records import iso, parse_time
from governance.audit import store as audit
from governance.auth.service import SESSIONS, AuthenticationError, Principal, _actor, _digest
from governance.errors import ForbiddenError
from governance.workspace import Workspace

_SEEN_EVERY = timedelta(seconds=30)  # how often a busy session's last-seen time is written


class ReauthenticationRequired(ForbiddenError):
    """The operation needs the password entered again (it has not been, or too long ago)."""


@dataclass(frozen=True)
class ConsoleSession:
    """A live console session: who holds it, and the CSRF token its forms must carry."""

    id: str
    principal: Principal
    csrf: str
    expires_at: datetime
    idle_until: datetime
    reauth_at: datetime | None


@dataclass(frozen=True)
class ConsoleLogin:
    cookie: str  # the cookie's value: never logged, never shown
    session: ConsoleSession


class ConsoleSessions:
    """Console logins over the workspace's authenticator (one per process, like it)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.settings = ws.settings
        self.auth = ws.authenticator

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self.ws.token_secret, b"console-csrf:" + session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: ConsoleSession, presented: str | None) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(session.csrf, presented)

    def login(self, *, email: str, password: str, now: datetime, client: str) -> ConsoleLogin:
        """Check the password (throttled and audited like any login) and open a console session."""
        user_id, _ = self.auth.check_password(email=email, password=password, now=now, client=client)
        session_id, secret = self.auth.open_session(user_id=user_id, now=now, client=client, kind="console",
                                                    lifetime=self.settings.console_session_seconds)
        session = self.resume(f"{session_id}.{secret}", now=now)
        return ConsoleLogin(cookie=f"{session_id}.{secret}", session=session)

    def resume(self, cookie: str | None, *, now: datetime) -> ConsoleSession:
        """The live session a cookie names, or `AuthenticationError` (one answer for every cause).
        An idle session is ended here, with an audit event."""
        session_id, sep, secret = (cookie or "").partition(".")
        if not sep or len(session_id) != 32 or not secret or len(secret) > 128:
            raise AuthenticationError()
        idle = timedelta(seconds=self.settings.console_idle_seconds)
        with self.ws.connect() as conn:
            row = conn.execute(select(SESSIONS).where(SESSIONS.c.id == session_id)).first()
            # SECURITY: compare digests in constant time; an unknown id costs the same comparison
            expected = row.refresh_digest if row is not None else "0" * 64
            if not hmac.compare_digest(expected, _digest(secret)) or row is None:
                raise AuthenticationError()
            if row.kind != "console" or row.revoked_at is not None:
                raise AuthenticationError()
            actor = _actor(conn, row.user_id)
            conn.rollback()
        expires = parse_time(row.expires_at) or now
        seen = parse_time(row.last_seen_at) or parse_time(row.created_at) or now
        if expires <= now or seen + idle <= now or actor is None:
            if expires <= now or seen + idle <= now:
                self._end(session_id, row.user_id, now, reason="expired" if expires <= now else "idle_timeout")
            raise AuthenticationError()
        if now - seen >= _SEEN_EVERY:
            with self.ws.begin() as conn:
                conn.execute(update(SESSIONS).where(SESSIONS.c.id == session_id).values(last_seen_at=iso(now)))
            seen = now
        return ConsoleSession(id=session_id, principal=Principal(actor=actor, kind="console", credential=session_id),
                              csrf=self.csrf_token(session_id), expires_at=expires, idle_until=min(seen + idle, expires),
                              reauth_at=parse_time(row.reauth_at))

    def _end(self, session_id: str, user_id: str, now: datetime, *, reason: str) -> None:
        with self.ws.begin() as conn:
            done = conn.execute(update(SESSIONS).where(SESSIONS.c.id == session_id, SESSIONS.c.revoked_at.is_(None))
                                .values(revoked_at=iso(now)))
            if done.rowcount == 1:
                audit.append(conn, at=now, actor=f"user:{user_id}", action="auth.session_end", target=f"session:{session_id}",
                             outcome="ok", reasons=[reason])

    def logout(self, session: ConsoleSession, *, now: datetime) -> None:
        with self.ws.begin() as conn:
            conn.execute(update(SESSIONS).where(SESSIONS.c.id == session.id, SESSIONS.c.revoked_at.is_(None))
                         .values(revoked_at=iso(now)))
            audit.append(conn, at=now, actor=session.principal.actor.label, action="auth.logout", target=f"session:{session.id}",
                         outcome="ok", details={"kind": "console"})

    def reauthenticate(self, session: ConsoleSession, *, password: str, now: datetime, client: str) -> ConsoleSession:
        """Check the session holder's password again; a right one opens the re-authentication
        window. A wrong one is a failed login (audited, throttled) and `AuthenticationError`."""
        email = session.principal.email
        self.auth.check_password(email=email, password=password, now=now, client=client)
        with self.ws.begin() as conn:
            conn.execute(update(SESSIONS).where(SESSIONS.c.id == session.id).values(reauth_at=iso(now)))
            audit.append(conn, at=now, actor=session.principal.actor.label, action="auth.reauthenticate",
                         target=f"session:{session.id}", outcome="ok")
        return ConsoleSession(id=session.id, principal=session.principal, csrf=session.csrf, expires_at=session.expires_at,
                              idle_until=session.idle_until, reauth_at=now)

    def require_recent_reauth(self, session: ConsoleSession, *, now: datetime) -> None:
        window = timedelta(seconds=self.settings.console_reauth_seconds)
        if session.reauth_at is None or session.reauth_at + window <= now:
            raise ReauthenticationRequired("this needs your password again: enter it with the form")
