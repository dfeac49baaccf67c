"""The approval workflow: agreements, forms, requests, grants, revocation, termination, waivers,
artefacts and origin tags.

Every operation is one unit of work (`ws.begin()`): the state change and its audit event commit
together or not at all. Decisions that can race (two approvers on one request, two revocations
of one grant) are conditional updates: exactly one succeeds, the other gets a `ConflictError`
naming who was first, and nothing of the loser is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from governance.approvals import documents
from governance.approvals.records import (
    ArtefactRecord,
    FormRecord,
    GrantRecord,
    NoteRecord,
    RequestRecord,
    TerminationRecord,
    WaiverRecord,
    iso,
)
from governance.audit import store as audit
from governance.errors import ConflictError, ForbiddenError, LineageError, NotFoundError, WorkflowError
from governance.identity.mail import Message
from governance.identity.roles import Actor, Role
from governance.identity.tokens import normalise_email
from governance.policy.compile import CDataset, CTerms
from governance.provenance.lineage import Provenance, parse_input
from governance.storage.tables import (
    AcceptanceRow,
    ArtefactRow,
    GrantRow,
    ManifestFileRow,
    OrganisationRow,
    RequestNoteRow,
    RequestRow,
    SignedFormRow,
    TerminationRow,
    UserRow,
    WaiverRow,
)
from governance.types import Action, Destination
from governance.workspace import Workspace

USERS = UserRow.__table__  # type: ignore[attr-defined]
ORGS = OrganisationRow.__table__  # type: ignore[attr-defined]
ACCEPTANCES = AcceptanceRow.__table__  # type: ignore[attr-defined]
FORMS = SignedFormRow.__table__  # type: ignore[attr-defined]
REQUESTS = RequestRow.__table__  # type: ignore[attr-defined]
NOTES = RequestNoteRow.__table__  # type: ignore[attr-defined]
GRANTS = GrantRow.__table__  # type: ignore[attr-defined]
TERMINATIONS = TerminationRow.__table__  # type: ignore[attr-defined]
WAIVERS = WaiverRow.__table__  # type: ignore[attr-defined]
ARTEFACTS = ArtefactRow.__table__  # type: ignore[attr-defined]
MANIFEST = ManifestFileRow.__table__  # type: ignore[attr-defined]

AUTOMATIC = "policy:automatic-approval"
_VERBS = {"approved": "request.approve", "denied": "request.deny", "withdrawn": "request.withdraw"}
MAX_TEXT = 4000
_ARTEFACT_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _glob_ok(pattern: str) -> bool:
    """Whether a lineage file glob is a plain relative path pattern inside a dataset."""
    parts = pattern.split("/")
    return (len(pattern) <= 1024 and pattern.isprintable() and "\\" not in pattern and not pattern.startswith("/")
            and all(p and p not in (".", "..") for p in parts))


# ---------------------------------------------------------------- lookups


def user_row(conn: Connection, email: str) -> Any:
    address = normalise_email(email)
    row = conn.execute(select(USERS).where(USERS.c.email == address)).first()
    if row is None:
        raise NotFoundError(f"no user with the address {address}")
    return row


def _who(conn: Connection, label: str | None) -> str:
    """An audit label as people read it: a user's address instead of their id."""
    if label is not None and label.startswith("user:"):
        return _email_of(conn, label[len("user:"):])
    return label or "someone"


def _email_of(conn: Connection, user_id: str) -> str:
    row = conn.execute(select(USERS.c.email).where(USERS.c.id == user_id)).first()
    return str(row.email) if row is not None else user_id


def dataset(ws: Workspace, name: str) -> CDataset:
    found = ws.policies.datasets.get(name)
    if found is None:
        raise WorkflowError(f"unknown dataset '{name}' (known: {', '.join(sorted(ws.policies.datasets))})")
    return found


def _terms(ws: Workspace, name: str) -> CTerms:
    found: CTerms | None = ws.policies.datasets.get(name) or ws.policies.sources.get(name)
    if found is None:
        raise WorkflowError(f"unknown dataset or source '{name}'")
    return found


