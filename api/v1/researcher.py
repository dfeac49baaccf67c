"""What a researcher does for themselves: requests, grants, agreements, signed forms, e-mail
verification, public keys and derivatives. Approvers and auditors see more through the same
routes, as the services allow."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, UploadFile, status
from fastapi.responses import HTMLResponse

from api import errors
from api.deps import WS, Caller, client_label, now
from api.schemas import (
    AcceptanceOut,
    AcceptanceRecordOut,
    AcceptIn,
    ArtefactIn,
    ArtefactOut,
    ConfirmEmailIn,
    FormOut,
    GrantOut,
    Message,
    NoteIn,
    NoteOut,
    Page,
    PublicKeyIn,
    PublicKeyOut,
    RequestIn,
    RequestOut,
)
from api.v1.common import Cursor, Id, Limit, paginate
from governance.approvals import workflow
from governance.errors import GovernanceError, WorkflowError
from governance.identity import publickeys
from governance.identity import service as identity

router = APIRouter(tags=["researchers"], responses=errors.AUTHENTICATED)
MAX_UPLOAD = 10 * 1024 * 1024
State = Annotated[str | None, Query(pattern="^(pending|approved|denied|withdrawn)$")]
DatasetQ = Annotated[str | None, Query(max_length=64)]


@router.get("/requests", response_model=Page[RequestOut], summary="Requests the caller may see, oldest first")
def list_requests(caller: Caller, ws: WS, state: State = None, dataset: DatasetQ = None, cursor: Cursor = None,
                  limit: Limit = 100) -> dict[str, Any]:
    """A researcher sees their own; an approver also those of the datasets they steward; an
    auditor every request."""
    items = workflow.list_requests(ws, actor=caller.actor, state=state, dataset_id=dataset)
    return paginate(items, cursor=cursor, limit=limit, out=RequestOut.of)


@router.post("/requests", response_model=RequestOut, status_code=status.HTTP_201_CREATED, summary="Ask for access")
def create_request(body: RequestIn, caller: Caller, ws: WS) -> RequestOut:
    """Subsets of one dataset for a purpose and a project; approved at once where the policy
    approves automatically (GeneBody Test10)."""
    return RequestOut.of(workflow.request_access(ws, actor=caller.actor, now=now(), email=caller.email, dataset_id=body.dataset,
                                                 subsets=body.subsets, purpose=body.purpose, project=body.project))


@router.get("/requests/{request_id}", response_model=RequestOut, summary="One request")
def get_request(request_id: Id, caller: Caller, ws: WS) -> RequestOut:
    return RequestOut.of(workflow.get_request(ws, actor=caller.actor, request_id=request_id))


@router.post("/requests/{request_id}/withdraw", response_model=RequestOut, summary="Take back a pending request")
def withdraw(request_id: Id, caller: Caller, ws: WS) -> RequestOut:
    return RequestOut.of(workflow.withdraw(ws, actor=caller.actor, now=now(), request_id=request_id))


@router.get("/requests/{request_id}/notes", response_model=list[NoteOut], summary="Questions and answers on a request")
def list_notes(request_id: Id, caller: Caller, ws: WS) -> list[NoteOut]:
    return [NoteOut.of(n) for n in workflow.list_notes(ws, actor=caller.actor, request_id=request_id)]


@router.post("/requests/{request_id}/notes", response_model=NoteOut, status_code=status.HTTP_201_CREATED,
             summary="Answer an approver's question on your pending request")
def reply(request_id: Id, body: NoteIn, caller: Caller, ws: WS) -> NoteOut:
    note = workflow.reply(ws, actor=caller.actor, now=now(), request_id=request_id, text=body.text)
    return next(NoteOut.of(n) for n in workflow.list_notes(ws, actor=caller.actor, request_id=request_id) if n.id == note)


@router.get("/grants", response_model=Page[GrantOut], summary="Grants the caller may see")
def list_grants(caller: Caller, ws: WS, dataset: DatasetQ = None, active: bool = False, cursor: Cursor = None,
                limit: Limit = 100) -> dict[str, Any]:
    items = workflow.list_grants(ws, actor=caller.actor, now=now(), dataset_id=dataset, active=active)
    return paginate(items, cursor=cursor, limit=limit, out=GrantOut.of)


@router.get("/me/acceptances", response_model=list[AcceptanceRecordOut], summary="The caller's agreement acceptances")
def list_acceptances(caller: Caller, ws: WS) -> list[AcceptanceRecordOut]:
    return [AcceptanceRecordOut.model_validate(a) for a in workflow.list_acceptances(ws, actor=caller.actor)]


@router.post("/agreements/{dataset_id}/accept", response_model=AcceptanceOut, status_code=status.HTTP_201_CREATED,
             summary="Accept the current agreement of a dataset")
def accept(dataset_id: str, body: AcceptIn, request: Request, caller: Caller, ws: WS) -> AcceptanceOut:
    return AcceptanceOut.of(workflow.accept_agreement(ws, actor=caller.actor, now=now(), email=caller.email, dataset_id=dataset_id,
                                                      version=body.version, client=client_label(request) or "api"))


@router.post("/forms/{dataset_id}", response_model=FormOut, status_code=status.HTTP_201_CREATED,
             summary="Upload a signed agreement form (PDF, PNG or JPEG, at most 10 MiB)")
def upload_form(dataset_id: str, file: UploadFile, caller: Caller, ws: WS) -> FormOut:
    data = file.file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise WorkflowError(f"the signed form is larger than {MAX_UPLOAD:,} bytes")
    return FormOut.of(workflow.upload_form(ws, actor=caller.actor, now=now(), email=caller.email, dataset_id=dataset_id, data=data))


@router.get("/forms", response_model=Page[FormOut], summary="Signed forms the caller may see")
def list_forms(caller: Caller, ws: WS, dataset: DatasetQ = None, pending: bool = False, cursor: Cursor = None,
               limit: Limit = 100) -> dict[str, Any]:
    items = workflow.list_forms(ws, actor=caller.actor, dataset_id=dataset, pending=pending)
    return paginate(items, cursor=cursor, limit=limit, out=FormOut.of)


@router.post("/me/email/verification", response_model=Message, responses=errors.responses(503),
             summary="Mail a verification link to the caller's address")
def send_verification(request: Request, caller: Caller, ws: WS) -> Message:
    link = request.app.state.verify_url or str(request.url_for("verify_email_page"))
    identity.send_verification(engine=ws, mailer=ws.mailer, secret=ws.token_secret, now=now(), user_id=caller.user_id,
                               link=link, actor=caller.actor.label)
    return Message(detail=f"a single-use link was sent to {caller.email}")


@router.get("/verify-email", response_class=HTMLResponse, name="verify_email_page", include_in_schema=False)
def verify_email_page(token: Annotated[str, Query(max_length=2048)] = "") -> HTMLResponse:
    """The page a mailed link opens. Opening it changes nothing (mail scanners follow links);
    the button posts the token."""
    page = ("<!doctype html><html><head><meta charset=utf-8><title>Verify your e-mail address</title></head><body>"
            "<h1>Verify your e-mail address</h1><form method=post action=verify-email/confirm>"
            f"<input type=hidden name=token value=\"{escape(token)}\"><button type=submit>Verify</button></form></body></html>")
    return HTMLResponse(page, headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


@router.post("/verify-email", response_model=Message, responses=errors.responses(400), summary="Redeem a verification link's token")
def verify_email(body: ConfirmEmailIn, ws: WS) -> Message:
    user = identity.verify_email(engine=ws, secret=ws.token_secret, now=now(), token=body.token)
    return Message(detail=f"{user.email} is verified")


@router.post("/verify-email/confirm", response_class=HTMLResponse, include_in_schema=False)
def verify_email_form(ws: WS, token: Annotated[str, Form(max_length=2048)]) -> HTMLResponse:
    """The verification page's button (a plain form post, for browsers)."""
    try:
        user = identity.verify_email(engine=ws, secret=ws.token_secret, now=now(), token=token)
    except GovernanceError as exc:
        return HTMLResponse(f"<!doctype html><title>Not verified</title><h1>Not verified</h1><p>{escape(str(exc))}</p>",
                            status_code=400)
    return HTMLResponse(f"<!doctype html><title>Verified</title><h1>{escape(user.email)} is verified</h1>")


