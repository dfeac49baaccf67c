"""Browser tests of the console: a demo deployment behind a real `govern serve`, driven by
Debian's Chromium through Playwright's sync API (no pytest-playwright plugin).

Without /usr/bin/chromium the tests skip, unless GOVERNANCE_REQUIRE_BROWSER=1 (.ci/run sets
it): then they fail, saying how to install it. The deployment is on SQLite even when
GOVERNANCE_TEST_DATABASE_URL points the suite at PostgreSQL (see deployment.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import deployment as dep
from tests.browser.deployment import Deployment


def _need_browser() -> None:
    why = dep.chromium_missing()
    if why is None:
        return
    if os.environ.get("GOVERNANCE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GOVERNANCE_REQUIRE_BROWSER=1 but {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The seeded demo and its server (GOVERNANCE_CONSOLE_SECURE_COOKIE=0: plain http)."""
    _need_browser()
    with dep.deployment(tmp_path_factory.mktemp("console")) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module; each test gets its own context (cookies, storage)."""
    _need_browser()
    with dep.chromium() as launched:
        yield launched


@pytest.fixture()
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport=dep.VIEWPORT)
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture()
def page(context: Any) -> Any:
    return context.new_page()


@pytest.fixture()
def steward(page: Any, demo: Deployment) -> Any:
    """A page logged in as the genebody steward."""
    dep.login(page, demo.url, dep.STEWARD, demo.password)
    return page


@pytest.fixture()
def idle_server(demo: Deployment, tmp_path: Path) -> Iterator[str]:
    """A second server over the same data directory whose console sessions end after 3 s idle."""
    with dep.serve(demo.govern, tmp_path / "serve-idle.log", GOVERNANCE_CONSOLE_IDLE_SECONDS="3") as server:
        yield server.url