def _text(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise WorkflowError(f"{what} is required")
    if len(value) > MAX_TEXT:
        raise WorkflowError(f"{what} is {len(value)} characters; the limit is {MAX_TEXT}")
    return value


def _sees(actor: Actor, user_id: str | None, ds: str) -> bool:
    """Whether a record of `user_id` under dataset `ds` is visible to the actor at all: its own,
    an approver of the dataset, an auditor. Anyone else is told it does not exist, so ids cannot
    be probed (a refusal would name the record's dataset)."""
    return (user_id is not None and user_id == actor.user_id) or actor.has(Role.AUDITOR) or actor.has(Role.APPROVER, ds)


def _self_or(actor: Actor, user_id: str, role: Role, ds: str | None = None) -> None:
    """The user acting for themselves, or someone holding `role`."""
    if actor.user_id != user_id:
        actor.require(role, ds)


# ---------------------------------------------------------------- agreements and forms


def accept_agreement(ws: Workspace, *, actor: Actor, now: datetime, email: str, dataset_id: str, version: str,
                     client: str) -> dict[str, str]:
    """Record that a user accepted the agreement `version` (its version name or sha256), which
    must be the current one: accepting an old text is refused, not silently upgraded."""
    ds = dataset(ws, dataset_id)
    if not ds.has_terms or ds.sha256 is None or ds.version is None:
        raise WorkflowError(f"{ds.title} has no recorded terms to accept")
    if version not in (ds.version, ds.sha256):
        raise WorkflowError(f"'{version}' is not the current {ds.title} agreement; the current one is version "
                            f"{ds.version} (sha256 {ds.sha256})")
    with ws.begin() as conn:
        user = user_row(conn, email)
        _self_or(actor, user.id, Role.ADMIN)
        conn.execute(insert(ACCEPTANCES).values(user_id=user.id, dataset=ds.id, version=ds.version, sha256=ds.sha256,
                                                accepted_at=iso(now), client=_text(client, "the client")[:256]))
        audit.append(conn, at=now, actor=actor.label, action="agreement.accept", target=f"user:{user.id}",
                     outcome="ok", details={"dataset": ds.id, "version": ds.version, "sha256": ds.sha256})
    return {"dataset": ds.id, "version": ds.version, "sha256": ds.sha256, "accepted_at": iso(now)}


def _needs_form(ds: CDataset) -> str | None:
    levels = {sub.requirement.agreement for sub in ds.subsets.values()}
    return "hand-signed" if "hand-signed" in levels else "signed" if "signed" in levels else None


def upload_form(ws: Workspace, *, actor: Actor, now: datetime, email: str, dataset_id: str, data: bytes) -> FormRecord:
    """Store a user's signed agreement form (PDF, PNG or JPEG, checked by content)."""
    ds = dataset(ws, dataset_id)
    if _needs_form(ds) is None or ds.sha256 is None:
        raise WorkflowError(f"{ds.title} needs no signed form")
    with ws.begin() as conn:
        user = user_row(conn, email)
        _self_or(actor, user.id, Role.ADMIN)
        doc = documents.store_document(conn, ws.documents_dir, data, what="signed form", now=now)
        key = conn.execute(insert(FORMS).values(user_id=user.id, dataset=ds.id, agreement_sha256=ds.sha256, document=doc.sha256,
                                                uploaded_at=iso(now))).inserted_primary_key
        assert key is not None
        audit.append(conn, at=now, actor=actor.label, action="form.upload", target=f"form:{key[0]}", outcome="ok",
                     details={"dataset": ds.id, "user": user.id, "document": doc.sha256, "media_type": doc.media_type,
                              "size": doc.size})
    return FormRecord(id=int(key[0]), user=user.email, dataset=ds.id, agreement_sha256=ds.sha256, document=doc.sha256,
                      uploaded_at=iso(now), confirmed_by=None, confirmed_at=None)


def confirm_signature(ws: Workspace, *, actor: Actor, now: datetime, form_id: int) -> FormRecord:
    """An approver confirms that a form bears the user's hand signature."""
    with ws.begin() as conn:
        row = conn.execute(select(FORMS).where(FORMS.c.id == form_id)).first()
        if row is None or not _sees(actor, row.user_id, row.dataset):
            raise NotFoundError(f"no signed form with id {form_id}")
        actor.require(Role.APPROVER, row.dataset)
        done = conn.execute(update(FORMS).where(FORMS.c.id == form_id, FORMS.c.confirmed_at.is_(None))
                            .values(confirmed_by=actor.label, confirmed_at=iso(now)))
        if done.rowcount != 1:
            raise ConflictError(f"form {form_id} was already confirmed by {_who(conn, row.confirmed_by)} at {row.confirmed_at}")
        audit.append(conn, at=now, actor=actor.label, action="form.confirm_signature", target=f"form:{form_id}",
                     outcome="ok", details={"dataset": row.dataset, "user": row.user_id})
        email = _email_of(conn, row.user_id)
    return FormRecord(id=row.id, user=email, dataset=row.dataset, agreement_sha256=row.agreement_sha256,
                      document=row.document, uploaded_at=row.uploaded_at, confirmed_by=actor.label, confirmed_at=iso(now))


# ---------------------------------------------------------------- requests


def request_access(ws: Workspace, *, actor: Actor, now: datetime, email: str, dataset_id: str, subsets: Sequence[str],
                   purpose: str, project: str) -> RequestRecord:
    """Ask for subsets of a dataset for a purpose. Where the policy approves automatically
    (GeneBody's Test10), the grant is made in the same transaction by the policy itself."""
    ds = dataset(ws, dataset_id)
    names = list(dict.fromkeys(subsets)) or sorted(ds.subsets)
    unknown = [s for s in names if s not in ds.subsets]
    if unknown:
        raise WorkflowError(f"{ds.id} has no subset {', '.join(repr(s) for s in unknown)} (known: {', '.join(sorted(ds.subsets))})")
    if purpose not in ws.policies.purpose_descriptions:
        raise WorkflowError(f"unknown purpose '{purpose}'")
    description = _text(project, "a project description")
    # A dataset without recorded terms can be asked for (the steward sees the demand) but
    # never granted (DESIGN §3.7).
    automatic = ds.has_terms and all(ds.subsets[s].requirement.approval == "automatic" for s in names)
    with ws.begin() as conn:
        user = user_row(conn, email)
        _self_or(actor, user.id, Role.ADMIN)
        key = conn.execute(insert(REQUESTS).values(
            user_id=user.id, dataset=ds.id, subsets=json.dumps(names), purpose=purpose, project=description,
            state="pending", created_at=iso(now))).inserted_primary_key
        assert key is not None
        request_id = int(key[0])
        audit.append(conn, at=now, actor=actor.label, action="request.create", target=f"request:{request_id}",
                     outcome="ok", details={"dataset": ds.id, "subsets": names, "purpose": purpose, "user": user.id})
        if automatic:
            _decide(conn, ws, request_id=request_id, by=AUTOMATIC, now=now, state="approved",
                    reason="the policy approves these subsets automatically")
        row = conn.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).one()
    return RequestRecord.from_row(row, user.email)


