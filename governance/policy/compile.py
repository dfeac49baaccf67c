"""Compile a checked `PolicySet` into indexes the evaluator reads without searching.

Compilation happens once per policy load: rules are indexed by action, `copy_internal` is
folded into `export` to `internal` (DESIGN §2: they decide alike), purposes become ancestor
sets, subset globs become a first-segment index, and every reason and obligation object a
decision can carry is built here so deciding never formats text.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Literal

from governance.policy import globs
from governance.policy.decision import Obligation
from governance.policy.loader import Loaded, PolicySet
from governance.policy.schema import DatasetFile, Party, Requirement, Rule, SourceFile, Termination
from governance.types import Action, Destination, Layer, ReasonCode

_AGREEMENT_LEVEL = {"click-through": 0, "signed": 1, "hand-signed": 2}


def normalise_action(action: Action, destination: Destination | None) -> tuple[Action, Destination | None]:
    """`copy_internal` and `export` to `internal` are one request (DESIGN §2)."""
    if action is Action.COPY_INTERNAL:
        return Action.EXPORT, Destination.INTERNAL
    if action is not Action.EXPORT:
        return action, None
    return action, destination


@dataclass(frozen=True, slots=True, eq=False)
class CRule:
    """A compiled rule. `dests[action]` is the destination set (None: any) per action."""

    qid: str
    id: str
    terms_id: str
    terms_title: str
    owner: str
    effect: Literal["permit", "forbid"]
    dests: dict[Action, frozenset[Destination] | None]
    purposes: frozenset[str] | None
    subsets: frozenset[str] | None
    layers: frozenset[Layer]
    waivable_by: str | None
    permits_when_waived: bool
    clause: str
    section: str | None
    code: ReasonCode
    written_actions: tuple[str, ...] = ()
    written_destinations: tuple[str, ...] | None = None

    def matches(
        self,
        action: Action,
        dest: Destination | None,
        ancestors: frozenset[str],
        subset: str,
        layer: Layer,
    ) -> bool:
        if layer not in self.layers or action not in self.dests:
            return False
        allowed = self.dests[action]
        if allowed is not None and dest not in allowed:
            return False
        if self.purposes is not None and self.purposes.isdisjoint(ancestors):
            return False
        return self.subsets is None or subset in self.subsets


@dataclass(frozen=True, slots=True, eq=False)
class CObligation:
    actions: frozenset[Action]
    layers: frozenset[Layer]
    out: Obligation


@dataclass(frozen=True, slots=True, eq=False)
class CRequirement:
    verified_email: bool
    institutional_email: bool
    agreement: str
    approval: str
    clauses: dict[str, str]
    grant_days: int | None = 365


@dataclass(eq=False)
class CTerms:
    """The terms of a dataset or a source: what the evaluator needs, indexed."""

    id: str
    kind: Literal["dataset", "source"]
    title: str
    licensor: Party
    has_terms: bool
    version: str | None
    sha256: str | None
    text: str | None
    no_terms_statement: str | None
    notes: str | None
    rules: tuple[CRule, ...]
    rules_by_action: dict[Action, tuple[CRule, ...]]
    obligations: tuple[CObligation, ...]
    termination: Termination | None
    path: str


@dataclass(eq=False)
class CSubset:
    id: str
    qid: str
    dataset: str
    patterns: tuple[str, ...]
    sources: tuple[str, ...]
    file_sources: frozenset[str]
    requirement: CRequirement
    description: str | None


@dataclass(eq=False)
class CDataset(CTerms):
    subsets: dict[str, CSubset] = field(default_factory=dict)
    _by_segment: dict[str, tuple[tuple[re.Pattern[str] | None, CSubset], ...]] = field(default_factory=dict)
    _fallback: tuple[tuple[re.Pattern[str], CSubset], ...] = ()

    def find_subset(self, path: str) -> CSubset | None:
        """The subset containing a (validated) dataset-relative path, or None."""
        seg, _, rest = path.partition("/")
        for rx, sub in self._by_segment.get(seg, ()):
            if rx is None:
                if rest:
                    return sub
            elif rx.match(path):
                return sub
        for rx, sub in self._fallback:
            if rx.match(path):
                return sub
        return None

    def subset_for_directory(self, dirpath: str) -> CSubset | None:
        """The subset every file directly in `dirpath` belongs to, when the directory alone
        decides it (subset globs of the form `segment/**`); None when a file name could matter."""
        seg = dirpath.partition("/")[0]
        candidates = self._by_segment.get(seg, ())
        if candidates and candidates[0][0] is None:
            return candidates[0][1]
        return None

    def subsets_for_pattern(self, pattern: str) -> tuple[CSubset, ...]:
        """Subsets a path glob may touch (every one, if in doubt: restrictions then apply)."""
        if globs.is_literal(pattern):
            sub = self.find_subset(pattern)
            return (sub,) if sub is not None else ()
        return tuple(
            sub for sub in self.subsets.values() if any(globs.may_overlap(pattern, p) for p in sub.patterns)
        )


@dataclass(eq=False)
class CompiledPolicies:
    root: str
    ancestors: dict[str, frozenset[str]]
    purpose_descriptions: dict[str, str]
    datasets: dict[str, CDataset]
    sources: dict[str, CTerms]

    def terms(self, ident: str) -> CTerms | None:
        return self.datasets.get(ident) or self.sources.get(ident)


def compile_policies(pset: PolicySet) -> CompiledPolicies:
    """Build the evaluator's indexes from a checked policy set."""
    ancestors: dict[str, frozenset[str]] = {}
    parents = {p.id: p.parent for p in pset.purposes.purposes}
    for pid in parents:
        chain = [pid]
        cur = parents[pid]
        while cur is not None and cur not in chain:
            chain.append(cur)
            cur = parents.get(cur)
        ancestors[pid] = frozenset(chain)
    sources = {sid: _compile_terms(loaded, "source") for sid, loaded in pset.sources.items()}
    datasets = {did: _compile_dataset(loaded) for did, loaded in pset.datasets.items()}
    return CompiledPolicies(
        root=pset.root,
        ancestors=ancestors,
        purpose_descriptions={p.id: p.description for p in pset.purposes.purposes},
        datasets=datasets,
        sources=sources,
    )


