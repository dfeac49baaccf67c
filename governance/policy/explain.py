"""Explanations: reason objects, remedies, and a readable rendering of a decision.

The evaluator calls the builders here only when it computes a decision it has not seen (they
are memoised), so explaining never slows the hot path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from governance.identity.institutional import Classification
from governance.policy.compile import CDataset, CRule, CSubset
from governance.policy.decision import Decision, Reason, Remedy
from governance.policy.facts import GrantFact, SubjectState
from governance.types import ReasonCode


def _describe(rule: CRule) -> str:
    if rule.purposes is not None:
        return "use for " + ", ".join(sorted(rule.purposes))
    if rule.code is ReasonCode.DESTINATION_FORBIDDEN:
        dests = sorted({d.value for v in rule.dests.values() if v is not None for d in v})
        acts = sorted(a.value for a in rule.dests)
        return f"{'/'.join(acts)} to {', '.join(dests)}"
    return ", ".join(sorted(a.value if a.value != "export" else "export/copy" for a in rule.dests))


def forbid_reason(rule: CRule, path: tuple[str, ...], own: bool) -> Reason:
    """The reason a matching forbid gives: its own code, or `inherited_restriction` via provenance."""
    if own:
        code = rule.code
        message = f"{rule.terms_title} forbids {_describe(rule)} ({rule.qid})"
    else:
        code = ReasonCode.INHERITED_RESTRICTION
        message = f"{rule.terms_title}'s terms reach this through {' -> '.join(path)} and forbid {_describe(rule)} ({rule.qid})"
    return Reason.model_construct(
        code=code,
        message=message,
        rule=rule.qid,
        clause=rule.clause,
        terms=rule.terms_id,
        section=rule.section,
        path=path,
        waivable_by=rule.waivable_by,
    )


def no_terms_decision(ds: CDataset, path: tuple[str, ...]) -> Decision:
    reason = Reason.model_construct(
        code=ReasonCode.NO_TERMS_RECORDED,
        message=f"{ds.title} has no recorded terms: only discovery is allowed",
        terms=ds.id,
        clause=ds.no_terms_statement,
        path=path,
    )
    return Decision.model_construct(effect="deny", reasons=(reason,), remedies=remedies_for([reason], ""))


def requirement_reasons(
    state: SubjectState,
    classification: Classification | None,
    ds: CDataset,
    sub: CSubset,
    *,
    signed: frozenset[str],
    terminated: frozenset[str],
) -> tuple[Reason, ...]:
    """Requirements re-checked at every access (DESIGN §3.4)."""
    req = sub.requirement
    out: list[Reason] = []
    if ds.id in terminated:
        out.append(Reason.model_construct(
            code=ReasonCode.ACCESS_TERMINATED,
            message=f"{ds.licensor.name} has terminated your access to {ds.title}",
            terms=ds.id,
            rule=f"{ds.id}#termination" if ds.termination else None,
            clause=" ".join(ds.termination.clause.split()) if ds.termination else None,
        ))
    if req.verified_email and not state.email_verified:
        out.append(Reason.model_construct(code=ReasonCode.EMAIL_UNVERIFIED, terms=ds.id, clause=req.clauses.get("verified_email"),
                          message="your e-mail address is not verified"))
    if req.institutional_email and (classification is None or not classification.institutional):
        basis = str(classification) if classification is not None else "not classified"
        out.append(Reason.model_construct(code=ReasonCode.EMAIL_NOT_INSTITUTIONAL, terms=ds.id, clause=req.clauses.get("institutional_email"),
                          message=f"{sub.qid} needs a verified institutional e-mail address; {basis}"))
    accepted = state.accepted.get(ds.id)
    version = f"version {ds.version} (sha256 {(ds.sha256 or '')[:12]}…)"
    if accepted is None:
        out.append(Reason.model_construct(code=ReasonCode.AGREEMENT_NOT_ACCEPTED, terms=ds.id, clause=req.clauses.get("agreement"),
                          message=f"you have not accepted the {ds.title} agreement, {version}"))
    elif accepted not in ("current", ds.version, ds.sha256):
        out.append(Reason.model_construct(code=ReasonCode.AGREEMENT_OUTDATED, terms=ds.id, clause=req.clauses.get("agreement"),
                          message=f"you accepted {accepted!r}, but the current {ds.title} agreement is {version}"))
    if req.agreement in ("signed", "hand-signed") and ds.id not in signed:
        kind = "hand-signed" if req.agreement == "hand-signed" else "signed"
        out.append(Reason.model_construct(code=ReasonCode.SIGNED_AGREEMENT_MISSING, terms=ds.id, clause=req.clauses.get("agreement"),
                          message=f"{sub.qid} needs the {kind} release agreement on file"))
    return tuple(out)


def grant_status(
    grants: Sequence[GrantFact],
    ancestors: frozenset[str],
    now: datetime,
    active: Callable[[GrantFact, datetime], bool],
) -> tuple[object, ...]:
    """() when an active grant covers the purpose; else a small hashable summary of why not."""
    if not grants:
        return ("none",)
    fitting = [g for g in grants if g.purpose in ancestors]
    if any(active(g, now) for g in fitting):
        return ()
    if fitting:
        revoked = any(g.revoked for g in fitting)
        expiries = [g.expires for g in fitting if not g.revoked and g.expires is not None and now >= g.expires]
        return ("inactive", revoked, max(expiries) if expiries else None)
    return ("purpose", tuple(sorted({g.purpose for g in grants})))


def grant_reasons(status: tuple[object, ...], scope: str, purpose: str) -> tuple[Reason, ...]:
    """The reasons for a `grant_status` summary."""
    kind = status[0]
    if kind == "none":
        return (Reason.model_construct(code=ReasonCode.NO_GRANT, message=f"you hold no grant covering {scope}"),)
    if kind == "purpose":
        held = ", ".join(str(p) for p in status[1])  # type: ignore[attr-defined]
        return (Reason.model_construct(code=ReasonCode.PURPOSE_NOT_COVERED, message=f"your grants on {scope} cover {held}, not {purpose}"),)
    _, revoked, expired = status
    out = []
    if revoked:
        out.append(Reason.model_construct(code=ReasonCode.GRANT_REVOKED, message=f"your grant on {scope} for {purpose} was revoked"))
    if isinstance(expired, datetime):
        out.append(Reason.model_construct(code=ReasonCode.GRANT_EXPIRED, message=f"your grant on {scope} expired on {expired.isoformat()}"))
    if not out:
        out.append(Reason.model_construct(code=ReasonCode.NO_GRANT, message=f"your grant on {scope} for {purpose} is not yet in force"))
    return tuple(out)


_REMEDY: dict[ReasonCode, str] = {
    ReasonCode.NO_GRANT: "request access to the subset for this purpose; an approver decides",
    ReasonCode.GRANT_EXPIRED: "ask an approver to renew the grant",
    ReasonCode.GRANT_REVOKED: "the grant was revoked; ask the approver why before requesting again",
    ReasonCode.ACCESS_TERMINATED: "the licensor ended your access; only the licensor can restore it",
    ReasonCode.PURPOSE_NOT_COVERED: "request a grant for this purpose, or ask under a purpose you hold",
    ReasonCode.PURPOSE_FORBIDDEN: "the terms forbid this purpose; no grant can allow it",
    ReasonCode.ACTION_FORBIDDEN: "the terms forbid this action",
    ReasonCode.NOT_GRANTED_BY_TERMS: "the terms do not grant this; only the licensor's written permission, recorded as new terms, could",
    ReasonCode.INHERITED_RESTRICTION: "use only inputs not of the restricted origin, or obtain the upstream owner's authorization",
    ReasonCode.DESTINATION_FORBIDDEN: "keep the copy internal (same organisation and site)",
    ReasonCode.EMAIL_UNVERIFIED: "verify your e-mail address",
    ReasonCode.EMAIL_NOT_INSTITUTIONAL: "register and verify an institutional e-mail address, or ask an admin to allow-list your institute's domain",
    ReasonCode.AGREEMENT_NOT_ACCEPTED: "read and accept the current agreement",
    ReasonCode.AGREEMENT_OUTDATED: "the agreement changed: read and accept the current version",
    ReasonCode.SIGNED_AGREEMENT_MISSING: "upload the signed release agreement; an approver confirms the signature",
    ReasonCode.NO_TERMS_RECORDED: "record the licensor's terms",
    ReasonCode.UNKNOWN_RESOURCE: "check the resource name: 'dataset:path' inside a known subset, or 'artefact:id'",
    ReasonCode.UNKNOWN_PURPOSE: "use a purpose listed in the policies' purposes.yaml (e.g. research/non-commercial/academic)",
    ReasonCode.UNKNOWN_ACTION: "use one of discover, read, derive, copy_internal, export (with a destination), publish_derivative",
    ReasonCode.ACCOUNT_DISABLED: "ask an administrator why your account was disabled",
}


def remedies_for(reasons: Iterable[Reason], purpose: str) -> tuple[Remedy, ...]:
    """One remedy per distinct situation, most specific wording first."""
    out: list[Remedy] = []
    seen: set[tuple[ReasonCode, str]] = set()
    for r in reasons:
        text = _REMEDY[r.code]
        if r.waivable_by and r.code in (ReasonCode.PURPOSE_FORBIDDEN, ReasonCode.DESTINATION_FORBIDDEN,
                                         ReasonCode.ACTION_FORBIDDEN, ReasonCode.INHERITED_RESTRICTION):
            text = f"obtain written permission from '{r.waivable_by}' (recorded as a waiver of {r.rule})"
            if r.code is ReasonCode.INHERITED_RESTRICTION:
                text = "use only inputs not of the restricted origin, or " + text
        elif r.code is ReasonCode.NO_GRANT and purpose:
            text = f"request access for {purpose}; an approver decides"
        key = (r.code, text)
        if key not in seen:
            seen.add(key)
            out.append(Remedy.model_construct(code=r.code, text=text))
    return tuple(out)




# ------------------------------------------------------------------ rendering for people


def render(decision: Decision, request: dict[str, Any], *, width: int = 100) -> str:
    """A decision as a person reads it: verdict, clauses quoted, provenance drawn, remedies."""
    verb = request.get("action", "?")
    dest = f" to {request['destination']}" if request.get("destination") else ""
    head = f"{decision.effect.upper()}  {verb}{dest} {request.get('resource', '?')} for {request.get('purpose', '?')}"
    lines = [head]
    wrap = textwrap.TextWrapper(width=width, initial_indent="      ", subsequent_indent="       ")
    if decision.permitted:
        if decision.permitted_by:
            lines.append("  permitted by: " + ", ".join(decision.permitted_by))
    for r in decision.reasons:
        lines.append(f"  x {r.code.value}: {r.message}")
        if r.clause:
            src = f"{r.terms}" + (f", {r.section}" if r.section else "")
            lines.extend(wrap.wrap(f'"{r.clause}" ({src})'))
        if r.path:
            resource = str(request.get("resource", "?"))
            path = r.path if r.path[0] == resource else (resource, *r.path)
            lines.append("      provenance: " + " -> ".join(path))
    for o in decision.obligations:
        lines.append(f"  obligation {o.kind} ({o.id}):")
        lines.extend(wrap.wrap(f'"{o.clause}"'))
        if o.bibtex:
            lines.extend("      " + b for b in o.bibtex.strip().splitlines())
        elif o.reference:
            lines.extend(wrap.wrap(o.reference))
    for n in decision.notes:
        lines.append(f"  note {n.code.value}: {n.message}")
    for m in decision.remedies:
        lines.append(f"  remedy ({m.code.value}): {m.text}")
    return "\n".join(lines)