def _load_request(conn: Connection, request_id: int) -> Any:
    row = conn.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).first()
    if row is None:
        raise NotFoundError(f"no request with id {request_id}")
    return row


def _visible_request(conn: Connection, actor: Actor, request_id: int) -> Any:
    """A request the actor may see (see `_sees`); anyone else is told it does not exist."""
    row = _load_request(conn, request_id)
    if not _sees(actor, row.user_id, row.dataset):
        raise NotFoundError(f"no request with id {request_id}")
    return row


def _decide(conn: Connection, ws: Workspace, *, request_id: int, by: str, now: datetime, state: str, reason: str | None,
            days: int | None = None) -> list[int]:
    """Move a pending request to `state`; on approval, create its grants. Conditional on the
    request still being pending, so of two concurrent deciders exactly one gets here."""
    done = conn.execute(update(REQUESTS).where(REQUESTS.c.id == request_id, REQUESTS.c.state == "pending")
                        .values(state=state, decided_at=iso(now), decided_by=by, reason=reason))
    if done.rowcount != 1:
        row = _load_request(conn, request_id)
        who = f" by {_who(conn, row.decided_by)}" if row.decided_by else ""
        raise ConflictError(f"request {request_id} is already {row.state}{who}"
                            + (f" at {row.decided_at}" if row.decided_at else "") + "; nothing was changed")
    row = _load_request(conn, request_id)
    grant_ids: list[int] = []
    if state == "approved":
        ds = dataset(ws, row.dataset)
        if not ds.has_terms:
            raise WorkflowError(f"{ds.title} has no recorded terms, so nothing can be granted; record the licensor's terms "
                                "first, or deny the request")
        for sub in json.loads(row.subsets):
            policy_days = ds.subsets[sub].requirement.grant_days
            valid = days if days is not None else policy_days
            if policy_days is not None and valid is not None and valid > policy_days:
                raise WorkflowError(f"{ds.id}/{sub} grants last at most {policy_days} days under its policy")
            expires = iso(now + timedelta(days=valid)) if valid is not None else None
            key = conn.execute(insert(GRANTS).values(
                user_id=row.user_id, request_id=request_id, dataset=ds.id, scope=f"{ds.id}/{sub}", purpose=row.purpose,
                agreement_sha256=ds.sha256, approver=by, starts=iso(now), expires=expires)).inserted_primary_key
            assert key is not None
            grant_ids.append(int(key[0]))
    audit.append(conn, at=now, actor=by, action=_VERBS[state],
                 target=f"request:{request_id}", outcome="ok",
                 details={"dataset": row.dataset, "user": row.user_id, "grants": grant_ids, "reason": reason})
    return grant_ids


