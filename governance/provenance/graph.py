"""An artefact's lineage as a drawable graph: nodes, edges, the restrictions each input brings,
and a layered layout (columns by depth, rows by order) that a page can draw without scripts.

Pure: it takes the stored lineage (artefact id -> input references), the compiled policies and,
optionally, the manifest's origin tags for exact file inputs, and gives values back. The same
input always gives the same graph and the same coordinates.

Edges point from what was made to what it was made from (`frm` derives from `to`), the direction
in which terms flow back: a node may carry data of every node it reaches. Sources are reached
the way the evaluator reaches them (`Engine._terms_chain`): a subset's `sources` always, its
`file_sources` when a file's origin is recorded as one of them or not recorded at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from governance.errors import LineageError, NotFoundError
from governance.policy import globs
from governance.policy.common import valid_path
from governance.policy.compile import CDataset, CompiledPolicies, CSubset, CTerms
from governance.policy.show import show_json
from governance.provenance.lineage import ARTEFACT_PREFIX, Provenance, parse_input
from governance.types import Layer

NodeKind = Literal["artefact", "dataset", "files", "file", "subset", "source", "unknown"]
RestrictionKind = Literal["forbid", "obligation", "termination", "no_terms", "unknown"]

# Layout, in SVG user units: a node's box, the gaps between columns and rows, the margin.
NODE_W = 168
NODE_H = 46
COL_GAP = 52
ROW_GAP = 22
MARGIN = 16


@dataclass(frozen=True, slots=True)
class Node:
    """One box of the graph. `terms` names the terms (dataset or source) that govern it."""

    id: str
    kind: NodeKind
    label: str
    detail: str
    terms: str | None
    depth: int
    x: int
    y: int
    w: int = NODE_W
    h: int = NODE_H


@dataclass(frozen=True, slots=True)
class Edge:
    """`frm` was made from (or consists of data of) `to`; `label` says how."""

    frm: str
    to: str
    label: str


@dataclass(frozen=True, slots=True)
class Restriction:
    """A forbid rule, obligation, termination clause or missing terms an input brings in, with
    the verbatim clause and the nodes (and one path from the artefact) that bring it."""

    terms: str
    terms_title: str
    kind: RestrictionKind
    id: str
    clause: str
    section: str | None
    scope: str
    waivable_by: str | None
    nodes: tuple[str, ...]
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LineageGraph:
    root: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    restrictions: tuple[Restriction, ...]
    width: int
    height: int

    def node(self, ident: str) -> Node:
        for n in self.nodes:
            if n.id == ident:
                return n
        raise KeyError(ident)

    def inputs_of(self, ident: str) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.frm == ident)


def artefact_node(ident: str) -> str:
    return ARTEFACT_PREFIX + ident


class _Builder:
    def __init__(self, policies: CompiledPolicies, origins: Mapping[tuple[str, str], Iterable[str]]) -> None:
        self.policies = policies
        self.origins = {k: frozenset(v) for k, v in origins.items()}
        self.nodes: dict[str, tuple[NodeKind, str, str, str | None]] = {}
        self.edges: dict[tuple[str, str], str] = {}
        # For each node reached through a subset of a dataset: which subsets (for subset-scoped rules).
        self.subsets_at: dict[str, set[str]] = {}

    def add(self, ident: str, kind: NodeKind, label: str, detail: str, terms: str | None) -> str:
        self.nodes.setdefault(ident, (kind, label, detail, terms))
        return ident

    def link(self, frm: str, to: str, label: str) -> None:
        self.edges.setdefault((frm, to), label)

    def subset(self, ds: CDataset, sub: CSubset) -> str:
        ident = self.add(f"subset:{sub.qid}", "subset", sub.qid, sub.description or ds.title, ds.id)
        self.subsets_at.setdefault(ident, set()).add(sub.id)
        for src in sub.sources:
            self.link(ident, self.source(src), "every file from")
        for src in sorted(sub.file_sources):
            if src not in sub.sources:
                self.link(ident, self.source(src), "files may come from")
        return ident

    def source(self, src: str) -> str:
        terms = self.policies.sources.get(src)
        if terms is None:
            return self.add(f"source:{src}", "unknown", src, "a source no policy describes", None)
        return self.add(f"source:{src}", "source", terms.title, terms.licensor.name, src)

    def leaf(self, frm: str, ref: str, dataset: str, pattern: str | None, subset: str | None) -> None:
        ds = self.policies.datasets.get(dataset)
        if ds is None:
            self.link(frm, self.add(f"unknown:{ref}", "unknown", ref, "names a dataset no policy describes", None), "derived from")
            return
        if pattern is None and subset is None:
            node = self.add(f"dataset:{ds.id}", "dataset", ds.id, ds.title, ds.id)
            self.link(frm, node, "derived from")
            for sub in ds.subsets.values():
                self.link(node, self.subset(ds, sub), "has subset")
            return
        if pattern is None:
            assert subset is not None
            found = ds.subsets.get(subset)
            if found is None:
                self.link(frm, self.add(f"unknown:{ref}", "unknown", ref, f"{ds.id} has no such subset", None), "derived from")
            else:
                self.link(frm, self.subset(ds, found), "derived from")
            return
        bad = valid_path(pattern.replace("*", "x").replace("?", "x"))
        subs = () if bad is not None else ds.subsets_for_pattern(pattern)
        if not subs:
            self.link(frm, self.add(f"unknown:{ref}", "unknown", ref, f"matches no subset of {ds.id}", None), "derived from")
            return
        if globs.is_literal(pattern):
            # One file: the sources that reach it are its subset's, narrowed by its recorded origin.
            sub = subs[0]
            tags = self.origins.get((ds.id, pattern))
            node = self.add(f"file:{ref}", "file", ref, f"in {sub.qid}", ds.id)
            self.subsets_at.setdefault(node, set()).add(sub.id)
            self.link(frm, node, "derived from")
            for src in sub.sources:
                self.link(node, self.source(src), "every file from")
            for src in sorted(sub.file_sources):
                if src in sub.sources:
                    continue
                if tags is None:
                    self.link(node, self.source(src), "origin not recorded: may come from")
                elif src in tags:
                    self.link(node, self.source(src), "origin recorded in the manifest")
            return
        node = self.add(f"files:{ref}", "files", ref, f"in {ds.title}", ds.id)
        self.link(frm, node, "derived from")
        for sub in subs:
            self.link(node, self.subset(ds, sub), "may include files of")


def build_graph(
    root: str,
    lineage: Mapping[str, Sequence[str]],
    policies: CompiledPolicies,
    *,
    origins: Mapping[tuple[str, str], Iterable[str]] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> LineageGraph:
    """The lineage graph of artefact `root`: every artefact it reaches, through any number of
    hops, down to dataset subsets, file globs and upstream sources; the restrictions each brings;
    and a layout. Raises `NotFoundError` for an unknown root and `LineageError` for a cycle or a
    dangling artefact reference (a stored lineage never has either: both are refused on write)."""
    # INVARIANT: Provenance refuses cycles, so depths below are finite and edges point one way.
    Provenance(artefacts=lineage)
    if root not in lineage:
        raise NotFoundError(f"no artefact '{root}'")
    b = _Builder(policies, origins or {})
    text = descriptions or {}
    seen: set[str] = set()
    stack = [root]
    while stack:
        ident = stack.pop()
        if ident in seen:
            continue
        seen.add(ident)
        me = b.add(artefact_node(ident), "artefact", ident, text.get(ident, "registered artefact"), None)
        for ref in lineage[ident]:
            parsed = parse_input(ref)
            if isinstance(parsed, str):
                b.link(me, b.add(artefact_node(parsed), "artefact", parsed, text.get(parsed, "registered artefact"), None),
                       "derived from")
                stack.append(parsed)
            else:
                b.leaf(me, ref, *parsed)
    depth = _depths(artefact_node(root), b.nodes, b.edges)
    nodes, width, height = _layout(b.nodes, b.edges, depth)
    restrictions = _restrictions(policies, b, artefact_node(root), nodes)
    edges = tuple(Edge(frm, to, label) for (frm, to), label in sorted(b.edges.items()))
    return LineageGraph(root=root, nodes=nodes, edges=edges, restrictions=restrictions, width=width, height=height)


def _depths(root: str, nodes: Mapping[str, tuple[NodeKind, str, str, str | None]], edges: Mapping[tuple[str, str], str]) -> dict[str, int]:
    """Longest path from the root to each node, so every edge goes to a later column."""
    children: dict[str, list[str]] = {n: [] for n in nodes}
    indegree = dict.fromkeys(nodes, 0)
    for frm, to in edges:
        children[frm].append(to)
        indegree[to] += 1
    depth = dict.fromkeys(nodes, 0)
    ready = sorted(n for n, d in indegree.items() if d == 0)
    done = 0
    while ready:
        node = ready.pop(0)
        done += 1
        for child in sorted(children[node]):
            depth[child] = max(depth[child], depth[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
        ready.sort()
    if done != len(nodes):  # unreachable after Provenance's check; never draw a cyclic graph
        raise LineageError("lineage has a cycle")
    # Upstream sources are sinks: all in the last column, so the terms' origins line up.
    last = max(depth.values())
    for node in nodes:
        if not children[node] and node.startswith("source:"):
            depth[node] = last
    assert depth[root] == 0
    return depth


def _layout(
    nodes: Mapping[str, tuple[NodeKind, str, str, str | None]],
    edges: Mapping[tuple[str, str], str],
    depth: Mapping[str, int],
) -> tuple[tuple[Node, ...], int, int]:
    """Columns by depth, the artefact on the right and the sources on the left (data flows left
    to right into the artefact); within a column, nodes ordered by the mean row of the nodes that
    derive from them (fewer crossings), ties by id. Columns are centred vertically."""
    deepest = max(depth.values())
    columns: dict[int, list[str]] = {}
    for ident in nodes:
        columns.setdefault(depth[ident], []).append(ident)
    parents: dict[str, list[str]] = {n: [] for n in nodes}
    for frm, to in edges:
        parents[to].append(frm)
    row: dict[str, float] = {}
    for d in range(deepest + 1):
        column = columns.get(d, [])
        column.sort(key=lambda n: (sum(row[p] for p in parents[n]) / len(parents[n]) if parents[n] else 0.0, n))
        for i, ident in enumerate(column):
            row[ident] = float(i)
    tallest = max(len(c) for c in columns.values())
    step = NODE_H + ROW_GAP
    out: list[Node] = []
    for d in range(deepest + 1):
        column = columns.get(d, [])
        offset = (tallest - len(column)) * step // 2
        for i, ident in enumerate(column):
            kind, label, detail, terms = nodes[ident]
            out.append(Node(id=ident, kind=kind, label=label, detail=detail, terms=terms, depth=d,
                            x=MARGIN + (deepest - d) * (NODE_W + COL_GAP), y=MARGIN + offset + i * step))
    width = 2 * MARGIN + (deepest + 1) * NODE_W + deepest * COL_GAP
    height = 2 * MARGIN + tallest * NODE_H + (tallest - 1) * ROW_GAP
    return tuple(out), width, height


def _paths(root: str, edges: Iterable[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """One shortest path from the root to each node (breadth first, children in id order)."""
    children: dict[str, list[str]] = {}
    for frm, to in edges:
        children.setdefault(frm, []).append(to)
    paths: dict[str, tuple[str, ...]] = {root: (root,)}
    queue = [root]
    while queue:
        node = queue.pop(0)
        for child in sorted(children.get(node, ())):
            if child not in paths:
                paths[child] = (*paths[node], child)
                queue.append(child)
    return paths


def _restrictions(policies: CompiledPolicies, b: _Builder, root: str, nodes: tuple[Node, ...]) -> tuple[Restriction, ...]:
    """What derived data of each governing terms may not do, and must do: the forbid rules and
    obligations that speak of derived data, the licensor's termination clause, and terms that are
    missing. A dataset's subset-scoped rules count only where a reached subset is named."""
    paths = _paths(root, b.edges)
    labels = {n.id: n.label for n in nodes}
    # Keyed by (kind, id): a source and a dataset may share an id.
    by_terms: dict[tuple[str, str], list[str]] = {}
    for n in nodes:
        if n.terms is not None:
            by_terms.setdefault(("source" if n.kind == "source" else "dataset", n.terms), []).append(n.id)
        elif n.kind == "unknown":
            by_terms.setdefault(("unknown", n.id), []).append(n.id)
    out: list[Restriction] = []
    for key in sorted(by_terms, key=lambda k: (k[0] == "unknown", _first(paths, by_terms[k]), k)):
        held = tuple(sorted(by_terms[key], key=lambda n: (len(paths.get(n, ())), n)))
        path = tuple(labels[p] for p in paths.get(held[0], ()))
        kind, ident = key
        if kind == "unknown":
            n = next(x for x in nodes if x.id == ident)
            out.append(Restriction(terms=n.label, terms_title=n.label, kind="unknown", id=n.id, clause="",
                                   section=None, scope=n.detail, waivable_by=None, nodes=held, path=path))
            continue
        terms = policies.sources[ident] if kind == "source" else policies.datasets[ident]
        out.extend(_of_terms(terms, policies, held, path, set().union(*(b.subsets_at.get(h, set()) for h in held))))
    return tuple(out)


