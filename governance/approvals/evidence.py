"""Read models for people deciding: everything a decision on a request needs on one page, the
waivers and terminations on record, and stored documents. The same visibility rule as the
workflow applies (`workflow._sees`): a record the actor may not see is not found.

Nothing here changes state; the preview of a decision runs the policy engine on the
requester's stored state with the requested grant added, so an approver sees before approving
whether the grant alone would let the requester in, and if not, why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, or_, select

from governance.approvals import documents
from governance.approvals.records import (
    FormRecord,
    GrantRecord,
    NoteRecord,
    RequestRecord,
    TerminationRecord,
    WaiverRecord,
    iso,
)
from governance.approvals.state import _provenance, _wanted, subject_state
from governance.approvals.workflow import (
    ACCEPTANCES,
    FORMS,
    GRANTS,
    NOTES,
    ORGS,
    REQUESTS,
    TERMINATIONS,
    USERS,
    WAIVERS,
    _email_of,
    _sees,
    _visible_request,
    _who,
    dataset,
)
from governance.errors import NotFoundError
from governance.identity.institutional import Classification
from governance.identity.roles import Actor, Role, domain_lists
from governance.policy.decision import Decision
from governance.policy.facts import GrantFact
from governance.storage.tables import EncryptedFileRow

FILES = EncryptedFileRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Requester:
    email: str
    verified_at: str | None
    organisation: str | None
    organisation_name: str | None
    site: str | None
    created_at: str
    disabled: bool
    email_basis: Classification  # why the service believes (or not) the address is institutional


@dataclass(frozen=True)
class Requirement:
    """One requirement of one requested subset, the clause it encodes, and whether it holds now."""

    subset: str
    aspect: str
    wants: str
    met: bool | None  # None: decided by this very approval
    clause: str | None


@dataclass(frozen=True)
class Preview:
    """The engine's answer for one requested subset if this request were approved now."""

    subset: str
    resource: str | None  # the file decided on (None: the subset has no files to try)
    decision: Decision | None


@dataclass(frozen=True)
class Evidence:
    request: RequestRecord
    requester: Requester
    dataset_title: str
    agreement_version: str | None
    agreement_sha256: str | None
    purpose_description: str | None
    acceptances: list[dict[str, Any]]
    forms: list[FormRecord]
    grants: list[GrantRecord]
    other_requests: list[RequestRecord]
    terminations: list[TerminationRecord]
    notes: list[NoteRecord]
    requirements: list[Requirement]
    previews: list[Preview]
    can_decide: bool
    hand_signature_needed: bool  # whether an approver confirms the form's signature (some subset is hand-signed)
    decide_refusal: str | None = None  # why this actor may not decide it, when they may not
    clauses: dict[str, str] = field(default_factory=dict)


def _requester(conn: Connection, user: Any, basis: Classification, site: str | None) -> Requester:
    org_name = None
    if user.organisation_id is not None:
        org = conn.execute(select(ORGS.c.name).where(ORGS.c.id == user.organisation_id)).first()
        org_name = org.name if org is not None else None
    return Requester(email=user.email, verified_at=user.email_verified_at, organisation=user.organisation_id,
                     organisation_name=org_name, site=site, created_at=user.created_at, disabled=bool(user.disabled),
                     email_basis=basis)


def _sample_path(conn: Connection, ds_id: str, subset: str) -> str | None:
    row = conn.execute(select(FILES.c.path).where(FILES.c.dataset == ds_id, FILES.c.subset == subset)
                       .order_by(FILES.c.path).limit(1)).first()
    return str(row.path) if row is not None else None


