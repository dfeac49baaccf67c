"""The console's request dependencies: the session from its cookie, and CSRF-checked forms.

They parse and look up; the core's `ConsoleSessions` decides whether a cookie is live and a
token right, and the workflow services decide everything else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote, unquote

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import FormData

from governance.auth.console import ConsoleSession, ConsoleSessions
from governance.auth.service import AuthenticationError
from governance.errors import ForbiddenError
from governance.workspace import Workspace

MAX_UPLOAD = 10 * 1024 * 1024
FLASH = "gov_flash"
LOGIN_CSRF = "gov_login_csrf"


class LoginRequired(Exception):
    """No live console session: the browser is sent to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__("log in first")


class CsrfError(ForbiddenError):
    """A form without the right CSRF token, or posted from another site."""

    def __init__(self) -> None:
        super().__init__("the form was refused: it did not come from this console (its security token is missing or wrong); "
                         "reload the page and try again")


def now() -> datetime:
    return datetime.now(UTC)


def sessions(request: Request) -> ConsoleSessions:
    found: ConsoleSessions | None = getattr(request.app.state, "console_sessions", None)
    if found is None:
        ws: Workspace = request.app.state.workspace
        found = request.app.state.console_sessions = ConsoleSessions(ws)
    return found


def cookie_name(request: Request) -> str:
    # The __Host- prefix makes the browser insist on Secure, Path=/ and no Domain.
    return "__Host-gov_console" if sessions(request).settings.console_secure_cookie else "gov_console"


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int | None,
               path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, secure=sessions(request).settings.console_secure_cookie,
                        httponly=True, samesite="lax")


def flash(request: Request, response: Response, message: str, *, kind: str = "ok") -> None:
    """A one-shot message for the next page (our own text, never the request's)."""
    set_cookie(request, response, FLASH, quote(f"{kind}:{message[:500]}"), max_age=60, path="/console")


def client_label(request: Request) -> str:
    host = request.client.host if request.client is not None else "unknown"
    return f"{host} {request.headers.get('user-agent', '')[:120]}".strip()


async def current(request: Request) -> ConsoleSession:
    """The live console session of this browser, or `LoginRequired`."""
    cookie = request.cookies.get(cookie_name(request))
    if not cookie:
        raise LoginRequired(request.url.path)
    try:
        session = await run_in_threadpool(sessions(request).resume, cookie, now=now())
    except AuthenticationError:
        raise LoginRequired(request.url.path) from None
    request.state.console = session
    read_flash(request)
    return session


def read_flash(request: Request) -> None:
    """Pick up the one-shot message the previous response left (the page clears it)."""
    raw = request.cookies.get(FLASH)
    if raw:
        kind, _, text = unquote(raw).partition(":")
        request.state.flash = {"kind": "error" if kind == "error" else "ok", "text": text[:500]}


def same_origin(request: Request) -> bool:
    """Whether a state-changing request came from a page of this console. Browsers send
    Sec-Fetch-Site and Origin on every POST; where either is present it must say "here"."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is not None:
        host = request.headers.get("host", "")
        return origin in (f"{request.url.scheme}://{host}", f"https://{host}", f"http://{host}")
    return True


async def posted(request: Request, session: Annotated[ConsoleSession, Depends(current)]) -> FormData:
    """The submitted form, once its CSRF token and origin are checked."""
    if not same_origin(request):
        raise CsrfError()
    form = await request.form(max_files=1, max_fields=64, max_part_size=MAX_UPLOAD + 1024)
    token = form.get("csrf")
    if not isinstance(token, str) or not sessions(request).csrf_ok(session, token):
        raise CsrfError()
    return form


Console = Annotated[ConsoleSession, Depends(current)]
Posted = Annotated[FormData, Depends(posted)]


def text(form: FormData, name: str, *, limit: int = 4000) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def optional(form: FormData, name: str, *, limit: int = 320) -> str | None:
    return text(form, name, limit=limit) or None
