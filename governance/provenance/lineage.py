"""Lineage: which files, subsets and artefacts an artefact was made from, and file origins.

Pure and immutable: a `Provenance` is a snapshot of the manifest's source tags and the artefact
graph. Cycles are rejected when the snapshot is built (DESIGN §3.5: rejected on write).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from governance.errors import LineageError

ARTEFACT_PREFIX = "artefact:"
_serial = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Leaf:
    """A dataset input reached through lineage.

    `pattern` is a path glob (or exact path) inside `dataset`, or None with `subset` set for a
    whole-subset input, or both None for the whole dataset. `via` lists the artefacts passed
    through, outermost first.
    """

    dataset: str
    pattern: str | None
    subset: str | None
    via: tuple[str, ...]
    label: str


def parse_input(ref: str) -> tuple[str, str | None, str | None] | str:
    """Parse a lineage input: `artefact:ID` -> ID (a str), else (dataset, pattern, subset)."""
    if ref.startswith(ARTEFACT_PREFIX):
        ident = ref[len(ARTEFACT_PREFIX):]
        if not ident:
            raise LineageError(f"lineage input '{ref}' names no artefact")
        return ident
    dataset, sep, pattern = ref.partition(":")
    if sep:
        if not dataset or not pattern:
            raise LineageError(f"lineage input '{ref}' must be 'dataset:path-glob'")
        return (dataset, pattern, None)
    dataset, sep, subset = ref.partition("/")
    if not dataset or (sep and not subset):
        raise LineageError(f"lineage input '{ref}' must be 'dataset', 'dataset/subset' or 'dataset:glob'")
    return (dataset, None, subset or None)


class Provenance:
    """An immutable snapshot of file origins and artefact lineage."""

    def __init__(
        self,
        *,
        manifest: Mapping[tuple[str, str], Iterable[str]] | None = None,
        artefacts: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.serial = next(_serial)
        self.files: dict[tuple[str, str], frozenset[str]] = {key: frozenset(tags) for key, tags in (manifest or {}).items()}
        self._artefacts: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in (artefacts or {}).items()}
        self._parsed: dict[str, tuple[str | tuple[str, str | None, str | None], ...]] = {}
        for ident, inputs in self._artefacts.items():
            if not inputs:
                raise LineageError(f"artefact '{ident}' has no inputs")
            self._parsed[ident] = tuple(parse_input(ref) for ref in inputs)
        for ident, parsed in self._parsed.items():
            for p in parsed:
                if isinstance(p, str) and p not in self._artefacts:
                    raise LineageError(f"artefact '{ident}' derives from unknown artefact '{p}'")
        self._check_acyclic()
        self._leaves: dict[str, tuple[Leaf, ...]] = {}

    def _check_acyclic(self) -> None:
        # Iterative DFS with colours; names the cycle it finds.
        WHITE, GREY, BLACK = 0, 1, 2
        colour = dict.fromkeys(self._artefacts, WHITE)
        for start in self._artefacts:
            if colour[start] != WHITE:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = []
            while stack:
                node, i = stack.pop()
                if i == 0:
                    colour[node] = GREY
                    path.append(node)
                children = [p for p in self._parsed[node] if isinstance(p, str)]
                if i < len(children):
                    stack.append((node, i + 1))
                    child = children[i]
                    if colour[child] == GREY:
                        cycle = path[path.index(child):] + [child]
                        raise LineageError("lineage has a cycle: " + " -> ".join(f"artefact:{c}" for c in cycle))
                    if colour[child] == WHITE:
                        stack.append((child, 0))
                else:
                    colour[node] = BLACK
                    path.pop()

    def with_artefact(self, ident: str, inputs: Sequence[str]) -> Provenance:
        """A new snapshot with one more artefact; raises `LineageError` on a cycle."""
        arts = dict(self._artefacts)
        if ident in arts:
            raise LineageError(f"artefact '{ident}' is already registered")
        arts[ident] = tuple(inputs)
        return Provenance(manifest={k: v for k, v in self.files.items()}, artefacts=arts)

    def __contains__(self, artefact: str) -> bool:
        return artefact in self._artefacts

    def file_sources(self, dataset: str, path: str) -> frozenset[str] | None:
        """Source tags recorded for one file, or None when the manifest has no record of it."""
        return self.files.get((dataset, path))

    def leaves(self, artefact: str) -> tuple[Leaf, ...]:
        """Every dataset input an artefact reaches, through any number of artefact hops."""
        cached = self._leaves.get(artefact)
        if cached is not None:
            return cached
        out: list[Leaf] = []
        stack: list[tuple[str, tuple[str, ...]]] = [(artefact, (ARTEFACT_PREFIX + artefact,))]
        while stack:
            node, via = stack.pop()
            for parsed, ref in zip(self._parsed[node], self._artefacts[node], strict=True):
                if isinstance(parsed, str):
                    stack.append((parsed, (*via, ARTEFACT_PREFIX + parsed)))
                else:
                    dataset, pattern, subset = parsed
                    out.append(Leaf(dataset, pattern, subset, via, ref))
        result = tuple(out)
        self._leaves[artefact] = result
        return result


EMPTY = Provenance()