def _rule_code(rule: Rule) -> ReasonCode:
    if rule.purposes is not None:
        return ReasonCode.PURPOSE_FORBIDDEN
    if rule.destinations is not None:
        return ReasonCode.DESTINATION_FORBIDDEN
    return ReasonCode.ACTION_FORBIDDEN


def _compile_rule(rule: Rule, terms_id: str, title: str, owner: str) -> CRule:
    dests: dict[Action, frozenset[Destination] | None] = {}
    explicit = frozenset(rule.destinations) if rule.destinations is not None else None
    for action in rule.actions:
        if action is Action.COPY_INTERNAL:
            prev = dests.get(Action.EXPORT, frozenset())
            dests[Action.EXPORT] = None if prev is None else prev | {Destination.INTERNAL}
        elif action is Action.EXPORT:
            prev = dests.get(Action.EXPORT, frozenset())
            dests[Action.EXPORT] = None if (explicit is None or prev is None) else prev | explicit
        else:
            dests[action] = None
    return CRule(
        qid=f"{terms_id}#{rule.id}",
        id=rule.id,
        terms_id=terms_id,
        terms_title=title,
        owner=owner,
        effect=rule.effect,
        dests=dests,
        purposes=frozenset(rule.purposes) if rule.purposes is not None else None,
        subsets=None,
        layers=frozenset(rule.applies_to),
        waivable_by=rule.waivable_by,
        permits_when_waived=rule.permits_when_waived,
        clause=" ".join(rule.clause.split()),
        section=rule.section,
        code=_rule_code(rule),
        written_actions=tuple(a.value for a in rule.actions),
        written_destinations=tuple(d.value for d in rule.destinations) if rule.destinations is not None else None,
    )


