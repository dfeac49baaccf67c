"""The console's pages: login, the approval queue, a request with its evidence and the decision
forms, grants and revocation. Routes parse the form, call one `governance` service and render;
every rule (who may see or decide what) is the services'.

Forms post back and are answered with a redirect (303) to the page they came from, carrying a
one-shot message; a refused action re-renders its page with the reason and a 4xx status.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from api.console import session as web
from api.console.errors import status_of
from api.console.render import page
from api.console.session import Console, Posted, now
from governance.approvals import evidence, workflow
from governance.auth.service import AuthenticationError, RateLimitedError
from governance.errors import GovernanceError, WorkflowError
from governance.identity.roles import Role
from governance.workspace import Workspace

router = APIRouter(prefix="/console", include_in_schema=False)
STATES = ("pending", "approved", "denied", "withdrawn")


def _ws(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def _overseen(ws: Workspace, actor: Any) -> list[str]:
    """The datasets offered in a page's filter: those whose records the actor sees."""
    scope = actor.oversees()
    return sorted(ws.policies.datasets if scope is None else scope)


def _back(path: str, message: str, request: Request) -> RedirectResponse:
    response = RedirectResponse(path, status_code=303)
    web.flash(request, response, message)
    return response


async def _act(request: Request, done: Callable[[], str], back: str,
               rerender: Callable[[str, int], Any]) -> Response:
    """Run a service call in the thread pool; success redirects to `back` with its message,
    a refusal re-renders the page with the reason and the error's status."""
    try:
        message = await run_in_threadpool(done)
    except GovernanceError as exc:
        status = status_of(exc)
        if status >= 500:
            raise
        result: Response = await rerender(str(exc), status)
        return result
    return _back(back, message, request)


# ---------------------------------------------------------------- login and logout


