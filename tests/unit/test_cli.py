"""The `govern` CLI, driven for real in subprocesses: exit codes, stdout and stderr.

Exit codes: 0 success, 1 a check failed (scenario expectation, policy problem), 2 bad input
(unknown name, malformed file, bad option value, missing directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from governance.policy import load_compiled
from governance.policy.scenarios import load_scenarios
from tests.conftest import POLICIES, ROOT

SCENARIOS = ROOT / "tests" / "acceptance" / "decisions.yaml"
GOVERN = ROOT / ".venv" / "bin" / "govern"
WAIVED_ID = "2k2k-third-party-with-ioys-permission"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOVERNANCE_POLICIES_DIR", "GOVERNANCE_DEBUG")}
    env.update(extra)
    return env


def govern(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
           exe: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = (exe or [sys.executable, "-m", "governance.cli"]) + [str(a) for a in args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT, env=env or _env(), timeout=120)


def ws(text: str) -> str:
    return " ".join(text.split())


def assert_one_error_line(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def scenario_ids(path: Path) -> list[str]:
    return [s.scenario.id for s in load_scenarios(path, load_compiled(POLICIES))]


def _break_clause(policies: Path) -> None:
    """Make one rule's clause no longer verbatim from its agreement text."""
    target = policies / "datasets" / "2k2k.yaml"
    text = target.read_text(encoding="utf-8")
    broken = text.replace("available for **non-commercial** research purposes only", "available for any purposes")
    assert broken != text
    target.write_text(broken, encoding="utf-8")


# ------------------------------------------------------------------ policy validate


def test_policy_validate_exits_0_and_says_ok() -> None:
    proc = govern("policy", "validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: "), proc.stdout
    assert "5 datasets" in proc.stdout and "verbatim" in proc.stdout


