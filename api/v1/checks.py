"""Access checks for loaders and people: one resource, or up to 100,000 in one call."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from api import errors
from api.deps import WS, Caller, now
from api.schemas import BatchCheckIn, BatchCheckOut, CheckIn, CheckOut, DecisionGroup
from governance.approvals import state
from governance.audit.chain import AuditEvent
from governance.auth.service import Principal
from governance.policy.decision import Decision
from governance.workspace import Workspace

router = APIRouter(tags=["checks"], responses=errors.AUTHENTICATED)


@router.post("/check", response_model=CheckOut, summary="May the caller do this to one resource?")
async def check(body: CheckIn, caller: Caller, ws: WS) -> Response:
    """Decides from the caller's stored state; a denial is audited. The answer is the engine's
    decision object: effect, reasons (code, clause, provenance), obligations, remedies."""
    # The hot path: an async route with one explicit hop to the thread pool for the blocking
    # service call (a sync route costs FastAPI two more hops; ADR 004).
    out, audited = await run_in_threadpool(_check, body, caller, ws)
    await _durable(audited)
    return out


async def _durable(audited: Future[AuditEvent] | None) -> None:
    """Wait, without holding a thread, until a denial's audit event is committed. SECURITY: a
    failed audit raises here, so the caller gets an error instead of an unaudited answer."""
    if audited is not None:
        await asyncio.wait_for(asyncio.wrap_future(audited), timeout=30)


def _check(body: CheckIn, caller: Principal, ws: Workspace) -> tuple[Response, Future[AuditEvent] | None]:
    result = state.check(ws, email=caller.email, resources=[body.resource], action=body.action, purpose=body.purpose,
                         destination=body.destination, now=now(), actor=caller.actor.label, datasets=caller.datasets,
                         defer_audit=True)
    out = CheckOut(resource=body.resource, decision=result.decisions[0])
    # Serialised in the worker thread, as the model says (response_model documents it)
    return Response(out.model_dump_json(), media_type="application/json"), result.audit


@router.post("/check/batch", response_model=BatchCheckOut, summary="Check many resources at once")
async def check_batch(body: BatchCheckIn, caller: Caller, ws: WS) -> Response:
    """Resources sharing a decision are grouped (permits first), so 40,000 files of one subset
    come back as one decision and the list of files."""
    out, audited = await run_in_threadpool(_check_batch, body, caller, ws)
    await _durable(audited)
    return out


def _check_batch(body: BatchCheckIn, caller: Principal, ws: Workspace) -> tuple[Response, Future[AuditEvent] | None]:
    result = state.check(ws, email=caller.email, resources=body.resources, action=body.action, purpose=body.purpose,
                         destination=body.destination, now=now(), actor=caller.actor.label, datasets=caller.datasets,
                         defer_audit=True)
    groups: dict[int, tuple[Decision, list[str]]] = {}
    for resource, decision in zip(body.resources, result.decisions, strict=True):
        found = groups.get(id(decision))
        if found is None:
            groups[id(decision)] = (decision, [resource])
        else:
            found[1].append(resource)
    merged: dict[Decision, list[str]] = {}
    for decision, resources in groups.values():  # equal decisions held as distinct objects merge here
        merged.setdefault(decision, []).extend(resources)
    ordered = sorted(merged.items(), key=lambda kv: kv[0].effect != "permit")
    out = BatchCheckOut(action=body.action, purpose=body.purpose, checked=len(body.resources),
                        permitted=len(body.resources) - result.denied, denied=result.denied,
                        groups=[DecisionGroup(effect=d.effect, decision=d, resources=r) for d, r in ordered])
    # Serialised here, in the worker thread: 100,000 resources must not stall the event loop.
    return Response(out.model_dump_json(), media_type="application/json"), result.audit
