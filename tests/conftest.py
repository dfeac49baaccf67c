"""Shared fixtures: the bundled policies compiled once per session."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from governance.policy import load_compiled
from governance.policy.compile import CompiledPolicies
from governance.policy.evaluate import Engine

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="session")
def compiled() -> CompiledPolicies:
    return load_compiled(POLICIES)


@pytest.fixture()
def engine(compiled: CompiledPolicies) -> Engine:
    # A fresh engine per test: no memo shared between tests.
    return Engine(compiled)