def approve(ws: Workspace, *, actor: Actor, now: datetime, request_id: int, days: int | None = None,
            note: str | None = None) -> list[GrantRecord]:
    """Approve a pending request: one grant per subset, lasting the policy's default (or fewer
    `days`). Only an approver of the request's dataset may."""
    with ws.begin() as conn:
        row = _visible_request(conn, actor, request_id)
        actor.require(Role.APPROVER, row.dataset)
        if actor.user_id is not None and actor.user_id == row.user_id and not actor.operator:
            raise ForbiddenError("an approver cannot approve their own request")
        ids = _decide(conn, ws, request_id=request_id, by=actor.label, now=now, state="approved",
                      reason=note.strip() if note else None, days=days)
        email = _email_of(conn, row.user_id)
        rows = conn.execute(select(GRANTS).where(GRANTS.c.id.in_(ids)).order_by(GRANTS.c.id)).all()
    return [GrantRecord.from_row(r, email, now) for r in rows]


def deny(ws: Workspace, *, actor: Actor, now: datetime, request_id: int, reason: str) -> RequestRecord:
    why = _text(reason, "a reason for the denial")
    with ws.begin() as conn:
        row = _visible_request(conn, actor, request_id)
        actor.require(Role.APPROVER, row.dataset)
        _decide(conn, ws, request_id=request_id, by=actor.label, now=now, state="denied", reason=why)
        row = _load_request(conn, request_id)
        email = _email_of(conn, row.user_id)
    return RequestRecord.from_row(row, email)


def withdraw(ws: Workspace, *, actor: Actor, now: datetime, request_id: int) -> RequestRecord:
    """The requester takes back a pending request."""
    with ws.begin() as conn:
        row = _visible_request(conn, actor, request_id)
        if actor.user_id != row.user_id and not actor.operator:
            raise ForbiddenError(f"only the requester can withdraw request {request_id}")
        _decide(conn, ws, request_id=request_id, by=actor.label, now=now, state="withdrawn", reason=None)
        row = _load_request(conn, request_id)
        email = _email_of(conn, row.user_id)
    return RequestRecord.from_row(row, email)


def _add_note(conn: Connection, row: Any, *, actor: Actor, now: datetime, kind: str, text: str) -> int:
    """Record a note of `kind` ("ask" or "reply") on a pending request, with its audit event."""
    if row.state != "pending":
        raise ConflictError(f"request {row.id} is already {row.state}; nothing was changed")
    key = conn.execute(insert(NOTES).values(request_id=row.id, at=iso(now), by=actor.label, kind=kind, text=text)
                       ).inserted_primary_key
    assert key is not None
    audit.append(conn, at=now, actor=actor.label, action=f"request.{kind}", target=f"request:{row.id}", outcome="ok",
                 details={"dataset": row.dataset, "user": row.user_id, "note": int(key[0])})
    return int(key[0])


def ask_for_more(ws: Workspace, *, actor: Actor, now: datetime, request_id: int, question: str) -> int:
    """An approver asks the requester for more (a missing form, a clearer purpose): the request
    stays pending, the question is recorded on it and in the audit chain, and the requester is
    mailed a pointer to it. Returns the note's id."""
    text = _text(question, "what you are asking the requester for")
    with ws.begin() as conn:
        row = _visible_request(conn, actor, request_id)
        actor.require(Role.APPROVER, row.dataset)
        note = _add_note(conn, row, actor=actor, now=now, kind="ask", text=text)
        # The mail goes last: if it fails, the question and its audit event roll back.
        ws.mailer.send(Message(to=_email_of(conn, row.user_id),
                               subject=f"Request {request_id} for {row.dataset}: more information needed",
                               body=f"The approver of {row.dataset} asks:\n\n{text}\n\nAnswer with POST "
                                    f"/v1/requests/{request_id}/notes (or `govern request reply {request_id} --text ...`).\n"))
    return note


def reply(ws: Workspace, *, actor: Actor, now: datetime, request_id: int, text: str) -> int:
    """The requester answers an approver's question on their pending request."""
    body = _text(text, "your answer")
    with ws.begin() as conn:
        row = _visible_request(conn, actor, request_id)
        if actor.user_id != row.user_id:
            raise ForbiddenError(f"only the requester can answer on request {request_id}")
        return _add_note(conn, row, actor=actor, now=now, kind="reply", text=body)


