"""A strict, position-keeping YAML reader for policy and scenario files.

PyYAML's safe loader is too forgiving for files that decide access: it keeps the last of two
duplicate keys, turns `no`, `on` and `NO` into booleans (YAML 1.1), and expands aliases without
bound. This reader parses with PyYAML's event parser and composer but builds values itself:

* plain scalars resolve as YAML 1.2's core schema minus timestamps: `true`/`false`, `null`/`~`,
  integers and floats; every other scalar is a string (`no`, `on`, `2026-01-01` stay strings);
* duplicate keys, explicit tags (`!!python/object`, `!!str`, any `!x`), several documents,
  recursive aliases and non-scalar keys are errors;
* size, nesting depth and the number of values built (aliases count each time they expand) are
  bounded, so an alias bomb or a deeply nested file is refused instead of eating memory;
* merge keys (`<<: *anchor`, `<<: [*a, *b]`) are supported; explicit keys win over merged ones.

Every value's position is kept, so a later validation error can name `file:line:column`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from governance.errors import FileFormatError, YamlError

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 48
MAX_VALUES = 200_000

_INT = re.compile(r"[-+]?[0-9]+\Z")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z")
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_MERGE = "<<"
# libyaml's parser when PyYAML was built with it (the wheels are): same events and marks, 10x faster.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Mark:
    """A 1-based position in a file."""

    line: int
    column: int


@dataclass
class Document:
    """Parsed YAML data plus the position of every value (and of every mapping key)."""

    path: str
    data: Any
    values: dict[Loc, Mark] = field(default_factory=dict)
    keys: dict[Loc, Mark] = field(default_factory=dict)

    def where(self, loc: Loc, *, key: bool = False) -> Mark:
        """The position of `loc`, or of its nearest recorded ancestor."""
        loc = tuple(loc)
        while True:
            if key and loc in self.keys:
                return self.keys[loc]
            if loc in self.values:
                return self.values[loc]
            if not loc:
                return Mark(1, 1)
            loc = loc[:-1]

    def error(self, loc: Loc, msg: str, *, key: bool = False, cls: type[FileFormatError] | None = None) -> FileFormatError:
        """Build (not raise) a positioned error of class `cls` for `loc`."""
        mark = self.where(loc, key=key)
        return (cls or YamlError)(self.path, msg, line=mark.line, column=mark.column)


def _mark(node_or_event: Any) -> Mark:
    m = node_or_event.start_mark
    return Mark(m.line + 1, m.column + 1)


def _fail(path: str, mark: Mark, msg: str) -> YamlError:
    return YamlError(path, msg, line=mark.line, column=mark.column)


def load_file(path: str | Path, *, max_bytes: int = MAX_BYTES) -> Document:
    """Read and parse one YAML file strictly; raises `YamlError` with its position."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise YamlError(str(p), f"cannot read the file ({exc.strerror or exc})") from None
    if size > max_bytes:
        raise YamlError(str(p), f"the file is {size} bytes, more than the {max_bytes} allowed")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise YamlError(str(p), f"cannot read the file ({exc.strerror or exc})") from None
    return load_bytes(raw, path=str(p), max_bytes=max_bytes)


