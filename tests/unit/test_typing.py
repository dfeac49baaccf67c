"""STYLE §10: mypy strict on governance/ (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_core_type_checks_under_mypy_strict() -> None:
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "governance"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