@router.get("/me/keys", response_model=list[PublicKeyOut], summary="The caller's registered public keys")
def list_keys(caller: Caller, ws: WS) -> list[PublicKeyOut]:
    return [PublicKeyOut.of(k) for k in publickeys.list_public_keys(ws, actor=caller.actor)]


@router.post("/me/keys", response_model=PublicKeyOut, status_code=status.HTTP_201_CREATED,
             summary="Register an X25519 public key (Crypt4GH format) for key release")
def register_key(body: PublicKeyIn, caller: Caller, ws: WS) -> PublicKeyOut:
    return PublicKeyOut.of(publickeys.register_public_key(ws, actor=caller.actor, now=now(), key=body.key, name=body.name))


@router.delete("/me/keys/{key_id}", response_model=PublicKeyOut, summary="Revoke a public key")
def revoke_key(key_id: Id, caller: Caller, ws: WS) -> PublicKeyOut:
    return PublicKeyOut.of(publickeys.revoke_public_key(ws, actor=caller.actor, now=now(), key_id=key_id))


@router.post("/artefacts", response_model=ArtefactOut, status_code=status.HTTP_201_CREATED,
             summary="Register a derivative with its lineage")
def register_artefact(body: ArtefactIn, caller: Caller, ws: WS) -> ArtefactOut:
    """Inputs are subsets (`huge100k/flux_batch1`), file globs (`shhq:SHHQ-1.0/00*.png`) or other
    artefacts (`artefact:<id>`); unknown inputs and cycles are refused."""
    return ArtefactOut.of(workflow.register_artefact(ws, actor=caller.actor, now=now(), ident=body.id, inputs=body.inputs,
                                                     description=body.description))


@router.get("/artefacts/{artefact_id}", response_model=ArtefactOut, summary="An artefact and its lineage")
def get_artefact(artefact_id: str, caller: Caller, ws: WS) -> ArtefactOut:
    return ArtefactOut.of(workflow.get_artefact(ws, actor=caller.actor, ident=artefact_id))