def request_evidence(ws: Any, *, actor: Actor, now: datetime, request_id: int) -> Evidence:
    """Everything a decision on request `request_id` needs, for its requester, an approver of its
    dataset or an auditor (anyone else: not found)."""
    with ws.connect() as conn:
        row = _visible_request(conn, actor, request_id)
        user = conn.execute(select(USERS).where(USERS.c.id == row.user_id)).one()
        ds = dataset(ws, row.dataset)
        allow, deny = domain_lists(conn)
        engine = ws.decision_engine(allow, deny)
        basis = engine.classifier.classify(user.email)
        state = subject_state(conn, ws.policies, user)  # the facts a decision reads, site included
        requester = _requester(conn, user, basis, state.site)
        request = RequestRecord.from_row(row, user.email)
        accepted = [{"id": a.id, "version": a.version, "sha256": a.sha256, "accepted_at": a.accepted_at,
                     "current": a.sha256 == ds.sha256}
                    for a in conn.execute(select(ACCEPTANCES).where(ACCEPTANCES.c.user_id == user.id,
                                                                    ACCEPTANCES.c.dataset == ds.id)
                                          .order_by(ACCEPTANCES.c.id)).all()]
        forms = [FormRecord(id=f.id, user=user.email, dataset=f.dataset, agreement_sha256=f.agreement_sha256, document=f.document,
                            uploaded_at=f.uploaded_at, confirmed_by=f.confirmed_by, confirmed_at=f.confirmed_at)
                 for f in conn.execute(select(FORMS).where(FORMS.c.user_id == user.id, FORMS.c.dataset == ds.id)
                                       .order_by(FORMS.c.id)).all()]
        grants = [GrantRecord.from_row(g, user.email, now)
                  for g in conn.execute(select(GRANTS).where(GRANTS.c.user_id == user.id).order_by(GRANTS.c.id)).all()
                  if _sees(actor, g.user_id, g.dataset)]
        others = [RequestRecord.from_row(r, user.email)
                  for r in conn.execute(select(REQUESTS).where(REQUESTS.c.user_id == user.id, REQUESTS.c.id != request_id)
                                        .order_by(REQUESTS.c.id)).all()
                  if _sees(actor, r.user_id, r.dataset)]
        org = user.organisation_id
        holder = TERMINATIONS.c.user_id == user.id if org is None else or_(TERMINATIONS.c.user_id == user.id,
                                                                           TERMINATIONS.c.organisation_id == org)
        terminations = [TerminationRecord(id=t.id, dataset=t.dataset,
                                          holder=f"user:{user.email}" if t.user_id else f"organisation:{t.organisation_id}",
                                          at=t.at, by=t.by, reason=t.reason, grants_revoked=0)
                        for t in conn.execute(select(TERMINATIONS).where(holder, TERMINATIONS.c.dataset == ds.id)
                                              .order_by(TERMINATIONS.c.id)).all()]
        notes = [NoteRecord(id=n.id, request_id=n.request_id, at=n.at, by=n.by, kind=n.kind, text=n.text)
                 for n in conn.execute(select(NOTES).where(NOTES.c.request_id == request_id).order_by(NOTES.c.id)).all()]
        samples = {sub: _sample_path(conn, ds.id, sub) for sub in request.subsets}
        tried = [f"{ds.id}:{p}" for p in samples.values() if p is not None]
        provenance = _provenance(conn, *_wanted(ws.policies, tried)) if tried else None
        conn.rollback()

    current_acceptance = bool(accepted) and accepted[-1]["current"]
    signed = ds.id in state.signed
    requirements: list[Requirement] = []
    clauses: dict[str, str] = {}
    for sub_id in request.subsets:
        sub = ds.subsets.get(sub_id)
        if sub is None:
            continue
        req = sub.requirement
        clauses.update({f"{sub_id}: {aspect}": quote for aspect, quote in req.clauses.items()})
        if req.verified_email:
            requirements.append(Requirement(sub_id, "verified_email", "a verified e-mail address",
                                            requester.verified_at is not None, req.clauses.get("verified_email")))
        if req.institutional_email:
            requirements.append(Requirement(sub_id, "institutional_email", "an institutional e-mail address",
                                            basis.institutional, req.clauses.get("institutional_email")))
        wants = {"click-through": "the current agreement accepted", "signed": "the current agreement signed and uploaded",
                 "hand-signed": "the current agreement hand-signed, uploaded and its signature confirmed"}[req.agreement]
        requirements.append(Requirement(sub_id, "agreement", wants,
                                        current_acceptance if req.agreement == "click-through" else signed,
                                        req.clauses.get("agreement")))
        requirements.append(Requirement(sub_id, "approval", f"{req.approval} approval", None, req.clauses.get("approval")))

    previews: list[Preview] = []
    if request.state == "pending":
        hypothetical = state.model_copy(update={"grants": [*state.grants, *(
            GrantFact(scope=f"{ds.id}/{sub}", purpose=request.purpose, starts=now, id=f"preview-{sub}")
            for sub in request.subsets)]})
        subject = engine.subject(hypothetical)
        for sub_id in request.subsets:
            path = samples.get(sub_id)
            if path is None:
                previews.append(Preview(sub_id, None, None))
                continue
            resource = f"{ds.id}:{path}"
            previews.append(Preview(sub_id, resource, engine.decide(subject, action="read", resource=resource,
                                                                   purpose=request.purpose, destination=None, now=now,
                                                                   provenance=provenance)))

    refusal = None
    if request.state != "pending":
        refusal = f"this request is already {request.state}"
    elif not actor.has(Role.APPROVER, ds.id):
        refusal = f"you are not an approver for {ds.id}" if actor.user_id != user.id else "this is your own request"
    elif actor.user_id == user.id and not actor.operator:
        refusal = "an approver cannot decide their own request"
    return Evidence(request=request, requester=requester, dataset_title=ds.title, agreement_version=ds.version,
                    agreement_sha256=ds.sha256, purpose_description=ws.policies.purpose_descriptions.get(request.purpose),
                    acceptances=accepted, forms=forms, grants=grants, other_requests=others, terminations=terminations,
                    notes=notes, requirements=requirements, previews=previews, can_decide=refusal is None,
                    hand_signature_needed=any(s.requirement.agreement == "hand-signed" for s in ds.subsets.values()),
                    decide_refusal=refusal, clauses=clauses)


