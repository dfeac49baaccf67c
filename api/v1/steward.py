"""Approvers' and licensors' routes: decide requests, revoke grants, terminate, waivers, confirm
hand signatures; and the auditors' chain verification. The services check every role."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, UploadFile, status

from api import errors
from api.deps import WS, Caller, now
from api.schemas import (
    ApproveIn,
    FormOut,
    GrantOut,
    Message,
    NoteIn,
    NoteOut,
    ReasonIn,
    RequestOut,
    TerminateIn,
    TerminationOut,
    VerifyOut,
    WaiverOut,
)
from api.v1.common import Id
from governance.approvals import workflow
from governance.audit.service import verify_audit
from governance.errors import WorkflowError

router = APIRouter(tags=["approvers"], responses=errors.AUTHENTICATED)
MAX_LETTER = 10 * 1024 * 1024
Opt = Annotated[str | None, Form(max_length=128)]


@router.post("/requests/{request_id}/approve", response_model=list[GrantOut], summary="Approve a pending request")
def approve(request_id: Id, body: ApproveIn, caller: Caller, ws: WS) -> list[GrantOut]:
    """One grant per subset, lasting the policy's default or fewer `days`. Of two approvers
    deciding at once exactly one wins; the other gets 409."""
    grants = workflow.approve(ws, actor=caller.actor, now=now(), request_id=request_id, days=body.days, note=body.note)
    return [GrantOut.of(g) for g in grants]


@router.post("/requests/{request_id}/deny", response_model=RequestOut, summary="Deny a pending request, with a reason")
def deny(request_id: Id, body: ReasonIn, caller: Caller, ws: WS) -> RequestOut:
    return RequestOut.of(workflow.deny(ws, actor=caller.actor, now=now(), request_id=request_id, reason=body.reason))


@router.post("/requests/{request_id}/ask", response_model=NoteOut, status_code=status.HTTP_201_CREATED,
             summary="Ask the requester for more; the request stays pending")
def ask(request_id: Id, body: NoteIn, caller: Caller, ws: WS) -> NoteOut:
    """The question is recorded on the request, audited, and mailed to the requester; if the
    mail cannot be sent nothing is recorded (503)."""
    note = workflow.ask_for_more(ws, actor=caller.actor, now=now(), request_id=request_id, question=body.text)
    return next(NoteOut.of(n) for n in workflow.list_notes(ws, actor=caller.actor, request_id=request_id) if n.id == note)


@router.post("/grants/{grant_id}/revoke", response_model=GrantOut, summary="Revoke a grant, with a reason")
def revoke(grant_id: Id, body: ReasonIn, caller: Caller, ws: WS) -> GrantOut:
    return GrantOut.of(workflow.revoke(ws, actor=caller.actor, now=now(), grant_id=grant_id, reason=body.reason))


@router.post("/terminations", response_model=TerminationOut, status_code=status.HTTP_201_CREATED,
             summary="Record a licensor's termination of a user's or an organisation's access")
def terminate(body: TerminateIn, caller: Caller, ws: WS) -> TerminationOut:
    return TerminationOut.of(workflow.terminate(ws, actor=caller.actor, now=now(), dataset_id=body.dataset, reason=body.reason,
                                                email=body.email, organisation=body.organisation))


@router.post("/waivers", response_model=WaiverOut, status_code=status.HTTP_201_CREATED,
             summary="Record a licensor's written permission (the letter uploaded)")
def record_waiver(
    caller: Caller, ws: WS, letter: UploadFile,
    terms: Annotated[str, Form(max_length=64, description="the dataset or source whose rule is waived")],
    action: Annotated[str, Form(max_length=32)],
    email: Annotated[str | None, Form(max_length=320)] = None, organisation: Opt = None, rule: Opt = None,
    destination: Opt = None, purpose: Opt = None, subset: Opt = None,
    expires: Annotated[datetime | None, Form()] = None,
) -> WaiverOut:
    data = letter.file.read(MAX_LETTER + 1)
    if len(data) > MAX_LETTER:
        raise WorkflowError(f"the licensor's letter is larger than {MAX_LETTER:,} bytes")
    if expires is not None and expires.tzinfo is None:
        raise WorkflowError("expires needs a time zone (e.g. a trailing Z)")
    return WaiverOut.of(workflow.record_waiver(ws, actor=caller.actor, now=now(), terms=terms, action=action, document=data,
                                               email=email, organisation=organisation, rule=rule, destination=destination,
                                               purpose=purpose, subset=subset, expires=expires))


@router.delete("/waivers/{waiver_id}", response_model=Message, summary="Revoke a waiver")
def revoke_waiver(waiver_id: Id, caller: Caller, ws: WS) -> Message:
    workflow.revoke_waiver(ws, actor=caller.actor, now=now(), waiver_id=waiver_id)
    return Message(detail=f"waiver {waiver_id} revoked")


@router.post("/forms/{form_id}/confirm", response_model=FormOut, summary="Confirm a form's hand signature")
def confirm_form(form_id: Id, caller: Caller, ws: WS) -> FormOut:
    return FormOut.of(workflow.confirm_signature(ws, actor=caller.actor, now=now(), form_id=form_id))


@router.get("/audit/verify", response_model=VerifyOut, summary="Verify the audit chain (auditors)")
def audit_verify(caller: Caller, ws: WS) -> VerifyOut:
    result = verify_audit(ws, actor=caller.actor)
    detail = "every link intact" if result.ok else (result.problem or "the chain is damaged")
    return VerifyOut(ok=result.ok, events=result.events, first_bad=result.first_bad, detail=detail)
