"""Bad policy input: each test copies the real policies/ tree, breaks one thing in one file and checks
that load_policies refuses it with a problem naming the right file, line and message.

Expected lines are always derived from the text written (by searching for a marker), never hard-coded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from governance.errors import FileFormatError, PolicyFileError, PolicyLoadError, YamlError
from governance.policy.loader import load_policies

PROJECT = Path(__file__).resolve().parents[2]
POLICIES = PROJECT / "policies"


@dataclass(frozen=True)
class Broken:
    root: Path
    file: Path
    text: str

    def line_of(self, marker: str) -> int:
        """1-based line of the first occurrence of `marker` in the edited file."""
        assert self.text.count(marker) >= 1, f"marker {marker!r} not in {self.file.name}"
        return self.text.count("\n", 0, self.text.index(marker)) + 1

    def column_of(self, marker: str) -> int:
        pos = self.text.index(marker)
        return pos - (self.text.rfind("\n", 0, pos) + 1) + 1


def break_policies(tmp_path: Path, rel: str, old: str, new: str) -> Broken:
    """Copy policies/ to tmp_path and replace the first `old` in `rel` by `new` (a text edit)."""
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not found in {rel}; the real policies changed"
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return Broken(root=root, file=path, text=text)


def problems_of(root: Path) -> list[FileFormatError]:
    with pytest.raises(PolicyLoadError) as info:
        load_policies(root)
    problems = info.value.problems
    assert problems, "PolicyLoadError raised with no problems"
    for p in problems:
        assert isinstance(p, FileFormatError)
        assert re.fullmatch(r".+:\d+:\d+: .+", p.render(), re.S), p.render()
    return problems


def assert_problem(
    problems: list[FileFormatError],
    *,
    file: str,
    line: int,
    msg: str,
    column: int | None = None,
    cls: type[FileFormatError] | None = None,
) -> FileFormatError:
    """One problem has this file basename, 1-based line, message substring (and column, class)."""
    for p in problems:
        if (
            Path(p.path).name == file
            and p.line == line
            and msg in p.msg
            and (column is None or p.column == column)
            and (cls is None or isinstance(p, cls))
        ):
            return p
    listing = "\n".join(f"  {type(p).__name__}: {p.render()}" for p in problems)
    pytest.fail(f"no problem {file}:{line}:{column or '*'} containing {msg!r}; got:\n{listing}")


# --------------------------------------------------------------------------- the real tree


def test_unmodified_real_policies_load_with_no_problems() -> None:
    pset = load_policies(POLICIES)
    assert set(pset.datasets) == {p.stem for p in (POLICIES / "datasets").glob("*.yaml")}
    assert set(pset.sources) == {p.stem for p in (POLICIES / "sources").glob("*.yaml")}


def test_an_untouched_copy_of_the_real_policies_loads(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    assert set(load_policies(root).datasets) == set(load_policies(POLICIES).datasets)


# --------------------------------------------------------------------------- YAML level


def test_bad_yaml_syntax_is_reported_at_its_line_and_column(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "title: SHHQ (Stylish-Humans-HQ)", "title: SHHQ: broken")
    problems = problems_of(b.root)
    assert_problem(
        problems,
        file="shhq.yaml",
        line=b.line_of("title: SHHQ: broken"),
        column=b.column_of("SHHQ: broken") + len("SHHQ"),
        msg="invalid YAML: mapping values are not allowed",
        cls=YamlError,
    )


def test_unclosed_flow_sequence_is_a_yaml_error_in_that_file(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "actions: [read, derive]\n", "actions: [read, derive\n")
    problems = problems_of(b.root)
    hits = [p for p in problems if Path(p.path).name == "shhq.yaml" and p.msg.startswith("invalid YAML")]
    assert hits, [p.render() for p in problems]
    # PyYAML notices the missing ']' only at the next token, so the report is at or after the break.
    assert hits[0].line >= b.line_of("actions: [read, derive\n")


def test_duplicate_key_is_reported_at_the_second_key_naming_the_first(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path, "datasets/shhq.yaml", "title: SHHQ (Stylish-Humans-HQ)\n", "title: SHHQ (Stylish-Humans-HQ)\ntitle: again\n"
    )
    first = b.line_of("title: SHHQ")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("title: again"),
        column=1,
        msg=f"duplicate key 'title' (first defined at line {first})",
        cls=YamlError,
    )


def test_python_tag_is_refused_at_the_tag(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path,
        "datasets/shhq.yaml",
        "title: SHHQ (Stylish-Humans-HQ)",
        'title: !!python/object/apply:os.system ["echo pwned"]',
    )
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("!!python"),
        column=b.column_of("!!python"),
        msg="YAML tags are not allowed",
        cls=YamlError,
    )


# --------------------------------------------------------------------------- schema level


def test_unknown_key_typo_efect_is_reported_at_the_key(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "    effect: permit\n", "    efect: permit\n")
    problems = problems_of(b.root)
    assert_problem(
        problems,
        file="shhq.yaml",
        line=b.line_of("efect:"),
        column=b.column_of("efect:"),
        msg="unknown key 'efect' in rules[0]",
        cls=PolicyFileError,
    )
    # the rule now lacks 'effect'; that is reported at the rule
    assert_problem(problems, file="shhq.yaml", line=b.line_of("- id: research-use"), msg="missing required key 'effect'")


def test_unknown_action_is_reported_at_the_list_item(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "actions: [read, derive]", "actions: [read, derivate]")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("derivate"),
        column=b.column_of("derivate"),
        msg="rules[0].actions[1]:",
        cls=PolicyFileError,
    )


def test_unknown_destination_is_reported_at_the_list_item(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path, "datasets/shhq.yaml", "destinations: [third_party, public]", "destinations: [third_party, pubic]"
    )
    p = assert_problem(
        problems_of(b.root), file="shhq.yaml", line=b.line_of("pubic"), column=b.column_of("pubic"), msg="destinations[1]:"
    )
    assert "third_party" in p.msg  # pydantic lists the allowed values


def test_boolean_field_given_yes_is_refused(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "institutional_email: true", "institutional_email: yes")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("institutional_email: yes"),
        column=b.column_of("yes"),
        msg="requirements[0].institutional_email: Input should be a valid boolean",
    )


def test_boolean_permits_when_waived_given_yes_is_refused(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/2k2k.yaml", "permits_when_waived: true", "permits_when_waived: yes")
    assert_problem(
        problems_of(b.root),
        file="2k2k.yaml",
        line=b.line_of("permits_when_waived: yes"),
        msg="permits_when_waived: Input should be a valid boolean",
    )


def test_invalid_id_pattern_is_reported_at_the_value(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "  - id: no-third-party\n", "  - id: No Third Party\n")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("No Third Party"),
        column=b.column_of("No Third Party"),
        msg="'No Third Party' is not a valid name",
    )


# --------------------------------------------------------------------------- cross references


def test_unknown_purpose_in_a_rule_is_reported_at_the_purpose(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path, "datasets/shhq.yaml", "purposes: [research/non-commercial]", "purposes: [research/non-comercial]"
    )
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("research/non-comercial"),
        column=b.column_of("research/non-comercial"),
        msg="rule 'research-use' names unknown purpose 'research/non-comercial'",
    )


def test_subset_path_glob_matching_nothing_in_the_layout_is_reported(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", 'paths: ["preview/**"]', 'paths: ["previews/**"]')
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of('"previews/**"'),
        column=b.column_of('"previews/**"'),
        msg="subset 'preview' path glob 'previews/**' matches nothing in the declared layout",
    )


def test_requirement_subset_glob_matching_no_subset_is_reported(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "  - subsets: [preview]\n", "  - subsets: [previw]\n")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("[previw]"),
        column=b.column_of("previw"),
        msg="requirement glob 'previw' matches no declared subset",
    )


def test_rule_subset_glob_matching_no_subset_is_reported(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path,
        "datasets/shhq.yaml",
        "    destinations: [third_party, public]\n",
        "    destinations: [third_party, public]\n    subsets: [nothing-*]\n",
    )
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("[nothing-*]"),
        msg="rule 'no-third-party' subset glob 'nothing-*' matches no declared subset",
    )


def test_rule_clause_not_in_the_agreement_text_is_reported_at_the_clause(tmp_path: Path) -> None:
    old = 'clause: "The SHHQ is available for non-commercial research purposes only."'
    new = 'clause: "The SHHQ is available for commercial research purposes only."'
    b = break_policies(tmp_path, "datasets/shhq.yaml", old, new)
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of(new),
        column=b.column_of(new) + len("clause: "),
        msg="rule 'research-use' cites a clause that is not in the agreement text",
    )


def test_waivable_by_someone_other_than_the_licensor_is_reported(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/2k2k.yaml", "    waivable_by: ioys\n", "    waivable_by: someone-else\n")
    assert_problem(
        problems_of(b.root),
        file="2k2k.yaml",
        line=b.line_of("waivable_by: someone-else"),
        column=b.column_of("someone-else"),
        msg="can only be waived by its licensor 'ioys', not 'someone-else'",
    )


def test_waivable_by_on_a_permit_is_reported(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path,
        "datasets/shhq.yaml",
        "    effect: permit\n",
        "    effect: permit\n    waivable_by: shanghai-ai-lab\n",
    )
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("waivable_by: shanghai-ai-lab"),
        msg="rule 'research-use' is a permit; only a forbid can be waived",
    )


def test_duplicate_rule_id_is_reported_at_the_second_id(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "  - id: publish-research-derivatives\n", "  - id: research-use\n")
    first = b.line_of("  - id: research-use\n")
    second = first + 1 + b.text.split("\n")[first:].index("  - id: research-use")
    assert b.text.split("\n")[second - 1] == "  - id: research-use"
    assert_problem(problems_of(b.root), file="shhq.yaml", line=second, column=9, msg="duplicate rule id 'research-use'")


def test_duplicate_subset_id_is_reported_at_the_second_id(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "  - id: preview\n", '  - id: "1.0"\n')
    lines = b.text.split("\n")
    second = [i + 1 for i, line in enumerate(lines) if line == '  - id: "1.0"'][1]
    assert_problem(problems_of(b.root), file="shhq.yaml", line=second, column=9, msg="duplicate subset id '1.0'")


def test_duplicate_subset_id_in_a_flow_mapping_is_reported_on_its_line(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/2k2k.yaml", "  - {id: test, paths:", "  - {id: train, paths:")
    lines = b.text.split("\n")
    second = [i + 1 for i, line in enumerate(lines) if line.startswith("  - {id: train,")][1]
    assert_problem(problems_of(b.root), file="2k2k.yaml", line=second, column=len("  - {id: ") + 1, msg="duplicate subset id 'train'")


def test_unknown_source_in_a_subset_is_reported_at_the_source(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path,
        "datasets/shhq.yaml",
        "file_sources: [deepfashion, infashai, pexels, pixabay, cc0]",
        "file_sources: [deepfashion, infashai, pexels, pixabay, cc1]",
    )
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("cc1]"),
        column=b.column_of("cc1]"),
        msg="subset '1.0' names unknown source 'cc1'",
    )


def test_sha256_not_matching_the_text_is_reported_at_the_digest(tmp_path: Path) -> None:
    real = re.search(r"sha256: ([0-9a-f]{64})", (POLICIES / "datasets/shhq.yaml").read_text()).group(1)
    wrong = ("0" if real[0] != "0" else "1") + real[1:]
    b = break_policies(tmp_path, "datasets/shhq.yaml", f"sha256: {real}", f"sha256: {wrong}")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of(wrong),
        column=b.column_of(wrong),
        msg=f"sha256 {wrong[:12]}… does not match the agreement text ({real[:12]}…)",
    )


def test_edited_agreement_text_no_longer_matches_its_sha256(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "texts/shhq.md", "SHHQ", "SHHQ!")
    del b  # the broken file is the text; the problem belongs to the policy naming its digest
    text = (tmp_path / "policies/datasets/shhq.yaml").read_text()
    line = text.count("\n", 0, text.index("  sha256:")) + 1
    assert_problem(problems_of(tmp_path / "policies"), file="shhq.yaml", line=line, msg="does not match the agreement text")


def test_dataset_file_whose_name_does_not_match_its_id_is_reported_at_the_id(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "dataset: shhq\n", "dataset: shhq2\n")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("dataset: shhq2"),
        column=b.column_of("shhq2"),
        msg="dataset 'shhq2' must live in a file named shhq2.yaml",
    )


def test_termination_by_someone_other_than_the_licensor_is_reported(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "  by: shanghai-ai-lab\n", "  by: someone-else\n")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("by: someone-else"),
        msg="termination is by 'someone-else', not the licensor 'shanghai-ai-lab'",
    )


def test_tab_indentation_is_a_yaml_error_at_the_tab(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "datasets/shhq.yaml", "    effect: permit\n", "\teffect: permit\n")
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("\teffect"),
        column=1,
        msg="invalid YAML: found",
        cls=YamlError,
    )


def test_duplicate_obligation_id_is_reported_at_the_second_id(tmp_path: Path) -> None:
    extra = '  - id: cite\n    kind: cite\n    actions: [read]\n    clause: "If you use this dataset for your research, please consider citing:"\n'
    b = break_policies(tmp_path, "datasets/2k2k.yaml", "obligations:\n", "obligations:\n" + extra)
    lines = b.text.split("\n")
    second = [i + 1 for i, line in enumerate(lines) if line == "  - id: cite"][1]
    assert_problem(problems_of(b.root), file="2k2k.yaml", line=second, column=9, msg="duplicate obligation id 'cite'")


def test_value_brought_in_by_a_merge_key_is_checked(tmp_path: Path) -> None:
    old = "  - id: publish-research-derivatives\n    effect: permit\n    actions: [publish_derivative, export]\n    purposes: [research/non-commercial]\n"
    new = (
        "  - id: publish-research-derivatives\n"
        "    <<: &shared\n"
        "      effect: permit\n"
        "      actions: [publish_derivative, export]\n"
        "      purposes:\n"
        "        - research/bogus\n"
    )
    b = break_policies(tmp_path, "datasets/shhq.yaml", old, new)
    hits = [p for p in problems_of(b.root) if "names unknown purpose 'research/bogus'" in p.msg]
    assert hits and Path(hits[0].path).name == "shhq.yaml"


def test_error_in_a_merged_value_is_reported_at_the_value_not_the_merge_key(tmp_path: Path) -> None:
    old = "  - id: publish-research-derivatives\n    effect: permit\n    actions: [publish_derivative, export]\n    purposes: [research/non-commercial]\n"
    new = (
        "  - id: publish-research-derivatives\n"
        "    <<: &shared\n"
        "      effect: permit\n"
        "      actions: [publish_derivative, export]\n"
        "      purposes:\n"
        "        - research/bogus\n"
    )
    b = break_policies(tmp_path, "datasets/shhq.yaml", old, new)
    assert_problem(
        problems_of(b.root),
        file="shhq.yaml",
        line=b.line_of("- research/bogus"),
        msg="rule 'publish-research-derivatives' names unknown purpose 'research/bogus'",
    )


# --------------------------------------------------------------------------- purposes.yaml


def test_cycle_in_the_purpose_tree_is_reported_at_the_parent_that_closes_it(tmp_path: Path) -> None:
    b = break_policies(
        tmp_path,
        "purposes.yaml",
        "  - id: research\n    description:",
        "  - id: research\n    parent: research/non-commercial/academic\n    description:",
    )
    assert_problem(
        problems_of(b.root),
        file="purposes.yaml",
        line=b.line_of("parent: research/non-commercial/academic"),
        column=b.column_of("parent: research/non-commercial/academic") + len("parent: "),
        msg="the purpose tree has a cycle: research -> research/non-commercial/academic -> research/non-commercial -> research",
    )


def test_unknown_purpose_parent_is_reported_at_the_parent(tmp_path: Path) -> None:
    old = "  - id: commercial/product\n    parent: commercial\n"
    new = "  - id: commercial/product\n    parent: comercial\n"
    b = break_policies(tmp_path, "purposes.yaml", old, new)
    assert_problem(
        problems_of(b.root),
        file="purposes.yaml",
        line=b.line_of("parent: comercial"),
        column=b.column_of("comercial"),
        msg="purpose 'commercial/product' has unknown parent 'comercial'",
    )


def test_duplicate_purpose_id_is_reported_at_the_second_id(tmp_path: Path) -> None:
    b = break_policies(tmp_path, "purposes.yaml", "  - id: commercial/media\n", "  - id: commercial/service\n")
    lines = b.text.split("\n")
    second = [i + 1 for i, line in enumerate(lines) if line == "  - id: commercial/service"][1]
    assert_problem(problems_of(b.root), file="purposes.yaml", line=second, msg="duplicate purpose id 'commercial/service'")


# --------------------------------------------------------------------------- sources


def test_source_rule_clause_not_in_its_quoted_text_is_reported(tmp_path: Path) -> None:
    old = 'clause: "Users must not further reproduce, distribute, sell, or commercially exploit any images or derived data originating from DeepFashion."'
    new = 'clause: "Users must not ever reproduce images."'
    b = break_policies(tmp_path, "sources/deepfashion.yaml", old, new)
    assert_problem(
        problems_of(b.root),
        file="deepfashion.yaml",
        line=b.line_of(new),
        msg="rule 'no-further-reproduction' cites a clause that is not in the agreement text",
    )


# --------------------------------------------------------------------------- CLI


def _validate_cli(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "governance.cli", "--policies", str(root), "policy", "validate"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _broken_for_cli(tmp_path: Path) -> Broken:
    return break_policies(tmp_path, "datasets/shhq.yaml", "    effect: permit\n", "    efect: permit\n")


def test_cli_policy_validate_on_a_broken_tree_prints_file_line_column_lines_on_stderr(tmp_path: Path) -> None:
    b = _broken_for_cli(tmp_path)
    proc = _validate_cli(b.root)
    located = [line for line in proc.stderr.splitlines() if re.match(r"^\S.*:\d+:\d+: ", line)]
    assert located, proc.stderr
    expected = f"shhq.yaml:{b.line_of('efect:')}:{b.column_of('efect:')}: unknown key 'efect' in rules[0]"
    assert any(expected in line for line in located), proc.stderr
    assert re.search(r"\d+ problem\(s\) in ", proc.stderr)
    assert "ok:" not in proc.stdout


def test_cli_policy_validate_on_a_broken_tree_exits_1(tmp_path: Path) -> None:
    proc = _validate_cli(_broken_for_cli(tmp_path).root)
    assert proc.returncode == 1, proc.stderr


def test_cli_policy_validate_on_the_real_tree_exits_0() -> None:
    proc = _validate_cli(POLICIES)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:")
