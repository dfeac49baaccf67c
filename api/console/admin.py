"""Console pages for licensors' actions and oversight: terminations (with the password entered
again), waivers with their letters, and the audit chain's state with its recent events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from api.console import session as web
from api.console.pages import _act, _ws
from api.console.render import page
from api.console.session import Console, Posted, now
from governance.approvals import evidence, workflow
from governance.audit.service import chain_state, people, recent_events
from governance.errors import ForbiddenError, WorkflowError
from governance.identity.roles import Actor, Role
from governance.types import Action, Destination

router = APIRouter(prefix="/console", include_in_schema=False)
FAMILIES = ("access.", "agreement.", "api_key.", "artefact.", "auth.", "email.", "form.", "grant.", "key.", "keys.",
            "manifest.", "public_key.", "request.", "role.", "user.", "waiver.")


def _decidable(ws: Any, actor: Actor, *, sources: bool = False) -> list[str]:
    """The datasets (and, for waivers, sources) this actor may act for as an approver."""
    names = sorted(ws.policies.datasets) + (sorted(ws.policies.sources) if sources else [])
    return [n for n in names if actor.has(Role.APPROVER, n)]


# ---------------------------------------------------------------- terminations


def _terminations_page(request: Request, session: Any, *, status: int = 200, error: str | None = None,
                       values: dict[str, str] | None = None) -> Response:
    ws, actor = _ws(request), session.principal.actor
    items = evidence.list_terminations(ws, actor=actor)
    return page(request, "terminations.html", status=status, error=error, items=items, values=values or {},
                datasets=_decidable(ws, actor), reauth_minutes=max(1, ws.settings.console_reauth_seconds // 60))


@router.get("/terminations")
def terminations(request: Request, session: Console) -> Response:
    return _terminations_page(request, session)


@router.post("/terminations")
async def terminate(request: Request, session: Console, form: Posted) -> Response:
    ws, sessions = _ws(request), web.sessions(request)
    values = {k: web.text(form, k, limit=4000) for k in ("dataset", "holder", "who", "reason")}
    password = form.get("password")

    def run() -> str:
        target = values["who"]
        if not target:
            raise WorkflowError("name the user (their e-mail address) or the organisation (its id) whose access ends")
        # SECURITY: termination is irreversible in effect; the password is entered again, checked
        # and throttled like a login, before the licensor's decision is recorded.
        live = sessions.reauthenticate(session, password=password if isinstance(password, str) else "", now=now(),
                                       client=web.client_label(request))
        sessions.require_recent_reauth(live, now=now())
        by_org = values["holder"] == "organisation"
        done = workflow.terminate(ws, actor=live.principal.actor, now=now(), dataset_id=values["dataset"],
                                  reason=values["reason"], email=None if by_org else target,
                                  organisation=target if by_org else None)
        return (f"Access of {done.holder} to {done.dataset} is terminated; {done.grants_revoked} grant"
                f"{'' if done.grants_revoked == 1 else 's'} revoked.")

    async def rerender(message: str, status: int) -> Response:
        if status == 401:  # a wrong password here is not a lost session
            message, status = "The password is wrong; nothing was recorded.", 403
        return await run_in_threadpool(lambda: _terminations_page(request, session, status=status, error=message, values=values))

    return await _act(request, run, "/console/terminations", rerender)


# ---------------------------------------------------------------- waivers


def _waivers_page(request: Request, session: Any, *, status: int = 200, error: str | None = None,
                  values: dict[str, str] | None = None) -> Response:
    ws, actor = _ws(request), session.principal.actor
    items = evidence.list_waivers(ws, actor=actor)
    return page(request, "waivers.html", status=status, error=error, items=items, values=values or {},
                terms=_decidable(ws, actor, sources=True), actions=[a.value for a in Action], now=now(),
                destinations=[d.value for d in Destination], purposes=sorted(ws.policies.purpose_descriptions),
                can_revoke={w.id for w in items if w.revoked_at is None and actor.has(Role.APPROVER, w.dataset)})


@router.get("/waivers")
def waivers(request: Request, session: Console) -> Response:
    return _waivers_page(request, session)


def _expiry(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw if "T" in raw or len(raw) > 10 else raw + "T23:59:59+00:00")
    except ValueError:
        raise WorkflowError(f"the expiry '{raw[:40]}' is not a date (YYYY-MM-DD)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=now().tzinfo)


@router.post("/waivers")
async def record_waiver(request: Request, session: Console, form: Posted) -> Response:
    ws, actor = _ws(request), session.principal.actor
    fields = ("terms", "action", "holder", "who", "rule", "destination", "purpose", "subset", "expires")
    values = {k: web.text(form, k, limit=320) for k in fields}
    letter = form.get("letter")
    data = await letter.read(web.MAX_UPLOAD + 1) if isinstance(letter, UploadFile) else b""

    def run() -> str:
        if not data:
            raise WorkflowError("attach the licensor's letter (PDF, PNG or JPEG)")
        if len(data) > web.MAX_UPLOAD:
            raise WorkflowError(f"the licensor's letter is larger than {web.MAX_UPLOAD:,} bytes")
        if not values["who"]:
            raise WorkflowError("name the user (e-mail address) or organisation (id) who holds the waiver")
        by_org = values["holder"] == "organisation"
        w = workflow.record_waiver(ws, actor=actor, now=now(), terms=values["terms"], action=values["action"], document=data,
                                   email=None if by_org else values["who"], organisation=values["who"] if by_org else None,
                                   rule=values["rule"] or None, destination=values["destination"] or None,
                                   purpose=values["purpose"] or None, subset=values["subset"] or None,
                                   expires=_expiry(values["expires"]))
        return f"Waiver {w.id} recorded: {w.holder} may {w.action} under {w.dataset}."

    async def rerender(message: str, status: int) -> Response:
        return await run_in_threadpool(lambda: _waivers_page(request, session, status=status, error=message, values=values))

    return await _act(request, run, "/console/waivers", rerender)


@router.post("/waivers/{waiver_id}/revoke")
async def revoke_waiver(request: Request, session: Console, form: Posted, waiver_id: int) -> Response:
    ws, actor = _ws(request), session.principal.actor

    def run() -> str:
        workflow.revoke_waiver(ws, actor=actor, now=now(), waiver_id=waiver_id)
        return f"Waiver {waiver_id} revoked."

    async def rerender(message: str, status: int) -> Response:
        return await run_in_threadpool(lambda: _waivers_page(request, session, status=status, error=message))

    return await _act(request, run, "/console/waivers", rerender)


# ---------------------------------------------------------------- the audit chain


@router.get("/audit")
def audit(request: Request, session: Console, action: str | None = Query(None, max_length=64),
          before: str | None = Query(None, max_length=12)) -> Response:
    ws, actor = _ws(request), session.principal.actor
    if not actor.has(Role.AUDITOR):
        raise ForbiddenError("the audit chain is for auditors and administrators")
    state = chain_state(ws, actor=actor)
    cursor = int(before) if before is not None and before.isdigit() else None
    events = recent_events(ws, actor=actor, limit=50, before=cursor, action=action or None)
    return page(request, "audit.html", state=state, events=events, action=action or "",
                names=people(ws, actor=actor, events=events),
                older=events[-1].seq if len(events) == 50 else None, families=FAMILIES)