def list_notes(ws: Workspace, *, actor: Actor, request_id: int) -> list[NoteRecord]:
    """The questions and answers on a request, oldest first, for whoever may see the request."""
    with ws.connect() as conn:
        _visible_request(conn, actor, request_id)
        rows = conn.execute(select(NOTES).where(NOTES.c.request_id == request_id).order_by(NOTES.c.id)).all()
        conn.rollback()
    return [NoteRecord(id=n.id, request_id=n.request_id, at=n.at, by=n.by, kind=n.kind, text=n.text) for n in rows]


def list_requests(ws: Workspace, *, actor: Actor, state: str | None = None, dataset_id: str | None = None,
                  email: str | None = None) -> list[RequestRecord]:
    """Requests the actor may see, oldest first: approvers see their datasets', researchers their own."""
    query = select(REQUESTS, USERS.c.email).join(USERS, USERS.c.id == REQUESTS.c.user_id).order_by(REQUESTS.c.id)
    if state is not None:
        query = query.where(REQUESTS.c.state == state)
    if dataset_id is not None:
        query = query.where(REQUESTS.c.dataset == dataset_id)
    if email is not None:
        query = query.where(USERS.c.email == normalise_email(email))
    if not actor.has(Role.AUDITOR):
        stewards = actor.stewards()
        if stewards is not None:
            query = query.where(or_(REQUESTS.c.dataset.in_(sorted(stewards)), REQUESTS.c.user_id == actor.user_id))
    with ws.connect() as conn:
        return [RequestRecord.from_row(r, r.email) for r in conn.execute(query).all()]


def get_request(ws: Workspace, *, actor: Actor, request_id: int) -> RequestRecord:
    """One request, if the actor may see it (its requester, an approver of its dataset, an
    auditor); otherwise reported as not found, so ids cannot be probed."""
    with ws.connect() as conn:
        row = conn.execute(select(REQUESTS, USERS.c.email).join(USERS, USERS.c.id == REQUESTS.c.user_id)
                           .where(REQUESTS.c.id == request_id)).first()
        conn.rollback()
    if row is None or not _sees(actor, row.user_id, row.dataset):
        raise NotFoundError(f"no request with id {request_id}")
    return RequestRecord.from_row(row, row.email)


# ---------------------------------------------------------------- grants, revocation, termination


def list_grants(ws: Workspace, *, actor: Actor, now: datetime, email: str | None = None, dataset_id: str | None = None,
                active: bool = False) -> list[GrantRecord]:
    query = select(GRANTS, USERS.c.email).join(USERS, USERS.c.id == GRANTS.c.user_id).order_by(GRANTS.c.id)
    if email is not None:
        query = query.where(USERS.c.email == normalise_email(email))
    if dataset_id is not None:
        query = query.where(GRANTS.c.dataset == dataset_id)
    if not actor.has(Role.AUDITOR):
        stewards = actor.stewards()
        if stewards is not None:
            query = query.where(or_(GRANTS.c.dataset.in_(sorted(stewards)), GRANTS.c.user_id == actor.user_id))
    with ws.connect() as conn:
        out = [GrantRecord.from_row(r, r.email, now) for r in conn.execute(query).all()]
    return [g for g in out if g.status == "active"] if active else out


def revoke(ws: Workspace, *, actor: Actor, now: datetime, grant_id: int, reason: str) -> GrantRecord:
    why = _text(reason, "a reason for the revocation")
    with ws.begin() as conn:
        row = conn.execute(select(GRANTS).where(GRANTS.c.id == grant_id)).first()
        if row is None or not _sees(actor, row.user_id, row.dataset):
            raise NotFoundError(f"no grant with id {grant_id}")
        actor.require(Role.APPROVER, row.dataset)
        done = conn.execute(update(GRANTS).where(GRANTS.c.id == grant_id, GRANTS.c.revoked_at.is_(None))
                            .values(revoked_at=iso(now), revoked_by=actor.label, revoke_reason=why))
        if done.rowcount != 1:
            raise ConflictError(f"grant {grant_id} was already revoked by {_who(conn, row.revoked_by)} at {row.revoked_at}")
        audit.append(conn, at=now, actor=actor.label, action="grant.revoke", target=f"grant:{grant_id}", outcome="ok",
                     details={"dataset": row.dataset, "scope": row.scope, "user": row.user_id, "reason": why})
        row = conn.execute(select(GRANTS).where(GRANTS.c.id == grant_id)).one()
        email = _email_of(conn, row.user_id)
    return GrantRecord.from_row(row, email, now)