def load_bytes(raw: bytes, *, path: str = "<string>", max_bytes: int = MAX_BYTES) -> Document:
    """Parse YAML bytes (UTF-8) strictly."""
    if len(raw) > max_bytes:
        raise YamlError(path, f"the file is {len(raw)} bytes, more than the {max_bytes} allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlError(path, f"the file is not UTF-8 (bad byte at offset {exc.start})", line=line) from None
    return load_text(text, path=path)


def load_text(text: str, *, path: str = "<string>") -> Document:
    """Parse YAML text strictly; see the module docstring for what is refused."""
    if text.startswith("\ufeff"):
        text = text[1:]
    _prescan(text, path)
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        raise _from_yaml_error(path, exc) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors for text input
        raise YamlError(path, f"invalid YAML ({exc})") from None
    doc = Document(path=path, data=None)
    if node is None:
        return doc
    builder = _Builder(doc)
    doc.data = builder.build(node, (), depth=0)
    return doc


def _from_yaml_error(path: str, exc: yaml.MarkedYAMLError) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = f" {exc.context.strip()}" if exc.context and exc.problem else ""
    msg = f"invalid YAML: {problem}{context}"
    if mark is None:  # pragma: no cover
        return YamlError(path, msg)
    return YamlError(path, msg, line=mark.line + 1, column=mark.column + 1)


def _prescan(text: str, path: str) -> None:
    """Walk the event stream (iteratively) to refuse tags, depth and size before composing."""
    depth = 0
    events = 0
    documents = 0
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            events += 1
            if events > MAX_VALUES:
                raise _fail(path, _mark(event), f"the file has more than {MAX_VALUES} YAML events")
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise _fail(path, _mark(event), "only one YAML document is allowed per file")
            elif isinstance(event, (MappingStartEvent, SequenceStartEvent)):
                _refuse_tag(path, event)
                depth += 1
                if depth > MAX_DEPTH:
                    raise _fail(path, _mark(event), f"nesting deeper than {MAX_DEPTH} levels is not allowed")
            elif isinstance(event, ScalarEvent):
                _refuse_tag(path, event)
            elif type(event).__name__ in ("MappingEndEvent", "SequenceEndEvent"):
                depth -= 1
            elif isinstance(event, AliasEvent):
                pass
    except yaml.MarkedYAMLError as exc:
        raise _from_yaml_error(path, exc) from None


def _refuse_tag(path: str, event: Any) -> None:
    tag = getattr(event, "tag", None)
    if tag is None:
        return
    # A quoted scalar reports the non-specific tag "!" implicitly; only explicit tags count.
    if isinstance(event, ScalarEvent) and tag == "!" and event.implicit[1]:
        return
    raise _fail(path, _mark(event), f"YAML tags are not allowed (found '{tag}')")


class _Builder:
    """Turn composed nodes into plain values, recording positions and enforcing bounds."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.count = 0
        self.active: set[int] = set()

    def _tick(self, node: Node) -> None:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _fail(
                self.doc.path,
                _mark(node),
                f"the file expands to more than {MAX_VALUES} values (an alias bomb?)",
            )

    def build(self, node: Node, loc: Loc, *, depth: int) -> Any:
        self._tick(node)
        if depth > MAX_DEPTH * 2:
            raise _fail(self.doc.path, _mark(node), "aliases nest deeper than allowed")
        self.doc.values.setdefault(loc, _mark(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node)
        if id(node) in self.active:
            raise _fail(self.doc.path, _mark(node), "a recursive alias is not allowed")
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                return [self.build(item, (*loc, i), depth=depth + 1) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                return self._mapping(node, loc, depth)
        finally:
            self.active.discard(id(node))
        raise _fail(self.doc.path, _mark(node), "unsupported YAML node")  # pragma: no cover

    @staticmethod
    def _scalar(node: ScalarNode) -> Any:
        value: str = node.value
        if node.style:  # quoted or block scalar: always a string (plain is None or "")
            return value
        if value in _NULL:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        if _INT.match(value):
            return int(value)
        if _FLOAT.match(value):
            return float(value)
        return value

    def _key(self, node: Node) -> str:
        if not isinstance(node, ScalarNode):
            raise _fail(self.doc.path, _mark(node), "mapping keys must be plain strings")
        return str(node.value)

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        explicit: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        merge_sources: list[Node] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == _MERGE and not key_node.style:
                merge_sources.append(value_node)
                continue
            key = self._key(key_node)
            if key in explicit:
                first = self.doc.keys.get((*loc, key), _mark(key_node))
                raise _fail(
                    self.doc.path,
                    _mark(key_node),
                    f"duplicate key '{key}' (first defined at line {first.line})",
                )
            self.doc.keys.setdefault((*loc, key), _mark(key_node))
            explicit[key] = self.build(value_node, (*loc, key), depth=depth + 1)
        for value_node in merge_sources:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise _fail(self.doc.path, _mark(source), "a merge key '<<' takes a mapping or a list of mappings")
                # Built at this mapping's own location: merged values keep the positions where
                # they are written (explicit keys were recorded first and keep theirs).
                value = self.build(source, loc, depth=depth + 1)
                for k, v in value.items():
                    # Earlier merge sources win over later ones, as the YAML merge spec says.
                    merged.setdefault(k, v)
        if not merged:
            return explicit
        result = {k: v for k, v in merged.items() if k not in explicit}
        result.update(explicit)
        return result
