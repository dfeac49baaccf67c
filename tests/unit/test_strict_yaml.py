"""Unit tests of governance.strict_yaml: what the strict reader accepts, refuses and locates.

Each test's name states the rule it checks.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.errors import YamlError
from governance.strict_yaml import MAX_DEPTH, Mark, load_bytes, load_file, load_text


def _refused(text: str) -> YamlError:
    with pytest.raises(YamlError) as info:
        load_text(text, path="t.yaml")
    return info.value


def _line_of(text: str, marker: str, nth: int = 0) -> int:
    """1-based line of the nth occurrence of `marker` in `text`."""
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(marker, pos + 1)
    return text.count("\n", 0, pos) + 1


# --------------------------------------------------------------------------- duplicate keys


def test_duplicate_top_level_key_is_an_error_naming_its_line_and_the_first_definition() -> None:
    text = "a: 1\nb: 2\na: 3\n"
    err = _refused(text)
    assert err.path == "t.yaml"
    assert err.line == _line_of(text, "a:", nth=1) == 3
    assert err.column == 1
    assert "duplicate key 'a'" in err.msg
    assert f"first defined at line {_line_of(text, 'a:')}" in err.msg
    assert err.render() == f"t.yaml:3:1: {err.msg}"


def test_duplicate_nested_key_is_an_error_at_the_second_key_with_the_first_line() -> None:
    text = "outer:\n  keep: x\n  dup: 1\n  other: y\n  dup: 2\n"
    err = _refused(text)
    assert (err.line, err.column) == (_line_of(text, "dup:", nth=1), 3)
    assert f"duplicate key 'dup' (first defined at line {_line_of(text, 'dup:')})" in err.msg


def test_duplicate_key_in_flow_mapping_is_an_error() -> None:
    err = _refused("m: {x: 1, y: 2, x: 3}\n")
    assert err.line == 1
    assert err.column == len("m: {x: 1, y: 2, ") + 1
    assert "duplicate key 'x'" in err.msg


def test_quoted_and_plain_spellings_of_the_same_key_are_duplicates() -> None:
    err = _refused('"a": 1\na: 2\n')
    assert err.line == 2
    assert "duplicate key 'a'" in err.msg


# --------------------------------------------------------------------------- scalar resolution


@pytest.mark.parametrize("word", ["no", "on", "NO", "yes", "off", "Yes", "ON", "y", "n", "Off"])
def test_yaml11_boolean_words_stay_strings(word: str) -> None:
    assert load_text(f"v: {word}\n").data == {"v": word}


@pytest.mark.parametrize(
    ("plain", "value"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False)],
)
def test_only_true_and_false_are_booleans(plain: str, value: bool) -> None:
    got = load_text(f"v: {plain}\n").data["v"]
    assert got is value


@pytest.mark.parametrize("plain", ["null", "Null", "NULL", "~", ""])
def test_null_tilde_and_empty_are_none(plain: str) -> None:
    assert load_text(f"v: {plain}\n").data == {"v": None}


@pytest.mark.parametrize(("plain", "value"), [("0", 0), ("42", 42), ("-7", -7), ("+3", 3), ("007", 7)])
def test_plain_integers_are_ints(plain: str, value: int) -> None:
    got = load_text(f"v: {plain}\n").data["v"]
    assert type(got) is int and got == value


@pytest.mark.parametrize(
    ("plain", "value"), [("1.5", 1.5), ("-0.25", -0.25), (".5", 0.5), ("1e3", 1000.0), ("2.5E-2", 0.025), ("3.", 3.0)]
)
def test_plain_floats_are_floats(plain: str, value: float) -> None:
    got = load_text(f"v: {plain}\n").data["v"]
    assert type(got) is float and got == value


@pytest.mark.parametrize("plain", ["2026-01-01", "0x1A", "0o17", "1_000", ".inf", ".nan", "12:30", "1.2.3", "seed-003"])
def test_timestamps_and_non_core_numbers_stay_strings(plain: str) -> None:
    assert load_text(f"v: {plain}\n").data == {"v": plain}


@pytest.mark.parametrize("scalar", ["true", "false", "null", "~", "42", "1.5", "no", "yes", "on", "", "2026-01-01"])
@pytest.mark.parametrize("quote", ["'", '"'])
def test_quoted_scalars_are_always_strings(scalar: str, quote: str) -> None:
    assert load_text(f"v: {quote}{scalar}{quote}\n").data == {"v": scalar}


@pytest.mark.parametrize("indicator", ["|", ">", "|-", ">-"])
def test_block_scalars_are_always_strings(indicator: str) -> None:
    got = load_text(f"v: {indicator}\n  42\n").data["v"]
    assert isinstance(got, str) and got.strip() == "42"


# --------------------------------------------------------------------------- tags


@pytest.mark.parametrize(
    ("text", "tag_marker"),
    [
        ('cmd: !!python/object/apply:os.system ["echo pwned"]\n', "!!python"),
        ("n: !!str 2\n", "!!str"),
        ("x: !custom value\n", "!custom"),
        ("m: !!map {a: 1}\n", "!!map"),
        ("s: !!seq [1, 2]\n", "!!seq"),
        ("q: !custom 'quoted'\n", "!custom"),
        ("ok: 1\nlater: !!python/name:os.system ''\n", "!!python"),
    ],
)
def test_explicit_tags_are_refused_at_the_tag(text: str, tag_marker: str) -> None:
    err = _refused(text)
    assert "YAML tags are not allowed" in err.msg
    assert err.line == _line_of(text, tag_marker)
    assert err.column == text.splitlines()[err.line - 1].index(tag_marker) + 1


def test_python_tag_is_refused_without_running_anything(tmp_path: Path) -> None:
    witness = tmp_path / "ran"
    err = _refused(f'x: !!python/object/apply:os.system ["touch {witness}"]\n')
    assert "tags are not allowed" in err.msg
    assert not witness.exists()


# --------------------------------------------------------------------------- documents


@pytest.mark.parametrize("text", ["a: 1\n---\nb: 2\n", "---\na: 1\n---\nb: 2\n", "--- 1\n--- 2\n"])
def test_several_documents_are_refused_at_the_second_document(text: str) -> None:
    err = _refused(text)
    assert "only one YAML document" in err.msg
    assert err.line == _line_of(text, "---", nth=text.count("---") - 1)


def test_a_single_explicit_document_is_accepted() -> None:
    assert load_text("---\na: 1\n...\n").data == {"a": 1}


def test_empty_text_gives_no_data() -> None:
    assert load_text("").data is None
    assert load_text("# only a comment\n").data is None


# --------------------------------------------------------------------------- aliases and bounds


def _billion_laughs(levels: int = 9, fan_out: int = 9) -> str:
    lines = ["a0: &a0 [" + ", ".join(['"lol"'] * fan_out) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan_out) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_of_nine_levels_of_nine_aliases_is_refused_quickly_as_an_expansion() -> None:
    text = _billion_laughs()
    assert len(text) < 1000  # tiny on disk, 9**9 values if expanded
    start = time.monotonic()
    err = _refused(text)
    elapsed = time.monotonic() - start
    assert elapsed < 10, f"refusing the alias bomb took {elapsed:.1f}s"
    assert "expands to more than" in err.msg
    assert "alias bomb" in err.msg
    assert err.line >= 1 and err.column >= 1


def test_moderate_alias_reuse_is_allowed() -> None:
    doc = load_text("base: &b {x: 1}\nuse1: *b\nuse2: *b\n")
    assert doc.data == {"base": {"x": 1}, "use1": {"x": 1}, "use2": {"x": 1}}


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "a: &x {b: *x}\n", "a: &x\n  b:\n    c: *x\n"])
def test_recursive_alias_is_refused(text: str) -> None:
    err = _refused(text)
    assert "recursive alias" in err.msg
    assert err.line == 1


def test_nesting_at_max_depth_is_allowed() -> None:
    data = load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH).data
    depth = 0
    while isinstance(data, list):
        depth += 1
        data = data[0] if data else None
    assert depth == MAX_DEPTH


def test_nesting_deeper_than_max_depth_is_refused_at_the_first_level_too_deep() -> None:
    err = _refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert f"nesting deeper than {MAX_DEPTH}" in err.msg
    assert (err.line, err.column) == (1, MAX_DEPTH + 1)


def test_block_mapping_nesting_deeper_than_max_depth_is_refused() -> None:
    text = "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 1)) + "  " * (MAX_DEPTH + 1) + "leaf\n"
    err = _refused(text)
    assert f"nesting deeper than {MAX_DEPTH}" in err.msg


def test_file_larger_than_max_bytes_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" + "# padding\n" * 20)
    size = path.stat().st_size
    with pytest.raises(YamlError) as info:
        load_file(path, max_bytes=size - 1)
    assert f"the file is {size} bytes, more than the {size - 1} allowed" in info.value.msg
    assert info.value.path == str(path)
    assert load_file(path, max_bytes=size).data == {"a": 1}


def test_bytes_larger_than_max_bytes_are_refused() -> None:
    raw = b"a: 1\n" * 10
    with pytest.raises(YamlError) as info:
        load_bytes(raw, path="x.yaml", max_bytes=len(raw) - 1)
    assert "more than the" in info.value.msg


def test_non_utf8_bytes_are_refused_at_the_line_of_the_bad_byte() -> None:
    raw = b"a: ok\nb: caf\xe9\nc: 3\n"
    with pytest.raises(YamlError) as info:
        load_bytes(raw, path="latin1.yaml")
    err = info.value
    assert "not UTF-8" in err.msg
    bad_offset = raw.index(b"\xe9")
    assert f"offset {bad_offset}" in err.msg
    assert err.line == 2


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfea: 1\n")
    with pytest.raises(YamlError, match="not UTF-8"):
        load_file(path)


def test_utf8_bom_is_ignored() -> None:
    assert load_bytes("\ufeffa: é\n".encode()).data == {"a": "é"}


def test_missing_file_is_a_yaml_error(tmp_path: Path) -> None:
    with pytest.raises(YamlError, match="cannot read the file"):
        load_file(tmp_path / "absent.yaml")


def test_syntax_error_is_reported_with_its_position() -> None:
    text = "a: 1\nb: c: d\n"
    err = _refused(text)
    assert err.msg.startswith("invalid YAML:")
    assert err.line == 2


def test_non_scalar_keys_are_refused() -> None:
    err = _refused("? [a, b]\n: 1\n")
    assert "mapping keys must be plain strings" in err.msg


# --------------------------------------------------------------------------- merge keys


MERGE_TEXT = """\
base: &a {x: 1, y: 2}
more: &b {y: 3, z: 4}
single:
  <<: *a
  y: 9