def terminate(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, reason: str, email: str | None = None,
              organisation: str | None = None) -> TerminationRecord:
    """Record the licensor's termination of one user's or a whole organisation's access: every
    grant of the dataset they hold is revoked at once, and the termination itself denies every
    later access even to grants made afterwards, until it is lifted."""
    ds = dataset(ws, dataset_id)
    actor.require(Role.APPROVER, ds.id)
    why = _text(reason, "a reason for the termination")
    if (email is None) == (organisation is None):
        raise WorkflowError("a termination names either one user or one organisation")
    with ws.begin() as conn:
        if email is not None:
            user = user_row(conn, email)
            holders = [user.id]
            values: dict[str, Any] = {"user_id": user.id}
            holder = f"user:{user.email}"
        else:
            if conn.execute(select(ORGS.c.id).where(ORGS.c.id == organisation)).first() is None:
                raise NotFoundError(f"no organisation '{organisation}'")
            holders = [r.id for r in conn.execute(select(USERS.c.id).where(USERS.c.organisation_id == organisation)).all()]
            values = {"organisation_id": organisation}
            holder = f"organisation:{organisation}"
        key = conn.execute(insert(TERMINATIONS).values(dataset=ds.id, at=iso(now), by=actor.label, reason=why, **values)
                           ).inserted_primary_key
        assert key is not None
        revoked = conn.execute(update(GRANTS).where(GRANTS.c.dataset == ds.id, GRANTS.c.user_id.in_(holders),
                                                    GRANTS.c.revoked_at.is_(None))
                               .values(revoked_at=iso(now), revoked_by=actor.label,
                                       revoke_reason=f"terminated by the licensor: {why}")).rowcount
        audit.append(conn, at=now, actor=actor.label, action="access.terminate", target=holder, outcome="ok",
                     details={"dataset": ds.id, "termination": int(key[0]), "grants_revoked": revoked, "reason": why})
    return TerminationRecord(id=int(key[0]), dataset=ds.id, holder=holder, at=iso(now), by=actor.label, reason=why,
                             grants_revoked=revoked)


# ---------------------------------------------------------------- waivers


def record_waiver(ws: Workspace, *, actor: Actor, now: datetime, terms: str, action: str, document: bytes,
                  email: str | None = None, organisation: str | None = None, rule: str | None = None,
                  destination: str | None = None, purpose: str | None = None, subset: str | None = None,
                  expires: datetime | None = None) -> WaiverRecord:
    """Record a licensor's written permission (the uploaded letter) lifting its own waivable
    rule for one user or organisation. Only rules the terms mark waivable by their owner can be
    lifted; anything else is refused here rather than ignored at decision time."""
    held = _terms(ws, terms)
    actor.require(Role.APPROVER, terms)
    if (email is None) == (organisation is None):
        raise WorkflowError("a waiver is held by either one user or one organisation")
    try:
        act = Action(action)
        dest = Destination(destination) if destination is not None else None
    except ValueError as exc:
        raise WorkflowError(f"{exc}") from None
    waivable = [r for r in held.rules if r.waivable_by == held.licensor.id and act in r.dests]
    if rule is not None:
        if rule not in {r.id for r in held.rules}:
            raise WorkflowError(f"{held.id} has no rule '{rule}'")
        if rule not in {r.id for r in waivable}:
            raise WorkflowError(f"rule {held.id}#{rule} is not waivable by its licensor for {act.value}")
    elif not waivable:
        raise WorkflowError(f"{held.title} has no rule its licensor may waive for {act.value}")
    if purpose is not None and purpose not in ws.policies.purpose_descriptions:
        raise WorkflowError(f"unknown purpose '{purpose}'")
    if subset is not None and (not isinstance(held, CDataset) or subset not in held.subsets):
        raise WorkflowError(f"{held.id} has no subset '{subset}'")
    if expires is not None and expires <= now:
        raise WorkflowError("the waiver's expiry is in the past")
    with ws.begin() as conn:
        if email is not None:
            user = user_row(conn, email)
            values: dict[str, Any] = {"user_id": user.id}
            holder = f"user:{user.email}"
        else:
            if conn.execute(select(ORGS.c.id).where(ORGS.c.id == organisation)).first() is None:
                raise NotFoundError(f"no organisation '{organisation}'")
            values = {"organisation_id": organisation}
            holder = f"organisation:{organisation}"
        doc = documents.store_document(conn, ws.documents_dir, document, what="waiver document", now=now)
        key = conn.execute(insert(WAIVERS).values(
            owner=held.licensor.id, dataset=held.id, action=act.value, destination=dest.value if dest else None,
            purpose=purpose, rule=rule, subset=subset, expires=iso(expires) if expires else None, document=doc.sha256,
            recorded_at=iso(now), recorded_by=actor.label, **values)).inserted_primary_key
        assert key is not None
        audit.append(conn, at=now, actor=actor.label, action="waiver.record", target=f"waiver:{key[0]}", outcome="ok",
                     details={"holder": holder, "terms": held.id, "owner": held.licensor.id, "action": act.value,
                              "destination": dest.value if dest else None, "rule": rule, "subset": subset,
                              "purpose": purpose, "expires": iso(expires) if expires else None, "document": doc.sha256})
    return WaiverRecord(id=int(key[0]), holder=holder, owner=held.licensor.id, dataset=held.id, action=act.value,
                        destination=dest.value if dest else None, purpose=purpose, rule=rule, subset=subset,
                        expires=iso(expires) if expires else None, document=doc.sha256, recorded_at=iso(now),
                        revoked_at=None)


