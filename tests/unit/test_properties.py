"""Property tests: taking something away from a subject, or adding a forbid, never turns a deny
into a permit; decisions are deterministic and do not depend on memoisation or batching."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.policy.compile import CompiledPolicies, compile_policies
from governance.policy.evaluate import Engine
from governance.policy.facts import GrantFact, SubjectState, WaiverFact
from governance.policy.loader import Loaded, load_policies
from governance.policy.schema import Rule
from governance.provenance.lineage import Provenance
from governance.types import Action, Destination
from tests.conftest import NOW, POLICIES

PSET = load_policies(POLICIES)
COMPILED = compile_policies(PSET)
PURPOSES = sorted(COMPILED.ancestors)
DATASETS = sorted(COMPILED.datasets)
SCOPES = DATASETS + [s.qid for d in COMPILED.datasets.values() for s in d.subsets.values()] + ["artefact:model-a"]
OWNERS = sorted({t.licensor.id for t in [*COMPILED.datasets.values(), *COMPILED.sources.values()]})
EMAILS = ["alice@cs.stanford.edu", "bob@gmail.com", "carol@ust.hk", "x@mailinator.com", "eve@stanford.edu.evil.com"]
SAMPLE_FILES = {
    "huge100k": ["flux_batch1/images0/param/a.npy", "flux_batch8/images2/videos/b.jpg", "deepfashion/images3/videos/c.jpg"],
    "genebody": ["test10/subject01/image/00/0000.jpg", "train40/subject11/image/00/0000.jpg", "extended370/s/0.jpg"],
    "2k2k": ["train/00029/00029.ply", "test/00005/00005.ply", "smplx/00029.pkl", "keypoints/00029.json"],
    "shhq": ["SHHQ-1.0/no_segment/000001.png", "SHHQ-1.0/no_segment/000002.png", "preview/000003.png"],
    "clonedperson": ["train/700000_s02_c00_f023389.jpg", "test/gallery/705228_s06_c02_f005521.jpg"],
}
RESOURCES = [f"{d}:{p}" for d, ps in SAMPLE_FILES.items() for p in ps] + ["artefact:model-a", "artefact:model-b"]
PROVENANCE = Provenance(
    manifest={("shhq", "SHHQ-1.0/no_segment/000001.png"): ["deepfashion"], ("shhq", "SHHQ-1.0/no_segment/000002.png"): ["pexels"]},
    artefacts={"model-a": ["huge100k:flux_batch1/**", "shhq:SHHQ-1.0/no_segment/000002.png"], "model-b": ["artefact:model-a", "2k2k/train"]},
)

times = st.one_of(st.none(), st.integers(-400, 400).map(lambda d: NOW + timedelta(days=d)))
grants = st.builds(GrantFact, scope=st.sampled_from(SCOPES), purpose=st.sampled_from(PURPOSES), expires=times, revoked=st.booleans())
waivers = st.builds(
    WaiverFact,
    owner=st.sampled_from(OWNERS),
    dataset=st.sampled_from(DATASETS + ["deepfashion"]),
    action=st.sampled_from(list(Action)),
    destination=st.one_of(st.none(), st.sampled_from(list(Destination))),
)
subjects = st.builds(
    SubjectState,
    email=st.sampled_from(EMAILS),
    email_verified=st.booleans(),
    accepted=st.dictionaries(st.sampled_from(DATASETS), st.sampled_from(["current", "old-version"])),
    signed=st.lists(st.sampled_from(DATASETS), unique=True),
    grants=st.lists(grants, max_size=5),
    waivers=st.lists(waivers, max_size=2),
    terminated=st.lists(st.sampled_from(DATASETS), max_size=1, unique=True),
)
# Qualified subjects, so that permits are common and the properties have something to break.
good_grants = st.builds(
    GrantFact,
    scope=st.sampled_from(DATASETS + ["artefact:model-a"]),
    purpose=st.sampled_from(["research", "research/non-commercial"]),
    expires=st.one_of(st.none(), st.integers(1, 400).map(lambda d: NOW + timedelta(days=d))),
)
good_subjects = st.builds(
    SubjectState,
    email=st.sampled_from(["alice@cs.stanford.edu", "carol@ust.hk"]),
    email_verified=st.just(True),
    accepted=st.just(dict.fromkeys(DATASETS, "current")),
    signed=st.just(DATASETS),
    grants=st.lists(good_grants, min_size=1, max_size=6),
    waivers=st.lists(waivers, max_size=2),
)
any_subjects = subjects
subjects = st.one_of(any_subjects, good_subjects, good_subjects)
requests = st.fixed_dictionaries({
    "action": st.sampled_from([a.value for a in Action] + ["read", "read", "derive", "copy_internal"]),
    "resource": st.sampled_from(RESOURCES),
    "purpose": st.sampled_from(PURPOSES + ["research/non-commercial/academic"] * 4),
    "destination": st.one_of(st.none(), st.sampled_from([d.value for d in Destination])),
})
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decide(state: SubjectState, req: dict[str, str | None], compiled: CompiledPolicies = COMPILED) -> str:
    engine = Engine(compiled)
    return engine.decide(engine.subject(state), now=NOW, provenance=PROVENANCE, **req).effect  # type: ignore[arg-type]


def weaken(state: SubjectState, data: st.DataObject) -> SubjectState:
    """One way of taking something away from a subject."""
    kind = data.draw(st.sampled_from(["remove", "revoke", "expire", "narrow", "terminate", "unverify", "drop_waiver", "unsign"]))
    gs = list(state.grants)
    if kind in ("remove", "revoke", "expire", "narrow") and gs:
        i = data.draw(st.integers(0, len(gs) - 1))
        g = gs[i]
        if kind == "remove":
            del gs[i]
        elif kind == "revoke":
            gs[i] = g.model_copy(update={"revoked": True})
        elif kind == "expire":
            gs[i] = g.model_copy(update={"expires": NOW})
        else:
            children = [p for p in PURPOSES if p != g.purpose and g.purpose in COMPILED.ancestors[p]]
            if children:
                gs[i] = g.model_copy(update={"purpose": data.draw(st.sampled_from(children))})
        return state.model_copy(update={"grants": gs})
    if kind == "terminate":
        return state.model_copy(update={"terminated": [*state.terminated, data.draw(st.sampled_from(DATASETS))]})
    if kind == "unverify":
        return state.model_copy(update={"email_verified": False})
    if kind == "drop_waiver" and state.waivers:
        return state.model_copy(update={"waivers": state.waivers[1:]})
    if kind == "unsign" and state.signed:
        return state.model_copy(update={"signed": state.signed[1:]})
    return state


@SETTINGS
@given(subjects, requests, st.data())
def test_taking_away_never_turns_a_deny_into_a_permit(state: SubjectState, req: dict[str, str | None], data: st.DataObject) -> None:
    before = decide(state, req)
    after = decide(weaken(state, data), req)
    assert not (before == "deny" and after == "permit")


@SETTINGS
@given(subjects, requests, st.data())
def test_adding_a_forbid_never_turns_a_deny_into_a_permit(state: SubjectState, req: dict[str, str | None], data: st.DataObject) -> None:
    ds_id = data.draw(st.sampled_from([d for d in DATASETS if COMPILED.datasets[d].has_terms]))
    loaded = PSET.datasets[ds_id]
    rule = Rule(
        id="extra-forbid",
        effect="forbid",
        actions=data.draw(st.lists(st.sampled_from(list(Action)), min_size=1, max_size=3, unique=True)),
        purposes=data.draw(st.one_of(st.none(), st.lists(st.sampled_from(PURPOSES), min_size=1, max_size=2))),
        destinations=None,
        applies_to=data.draw(st.lists(st.sampled_from(["data", "derived"]), min_size=1, max_size=2, unique=True)),
        clause="x",
    )
    model = loaded.model.model_copy(update={"rules": [*loaded.model.rules, rule]})
    pset = dataclasses.replace(PSET, datasets={**PSET.datasets, ds_id: Loaded(loaded.path, loaded.doc, model, loaded.text, loaded.sha256)})
    stricter = compile_policies(pset)
    before = decide(state, req)
    after = decide(state, req, stricter)
    assert not (before == "deny" and after == "permit")


@SETTINGS
@given(subjects, requests)
def test_decisions_are_deterministic_and_independent_of_memoisation(state: SubjectState, req: dict[str, str | None]) -> None:
    engine = Engine(COMPILED)
    view = engine.subject(state)
    first = engine.decide(view, now=NOW, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    again = engine.decide(view, now=NOW, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    fresh_engine = Engine(COMPILED)
    fresh = fresh_engine.decide(fresh_engine.subject(state), now=NOW, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    assert first == again == fresh


@SETTINGS
@given(subjects, st.lists(st.sampled_from(RESOURCES), min_size=1, max_size=20), requests)
def test_batch_equals_single_decisions(state: SubjectState, resources: list[str], req: dict[str, str | None]) -> None:
    engine = Engine(COMPILED)
    view = engine.subject(state)
    batch = engine.decide_batch(view, action=req["action"], resources=resources, purpose=req["purpose"],  # type: ignore[arg-type]
                                destination=req["destination"], now=NOW, provenance=PROVENANCE)
    single_engine = Engine(COMPILED)
    single_view = single_engine.subject(state)
    singles = [single_engine.decide(single_view, action=req["action"], resource=r, purpose=req["purpose"],  # type: ignore[arg-type]
                                    destination=req["destination"], now=NOW, provenance=PROVENANCE) for r in resources]
    assert batch == singles


@SETTINGS
@given(subjects, requests, st.integers(-400, 400))
def test_memoised_decision_matches_fresh_decision_at_any_time(state: SubjectState, req: dict[str, str | None], days: int) -> None:
    """The memo key includes the interval between the subject's time stamps that `now` is in."""
    engine = Engine(COMPILED)
    view = engine.subject(state)
    engine.decide(view, now=NOW, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    later = NOW + timedelta(days=days)
    memo = engine.decide(view, now=later, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    fresh_engine = Engine(COMPILED)
    fresh = fresh_engine.decide(fresh_engine.subject(state), now=later, provenance=PROVENANCE, **req)  # type: ignore[arg-type]
    assert memo == fresh


@SETTINGS
@given(st.text(max_size=60), st.text(max_size=200), st.text(max_size=60), st.one_of(st.none(), st.text(max_size=20)))
def test_garbage_requests_are_denied_never_raised(action: str, resource: str, purpose: str, destination: str | None) -> None:
    engine = Engine(COMPILED)
    view = engine.subject(SubjectState(email="alice@cs.stanford.edu", email_verified=True, grants=[GrantFact(scope="huge100k", purpose="research")]))
    d = engine.decide(view, action=action, resource=resource, purpose=purpose, destination=destination, now=NOW)
    if d.effect == "permit":
        # Only a well-formed request can be permitted.
        assert action in {a.value for a in Action} and purpose in COMPILED.ancestors
        assert resource.partition(":")[0] in COMPILED.datasets


@SETTINGS
@given(good_subjects, requests, st.sampled_from(["revoke", "expire", "remove"]))
def test_without_an_active_grant_nothing_but_discover_is_permitted(state: SubjectState, req: dict[str, str | None], how: str) -> None:
    if how == "revoke":
        gs = [g.model_copy(update={"revoked": True}) for g in state.grants]
    elif how == "expire":
        gs = [g.model_copy(update={"expires": NOW - timedelta(seconds=1)}) for g in state.grants]
    else:
        gs = []
    effect = decide(state.model_copy(update={"grants": gs}), req)
    assert effect == "deny" or req["action"] == "discover"


@SETTINGS
@given(good_subjects, requests)
def test_a_terminated_dataset_permits_nothing_but_discover(state: SubjectState, req: dict[str, str | None]) -> None:
    ds = str(req["resource"]).partition(":")[0]
    if ds == "artefact":
        ds = "huge100k"  # both sample artefacts draw on huge100k or shhq; terminate the first input
    terminated = state.model_copy(update={"terminated": [*state.terminated, ds]})
    assert decide(terminated, req) == "deny" or req["action"] == "discover"