def test_policy_validate_json_reports_ok_true() -> None:
    proc = govern("policy", "validate", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    assert Path(data["directory"]) == POLICIES
    assert "2k2k" in data["datasets"] and "deepfashion" in data["sources"]


def test_installed_console_script_runs() -> None:
    if not GOVERN.is_file():
        pytest.skip(f"console script not installed at {GOVERN}")
    proc = govern("policy", "validate", exe=[str(GOVERN)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")
    proc = govern("check", "--scenarios", SCENARIOS, exe=[str(GOVERN)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ policy show


def _rule_blocks(text: str) -> dict[str, str]:
    """Map rule id -> its header line plus the indented lines under it (the quoted clause)."""
    blocks: dict[str, str] = {}
    current: str | None = None
    header = re.compile(r"^    (PERMIT|FORBID) ([\w.-]+):")
    for line in text.splitlines():
        m = header.match(line)
        if m:
            current = m.group(2)
            blocks[current] = line
        elif current is not None and line.startswith("      "):
            blocks[current] += "\n" + line
        else:
            current = None
    return blocks


def test_policy_show_dataset_prints_rule_ids_beside_verbatim_clauses() -> None:
    proc = govern("policy", "show", "2k2k")
    assert proc.returncode == 0, proc.stderr
    policy = yaml.safe_load((POLICIES / "datasets" / "2k2k.yaml").read_text(encoding="utf-8"))
    blocks = _rule_blocks(proc.stdout)
    assert set(blocks) == {r["id"] for r in policy["rules"]}
    for rule in policy["rules"]:
        assert f'"{ws(rule["clause"])}"' in ws(blocks[rule["id"]]), rule["id"]
    # One clause checked literally, as the steward wrote it in policies/datasets/2k2k.yaml.
    assert 'The 2K2K dataset (the "Dataset") is available for **non-commercial** research purposes only.' in ws(
        blocks["research-use"]
    )


def test_policy_show_source() -> None:
    proc = govern("policy", "show", "deepfashion")
    assert proc.returncode == 0, proc.stderr
    assert "source 'deepfashion'" in proc.stdout
    policy = yaml.safe_load((POLICIES / "sources" / "deepfashion.yaml").read_text(encoding="utf-8"))
    blocks = _rule_blocks(proc.stdout)
    for rule in policy["rules"]:
        assert ws(rule["clause"]) in ws(blocks[rule["id"]]), rule["id"]


def test_policy_show_unknown_name_exits_2_with_one_error_line() -> None:
    line = assert_one_error_line(govern("policy", "show", "nosuch"))
    assert "nosuch" in line and "2k2k" in line  # names the known ones
    assert govern("policy", "show", "nosuch").stdout == ""


# ------------------------------------------------------------------ policy schema


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


@pytest.mark.parametrize(("kind", "key"), [("dataset", "dataset"), ("source", "source"), ("purposes", None)])
def test_policy_schema_prints_json_schema(kind: str, key: str | None) -> None:
    proc = govern("policy", "schema", kind)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert isinstance(schema["properties"], dict) and schema["properties"]
    assert schema.get("additionalProperties") is False  # strict, like the loader
    if key is not None:
        assert key in schema["required"]
    for ref in _refs(schema):  # every reference resolves inside the document
        assert ref.startswith("#/$defs/"), ref
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref


def test_policy_schema_unknown_kind_exits_2() -> None:
    line = assert_one_error_line(govern("policy", "schema", "nosuch"))
    assert "nosuch" in line


# ------------------------------------------------------------------ check


def test_check_acceptance_scenarios_exits_0_with_one_pass_line_each() -> None:
    proc = govern("check", "--scenarios", SCENARIOS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = scenario_ids(SCENARIOS)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(ids)
    for line, sid in zip(lines, ids, strict=True):
        assert line.startswith(f"PASS  {sid}: "), line
    assert f"{len(ids)}/{len(ids)} scenarios pass" in proc.stderr


def test_check_json_prints_one_object_per_line() -> None:
    proc = govern("check", "--scenarios", SCENARIOS, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == len(scenario_ids(SCENARIOS))
    for line in lines:
        obj = json.loads(line)
        assert isinstance(obj, dict)
        assert {"id", "effect", "reasons", "obligations", "ok"} <= obj.keys(), obj
        assert obj["ok"] is True and obj["effect"] in ("permit", "deny")
        assert isinstance(obj["reasons"], list) and isinstance(obj["obligations"], list)


DAN = """\
  now: "2026-06-01T00:00:00Z"
  subject:
    email: dan@kaist.ac.kr
    email_verified: true
    organisation: kaist
    site: daejeon
    accepted: {2k2k: current}
    grants:
      - {scope: 2k2k, purpose: research/non-commercial}
"""


def test_check_wrong_expectation_exits_1_and_prints_fail(tmp_path: Path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(
        "- id: right\n" + DAN
        + '  request: {action: read, resource: "2k2k:train/00029/00029.ply", purpose: research/non-commercial}\n'
        + "  expect: {effect: permit, obligations: [cite]}\n"
        + "- id: wrong\n" + DAN
        + '  request: {action: read, resource: "2k2k:train/00029/00029.ply", purpose: commercial}\n'
        + "  expect: {effect: permit}\n",
        encoding="utf-8",
    )
    proc = govern("check", "--scenarios", path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("PASS  right: permit")
    assert lines[1].startswith("FAIL  wrong: deny")
    assert "expected permit, got deny" in lines[1]
    assert "1/2 scenarios pass" in proc.stderr

    proc = govern("check", "--scenarios", path, "--json")
    assert proc.returncode == 1
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(o["id"], o["ok"]) for o in objs] == [("right", True), ("wrong", False)]


REQ = '  request: {action: read, resource: "2k2k:train/x.ply", purpose: research/non-commercial}\n'
SUBJ = "  subject: {email: dan@kaist.ac.kr, email_verified: true}\n"
MALFORMED = {
    # name: (file text, line, column, words in the message)
    "unknown-key": ("- id: a\n" + SUBJ + REQ + "  expect: {effect: deny}\n  bogus: 1\n", 5, 3, "unknown key 'bogus'"),
    "bad-yaml": ("- id: a\n" + SUBJ + "  request: action: read\n  expect: {effect: deny}\n", 3, 18, "invalid YAML"),
    "duplicate-id": ("- id: a\n" + SUBJ + REQ + "  expect: {effect: deny}\n"
                     "- id: a\n" + SUBJ + REQ + "  expect: {effect: deny}\n", 5, 7, "duplicate scenario id 'a'"),
    "python-tag": ("- id: a\n  subject: !!python/object:os.system {email: a}\n" + REQ + "  expect: {effect: deny}\n",
                   2, 12, "tags are not allowed"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_check_malformed_scenario_file_exits_2_with_position(tmp_path: Path, name: str) -> None:
    text, line, column, words = MALFORMED[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    for command in ("check", "explain"):
        message = assert_one_error_line(govern(command, "--scenarios", path))
        m = re.search(rf"{re.escape(path.name)}:(\d+):(\d+): (.*)$", message)
        assert m, message
        assert (int(m.group(1)), int(m.group(2))) == (line, column), message
        assert words in m.group(3), message


# ------------------------------------------------------------------ explain


def test_explain_waived_permit_quotes_clause_and_notes_waiver() -> None:
    proc = govern("explain", "--scenarios", SCENARIOS, "--id", WAIVED_ID)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"# {WAIVED_ID} (dan@kaist.ac.kr; as expected)")
    assert "\nPERMIT  export to third_party 2k2k:train/00029/00029.ply" in out
    assert "permitted by: 2k2k#no-third-party-without-permission" in out
    assert '"If you use this dataset for your research, please consider citing:"' in out  # cite clause, quoted
    assert re.search(r"note waived: 2k2k#no-third-party-without-permission waived by its owner 'ioys'", out)
    assert out.count("\n# ") == 0  # only the one scenario asked for


def test_explain_unknown_id_exits_2() -> None:
    line = assert_one_error_line(govern("explain", "--scenarios", SCENARIOS, "--id", "nosuch"))
    assert "nosuch" in line


# ------------------------------------------------------------------ where the policies come from


def test_bundled_policies_found_from_another_working_directory(tmp_path: Path) -> None:
    proc = govern("policy", "validate", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True
    proc = govern("check", "--scenarios", SCENARIOS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_policies_env_var_points_at_a_copy_and_its_break_shows(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    env = _env(GOVERNANCE_POLICIES_DIR=str(copy))
    proc = govern("policy", "validate", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert Path(json.loads(proc.stdout)["directory"]) == copy

    _break_clause(copy)
    proc = govern("policy", "validate", "--json", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    assert any(re.search(r"datasets/2k2k\.yaml:\d+:\d+: rule 'research-use' cites a clause", p) for p in data["problems"])
    proc = govern("check", "--scenarios", SCENARIOS, env=env)
    assert proc.returncode == 1 and "research-use" in proc.stderr and "Traceback" not in proc.stderr
    # The bundled policies are untouched.
    assert govern("policy", "validate").returncode == 0


def test_policies_option_points_at_a_copy_and_its_break_shows(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    assert govern("--policies", copy, "policy", "validate").returncode == 0
    _break_clause(copy)
    proc = govern("--policies", copy, "policy", "validate")
    assert proc.returncode == 1
    assert re.search(r"datasets/2k2k\.yaml:\d+:\d+: rule 'research-use'", proc.stderr), proc.stderr
    assert "1 problem(s)" in proc.stderr
    assert govern("policy", "validate").returncode == 0
    # --policies wins over the environment variable.
    proc = govern("--policies", POLICIES, "policy", "validate", env=_env(GOVERNANCE_POLICIES_DIR=str(copy)))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("command", [("policy", "validate"), ("policy", "show", "2k2k"), ("check", "--scenarios", str(SCENARIOS))])
def test_missing_policies_dir_exits_2_without_traceback(command: tuple[str, ...]) -> None:
    line = assert_one_error_line(govern("--policies", "/nonexistent", *command))
    assert "/nonexistent" in line and "does not exist" in line


@pytest.mark.parametrize("value", ["notatime", "2026-06-01T00:00:00"])
def test_bad_now_exits_2(value: str) -> None:
    line = assert_one_error_line(govern("check", "--scenarios", SCENARIOS, "--now", value))
    assert "--now" in line


# ------------------------------------------------------------------ packaging


BACKEND_UNAVAILABLE = re.compile(
    r"No matching distribution found for hatchling|Could not find a version that satisfies the requirement hatchling"
    r"|Failed to establish a new connection|Temporary failure in name resolution|Network is unreachable",
    re.IGNORECASE,
)


def test_wheel_bundles_the_policies(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", str(ROOT), "-w", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    if proc.returncode != 0 and BACKEND_UNAVAILABLE.search(proc.stdout + proc.stderr):
        pytest.skip("cannot fetch the build backend (hatchling) to build a wheel: " + proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(tmp_path.glob("governance-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    prefix = "governance/_bundled_policies/"
    assert prefix + "purposes.yaml" in names
    for sub, ext in (("datasets", "yaml"), ("sources", "yaml"), ("texts", "md")):
        expected = {f"{prefix}{sub}/{p.name}" for p in (POLICIES / sub).glob(f"*.{ext}")}
        assert expected and expected <= names, expected - names
    assert "governance/cli.py" in names

    # The unpacked wheel, run from elsewhere, falls back to its bundled copy and validates it.
    env = _env(PYTHONPATH=str(tmp_path / "site"))
    run = subprocess.run([sys.executable, "-m", "governance.cli", "policy", "validate", "--json"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    directory = Path(json.loads(run.stdout)["directory"])
    assert directory == tmp_path / "site" / "governance" / "_bundled_policies"
