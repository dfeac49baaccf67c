"""The lineage graph a console page draws (governance.provenance.graph): built from the stored
lineage and the compiled policies, multi-hop down to upstream sources, carrying the restrictions
each input brings, laid out the same way every time, and never with a cycle."""

from __future__ import annotations

import pytest

from governance.errors import LineageError, NotFoundError
from governance.policy.compile import CompiledPolicies
from governance.provenance.graph import LineageGraph, build_graph

LINEAGE = {
    "features": ["shhq:SHHQ-1.0/images/000001.png", "genebody/train40"],
    "avatar": ["artefact:features", "shhq:SHHQ-1.0/images/000002.png", "huge100k:deepfashion/**"],
    "other": ["2k2k"],
}
ORIGINS = {("shhq", "SHHQ-1.0/images/000001.png"): ["deepfashion"], ("shhq", "SHHQ-1.0/images/000002.png"): ["pexels"]}


def graph(compiled: CompiledPolicies, root: str = "avatar") -> LineageGraph:
    return build_graph(root, LINEAGE, compiled, origins=ORIGINS)


def test_the_graph_follows_artefacts_to_files_subsets_and_sources_over_several_hops(compiled: CompiledPolicies) -> None:
    g = graph(compiled)
    ids = {n.id for n in g.nodes}
    assert {"artefact:avatar", "artefact:features", "subset:genebody/train40", "file:shhq:SHHQ-1.0/images/000001.png",
            "files:huge100k:deepfashion/**", "subset:huge100k/deepfashion", "source:deepfashion", "source:pexels"} <= ids
    # Only what the root reaches: another artefact and its dataset stay out.
    assert "artefact:other" not in ids and not any("2k2k" in i for i in ids)
    edges = {(e.frm, e.to): e.label for e in g.edges}
    assert edges[("artefact:avatar", "artefact:features")] == "derived from"
    assert edges[("file:shhq:SHHQ-1.0/images/000001.png", "source:deepfashion")] == "origin recorded in the manifest"
    assert edges[("subset:huge100k/deepfashion", "source:deepfashion")] == "every file from"
    # A file whose origin is recorded reaches that origin only, not every origin its subset lists.
    assert ("file:shhq:SHHQ-1.0/images/000002.png", "source:deepfashion") not in edges
    assert {n.label for n in g.nodes if n.kind == "source"} >= {"DeepFashion", "Pexels"}


def test_a_file_of_unrecorded_origin_may_come_from_every_origin_its_subset_lists(compiled: CompiledPolicies) -> None:
    g = build_graph("a", {"a": ["shhq:SHHQ-1.0/images/000009.png"]}, compiled)
    reached = {e.to for e in g.edges if e.frm == "file:shhq:SHHQ-1.0/images/000009.png"}
    assert reached == {f"source:{s}" for s in ("cc0", "deepfashion", "infashai", "pexels", "pixabay")}


def test_a_deepfashion_tagged_input_brings_deepfashions_forbid_with_its_clause_and_path(compiled: CompiledPolicies) -> None:
    g = graph(compiled)
    found = [r for r in g.restrictions if r.id == "deepfashion#no-further-reproduction"]
    assert len(found) == 1
    r = found[0]
    assert r.kind == "forbid" and r.waivable_by == "mmlab-cuhk"
    assert "must not further reproduce, distribute, sell" in r.clause
    assert set(r.nodes) == {"source:deepfashion"}
    assert r.path[0] == "avatar" and r.path[-1] == "DeepFashion"
    # SHHQ's own terms come too: derived data is never for commercial purposes; the licensor may terminate.
    assert {"shhq#no-commercial-use", "shhq#termination", "shhq#meet-source-licences"} <= {x.id for x in g.restrictions}


def test_only_restrictions_on_derived_data_are_listed_and_pexels_only_file_avoids_deepfashion(compiled: CompiledPolicies) -> None:
    g = build_graph("a", {"a": ["shhq:SHHQ-1.0/images/000002.png"]}, compiled, origins=ORIGINS)
    ids = {r.id for r in g.restrictions}
    assert not any(i.startswith("deepfashion#") for i in ids)
    assert "shhq#no-third-party" not in ids  # that forbid speaks of SHHQ's data, not of derived data


def test_a_dataset_without_terms_and_an_unknown_input_are_shown_as_such(compiled: CompiledPolicies) -> None:
    g = build_graph("a", {"a": ["clonedperson", "nosuch/thing"]}, compiled)
    kinds = {(r.kind, r.terms) for r in g.restrictions}
    assert ("no_terms", "clonedperson") in kinds
    assert any(r.kind == "unknown" for r in g.restrictions)
    assert any(n.kind == "dataset" and n.id == "dataset:clonedperson" for n in g.nodes)


def test_the_layout_is_deterministic_and_every_edge_runs_from_an_earlier_column(compiled: CompiledPolicies) -> None:
    first, again = graph(compiled), graph(compiled)
    assert first == again
    reordered = build_graph("avatar", dict(reversed(list(LINEAGE.items()))), compiled,
                            origins=dict(reversed(list(ORIGINS.items()))))
    assert [(n.id, n.x, n.y) for n in reordered.nodes] == [(n.id, n.x, n.y) for n in first.nodes]
    at = {n.id: n for n in first.nodes}
    root = at["artefact:avatar"]
    assert root.depth == 0 and root.x == max(n.x for n in first.nodes)  # the artefact on the right
    for e in first.edges:
        assert at[e.to].depth > at[e.frm].depth and at[e.to].x < at[e.frm].x
    # No two boxes overlap, and all fit in the drawing.
    boxes = [(n.x, n.y) for n in first.nodes]
    assert len(set(boxes)) == len(boxes)
    for n in first.nodes:
        assert 0 <= n.x and n.x + n.w <= first.width and 0 <= n.y and n.y + n.h <= first.height
    assert {n.depth for n in first.nodes if n.kind == "source"} == {max(n.depth for n in first.nodes)}


def test_a_cycle_cannot_be_drawn(compiled: CompiledPolicies) -> None:
    with pytest.raises(LineageError, match="cycle"):
        build_graph("a", {"a": ["artefact:b"], "b": ["artefact:a"]}, compiled)
    with pytest.raises(LineageError, match="cycle"):
        build_graph("a", {"a": ["artefact:a"]}, compiled)


def test_an_unknown_root_or_a_dangling_artefact_reference_is_refused(compiled: CompiledPolicies) -> None:
    with pytest.raises(NotFoundError):
        build_graph("nosuch", LINEAGE, compiled)
    with pytest.raises(LineageError, match="unknown artefact"):
        build_graph("a", {"a": ["artefact:gone"]}, compiled)


def test_a_diamond_shares_its_common_input_once(compiled: CompiledPolicies) -> None:
    lineage = {"base": ["genebody/train40"], "left": ["artefact:base"], "right": ["artefact:base"],
               "top": ["artefact:left", "artefact:right"]}
    g = build_graph("top", lineage, compiled)
    assert [n.id for n in g.nodes].count("artefact:base") == 1
    assert g.node("artefact:base").depth == 2 and g.node("subset:genebody/train40").depth == 3
