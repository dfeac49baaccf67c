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


def pytest_configure(config: pytest.Config) -> None:
    """CI sets GOVERNANCE_REQUIRE_POSTGRES: then PostgreSQL must be configured and answer, or
    the run stops before any test (its tests would otherwise be skipped silently)."""
    import os

    if not os.environ.get("GOVERNANCE_REQUIRE_POSTGRES"):
        return
    url = os.environ.get("GOVERNANCE_TEST_DATABASE_URL")
    if not url:
        raise pytest.UsageError("GOVERNANCE_REQUIRE_POSTGRES is set but GOVERNANCE_TEST_DATABASE_URL is not")
    from sqlalchemy import create_engine, text

    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        raise pytest.UsageError(f"PostgreSQL at GOVERNANCE_TEST_DATABASE_URL does not answer ({type(exc).__name__})") from None
