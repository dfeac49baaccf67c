"""Path globs over dataset-relative paths: `*` within a segment, `**` across segments.

`fnmatch` lets `*` cross `/`, which would make `flux_batch1/*` match every file below it and
`*` match any path; we translate globs ourselves so segment boundaries hold.
"""

from __future__ import annotations

import re
from functools import lru_cache

_WILD = "*?["


class GlobError(ValueError):
    """A glob pattern is malformed."""


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Compile a glob to an anchored regular expression."""
    if pattern.startswith("/") or "//" in pattern:
        raise GlobError(f"glob '{pattern}' must be relative and have no empty segments")
    parts = pattern.split("/")
    out: list[str] = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            # `**` as the last segment: one or more further segments; elsewhere zero or more.
            out.append(".+" if last else "(?:[^/]+/)*")
            continue
        if "**" in seg:
            raise GlobError(f"glob '{pattern}': '**' must be a whole segment")
        out.append(_segment(seg, pattern) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def _segment(seg: str, pattern: str) -> str:
    res: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            res.append("[^/]*")
        elif c == "?":
            res.append("[^/]")
        elif c == "[":
            end = seg.find("]", i + 2)
            if end == -1:
                raise GlobError(f"glob '{pattern}' has an unclosed '['")
            body = seg[i + 1 : end]
            if body.startswith("!"):
                body = "^" + body[1:]
            res.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            res.append(re.escape(c))
        i += 1
    return "".join(res)


def literal_prefix(pattern: str) -> str:
    """The part of a glob before its first wildcard."""
    for i, c in enumerate(pattern):
        if c in _WILD:
            return pattern[:i]
    return pattern


def is_literal(pattern: str) -> bool:
    return not any(c in pattern for c in _WILD)


def may_overlap(a: str, b: str) -> bool:
    """Whether two globs could match a common path (a sound over-approximation)."""
    pa, pb = literal_prefix(a), literal_prefix(b)
    if is_literal(a) and is_literal(b):
        return a == b
    if is_literal(a):
        return bool(compile_glob(b).match(a))
    if is_literal(b):
        return bool(compile_glob(a).match(b))
    return pa.startswith(pb) or pb.startswith(pa)


def match_names(pattern: str, names: list[str]) -> list[str]:
    """Names (subset ids, not paths) matching a one-segment glob."""
    rx = compile_glob(pattern)
    return [n for n in names if rx.match(n)]
