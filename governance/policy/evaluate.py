"""The decision engine (DESIGN §3): default deny, forbid overrides permit, owner-only waivers,
hierarchical purposes, requirements re-checked per access, terms carried through provenance.

Pure: no database, no HTTP, no clock (callers pass `now`). Errors in a request are denies with
a reason, never exceptions. Decisions are memoised per subject on everything they depend on
(subset, recorded file origins, action, destination, purpose, and the interval between the
subject's grant and waiver time stamps that `now` falls in), so a batch of files costs one
decision per subset and distinct provenance plus a dictionary lookup per file.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from datetime import datetime

from governance.identity.institutional import InstitutionalClassifier
from governance.policy import artefacts, explain
from governance.policy.common import ACTIONS, BAD_NAMES, DESTINATIONS, UNRECORDED, TermsOutcome, echo, valid_path
from governance.policy.compile import CDataset, CompiledPolicies, CRule, CSubset, CTerms
from governance.policy.decision import Decision, Note, Obligation, Reason
from governance.policy.facts import SubjectState, WaiverFact
from governance.policy.subject import SubjectView, is_active
from governance.provenance.lineage import ARTEFACT_PREFIX, EMPTY, Provenance
from governance.types import Action, Destination, Layer, NoteCode, ReasonCode


class Engine:
    """Decide requests against compiled policies. One engine serves many subjects and threads."""

    def __init__(
        self,
        policies: CompiledPolicies,
        *,
        classifier: InstitutionalClassifier | None = None,
        cache_size: int = 8192,
    ) -> None:
        self.policies = policies
        self.classifier = classifier or InstitutionalClassifier()
        self.cache_size = cache_size
        self._terms_memo: dict[tuple[object, ...], TermsOutcome] = {}
        self._reason_memo: dict[tuple[object, ...], Reason] = {}
        self._reason_sets: dict[tuple[object, ...], tuple[Reason, ...]] = {}
        self._decision_memo: dict[tuple[object, ...], Decision] = {}
        self._no_terms_memo: dict[str, Decision] = {}
        self._resolved: dict[tuple[object, ...], tuple[Action, Destination | None, tuple[Reason, ...]]] = {}
        self._artefact_memo: dict[tuple[object, ...], Decision] = {}
        self._combined: dict[tuple[object, ...], tuple[TermsOutcome, tuple[Reason, ...], Decision]] = {}
        self._leaf_memo: dict[tuple[str, str | None, str | None], tuple[CSubset, ...]] = {}
        self._discover = Decision(effect="permit")
        self._dirs: dict[str, CSubset | None] = {}
        self.dir_cache_size = 65536

    # ---------------------------------------------------------------- public API

    def subject(self, state: SubjectState) -> SubjectView:
        """Compile a subject's state once; reuse the view for every request it makes."""
        return SubjectView(state, self.classifier)

    def decide(
        self,
        subject: SubjectView,
        *,
        action: str,
        resource: str,
        purpose: str,
        destination: str | None = None,
        now: datetime,
        provenance: Provenance | None = None,
    ) -> Decision:
        """Decide one request. Never raises for bad input: that is a deny with a reason."""
        try:
            # Fast path: a file in a directory whose subset is known, with no per-file origins,
            # already decided for this subject in this time interval.
            head, _, name = resource.rpartition("/")
            sub = self._dirs.get(head) or self._dir_subset(head)
            if sub is not None and name not in BAD_NAMES and name.isprintable() and "\\" not in name:
                fkey: frozenset[str] | None = None
                if sub.file_sources:
                    tags = (provenance or EMPTY).files.get((sub.dataset, resource[len(sub.dataset) + 1:]))
                    fkey = UNRECORDED if tags is None else tags
                th = subject.thresholds
                key = (sub, fkey, action, destination, purpose, bisect_right(th, now) if th else 0)
                d = subject.cache.get(key)
                if d is None:
                    d = self._decide_known_subset(subject, sub, fkey, action, purpose, destination, now, key)
                return d
            return self._decide(subject, action, resource, purpose, destination, now, provenance or EMPTY)
        except Exception as exc:  # noqa: BLE001 - SECURITY: fail closed on any engine bug
            return self._internal_error(exc)

    def decide_batch(
        self,
        subject: SubjectView,
        *,
        action: str,
        resources: Sequence[str],
        purpose: str,
        destination: str | None = None,
        now: datetime,
        provenance: Provenance | None = None,
    ) -> list[Decision]:
        """Decide one action over many resources; the result is aligned with `resources`.

        Files of one subset and one recorded origin share a decision object, so grouping the
        answer by `id(decision)` gives the per-subset view.
        """
        prov = provenance or EMPTY
        try:
            act, dest, bad = self._resolve(action, purpose, destination)
            if bad:
                return [self._bad_request(bad)] * len(resources)
            th = subject.thresholds
            slot = bisect_right(th, now) if th else 0
            files = prov.files
            dirs = self._dirs
            dir_subset = self._dir_subset
            local: dict[object, Decision] = {}
            out: list[Decision] = []
            append = out.append
            # The per-file steps below repeat decide()'s fast path on purpose: a helper call per
            # file would cost more than the rest of the loop on this path.
            for resource in resources:
                head, _, name = resource.rpartition("/")
                sub = dirs.get(head) or dir_subset(head)
                if sub is None or name in BAD_NAMES or not name.isprintable() or "\\" in name:
                    append(self._decide(subject, action, resource, purpose, destination, now, prov))
                    continue
                fkey: frozenset[str] | None = None
                group: object = sub
                if sub.file_sources:
                    tags = files.get((sub.dataset, resource[len(sub.dataset) + 1:]))
                    fkey = UNRECORDED if tags is None else tags
                    group = (sub, fkey)
                d = local.get(group)
                if d is None:
                    key = (sub, fkey, act, dest, purpose, slot)
                    d = subject.cache.get(key)
                    if d is None:
                        ds = self.policies.datasets[sub.dataset]
                        d = self._decide_file(subject, ds, sub, fkey, act, dest, purpose, now)
                        self._store(subject, key, d)
                    local[group] = d
                append(d)
            return out
        except Exception as exc:  # noqa: BLE001 - SECURITY: fail closed on any engine bug
            return [self._internal_error(exc)] * len(resources)

    def _dir_subset(self, head: str) -> CSubset | None:
        """The subset of files directly in `dataset:dir`, memoised per directory (None: no fast path)."""
        if head in self._dirs:
            return self._dirs[head]
        sub: CSubset | None = None
        ds_id, sep, dirpath = head.partition(":")
        ds = self.policies.datasets.get(ds_id) if sep else None
        if ds is not None and valid_path(dirpath) is None:
            sub = ds.subset_for_directory(dirpath)
        if len(self._dirs) >= self.dir_cache_size:
            self._dirs.clear()  # an explicit bound
        self._dirs[head] = sub
        return sub

    def _decide_known_subset(
        self,
        subject: SubjectView,
        sub: CSubset,
        fkey: frozenset[str] | None,
        action: str,
        purpose: str,
        destination: str | None,
        now: datetime,
        key: tuple[object, ...],
    ) -> Decision:
        act, dest, bad = self._resolve(action, purpose, destination)
        if bad:
            d = self._bad_request(bad)
        else:
            d = self._decide_file(subject, self.policies.datasets[sub.dataset], sub, fkey, act, dest, purpose, now)
        self._store(subject, key, d)
        return d

    # ---------------------------------------------------------------- request parsing

    def _resolve(
        self, action: str, purpose: str, destination: str | None
    ) -> tuple[Action, Destination | None, list[Reason]]:
        key = (action, purpose, destination)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit[0], hit[1], list(hit[2])
        act, dest, bad = self._resolve_uncached(action, purpose, destination)
        # Only well-formed requests naming a known destination (or none) are remembered, so the
        # memo is bounded by actions x purposes x destinations whatever callers send.
        if not bad and (destination is None or destination in DESTINATIONS):
            self._resolved[key] = (act, dest, ())
        return act, dest, bad

    def _resolve_uncached(
        self, action: str, purpose: str, destination: str | None
    ) -> tuple[Action, Destination | None, list[Reason]]:
        bad: list[Reason] = []
        act = ACTIONS.get(action) if isinstance(action, str) else None
        dest: Destination | None = None
        if act is None:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_ACTION, message=f"unknown action {echo(action)}; known: {', '.join(ACTIONS)}"))
            act = Action.DISCOVER
        elif act is Action.COPY_INTERNAL:
            act, dest = Action.EXPORT, Destination.INTERNAL
            if destination not in (None, Destination.INTERNAL.value):
                bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_ACTION,
                                  message=f"copy_internal goes to 'internal' only, not {echo(destination)}; use export with a destination"))
        elif act is Action.EXPORT:
            dest = DESTINATIONS.get(destination) if isinstance(destination, str) else None
            if dest is None:
                what = "needs a destination" if destination is None else f"has unknown destination {echo(destination)}"
                bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_ACTION, message=f"export {what}; known: {', '.join(DESTINATIONS)}"))
        if not isinstance(purpose, str) or purpose not in self.policies.ancestors:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_PURPOSE, message=f"unknown purpose {echo(purpose)}"))
        return act, dest, bad

    def _decide(
        self,
        subject: SubjectView,
        action: str,
        resource: str,
        purpose: str,
        destination: str | None,
        now: datetime,
        prov: Provenance,
    ) -> Decision:
        act, dest, bad = self._resolve(action, purpose, destination)
        if not isinstance(resource, str):
            return self._bad_request([*bad, Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message="the resource is not a string")])
        slot = bisect_right(subject.thresholds, now) if subject.thresholds else 0
        if resource.startswith(ARTEFACT_PREFIX):
            art = resource[len(ARTEFACT_PREFIX):]
            if art not in prov:
                bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"unknown artefact {echo(art)}"))
            if bad:
                return self._bad_request(bad)
            key: tuple[object, ...] = ("artefact", prov.serial, art, act, dest, purpose, slot)
            d = subject.cache.get(key)
            if d is None:
                d = artefacts.artefact_decision(self, subject, art, act, dest, purpose, now, prov)
                self._store(subject, key, d)
            return d
        ds_id, sep, path = resource.partition(":")
        ds = self.policies.datasets.get(ds_id) if sep else None
        sub: CSubset | None = None
        if not sep:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"resource {echo(resource)} is not 'dataset:path' or 'artefact:id'"))
        elif ds is None:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"unknown dataset {echo(ds_id)}"))
        elif (problem := valid_path(path)) is not None:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"malformed resource path: {problem}"))
        elif (sub := ds.find_subset(path)) is None:
            bad.append(Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"no subset of {ds_id} contains {echo(path)}"))
        if bad or ds is None or sub is None:
            return self._bad_request(bad)
        fkey: frozenset[str] | None = None
        if sub.file_sources:
            tags = prov.file_sources(ds_id, path)
            fkey = UNRECORDED if tags is None else tags
        key = (sub, fkey, act, dest, purpose, slot)
        d = subject.cache.get(key)
        if d is None:
            d = self._decide_file(subject, ds, sub, fkey, act, dest, purpose, now)
            self._store(subject, key, d)
        return d

    def _store(self, subject: SubjectView, key: tuple[object, ...], d: Decision) -> None:
        if len(subject.cache) >= self.cache_size:
            subject.cache.clear()  # an explicit bound; entries are cheap to recompute
        subject.cache[key] = d

    def _bad_request(self, reasons: list[Reason]) -> Decision:
        return Decision.model_construct(effect="deny", reasons=tuple(reasons), remedies=explain.remedies_for(reasons, ""))

    def _internal_error(self, exc: Exception) -> Decision:
        # SECURITY: no exception text reaches the caller; the type is enough for an operator.
        r = Reason.model_construct(code=ReasonCode.UNKNOWN_RESOURCE, message=f"the engine failed to decide ({type(exc).__name__}); denied")
        return Decision.model_construct(effect="deny", reasons=(r,))

    # ---------------------------------------------------------------- files

    def _decide_file(
        self,
        subject: SubjectView,
        ds: CDataset,
        sub: CSubset,
        fkey: frozenset[str] | None,
        act: Action,
        dest: Destination | None,
        purpose: str,
        now: datetime,
    ) -> Decision:
        if act is Action.DISCOVER:
            # Discovery (metadata) is open for every known resource (DESIGN §3.1).
            return self._discover
        if not ds.has_terms:
            return self._no_terms(ds)
        ancestors = self.policies.ancestors[purpose]
        layer = Layer.DERIVED if act is Action.PUBLISH_DERIVATIVE else Layer.DATA
        outcome = self._terms_outcome(ds, sub, fkey, layer, act, dest, purpose)
        requirements = self._requirement_reasons(subject, ds, sub)
        status = self._grant_status(subject, ds, sub, purpose, ancestors, now)
        # Without waivers in play a decision is a function of three memoised values; share it.
        # The entry holds `outcome` and `requirements`, and the hit is checked by identity.
        shared = not (outcome.forbids and subject.waivers)
        if shared:
            key = (id(outcome), id(requirements), status)
            entry = self._combined.get(key)
            if entry is not None and entry[0] is outcome and entry[1] is requirements:
                return entry[2]
        reasons: list[Reason] = []
        notes: list[Note] = list(outcome.notes)
        waived_permits = self._apply_forbids(subject, outcome, ds.id, sub.id, act, dest, ancestors, now, reasons, notes)
        if not outcome.permits and not waived_permits and not reasons:
            reasons.append(self._not_granted(ds, act, dest, purpose))
        reasons.extend(requirements)
        reasons.extend(self._grant_reasons_for(status, sub, purpose))
        d = self._finish(reasons, outcome, notes, waived_permits, purpose)
        if shared:
            if len(self._combined) >= self.cache_size * 4:
                self._combined.clear()
            self._combined[key] = (outcome, requirements, d)
        return d

    def _remember_set(self, key: tuple[object, ...], reasons: tuple[Reason, ...]) -> None:
        if len(self._reason_sets) >= self.cache_size * 8:
            self._reason_sets.clear()  # an explicit bound (keys include caller-supplied versions)
        self._reason_sets[key] = reasons

    def _no_terms(self, ds: CDataset) -> Decision:
        d = self._no_terms_memo.get(ds.id)
        if d is None:
            d = self._no_terms_memo[ds.id] = explain.no_terms_decision(ds, ())
        return d

    def _finish(
        self,
        reasons: list[Reason],
        outcome: TermsOutcome,
        notes: list[Note],
        waived_permits: list[str],
        purpose: str,
    ) -> Decision:
        # Decisions are values: equal inputs share one object. Keys use object identities,
        # which is safe: the memoised decision holds every object its key names, so none of
        # those ids can be reused while the entry exists.
        if reasons:
            key: tuple[object, ...] = ("deny", tuple(map(id, reasons)), tuple(map(id, notes)), purpose)
            d = self._decision_memo.get(key)
            if d is None:
                d = Decision.model_construct(effect="deny", reasons=tuple(reasons),
                                             remedies=explain.remedies_for(reasons, purpose), notes=tuple(notes))
        else:
            permitted_by = tuple(r.qid for r in outcome.permits) + tuple(waived_permits)
            key = ("permit", tuple(map(id, outcome.obligations)), tuple(map(id, notes)), permitted_by)
            d = self._decision_memo.get(key)
            if d is None:
                d = Decision.model_construct(effect="permit", obligations=outcome.obligations, notes=tuple(notes),
                                             permitted_by=permitted_by)
        if len(self._decision_memo) >= self.cache_size * 4:
            self._decision_memo.clear()
        self._decision_memo[key] = d
        return d

    def _apply_forbids(
        self,
        subject: SubjectView,
        outcome: TermsOutcome,
        ds_id: str,
        sub_id: str,
        act: Action,
        dest: Destination | None,
        ancestors: frozenset[str],
        now: datetime,
        reasons: list[Reason],
        notes: list[Note],
    ) -> list[str]:
        """Forbid overrides permit unless the rule's owner waived it; returns waiver-permits."""
        waived_permits: list[str] = []
        for rule, reason in outcome.forbids:
            waiver, ignored = self._waiver_for(subject, rule, ds_id, sub_id, act, dest, ancestors, now)
            for w in ignored:
                notes.append(Note.model_construct(code=NoteCode.WAIVER_IGNORED, rule=rule.qid,
                                  message=f"a waiver from '{w.owner}' was ignored: only '{rule.owner}' can waive {rule.qid}"))
            if waiver is None:
                reasons.append(reason)
                continue
            notes.append(Note.model_construct(code=NoteCode.WAIVED, rule=rule.qid,
                              message=f"{rule.qid} waived by its owner '{rule.owner}'" + (f" (waiver {waiver.id})" if waiver.id else "")
                              + f': "{rule.clause}"'))
            if rule.permits_when_waived:
                waived_permits.append(rule.qid)
        return waived_permits

    def _waiver_for(
        self,
        subject: SubjectView,
        rule: CRule,
        ds_id: str,
        sub_id: str,
        act: Action,
        dest: Destination | None,
        ancestors: frozenset[str],
        now: datetime,
    ) -> tuple[WaiverFact | None, list[WaiverFact]]:
        if rule.waivable_by is None or not subject.waivers:
            return None, []
        ignored: list[WaiverFact] = []
        for w in subject.waivers:
            if not is_active(w, now) or w.dataset not in (rule.terms_id, ds_id):
                continue
            w_act, w_dest = (Action.EXPORT, Destination.INTERNAL) if w.action is Action.COPY_INTERNAL else (w.action, w.destination)
            if w_act is not act or (w_dest is not None and w_dest is not dest):
                continue
            if w.rule is not None and w.rule not in (rule.id, rule.qid):
                continue
            if w.subset is not None and w.subset != sub_id:
                continue
            if w.purpose is not None and w.purpose not in ancestors:
                continue
            if w.owner != rule.waivable_by:
                ignored.append(w)
                continue
            return w, []
        return None, ignored

    def _not_granted(self, ds: CTerms, act: Action, dest: Destination | None, purpose: str) -> Reason:
        key = ("not_granted", ds.id, act, dest, purpose)
        r = self._reason_memo.get(key)
        if r is None:
            what = f"export to {dest.value}" if dest is not None else act.value
            if dest is Destination.INTERNAL:
                what = "internal copies (copy_internal)"
            r = Reason.model_construct(code=ReasonCode.NOT_GRANTED_BY_TERMS, terms=ds.id,
                       message=f"the {ds.title} terms do not grant {what} for {purpose}")
            self._reason_memo[key] = r
        return r

    # ---------------------------------------------------------------- terms side

    def _terms_outcome(
        self,
        ds: CDataset,
        sub: CSubset,
        fkey: frozenset[str] | None,
        layer: Layer,
        act: Action,
        dest: Destination | None,
        purpose: str,
    ) -> TermsOutcome:
        key = (sub, fkey, layer, act, dest, purpose)
        cached = self._terms_memo.get(key)
        if cached is not None:
            return cached
        ancestors = self.policies.ancestors[purpose]
        permits: list[CRule] = []
        forbids: list[tuple[CRule, Reason]] = []
        obligations: list[Obligation] = []
        notes: list[Note] = []
        for terms, path in self._terms_chain(ds, sub, fkey):
            own = terms is ds
            if not terms.has_terms:
                notes.append(Note.model_construct(code=NoteCode.SOURCE_TERMS_UNRECORDED,
                                  message=f"{terms.title} (an origin via {' -> '.join(path)}) has no recorded terms; {ds.title}'s terms govern"))
                continue
            for rule in terms.rules_by_action.get(act, ()):
                if not rule.matches(act, dest, ancestors, sub.id if own else "", layer):
                    continue
                if rule.effect == "permit":
                    if own:  # INVARIANT: permission comes from the dataset's own terms only
                        permits.append(rule)
                else:
                    forbids.append((rule, self._forbid_reason(rule, path, own)))
            for ob in terms.obligations:
                if act in ob.actions and layer in ob.layers and ob.out not in obligations:
                    obligations.append(ob.out)
        if fkey is UNRECORDED:
            notes.append(Note.model_construct(code=NoteCode.ORIGIN_UNRECORDED,
                              message=f"the manifest records no origin for this file; it is treated as possibly from {', '.join(sorted(sub.file_sources))}"))
        outcome = TermsOutcome(tuple(permits), tuple(forbids), tuple(obligations), tuple(notes))
        self._terms_memo[key] = outcome
        return outcome

    def _terms_chain(
        self, ds: CDataset, sub: CSubset, fkey: frozenset[str] | None
    ) -> list[tuple[CTerms, tuple[str, ...]]]:
        """The dataset's terms plus those of every upstream source that reaches this file."""
        chain: list[tuple[CTerms, tuple[str, ...]]] = [(ds, ())]
        for src in sub.sources:
            chain.append((self.policies.sources[src], (f"subset {sub.qid}", f"source {src}")))
        if fkey is not None:
            origins = sub.file_sources if fkey is UNRECORDED else fkey
            how = "origin not recorded" if fkey is UNRECORDED else "origin recorded in the manifest"
            for src in sorted(origins):
                if src in sub.sources or src not in self.policies.sources:
                    continue
                chain.append((self.policies.sources[src], (f"subset {sub.qid}", f"file {how}", f"source {src}")))
        return chain

    def _forbid_reason(self, rule: CRule, path: tuple[str, ...], own: bool) -> Reason:
        key = (rule.qid, path, own)
        r = self._reason_memo.get(key)
        if r is None:
            r = explain.forbid_reason(rule, path, own)
            self._reason_memo[key] = r
        return r

    # ---------------------------------------------------------------- subject side

    def _requirement_reasons(self, subject: SubjectView, ds: CDataset, sub: CSubset) -> tuple[Reason, ...]:
        key = (ds.id, sub.id)
        cached = subject._req_cache.get(key)
        if cached is None:
            state = subject.state
            req = sub.requirement
            classification = subject.classification if req.institutional_email else None
            signature = (
                ds.id in subject.terminated,
                state.email_verified or not req.verified_email,
                classification,
                state.accepted.get(ds.id),
                ds.id in subject.signed or req.agreement == "click-through",
            )
            memo_key = (ds.id, sub.id, signature)
            cached = self._reason_sets.get(memo_key)
            if cached is None:
                cached = explain.requirement_reasons(state, classification, ds, sub, signed=subject.signed,
                                                     terminated=subject.terminated)
                self._remember_set(memo_key, cached)
            subject._req_cache[key] = cached
        return cached

    def _grant_reasons(
        self,
        subject: SubjectView,
        ds: CDataset,
        sub: CSubset,
        purpose: str,
        ancestors: frozenset[str],
        now: datetime,
    ) -> tuple[Reason, ...]:
        return self._grant_reasons_for(self._grant_status(subject, ds, sub, purpose, ancestors, now), sub, purpose)

    def _grant_status(
        self, subject: SubjectView, ds: CDataset, sub: CSubset, purpose: str, ancestors: frozenset[str], now: datetime
    ) -> tuple[object, ...]:
        th = subject.thresholds
        key = (sub, purpose, bisect_right(th, now) if th else 0)
        status = subject._grant_cache.get(key)
        if status is None:
            scoped = [g for s, g in subject.grants_by_dataset.get(ds.id, ()) if s is None or s == sub.id]
            status = subject._grant_cache[key] = explain.grant_status(scoped, ancestors, now, is_active)
        return status

    def _grant_reasons_for(self, status: tuple[object, ...], sub: CSubset, purpose: str) -> tuple[Reason, ...]:
        if not status:
            return ()
        key = ("grant", sub.qid, purpose, status)
        cached = self._reason_sets.get(key)
        if cached is None:
            cached = explain.grant_reasons(status, sub.qid, purpose)
            self._remember_set(key, cached)
        return cached

    # ---------------------------------------------------------------- artefacts
