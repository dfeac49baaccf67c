"""Every scenario file in tests/acceptance/ (and the shared corpus when present) must pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.policy.compile import CompiledPolicies
from governance.policy.evaluate import Engine
from governance.policy.scenarios import load_scenarios, run_scenario
from tests.conftest import NOW, ROOT

HERE = Path(__file__).parent
SHARED = ROOT.parent / "shared" / "acceptance" / "decisions.yaml"
FILES = sorted(HERE.glob("*.yaml")) + ([SHARED] if SHARED.is_file() else [])


def _cases(compiled: CompiledPolicies) -> list[tuple[str, object]]:
    return [(f"{f.name}::{s.scenario.id}", s) for f in FILES for s in load_scenarios(f, compiled)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        from governance.policy import load_compiled
        from tests.conftest import POLICIES

        cases = _cases(load_compiled(POLICIES))
        metafunc.parametrize("scenario", [c[1] for c in cases], ids=[c[0] for c in cases])


def test_scenario_holds(scenario, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    outcome = run_scenario(engine, scenario, default_now=NOW)
    assert outcome.ok, f"{scenario.scenario.id}: {outcome.problems}; reasons={outcome.decision.codes}"


def test_local_copy_of_shared_scenarios_is_current() -> None:
    """tests/acceptance/decisions.yaml is a copy so the project stands alone; keep it in step."""
    if not SHARED.is_file():
        pytest.skip("shared/acceptance is not beside this checkout")
    assert (HERE / "decisions.yaml").read_bytes() == SHARED.read_bytes()


def test_scenario_files_found() -> None:
    assert (HERE / "decisions.yaml") in FILES
