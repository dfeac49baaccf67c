"""Render a dataset's or source's policy for a steward: each rule beside the clause it encodes."""

from __future__ import annotations

import textwrap
from typing import Any

from governance.policy.compile import CDataset, CompiledPolicies, CRule, CTerms


def _rule_scope(rule: CRule) -> str:
    scope = ", ".join(rule.written_actions)
    if rule.written_destinations is not None:
        scope += f" (exports to {', '.join(rule.written_destinations)})"
    if rule.purposes is not None:
        scope += f"; purposes {', '.join(sorted(rule.purposes))}"
    if rule.subsets is not None:
        scope += f"; subsets {', '.join(sorted(rule.subsets))}"
    scope += f"; applies to {', '.join(sorted(layer.value for layer in rule.layers))}"
    if rule.waivable_by:
        scope += f"; waivable by {rule.waivable_by}" + (" (a waiver permits)" if rule.permits_when_waived else "")
    return scope


def show_text(terms: CTerms, compiled: CompiledPolicies, width: int = 100) -> str:
    wrap = textwrap.TextWrapper(width=width, initial_indent="      ", subsequent_indent="      ")
    out = [f"{terms.title} ({terms.kind} '{terms.id}', {terms.path})",
           f"  licensor: {terms.licensor.name} [{terms.licensor.id}]" + (f" <{terms.licensor.contact}>" if terms.licensor.contact else "")]
    if terms.has_terms:
        out.append(f"  agreement: version {terms.version}, sha256 {terms.sha256}")
    else:
        out.append("  agreement: NO TERMS RECORDED; only discovery is allowed")
        out.extend(wrap.wrap(terms.no_terms_statement or ""))
    if terms.notes:
        out.append("  reading:")
        out.extend(wrap.wrap(terms.notes))
    if isinstance(terms, CDataset):
        out.append("  subsets:")
        for sub in terms.subsets.values():
            req = sub.requirement
            needs = [f"agreement {req.agreement}", f"{req.approval} approval"]
            if req.institutional_email:
                needs.insert(0, "institutional e-mail")
            if req.verified_email:
                needs.insert(0, "verified e-mail")
            origin = ""
            if sub.sources:
                origin += f"; every file from {', '.join(sub.sources)}"
            if sub.file_sources:
                origin += f"; files may come from {', '.join(sorted(sub.file_sources))} (per manifest)"
            out.append(f"    {sub.qid}  paths {', '.join(sub.patterns)}{origin}")
            out.append(f"      needs: {', '.join(needs)}")
            for aspect, clause in req.clauses.items():
                out.extend(wrap.wrap(f'{aspect}: "{clause}"'))
    if terms.rules:
        out.append("  rules:")
    for rule in terms.rules:
        out.append(f"    {rule.effect.upper():6} {rule.id}: {_rule_scope(rule)}")
        out.extend(wrap.wrap(f'"{rule.clause}"' + (f" ({rule.section})" if rule.section else "")))
    if terms.obligations:
        out.append("  obligations:")
    for ob in terms.obligations:
        out.append(f"    {ob.out.kind} {ob.out.id} on {', '.join(sorted(a.value for a in ob.actions))}")
        out.extend(wrap.wrap(f'"{ob.out.clause}"'))
        if ob.out.bibtex:
            out.extend("      " + line for line in ob.out.bibtex.strip().splitlines())
    if terms.termination is not None:
        out.append(f"  termination by {terms.termination.by}:")
        out.extend(wrap.wrap(f'"{" ".join(terms.termination.clause.split())}"'))
    return "\n".join(out)


def show_json(terms: CTerms, compiled: CompiledPolicies) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": terms.id,
        "kind": terms.kind,
        "title": terms.title,
        "licensor": terms.licensor.model_dump(),
        "has_terms": terms.has_terms,
        "version": terms.version,
        "sha256": terms.sha256,
        "no_terms": terms.no_terms_statement,
        "rules": [
            {"id": r.id, "qid": r.qid, "effect": r.effect, "scope": _rule_scope(r), "clause": r.clause,
             "section": r.section, "waivable_by": r.waivable_by}
            for r in terms.rules
        ],
        "obligations": [ob.out.model_dump() for ob in terms.obligations],
        "termination": terms.termination.model_dump() if terms.termination else None,
    }
    if isinstance(terms, CDataset):
        data["subsets"] = [
            {"id": s.id, "qid": s.qid, "paths": list(s.patterns), "sources": list(s.sources),
             "file_sources": sorted(s.file_sources), "requirement": {
                 "verified_email": s.requirement.verified_email,
                 "institutional_email": s.requirement.institutional_email,
                 "agreement": s.requirement.agreement, "approval": s.requirement.approval,
                 "clauses": s.requirement.clauses}}
            for s in terms.subsets.values()
        ]
    return data