def _compile_terms(loaded: Loaded, kind: Literal["dataset", "source"], cls: type[CTerms] = CTerms) -> CTerms:
    model: DatasetFile | SourceFile = loaded.model
    ident = model.dataset if isinstance(model, DatasetFile) else model.source
    rules = tuple(_compile_rule(r, ident, model.title, model.licensor.id) for r in model.rules)
    by_action: dict[Action, list[CRule]] = {}
    for crule in rules:
        for action in crule.dests:
            by_action.setdefault(action, []).append(crule)
    obligations = []
    for ob in model.obligations:
        acts = {normalise_action(a, None)[0] for a in ob.actions}
        obligations.append(
            CObligation(
                actions=frozenset(acts),
                layers=frozenset(ob.applies_to),
                out=Obligation(
                    kind=ob.kind,
                    id=f"{ident}#{ob.id}",
                    clause=" ".join(ob.clause.split()),
                    terms=ident,
                    bibtex=ob.bibtex,
                    reference=ob.reference,
                ),
            )
        )
    return cls(
        id=ident,
        kind=kind,
        title=model.title,
        licensor=model.licensor,
        has_terms=model.terms is not None,
        version=model.terms.version if model.terms else None,
        sha256=loaded.sha256,
        text=loaded.text,
        no_terms_statement=" ".join(model.no_terms.statement.split()) if model.no_terms else None,
        notes=" ".join(model.notes.split()) if model.notes else None,
        rules=rules,
        rules_by_action={a: tuple(v) for a, v in by_action.items()},
        obligations=tuple(obligations),
        termination=getattr(model, "termination", None),
        path=loaded.path,
    )


def _merge_requirements(reqs: list[Requirement]) -> CRequirement:
    if not reqs:
        # INVARIANT: a subset no requirement names still needs the strictest click-through basics.
        return CRequirement(True, False, "click-through", "manual", {})
    clauses: dict[str, str] = {}
    for r in reqs:
        for k, v in r.clauses.items():
            clauses.setdefault(k, " ".join(v.split()))
    return CRequirement(
        verified_email=any(r.verified_email for r in reqs),
        institutional_email=any(r.institutional_email for r in reqs),
        agreement=max((r.agreement for r in reqs), key=_AGREEMENT_LEVEL.__getitem__),
        approval="manual" if any(r.approval == "manual" for r in reqs) else "automatic",
        clauses=clauses,
        # The shortest validity any matching requirement asks for (None: until revoked).
        grant_days=min((r.grant_days for r in reqs if r.grant_days is not None), default=None),
    )


def _compile_dataset(loaded: Loaded) -> CDataset:
    model: DatasetFile = loaded.model
    ds = _compile_terms(loaded, "dataset", CDataset)
    assert isinstance(ds, CDataset)
    names = [s.id for s in model.subsets]
    # Rules naming subsets: expand the subset globs now so matching is a set lookup.
    rules = []
    for crule, rule in zip(ds.rules, model.rules, strict=True):
        if rule.subsets is not None:
            chosen = frozenset(n for pattern in rule.subsets for n in globs.match_names(pattern, names))
            crule = dataclasses.replace(crule, subsets=chosen)
        rules.append(crule)
    ds.rules = tuple(rules)
    by_action: dict[Action, list[CRule]] = {}
    for crule in ds.rules:
        for action in crule.dests:
            by_action.setdefault(action, []).append(crule)
    ds.rules_by_action = {a: tuple(v) for a, v in by_action.items()}

    by_segment: dict[str, list[tuple[re.Pattern[str] | None, CSubset]]] = {}
    fallback: list[tuple[re.Pattern[str], CSubset]] = []
    for sub in model.subsets:
        reqs = [r for r in model.requirements if any(globs.match_names(p, [sub.id]) for p in r.subsets)]
        csub = CSubset(
            id=sub.id,
            qid=f"{ds.id}/{sub.id}",
            dataset=ds.id,
            patterns=tuple(sub.paths),
            sources=tuple(sub.sources),
            file_sources=frozenset(sub.file_sources),
            requirement=_merge_requirements(reqs),
            description=sub.description,
        )
        ds.subsets[sub.id] = csub
        for pattern in sub.paths:
            first, _, rest = pattern.partition("/")
            if globs.is_literal(first) and rest == "**":
                by_segment.setdefault(first, []).append((None, csub))
            elif globs.is_literal(first) and rest:
                by_segment.setdefault(first, []).append((globs.compile_glob(pattern), csub))
            else:
                fallback.append((globs.compile_glob(pattern), csub))
    ds._by_segment = {k: tuple(v) for k, v in by_segment.items()}
    ds._fallback = tuple(fallback)
    return ds
