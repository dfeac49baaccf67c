"""Decisions from stored state: assemble one subject's facts, ask the engine, audit denials.

A subject's state (user, acceptances, forms, grants, waivers, terminations, domain lists) is
read in one read transaction, then the engine decides every resource of the batch against it.
The compiled state is kept between calls only while the database's state version is unchanged:
each call reads the version first (one small query), and every state change increments it in
its own transaction (`governance.storage.version`). So a revocation committed between two
checks, by any process, is seen by the second.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from governance.approvals.records import parse_time
from governance.approvals.workflow import (
    ACCEPTANCES,
    FORMS,
    GRANTS,
    MANIFEST,
    TERMINATIONS,
    WAIVERS,
    stored_lineage,
    user_row,
)
from governance.audit import store as audit
from governance.audit.chain import AuditEvent
from governance.identity.roles import domain_lists
from governance.policy.compile import CompiledPolicies
from governance.policy.decision import Decision, Reason, Remedy
from governance.policy.facts import GrantFact, SubjectState, WaiverFact
from governance.identity.tokens import normalise_email
from governance.policy.evaluate import Engine as PolicyEngine
from governance.policy.subject import SubjectView
from governance.provenance.lineage import ARTEFACT_PREFIX, EMPTY, Provenance
from governance.storage import version
from governance.storage.tables import SiteRow
from governance.types import ReasonCode
from governance.workspace import Workspace

log = logging.getLogger(__name__)
SITES = SiteRow.__table__  # type: ignore[attr-defined]
_SAMPLE = 20  # denied resources named in one audit event


def _signed(policies: CompiledPolicies, forms: Sequence[Any]) -> list[str]:
    """Datasets whose current agreement the user has on file as a form (hand signature
    confirmed by an approver where the terms ask for one)."""
    out = set()
    for f in forms:
        ds = policies.datasets.get(f.dataset)
        if ds is None or f.agreement_sha256 != ds.sha256:
            continue  # a form for an older text does not count (DESIGN §3.4)
        hand = any(s.requirement.agreement == "hand-signed" for s in ds.subsets.values())
        if not hand or f.confirmed_at is not None:
            out.add(f.dataset)
    return sorted(out)


def subject_state(conn: Connection, policies: CompiledPolicies, user: Any) -> SubjectState:
    """Everything about `user` (a users row) that a decision depends on."""
    uid = user.id
    accepted: dict[str, str] = {}
    for a in conn.execute(select(ACCEPTANCES.c.dataset, ACCEPTANCES.c.sha256).where(ACCEPTANCES.c.user_id == uid)
                          .order_by(ACCEPTANCES.c.id)).all():
        accepted[a.dataset] = a.sha256  # the latest acceptance per dataset counts
    forms = conn.execute(select(FORMS.c.dataset, FORMS.c.agreement_sha256, FORMS.c.confirmed_at)
                         .where(FORMS.c.user_id == uid)).all()
    grants = [GrantFact(scope=g.scope, purpose=g.purpose, starts=parse_time(g.starts), expires=parse_time(g.expires),
                        revoked=g.revoked_at is not None, id=str(g.id))
              for g in conn.execute(select(GRANTS).where(GRANTS.c.user_id == uid)).all()]
    org = user.organisation_id
    waiver_filter = WAIVERS.c.user_id == uid if org is None else or_(WAIVERS.c.user_id == uid, WAIVERS.c.organisation_id == org)
    waivers = [WaiverFact(owner=w.owner, dataset=w.dataset, action=w.action, destination=w.destination, purpose=w.purpose,
                          rule=w.rule, subset=w.subset, expires=parse_time(w.expires), revoked=w.revoked_at is not None,
                          id=str(w.id))
               for w in conn.execute(select(WAIVERS).where(waiver_filter)).all()]
    term_filter = (TERMINATIONS.c.user_id == uid if org is None
                   else or_(TERMINATIONS.c.user_id == uid, TERMINATIONS.c.organisation_id == org))
    terminated = sorted({t.dataset for t in conn.execute(select(TERMINATIONS.c.dataset).where(term_filter)).all()})
    site = None
    if user.site_id is not None:
        found = conn.execute(select(SITES.c.name).where(SITES.c.id == user.site_id)).first()
        site = found.name if found is not None else None
    return SubjectState(id=uid, email=user.email, email_verified=user.email_verified_at is not None, organisation=org,
                        site=site, accepted=accepted, signed=_signed(policies, forms), grants=grants, waivers=waivers,
                        terminated=terminated)


def _wanted(policies: CompiledPolicies, resources: Sequence[str]) -> tuple[bool, dict[str, list[str]]]:
    """What provenance the resources need: the artefact lineage (any artefact among them), and
    the files whose subsets record per-file sources, by dataset."""
    sourced = {i: ds for i, ds in policies.datasets.items() if any(s.file_sources for s in ds.subsets.values())}
    wants_lineage = False
    wanted: dict[str, list[str]] = {}
    for r in resources:
        ds_id, sep, path = r.partition(":")
        if not sep:
            continue
        ds = sourced.get(ds_id)
        if ds is None:
            wants_lineage = wants_lineage or ds_id == ARTEFACT_PREFIX[:-1]
            continue
        sub = ds.find_subset(path)
        if sub is not None and sub.file_sources:
            wanted.setdefault(ds_id, []).append(path)
    return wants_lineage, wanted


def _provenance(conn: Connection, wants_lineage: bool, wanted: dict[str, list[str]]) -> Provenance:
    """Lineage of every artefact, and origin tags for just the requested files that need them."""
    artefacts = stored_lineage(conn) if wants_lineage else {}
    manifest: dict[tuple[str, str], list[str]] = {}
    for ds_id, paths in wanted.items():
        for i in range(0, len(paths), 500):
            rows = conn.execute(select(MANIFEST).where(and_(MANIFEST.c.dataset == ds_id, MANIFEST.c.path.in_(paths[i:i + 500])))).all()
            manifest.update({(m.dataset, m.path): json.loads(m.sources) for m in rows})
    if not artefacts and not manifest:
        return EMPTY
    return Provenance(manifest=manifest, artefacts=artefacts)


_DISABLED = Decision(effect="deny", reasons=(Reason(code=ReasonCode.ACCOUNT_DISABLED, message="this account is disabled"),),
                     remedies=(Remedy(code=ReasonCode.ACCOUNT_DISABLED, text="ask an administrator why the account was disabled"),))


_OUT_OF_SCOPE = Decision(effect="deny", reasons=(Reason(code=ReasonCode.OUTSIDE_KEY_SCOPE,
                                                      message="the API key used is limited to other datasets"),),
                         remedies=(Remedy(code=ReasonCode.OUTSIDE_KEY_SCOPE,
                                          text="use an API key whose datasets include this one, or log in"),))


@dataclass(frozen=True)
class _Known:
    """A subject compiled at one state version (kept in `Workspace.subjects`)."""

    user_id: str
    email: str
    disabled: bool
    engine: PolicyEngine
    subject: SubjectView


@dataclass(frozen=True)
class CheckResult:
    user: str
    decisions: list[Decision]
    denied: int
    # With `defer_audit`: the denial's audit event, durable when this resolves (None: nothing to
    # wait for). SECURITY: the caller must wait on it before answering.
    audit: Future[AuditEvent] | None = None


def check(ws: Workspace, *, email: str, resources: Sequence[str], action: str, purpose: str, now: datetime,
          destination: str | None = None, actor: str | None = None,
          datasets: frozenset[str] | None = None, defer_audit: bool = False) -> CheckResult:
    """Decide `action` on each resource for the user with address `email`, from stored state.
    `datasets` limits the call to those datasets (an API key's scope): anything else is denied
    as outside the key's scope, artefacts included. Denials are audited (one event per call,
    naming the reasons and a sample of resources); the call returns once the event is durable,
    or, with `defer_audit` and a group-commit writer running, returns its future in `audit`
    for an async caller to await without holding a thread."""
    policies = ws.policies
    address = normalise_email(email)
    wants_lineage, wanted = _wanted(policies, resources)
    # INVARIANT: the version is taken before anything it vouches for is read. Where a listener
    # keeps it (PostgreSQL, the API), a cached subject with no provenance to look up needs no
    # database round trip at all.
    hint = ws.versions.known()
    known = ws.subjects.get(address, hint) if hint is not None else None
    if known is not None and not wants_lineage and not wanted:
        prov = EMPTY
    else:
        with ws.connect() as conn:
            if hint is not None:
                at_version = hint
            else:
                at_version = version.current(conn)
                ws.versions.confirm(at_version)
            known = ws.subjects.get(address, at_version)
            if known is None:
                user = user_row(conn, address)
                state = subject_state(conn, policies, user)
                allow, deny = domain_lists(conn)
                engine = ws.decision_engine(allow, deny)
                known = _Known(user_id=user.id, email=user.email, disabled=bool(user.disabled), engine=engine,
                               subject=engine.subject(state))
                ws.subjects.put(address, at_version, known)
            prov = _provenance(conn, wants_lineage, wanted)
            conn.rollback()  # a read; release SQLite's lock at once
    if known.disabled:
        decisions = [_DISABLED] * len(resources)
    else:
        engine, subject = known.engine, known.subject
        if len(resources) == 1:
            decisions = [engine.decide(subject, action=action, resource=resources[0], purpose=purpose, destination=destination,
                                       now=now, provenance=prov)]
        else:
            decisions = engine.decide_batch(subject, action=action, resources=resources, purpose=purpose,
                                            destination=destination, now=now, provenance=prov)
        if datasets is not None:
            # SECURITY: applied after the engine, so a scoped key can only ever narrow a decision
            decisions = [d if r.partition(":")[0] in datasets else _OUT_OF_SCOPE for r, d in zip(resources, decisions, strict=True)]
    denied = sum(1 for d in decisions if d.effect != "permit")
    pending = None
    if denied:
        pending = _audit_denials(ws, now=now, actor=actor or f"user:{known.user_id}", user_id=known.user_id, action=action,
                                 purpose=purpose, destination=destination, resources=resources, decisions=decisions,
                                 denied=denied)
        if pending is not None and not defer_audit:
            pending.result(timeout=30)
            pending = None
    return CheckResult(user=known.email, decisions=decisions, denied=denied, audit=pending)


def _audit_denials(ws: Workspace, *, now: datetime, actor: str, user_id: str, action: str, purpose: str,
                   destination: str | None, resources: Sequence[str], decisions: Sequence[Decision],
                   denied: int) -> Future[AuditEvent] | None:
    codes: set[str] = set()
    sample: list[str] = []
    seen: set[int] = set()  # a batch shares one decision object per subset: read each once
    for r, d in zip(resources, decisions, strict=True):
        if d.effect == "permit" or (id(d) in seen and len(sample) >= _SAMPLE):
            continue
        if id(d) not in seen:
            seen.add(id(d))
            codes.update(d.codes)
        if len(sample) < _SAMPLE:
            sample.append(r[:300])
    details = {"action": action[:64], "purpose": purpose[:128], "destination": destination[:32] if destination else None,
               "denied": denied, "checked": len(resources), "resources": sample}
    writer = ws.audit_writer
    if writer is not None:
        # SECURITY: the caller learns its answer only once the denial is durable; a failed batch
        # fails the future, so an unaudited denial is an error, never a silent success.
        return writer.submit(at=now, actor=actor, action="access.check", target=f"user:{user_id}", outcome="denied",
                             reasons=sorted(codes), details=details)
    with ws.begin() as conn:
        audit.append(conn, at=now, actor=actor, action="access.check", target=f"user:{user_id}", outcome="denied",
                     reasons=sorted(codes), details=details)
    return None