def _safe_next(raw: str | None) -> str:
    """Only our own console paths: never another host (//evil, \\evil) or a scheme."""
    if raw and raw.startswith("/console") and not raw.startswith("//") and "\\" not in raw and raw.isprintable():
        return raw
    return "/console/requests"


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query's name
    token = secrets.token_urlsafe(24)
    web.read_flash(request)  # "You are logged out."
    response = page(request, "login.html", login_csrf=token, next_path=_safe_next(next))
    web.set_cookie(request, response, web.LOGIN_CSRF, token, max_age=3600, path="/console")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    if not web.same_origin(request):
        raise web.CsrfError()
    form = await request.form(max_files=0, max_fields=8)
    token, expected = form.get("csrf"), request.cookies.get(web.LOGIN_CSRF)
    if not isinstance(token, str) or not expected or not secrets.compare_digest(token, expected):
        raise web.CsrfError()
    email, password, target = web.text(form, "email", limit=320), form.get("password"), _safe_next(web.text(form, "next"))

    def again(message: str, status: int) -> Response:
        fresh = secrets.token_urlsafe(24)
        response = page(request, "login.html", status=status, error=message, email=email, login_csrf=fresh, next_path=target)
        web.set_cookie(request, response, web.LOGIN_CSRF, fresh, max_age=3600, path="/console")
        return response

    try:
        done = await run_in_threadpool(lambda: web.sessions(request).login(
            email=email, password=password if isinstance(password, str) else "", now=now(), client=web.client_label(request)))
    except RateLimitedError as exc:
        response = again(f"Too many failed attempts for this address; try again in {exc.retry_after} seconds.", 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AuthenticationError:
        return again("The e-mail address or password is wrong.", 401)
    response = RedirectResponse(target, status_code=303)
    web.set_cookie(request, response, web.cookie_name(request), done.cookie,
                   max_age=web.sessions(request).settings.console_session_seconds)
    response.delete_cookie(web.LOGIN_CSRF, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request, session: Console, form: Posted) -> Response:
    await run_in_threadpool(web.sessions(request).logout, session, now=now())
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(web.cookie_name(request), path="/")
    web.flash(request, response, "You are logged out.")
    return response


@router.get("")
@router.get("/")
def home() -> Response:
    return RedirectResponse("/console/requests", status_code=303)


# ---------------------------------------------------------------- the approval queue


def _int_or_none(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() and len(raw) < 6 else None


@router.get("/requests")
def queue(request: Request, session: Console, dataset: str | None = Query(None, max_length=64),
          state: str | None = Query("pending", max_length=16), older_than: str | None = Query(None, max_length=5)) -> Response:
    ws, actor = _ws(request), session.principal.actor
    chosen_state = state if state in STATES else None
    days = _int_or_none(older_than)
    items = workflow.list_requests(ws, actor=actor, state=chosen_state, dataset_id=dataset or None)
    moment = now()
    if days is not None:
        cutoff = (moment - timedelta(days=days)).isoformat()
        items = [r for r in items if r.created_at <= cutoff]
    visible_datasets = _overseen(ws, actor)
    return page(request, "requests.html", items=items, datasets=visible_datasets, states=STATES, dataset=dataset or "",
                state=chosen_state or "", older_than=older_than or "", now=moment,
                titles={k: d.title for k, d in ws.policies.datasets.items()})


# ---------------------------------------------------------------- one request


def _request_page(request: Request, session: Any, request_id: int, *, status: int = 200, error: str | None = None,
                  values: dict[str, str] | None = None) -> Response:
    ws = _ws(request)
    ev = evidence.request_evidence(ws, actor=session.principal.actor, now=now(), request_id=request_id)
    return page(request, "request.html", status=status, ev=ev, r=ev.request, error=error, values=values or {},
                can_confirm=session.principal.actor.has(Role.APPROVER, ev.request.dataset))


@router.get("/requests/{request_id}")
def request_detail(request: Request, session: Console, request_id: int) -> Response:
    return _request_page(request, session, request_id)


async def _decision(request: Request, session: Any, form: Any, request_id: int, verb: str) -> Response:
    ws, actor = _ws(request), session.principal.actor
    reason = web.text(form, "reason")
    raw_days = web.text(form, "days", limit=6)

    def run() -> str:
        if verb == "approve":
            if not reason:
                raise WorkflowError("a reason for the approval is required (it goes into the audit record)")
            if raw_days and not raw_days.isdigit():
                raise WorkflowError("days must be a whole number")
            grants = workflow.approve(ws, actor=actor, now=now(), request_id=request_id,
                                      days=int(raw_days) if raw_days else None, note=reason)
            return f"Request {request_id} approved: {len(grants)} grant{'s' if len(grants) != 1 else ''} made."
        if verb == "deny":
            workflow.deny(ws, actor=actor, now=now(), request_id=request_id, reason=reason)
            return f"Request {request_id} denied."
        workflow.ask_for_more(ws, actor=actor, now=now(), request_id=request_id, question=reason)
        return f"Your question on request {request_id} was recorded and mailed to the requester."

    async def rerender(message: str, status: int) -> Response:
        return await run_in_threadpool(lambda: _request_page(request, session, request_id, status=status, error=message,
                                                             values={"verb": verb, "reason": reason, "days": raw_days}))

    return await _act(request, run, f"/console/requests/{request_id}", rerender)


@router.post("/requests/{request_id}/approve")
async def approve(request: Request, session: Console, form: Posted, request_id: int) -> Response:
    return await _decision(request, session, form, request_id, "approve")


@router.post("/requests/{request_id}/deny")
async def deny(request: Request, session: Console, form: Posted, request_id: int) -> Response:
    return await _decision(request, session, form, request_id, "deny")


@router.post("/requests/{request_id}/ask")
async def ask(request: Request, session: Console, form: Posted, request_id: int) -> Response:
    return await _decision(request, session, form, request_id, "ask")


@router.post("/forms/{form_id}/confirm")
async def confirm_form(request: Request, session: Console, form: Posted, form_id: int) -> Response:
    ws, actor = _ws(request), session.principal.actor
    back = _safe_next(web.text(form, "back"))

    def run() -> str:
        workflow.confirm_signature(ws, actor=actor, now=now(), form_id=form_id)
        return f"The hand signature on form {form_id} is confirmed."

    async def rerender(message: str, status: int) -> Response:
        return page(request, "error.html", status=status, title="Not confirmed", detail=message)

    return await _act(request, run, back, rerender)


@router.get("/documents/{sha256}")
def document(request: Request, session: Console, sha256: str) -> Response:
    media, data = evidence.document_for(_ws(request), actor=session.principal.actor, sha256=sha256)
    extension = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}.get(media, "bin")
    # SECURITY: always a download, never rendered in our origin; the type is what the bytes are
    return Response(data, media_type=media, headers={
        "Content-Disposition": f'attachment; filename="document-{sha256[:12]}.{extension}"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; sandbox"})


# ---------------------------------------------------------------- grants


GRANT_STATES = ("active", "expired", "revoked", "pending")


def _grants_page(request: Request, session: Any, *, dataset: str | None, status_filter: str | None, expiring: int | None,
                 code: int = 200, error: str | None = None) -> Response:
    ws, actor = _ws(request), session.principal.actor
    moment = now()
    items = workflow.list_grants(ws, actor=actor, now=moment, dataset_id=dataset or None)
    if status_filter in GRANT_STATES:
        items = [g for g in items if g.status == status_filter]
    if expiring is not None:
        items = evidence.expiring(items, now=moment, days=expiring)
    soon = {g.id for g in evidence.expiring(items, now=moment, days=30)}
    datasets = _overseen(ws, actor)
    query = urlencode({k: v for k, v in (("dataset", dataset), ("status", status_filter),
                                        ("expiring", str(expiring) if expiring is not None else None)) if v})
    return page(request, "grants.html", status=code, error=error, items=items, datasets=datasets, dataset=dataset or "",
                status_filter=status_filter or "", expiring=expiring, soon=soon, states=GRANT_STATES,
                back="/console/grants" + (f"?{query}" if query else ""),
                can_revoke={g.id for g in items if g.status in ("active", "pending") and actor.has(Role.APPROVER, g.scope.split("/")[0])})


@router.get("/grants")
def grants(request: Request, session: Console, dataset: str | None = Query(None, max_length=64),
           status: str | None = Query("active", max_length=16), expiring: str | None = Query(None, max_length=5)) -> Response:
    return _grants_page(request, session, dataset=dataset, status_filter=status, expiring=_int_or_none(expiring))


@router.post("/grants/{grant_id}/revoke")
async def revoke(request: Request, session: Console, form: Posted, grant_id: int) -> Response:
    ws, actor = _ws(request), session.principal.actor
    reason = web.text(form, "reason")
    back = _safe_next(web.text(form, "back") or "/console/grants")

    def run() -> str:
        g = workflow.revoke(ws, actor=actor, now=now(), grant_id=grant_id, reason=reason)
        return f"Grant {grant_id} ({g.scope} for {g.user}) revoked; their next check is refused."

    async def rerender(message: str, status: int) -> Response:
        return await run_in_threadpool(lambda: _grants_page(request, session, dataset=None, status_filter="active",
                                                            expiring=None, code=status, error=message))

    return await _act(request, run, back, rerender)
