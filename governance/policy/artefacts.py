"""Decisions on artefacts (DESIGN §3.5-3.6): a derivative carries the terms of its inputs.

Functions of an `Engine`: they use its memoised terms, requirement and grant look-ups (the
engine's underscored methods are internal to this package, shared by these two modules).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from governance.errors import LineageError
from governance.policy import explain
from governance.policy.common import UNRECORDED, TermsOutcome, echo, valid_path
from governance.policy.compile import CDataset, CRule, CSubset
from governance.policy.decision import Decision, Note, Obligation, Reason
from governance.policy.subject import SubjectView, is_active
from governance.provenance.lineage import ARTEFACT_PREFIX, Leaf, Provenance
from governance.types import Action, Destination, Layer, ReasonCode

if TYPE_CHECKING:
    from governance.policy.evaluate import Engine


def artefact_decision(
    engine: Engine,
    subject: SubjectView,
    art: str,
    act: Action,
    dest: Destination | None,
    purpose: str,
    now: datetime,
    prov: Provenance,
) -> Decision:
    """Share artefact decisions between subjects whose relevant state is the same."""
    if subject.waivers or act is Action.DISCOVER:
        return _compute(engine, subject, art, act, dest, purpose, now, prov)
    try:
        leaves = prov.leaves(art)
    except LineageError:
        return _compute(engine, subject, art, act, dest, purpose, now, prov)
    ancestors = engine.policies.ancestors[purpose]
    via = sorted({v for leaf in leaves for v in leaf.via})
    parts: list[object] = [
        any(is_active(g, now) and g.purpose in ancestors for g in subject.artefact_grants.get(v[len(ARTEFACT_PREFIX):], ()))
        for v in via
    ]
    for leaf in leaves:
        ds = engine.policies.datasets.get(leaf.dataset)
        if ds is None or not ds.has_terms:
            continue
        for sub in _leaf_subsets(engine, ds, leaf):
            parts.append((engine._requirement_reasons(subject, ds, sub),
                          engine._grant_status(subject, ds, sub, purpose, ancestors, now)))
    key = (prov.serial, art, act, dest, purpose, tuple(parts))
    d = engine._artefact_memo.get(key)
    if d is None:
        d = _compute(engine, subject, art, act, dest, purpose, now, prov)
        if len(engine._artefact_memo) >= engine.cache_size:
            engine._artefact_memo.clear()
        engine._artefact_memo[key] = d
    return d


def _compute(
    engine: Engine,
    subject: SubjectView,
    art: str,
    act: Action,
    dest: Destination | None,
    purpose: str,
    now: datetime,
    prov: Provenance,
) -> Decision:
    """DESIGN §3.5-3.6: an artefact carries the terms of everything it was made from."""
    try:
        leaves = prov.leaves(art)
    except LineageError as exc:
        return engine._bad_request([Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=str(exc))])
    if act is Action.DISCOVER:
        return engine._discover
    ancestors = engine.policies.ancestors[purpose]
    reasons: list[Reason] = []
    notes: list[Note] = []
    obligations: list[Obligation] = []
    permits: list[CRule] = []
    waived: list[str] = []
    art_grants = {a: subject.artefact_grants.get(a, []) for a in {v[len(ARTEFACT_PREFIX):] for leaf in leaves for v in leaf.via}}
    for leaf in leaves:
        ds = engine.policies.datasets.get(leaf.dataset)
        via = (*leaf.via, leaf.label)
        if ds is None:
            reasons.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, path=via, message=f"lineage input {echo(leaf.label)} names an unknown dataset"))
            continue
        if not ds.has_terms:
            reasons.extend(explain.no_terms_decision(ds, via).reasons)
            continue
        subs = _leaf_subsets(engine, ds, leaf)
        if not subs:
            reasons.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, path=via, message=f"lineage input {echo(leaf.label)} matches no subset of {ds.id}"))
            continue
        covered = any(
            is_active(g, now) and g.purpose in ancestors
            for v in leaf.via for g in art_grants.get(v[len(ARTEFACT_PREFIX):], ())
        )
        for sub in subs:
            fkey = _leaf_origins(ds, sub, leaf, prov)
            outcome = engine._terms_outcome(ds, sub, fkey, Layer.DERIVED, act, dest, purpose)
            leaf_reasons: list[Reason] = []
            wp = engine._apply_forbids(subject, outcome, ds.id, sub.id, act, dest, ancestors, now, leaf_reasons, notes)
            waived.extend(wp)
            # The input dataset's own rules keep their code; upstream sources' are inherited.
            for r in leaf_reasons:
                reasons.append(r.model_copy(update={"path": via + r.path}))
            if not outcome.permits and not wp and not leaf_reasons:
                reasons.append(engine._not_granted(ds, act, dest, purpose).model_copy(update={"path": via}))
            permits.extend(outcome.permits)
            notes.extend(n for n in outcome.notes if n not in notes)
            obligations.extend(o for o in outcome.obligations if o not in obligations)
            reasons.extend(engine._requirement_reasons(subject, ds, sub))
            if not covered:
                reasons.extend(r.model_copy(update={"path": via}) for r in engine._grant_reasons(subject, ds, sub, purpose, ancestors, now))
    unique: list[Reason] = []
    for r in reasons:
        if r not in unique:
            unique.append(r)
    outcome = TermsOutcome(tuple(dict.fromkeys(permits)), (), tuple(obligations), ())
    return engine._finish(unique, outcome, notes, list(dict.fromkeys(waived)), purpose)


def _leaf_subsets(engine: Engine, ds: CDataset, leaf: Leaf) -> tuple[CSubset, ...]:
    key = (ds.id, leaf.pattern, leaf.subset)
    subs = engine._leaf_memo.get(key)
    if subs is None:
        subs = engine._leaf_memo[key] = _match_leaf(ds, leaf)
    return subs


def _match_leaf(ds: CDataset, leaf: Leaf) -> tuple[CSubset, ...]:
    if leaf.pattern is not None:
        if valid_path(leaf.pattern.replace("*", "x").replace("?", "x")) is not None:
            return ()
        return ds.subsets_for_pattern(leaf.pattern)
    if leaf.subset is not None:
        sub = ds.subsets.get(leaf.subset)
        return (sub,) if sub is not None else ()
    return tuple(ds.subsets.values())


def _leaf_origins(ds: CDataset, sub: CSubset, leaf: Leaf, prov: Provenance) -> frozenset[str] | None:
    if not sub.file_sources:
        return None
    if leaf.pattern is not None and not any(c in leaf.pattern for c in "*?["):
        tags = prov.file_sources(ds.id, leaf.pattern)
        return UNRECORDED if tags is None else tags
    # A glob or whole-subset input may include any file: every listed origin may reach it.
    return UNRECORDED