several:
  <<: [*a, *b]
  z: 0
"""


def test_merge_key_with_one_alias_merges_and_explicit_keys_win() -> None:
    assert load_text(MERGE_TEXT).data["single"] == {"x": 1, "y": 9}


def test_merge_key_with_a_list_merges_earlier_sources_first_and_explicit_keys_win() -> None:
    assert load_text(MERGE_TEXT).data["several"] == {"x": 1, "y": 2, "z": 0}


def test_merge_does_not_modify_the_anchored_mapping() -> None:
    data = load_text(MERGE_TEXT).data
    assert data["base"] == {"x": 1, "y": 2}
    assert data["more"] == {"y": 3, "z": 4}


def test_merge_key_given_a_scalar_is_refused() -> None:
    err = _refused("a: &s 1\nb:\n  <<: *s\n")
    assert "merge key" in err.msg


def test_quoted_merge_key_is_an_ordinary_key() -> None:
    assert load_text("m:\n  '<<': 1\n").data == {"m": {"<<": 1}}


# --------------------------------------------------------------------------- positions


POS_TEXT = """\
# comment
name: demo
items:
  - first
  - id: second
    tags: [a, b]
nested:
    deep:   value
"""


def test_positions_of_values_are_one_based_line_and_column() -> None:
    doc = load_text(POS_TEXT)
    assert doc.where(("name",)) == Mark(2, len("name: ") + 1)
    assert doc.where(("items",)) == Mark(4, 3)  # a block sequence starts at its first '-'
    assert doc.where(("items", 0)) == Mark(4, 5)
    assert doc.where(("items", 1)) == Mark(5, 5)
    assert doc.where(("items", 1, "id")) == Mark(5, 9)
    assert doc.where(("items", 1, "tags", 1)) == Mark(6, POS_TEXT.splitlines()[5].index("b") + 1)
    assert doc.where(("nested", "deep")) == Mark(8, POS_TEXT.splitlines()[7].index("value") + 1)


def test_positions_of_keys_are_one_based() -> None:
    doc = load_text(POS_TEXT)
    assert doc.where(("name",), key=True) == Mark(2, 1)
    assert doc.where(("items", 1, "tags"), key=True) == Mark(6, 5)
    assert doc.where(("nested", "deep"), key=True) == Mark(8, 5)


def test_position_of_an_unknown_location_falls_back_to_its_nearest_ancestor() -> None:
    doc = load_text(POS_TEXT)
    assert doc.where(("items", 1, "missing")) == doc.where(("items", 1))
    assert doc.where(("nope", "deeper")) == doc.where(())
    assert load_text("").where(("x",)) == Mark(1, 1)


def test_document_error_builds_a_positioned_error_without_raising() -> None:
    doc = load_text(POS_TEXT, path="pos.yaml")
    err = doc.error(("items", 1, "id"), "bad id")
    assert isinstance(err, YamlError)
    assert err.render() == "pos.yaml:5:9: bad id"


MERGE_POS_TEXT = """\
base: &a
  x: 1
  tags:
    - p
    - q
