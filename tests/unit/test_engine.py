"""Unit tests of the evaluator's edges: malformed input, fail-closed errors, time boundaries,
waivers from the wrong party, provenance notes, and the readable explanation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from governance.errors import LineageError
from governance.policy.evaluate import Engine
from governance.policy.explain import render
from governance.policy.facts import GrantFact, SubjectState, WaiverFact
from governance.provenance.lineage import Provenance
from tests.conftest import NOW

FILE = "huge100k:flux_batch1/images0/param/a.npy"

ALICE = SubjectState(
    email="alice@cs.stanford.edu",
    email_verified=True,
    accepted={"huge100k": "current", "2k2k": "current", "shhq": "current"},
    signed=["shhq"],
    grants=[GrantFact(scope="huge100k", purpose="research/non-commercial"),
            GrantFact(scope="2k2k", purpose="research/non-commercial"),
            GrantFact(scope="shhq", purpose="research/non-commercial")],
)


def decide(engine: Engine, state: SubjectState = ALICE, **req: object) -> object:
    req.setdefault("purpose", "research/non-commercial")
    return engine.decide(engine.subject(state), now=req.pop("now", NOW), **req)  # type: ignore[arg-type]


def test_a_well_formed_granted_read_is_permitted_with_its_citation(engine: Engine) -> None:
    d = decide(engine, action="read", resource=FILE)
    assert d.effect == "permit" and [o.kind for o in d.obligations] == ["cite"]


@pytest.mark.parametrize(
    "resource",
    [
        "huge100k:flux_batch1/../deepfashion/x.jpg",
        "huge100k:../etc/passwd",
        "huge100k:/flux_batch1/a.npy",
        "huge100k:flux_batch1//a.npy",
        "huge100k:flux_batch1/./a.npy",
        "huge100k:flux_batch1/a.npy\x00.jpg",
        "huge100k:flux_batch1/a\nb.npy",
        "huge100k:flux_batch1\\a.npy",
        "huge100k:flux_batch1/",
        "huge100k:flux_batch1/..",
        "huge100k:",
        "huge100k",
        ":flux_batch1/a.npy",
        "huge100k:" + "a/" * 3000 + "x",
        "huge100k:not_a_subset/a.npy",
        "imagenet:train/x.JPEG",
        "",
    ],
)
def test_malformed_or_unknown_resources_are_denied_as_unknown_resource(engine: Engine, resource: str) -> None:
    for view_decision in (
        decide(engine, action="read", resource=resource),
        engine.decide_batch(engine.subject(ALICE), action="read", resources=[resource], purpose="research/non-commercial", now=NOW)[0],
    ):
        assert view_decision.effect == "deny"
        assert "unknown_resource" in view_decision.codes


def test_unknown_action_destination_and_purpose_are_each_named(engine: Engine) -> None:
    assert decide(engine, action="steal", resource=FILE).codes == ("unknown_action",)
    assert "unknown_action" in decide(engine, action="export", resource=FILE).codes  # no destination
    assert "unknown_action" in decide(engine, action="export", resource=FILE, destination="moon").codes
    d = decide(engine, action="steal", resource="nope:x", purpose="world-domination")
    assert set(d.codes) == {"unknown_action", "unknown_purpose", "unknown_resource"}


def test_caller_input_echoed_in_messages_is_bounded(engine: Engine) -> None:
    d = decide(engine, action="x" * 10_000, resource=FILE)
    assert all(len(r.message) < 300 for r in d.reasons)


def test_an_engine_bug_is_a_deny_with_a_reason_not_an_exception(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-token-123 must not leak")

    monkeypatch.setattr(engine, "_decide_file", boom)
    d = decide(engine, action="read", resource=FILE)
    assert d.effect == "deny" and d.reasons
    assert "secret-token-123" not in d.model_dump_json()
    batch = engine.decide_batch(engine.subject(ALICE), action="read", resources=[FILE, FILE], purpose="research/non-commercial", now=NOW)
    assert [b.effect for b in batch] == ["deny", "deny"]


def test_copy_internal_and_export_to_internal_decide_alike(engine: Engine) -> None:
    for resource in (FILE, "2k2k:train/00029/00029.ply", "huge100k:deepfashion/images0/videos/x.jpg", "shhq:SHHQ-1.0/a/1.png"):
        a = decide(engine, action="copy_internal", resource=resource)
        b = decide(engine, action="export", resource=resource, destination="internal")
        assert (a.effect, a.codes) == (b.effect, b.codes)


def test_a_grant_expires_exactly_at_its_expiry_instant(engine: Engine) -> None:
    expires = NOW + timedelta(days=10)
    state = ALICE.model_copy(update={"grants": [GrantFact(scope="huge100k", purpose="research", expires=expires)]})
    view = engine.subject(state)
    before = engine.decide(view, action="read", resource=FILE, purpose="research", now=expires - timedelta(microseconds=1))
    at = engine.decide(view, action="read", resource=FILE, purpose="research", now=expires)
    again_before = engine.decide(view, action="read", resource=FILE, purpose="research", now=NOW)
    assert before.effect == "permit" and again_before.effect == "permit"
    assert at.effect == "deny" and at.codes == ("grant_expired",)


def test_a_grant_not_yet_started_does_not_count(engine: Engine) -> None:
    state = ALICE.model_copy(update={"grants": [GrantFact(scope="huge100k", purpose="research", starts=NOW + timedelta(days=1))]})
    assert decide(engine, state, action="read", resource=FILE).effect == "deny"


def test_a_waiver_from_someone_other_than_the_rules_owner_is_ignored_and_noted(engine: Engine) -> None:
    state = ALICE.model_copy(update={"waivers": [WaiverFact(owner="kaist", dataset="2k2k", action="export", destination="third_party")]})
    d = decide(engine, state, action="export", resource="2k2k:train/00029/00029.ply", destination="third_party")
    assert d.effect == "deny" and "destination_forbidden" in d.codes
    assert "waiver_ignored" in [n.code.value for n in d.notes]


def test_an_expired_or_revoked_waiver_lifts_nothing(engine: Engine) -> None:
    for waiver in (
        WaiverFact(owner="ioys", dataset="2k2k", action="export", destination="third_party", expires=NOW),
        WaiverFact(owner="ioys", dataset="2k2k", action="export", destination="third_party", revoked=True),
    ):
        state = ALICE.model_copy(update={"waivers": [waiver]})
        assert decide(engine, state, action="export", resource="2k2k:train/00029/00029.ply", destination="third_party").effect == "deny"


def test_an_unrecorded_origin_is_treated_as_every_possible_origin(engine: Engine) -> None:
    resource = "shhq:SHHQ-1.0/no_segment/000009.png"
    unknown = decide(engine, action="copy_internal", resource=resource)
    assert unknown.effect == "deny" and "inherited_restriction" in unknown.codes
    assert "origin_unrecorded" in [n.code.value for n in unknown.notes]
    recorded = Provenance(manifest={("shhq", "SHHQ-1.0/no_segment/000009.png"): ["pexels"]})
    known = engine.decide(engine.subject(ALICE), action="copy_internal", resource=resource, purpose="research/non-commercial",
                          now=NOW, provenance=recorded)
    assert known.effect == "permit"


def test_lineage_cycles_are_rejected_when_the_snapshot_is_built() -> None:
    with pytest.raises(LineageError, match="cycle"):
        Provenance(artefacts={"a": ["artefact:b"], "b": ["artefact:c"], "c": ["artefact:a"]})
    with pytest.raises(LineageError, match="unknown artefact"):
        Provenance(artefacts={"a": ["artefact:missing"]})
    base = Provenance(artefacts={"a": ["huge100k:flux_batch1/**"]})
    with pytest.raises(LineageError, match="already registered"):
        base.with_artefact("a", ["artefact:a"])


def test_provenance_reaches_through_three_hops(engine: Engine) -> None:
    prov = Provenance(artefacts={
        "features": ["huge100k:deepfashion/**"],
        "model": ["artefact:features", "huge100k:flux_batch2/**"],
        "renders": ["artefact:model"],
    })
    d = engine.decide(engine.subject(ALICE), action="publish_derivative", resource="artefact:renders",
                      purpose="research/non-commercial", now=NOW, provenance=prov)
    assert d.effect == "deny" and "inherited_restriction" in d.codes
    path = next(r.path for r in d.reasons if r.code.value == "inherited_restriction")
    assert path[:3] == ("artefact:renders", "artefact:model", "artefact:features")
    assert path[-1] == "source deepfashion"


def test_the_explanation_quotes_the_clause_draws_the_path_and_gives_a_remedy(engine: Engine) -> None:
    req = {"action": "copy_internal", "resource": "huge100k:deepfashion/images3/videos/x.jpg", "purpose": "research/non-commercial"}
    d = decide(engine, **req)
    text = render(d, req)
    assert text.startswith("DENY")
    assert "Users must not further reproduce, distribute, sell, or commercially exploit" in text
    assert "provenance: huge100k:deepfashion/images3/videos/x.jpg -> subset huge100k/deepfashion -> source deepfashion" in text
    assert "remedy" in text and "mmlab-cuhk" in text


def test_discover_needs_no_grant_but_the_resource_must_exist(engine: Engine) -> None:
    nobody = SubjectState(email="nobody@example.org")
    assert decide(engine, nobody, action="discover", resource="clonedperson:train/1.jpg").effect == "permit"
    assert decide(engine, nobody, action="discover", resource="clonedperson:nowhere/1.jpg").effect == "deny"


def test_caller_supplied_strings_cannot_grow_the_engines_memos_without_bound(engine: Engine) -> None:
    view = engine.subject(ALICE)
    for i in range(3000):
        engine.decide(view, action="read", resource=FILE, purpose="research/non-commercial", destination=f"junk{i}", now=NOW)
        engine.decide(view, action="read", resource=f"huge100k:flux_batch1/d{i}/x.npy", purpose="research/non-commercial", now=NOW)
    assert len(engine._resolved) < 100
    assert len(view.cache) <= engine.cache_size
    assert len(engine._dirs) <= engine.dir_cache_size