# ---------------------------------------------------------------- waivers, terminations, documents


def _holder(conn: Connection, user_id: str | None, organisation: str | None) -> str:
    return f"user:{_email_of(conn, user_id)}" if user_id is not None else f"organisation:{organisation}"


def _newest_stewarded(table: Any, actor: Actor, dataset_id: str | None) -> Any:
    """Rows of `table` (by its `dataset` column), newest first, of one dataset if given, and of
    only the datasets the actor stewards unless the actor audits or stewards every one."""
    query = select(table).order_by(table.c.id.desc())
    if dataset_id is not None:
        query = query.where(table.c.dataset == dataset_id)
    scope = actor.oversees()
    return query if scope is None else query.where(table.c.dataset.in_(sorted(scope)))


def list_waivers(ws: Any, *, actor: Actor, terms: str | None = None) -> list[WaiverRecord]:
    """Waivers of the datasets and sources the actor stewards (auditors: all), newest first."""
    query = _newest_stewarded(WAIVERS, actor, terms)
    with ws.connect() as conn:
        rows = conn.execute(query).all()
        out = [WaiverRecord(id=w.id, holder=_holder(conn, w.user_id, w.organisation_id), owner=w.owner, dataset=w.dataset,
                            action=w.action, destination=w.destination, purpose=w.purpose, rule=w.rule, subset=w.subset,
                            expires=w.expires, document=w.document, recorded_at=w.recorded_at, revoked_at=w.revoked_at)
               for w in rows]
        conn.rollback()
    return out


def list_terminations(ws: Any, *, actor: Actor, dataset_id: str | None = None) -> list[TerminationRecord]:
    """Terminations of the datasets the actor stewards (auditors: all), newest first."""
    query = _newest_stewarded(TERMINATIONS, actor, dataset_id)
    with ws.connect() as conn:
        rows = conn.execute(query).all()
        out = [TerminationRecord(id=t.id, dataset=t.dataset, holder=_holder(conn, t.user_id, t.organisation_id), at=t.at,
                                 by=_who(conn, t.by), reason=t.reason, grants_revoked=0) for t in rows]
        conn.rollback()
    return out


def document_for(ws: Any, *, actor: Actor, sha256: str) -> tuple[str, bytes]:
    """A stored document (a signed form or a licensor's letter) and its media type, for someone
    who may see a record citing it: the form's owner, an approver of its dataset, an auditor."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise NotFoundError("no such document")
    with ws.connect() as conn:
        cites = [(r.user_id, r.dataset) for r in conn.execute(select(FORMS.c.user_id, FORMS.c.dataset)
                                                              .where(FORMS.c.document == sha256)).all()]
        cites += [(r.user_id, r.dataset) for r in conn.execute(select(WAIVERS.c.user_id, WAIVERS.c.dataset)
                                                               .where(WAIVERS.c.document == sha256)).all()]
        media = conn.execute(select(documents.DOCUMENTS.c.media_type).where(documents.DOCUMENTS.c.sha256 == sha256)).first()
        conn.rollback()
    if media is None or not any(_sees(actor, uid, ds) for uid, ds in cites):
        raise NotFoundError("no such document")
    return str(media.media_type), documents.read_document(ws.documents_dir, sha256)


def expiring(grants: list[GrantRecord], *, now: datetime, days: int) -> list[GrantRecord]:
    """Active grants ending within `days` days."""
    limit = iso(now + timedelta(days=days))
    return [g for g in grants if g.status == "active" and g.expires is not None and g.expires <= limit]