def revoke_waiver(ws: Workspace, *, actor: Actor, now: datetime, waiver_id: int) -> None:
    with ws.begin() as conn:
        row = conn.execute(select(WAIVERS).where(WAIVERS.c.id == waiver_id)).first()
        if row is None or not _sees(actor, row.user_id, row.dataset):
            raise NotFoundError(f"no waiver with id {waiver_id}")
        actor.require(Role.APPROVER, row.dataset)
        done = conn.execute(update(WAIVERS).where(WAIVERS.c.id == waiver_id, WAIVERS.c.revoked_at.is_(None))
                            .values(revoked_at=iso(now)))
        if done.rowcount != 1:
            raise ConflictError(f"waiver {waiver_id} was already revoked at {row.revoked_at}")
        audit.append(conn, at=now, actor=actor.label, action="waiver.revoke", target=f"waiver:{waiver_id}", outcome="ok",
                     details={"terms": row.dataset})


# ---------------------------------------------------------------- artefacts and origins


def stored_lineage(conn: Connection) -> dict[str, list[str]]:
    return {r.id: json.loads(r.inputs) for r in conn.execute(select(ARTEFACTS.c.id, ARTEFACTS.c.inputs)).all()}


def register_artefact(ws: Workspace, *, actor: Actor, now: datetime, ident: str, inputs: Sequence[str],
                      description: str, owner: str | None = None) -> ArtefactRecord:
    """Register a derivative with the subsets, file globs or artefacts it was made from.
    Unknown inputs and cycles are refused on write (DESIGN §3.5)."""
    if not _ARTEFACT_ID.match(ident):
        raise WorkflowError(f"'{ident}' is not an artefact id (lower-case letters, digits, '.', '_', '-'; at most 64)")
    refs = list(dict.fromkeys(i.strip() for i in inputs if i.strip()))
    if not refs:
        raise WorkflowError("an artefact needs at least one input")
    for ref in refs:
        parsed = parse_input(ref)
        if isinstance(parsed, tuple):
            ds_id, pattern, sub = parsed
            ds = dataset(ws, ds_id)
            if pattern is not None and not _glob_ok(pattern):
                raise WorkflowError(f"input '{ref[:80]}': a file glob is a relative path inside the dataset (no '..', "
                                    "no leading '/', no backslash, no empty parts or control characters, at most 1,024 characters)")
            if sub is not None and sub not in ds.subsets:
                raise WorkflowError(f"input '{ref}': {ds.id} has no subset '{sub}'")
    text = _text(description, "a description of the artefact")
    with ws.begin() as conn:
        owner_row = user_row(conn, owner) if owner is not None else None
        owner_id = owner_row.id if owner_row is not None else actor.user_id
        if owner_id is None:
            raise WorkflowError("name the artefact's owner (--owner EMAIL)")
        if owner_id != actor.user_id:
            actor.require(Role.ADMIN)
        known = stored_lineage(conn)
        if ident in known:
            raise ConflictError(f"artefact '{ident}' is already registered")
        try:
            Provenance(artefacts=known).with_artefact(ident, refs)
        except LineageError as exc:
            raise WorkflowError(str(exc)) from None
        try:
            with conn.begin_nested():
                conn.execute(insert(ARTEFACTS).values(id=ident, owner_id=owner_id, description=text, inputs=json.dumps(refs),
                                                      created_at=iso(now)))
        except IntegrityError:
            raise ConflictError(f"artefact '{ident}' is already registered") from None
        audit.append(conn, at=now, actor=actor.label, action="artefact.register", target=f"artefact:{ident}",
                     outcome="ok", details={"inputs": refs, "owner": owner_id})
        email = _email_of(conn, owner_id)
    return ArtefactRecord(id=ident, owner=email, description=text, inputs=refs, created_at=iso(now))