m:
  <<: *a
  y: 2
"""


def test_keys_brought_in_by_a_merge_are_located_where_they_are_written() -> None:
    doc = load_text(MERGE_POS_TEXT)
    assert doc.data["m"] == {"x": 1, "tags": ["p", "q"], "y": 2}
    assert doc.where(("m", "tags"), key=True) == Mark(_line_of(MERGE_POS_TEXT, "tags:"), 3)
    assert doc.where(("m", "y")) == Mark(_line_of(MERGE_POS_TEXT, "y: 2"), 6)


def test_positions_of_merged_values_are_where_the_values_are_written() -> None:
    doc = load_text(MERGE_POS_TEXT)
    assert doc.where(("m", "x")) == Mark(_line_of(MERGE_POS_TEXT, "x: 1"), 6)
    assert doc.where(("m", "tags", 1)) == Mark(_line_of(MERGE_POS_TEXT, "- q"), 7)


# --------------------------------------------------------------------------- round trip property

# YAML 1.2 core schema patterns (spec §10.3.2), written out here independently of the reader. PyYAML's
# safe_dump quotes what YAML 1.1 would resolve to a non-string, but leaves plain some strings that the
# 1.2 core schema reads as numbers (`1e5`, `08`, `-.5`); those are excluded from the exact round trip and
# checked separately below.
_CORE_NON_STRING = re.compile(
    r"""(?x)
    (null|Null|NULL|~|)
    |(true|True|TRUE|false|False|FALSE)
    |([-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)
    |([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)
    |([-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))
    """
)

_printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Co", "Cn", "Zl", "Zp")),
    max_size=40,
)


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_printable, _printable.filter(lambda s: not _CORE_NON_STRING.fullmatch(s)), max_size=12))
def test_safe_dumped_dict_of_strings_round_trips_through_load_text(data: dict[str, str]) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    assert load_text(text).data == data


@settings(max_examples=200, database=None)
@given(st.dictionaries(_printable, _printable, max_size=8))
def test_safe_dumped_strings_load_as_themselves_or_as_their_yaml12_core_reading(data: dict[str, str]) -> None:
    loaded = load_text(yaml.safe_dump(data, allow_unicode=True)).data or {}
    assert set(loaded) == set(data)  # keys always come back as strings
    for key, original in data.items():
        got = loaded[key]
        if got != original:
            assert _CORE_NON_STRING.fullmatch(original), (key, original, got)
            assert not isinstance(got, str)


@pytest.mark.parametrize(("text", "value"), [("1e5", 100000.0), ("08", 8), ("-.5", -0.5), ("+.5", 0.5)])
def test_yaml12_core_numbers_that_safe_dump_leaves_plain_are_read_as_numbers(text: str, value: float) -> None:
    dumped = yaml.safe_dump({"k": text})
    assert dumped == f"k: {text}\n"  # PyYAML (YAML 1.1) sees a string and does not quote it
    got = load_text(dumped).data["k"]
    assert got == value and not isinstance(got, str)