def _first(paths: Mapping[str, tuple[str, ...]], held: list[str]) -> int:
    return min(len(paths.get(n, ())) for n in held)


def _of_terms(terms: CTerms, policies: CompiledPolicies, held: tuple[str, ...], path: tuple[str, ...],
              subsets: set[str]) -> list[Restriction]:
    def make(kind: RestrictionKind, ident: str, clause: str, section: str | None, scope: str,
             waivable_by: str | None = None) -> Restriction:
        return Restriction(terms=terms.id, terms_title=terms.title, kind=kind, id=ident, clause=clause, section=section,
                           scope=scope, waivable_by=waivable_by, nodes=held, path=path)

    if not terms.has_terms:
        statement = terms.no_terms_statement or f"{terms.title} has no recorded terms"
        scope = ("no terms recorded: only discovery is allowed" if terms.kind == "dataset"
                 else "no terms recorded for this source: the dataset's terms govern")
        return [make("no_terms", f"{terms.id}#no-terms", statement, None, scope)]
    scopes = {r["qid"]: r["scope"] for r in show_json(terms, policies)["rules"]}
    out: list[Restriction] = []
    for rule in terms.rules:
        if rule.effect != "forbid" or Layer.DERIVED not in rule.layers:
            continue
        if terms.kind == "dataset" and rule.subsets is not None and rule.subsets.isdisjoint(subsets):
            continue
        out.append(make("forbid", rule.qid, rule.clause, rule.section, str(scopes.get(rule.qid, "")), rule.waivable_by))
    for ob in terms.obligations:
        if Layer.DERIVED in ob.layers:
            acts = ", ".join(sorted(a.value for a in ob.actions))
            out.append(make("obligation", ob.out.id, ob.out.clause, None, f"{ob.out.kind} on {acts}"))
    if terms.termination is not None:
        out.append(make("termination", f"{terms.id}#termination", " ".join(terms.termination.clause.split()), None,
                        f"access may be terminated by {terms.termination.by}"))
    return out
