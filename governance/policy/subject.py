"""A subject compiled for deciding: its grants, waivers and requirement status, indexed once."""

from __future__ import annotations

from datetime import datetime

from governance.identity.institutional import Classification, InstitutionalClassifier
from governance.policy.decision import Decision, Reason
from governance.policy.facts import GrantFact, SubjectState, WaiverFact
from governance.provenance.lineage import ARTEFACT_PREFIX


class SubjectView:
    """A subject compiled for deciding: indexes over its grants, waivers and requirement status."""

    __slots__ = (
        "state", "_classifier", "_classification", "accepted", "signed", "terminated",
        "grants_by_dataset", "artefact_grants", "waivers", "thresholds", "cache", "_req_cache", "_grant_cache",
    )

    def __init__(self, state: SubjectState, classifier: InstitutionalClassifier) -> None:
        self.state = state
        self._classifier = classifier
        self._classification: Classification | None = None
        self.accepted = dict(state.accepted)
        self.signed = frozenset(state.signed)
        self.terminated = frozenset(state.terminated)
        by_ds: dict[str, list[tuple[str | None, GrantFact]]] = {}
        arts: dict[str, list[GrantFact]] = {}
        times: set[datetime] = set()
        for g in state.grants:
            if g.scope.startswith(ARTEFACT_PREFIX):
                arts.setdefault(g.scope[len(ARTEFACT_PREFIX):], []).append(g)
            else:
                ds, _, sub = g.scope.partition("/")
                by_ds.setdefault(ds, []).append((sub or None, g))
            times.update(t for t in (g.starts, g.expires) if t is not None)
        times.update(w.expires for w in state.waivers if w.expires is not None)
        self.grants_by_dataset = by_ds
        self.artefact_grants = arts
        self.waivers = tuple(w for w in state.waivers if not w.revoked)
        self.thresholds = tuple(sorted(times))
        self.cache: dict[tuple[object, ...], Decision] = {}
        self._req_cache: dict[tuple[str, str], tuple[Reason, ...]] = {}
        self._grant_cache: dict[tuple[object, ...], tuple[object, ...]] = {}

    @property
    def classification(self) -> Classification:
        if self._classification is None:
            self._classification = self._classifier.classify(self.state.email)
        return self._classification


def is_active(g: GrantFact | WaiverFact, now: datetime) -> bool:
    if g.revoked:
        return False
    if g.expires is not None and now >= g.expires:
        return False
    starts = getattr(g, "starts", None)
    return starts is None or now >= starts