def lineage(ws: Workspace, ident: str) -> ArtefactRecord:
    with ws.connect() as conn:
        row = conn.execute(select(ARTEFACTS).where(ARTEFACTS.c.id == ident)).first()
        if row is None:
            raise NotFoundError(f"no artefact '{ident}'")
        email = _email_of(conn, row.owner_id)
    return ArtefactRecord(id=row.id, owner=email, description=row.description, inputs=json.loads(row.inputs),
                          created_at=row.created_at)


def get_artefact(ws: Workspace, *, actor: Actor, ident: str) -> ArtefactRecord:
    """An artefact's lineage for its owner, an approver, an auditor; anyone else gets not found."""
    with ws.connect() as conn:
        row = conn.execute(select(ARTEFACTS.c.owner_id).where(ARTEFACTS.c.id == ident)).first()
        conn.rollback()
    if row is None or not (row.owner_id == actor.user_id or actor.has(Role.AUDITOR) or actor.stewards() != frozenset()):
        raise NotFoundError(f"no artefact '{ident}'")
    return lineage(ws, ident)


def tag_origins(ws: Workspace, *, actor: Actor, now: datetime, dataset_id: str, tags: Mapping[str, Iterable[str]]) -> int:
    """Record which upstream sources individual files draw from (e.g. SHHQ's DeepFashion images)."""
    actor.require(Role.ADMIN)
    ds = dataset(ws, dataset_id)
    rows = []
    for path, sources in tags.items():
        sub = ds.find_subset(path)
        if sub is None:
            raise WorkflowError(f"{ds.id}:{path} lies in no subset")
        names = sorted(set(sources))
        stray = [s for s in names if s not in sub.file_sources]
        if stray:
            raise WorkflowError(f"{ds.id}:{path}: subset {sub.id} does not list {', '.join(stray)} among its file sources")
        rows.append({"dataset": ds.id, "path": path, "sources": json.dumps(names)})
    if not rows:
        raise WorkflowError("no files to tag")
    with ws.begin() as conn:
        paths = [r["path"] for r in rows]
        for i in range(0, len(paths), 500):
            conn.execute(MANIFEST.delete().where(and_(MANIFEST.c.dataset == ds.id, MANIFEST.c.path.in_(paths[i:i + 500]))))
        conn.execute(insert(MANIFEST), rows)
        audit.append(conn, at=now, actor=actor.label, action="manifest.tag_origins", target=f"dataset:{ds.id}",
                     outcome="ok", details={"files": len(rows)})
    return len(rows)


def list_forms(ws: Workspace, *, actor: Actor, dataset_id: str | None = None, pending: bool = False) -> list[FormRecord]:
    query = select(FORMS, USERS.c.email).join(USERS, USERS.c.id == FORMS.c.user_id).order_by(FORMS.c.id)
    if dataset_id is not None:
        query = query.where(FORMS.c.dataset == dataset_id)
    if pending:
        query = query.where(FORMS.c.confirmed_at.is_(None))
    if not actor.has(Role.AUDITOR):
        stewards = actor.stewards()
        if stewards is not None:
            query = query.where(or_(FORMS.c.dataset.in_(sorted(stewards)), FORMS.c.user_id == actor.user_id))
    with ws.connect() as conn:
        return [FormRecord(id=r.id, user=r.email, dataset=r.dataset, agreement_sha256=r.agreement_sha256, document=r.document,
                           uploaded_at=r.uploaded_at, confirmed_by=r.confirmed_by, confirmed_at=r.confirmed_at)
                for r in conn.execute(query).all()]


def list_acceptances(ws: Workspace, *, actor: Actor, email: str | None = None) -> list[dict[str, Any]]:
    """A user's agreement acceptances, newest last, each marked current or outdated against the
    agreement text in force (DESIGN §3.4). Someone else's: administrators and auditors only."""
    with ws.connect() as conn:
        user = user_row(conn, email or actor.email or "")
        if user.id != actor.user_id:
            actor.require(Role.AUDITOR)
        rows = conn.execute(select(ACCEPTANCES).where(ACCEPTANCES.c.user_id == user.id).order_by(ACCEPTANCES.c.id)).all()
        conn.rollback()
    out = []
    for r in rows:
        ds = ws.policies.datasets.get(r.dataset)
        out.append({"id": r.id, "dataset": r.dataset, "version": r.version, "sha256": r.sha256, "accepted_at": r.accepted_at,
                    "current": ds is not None and ds.sha256 == r.sha256})
    return out
