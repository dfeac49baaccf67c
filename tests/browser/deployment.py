"""A demo deployment served by a real `govern serve`, and Debian's Chromium driven by Playwright.

Shared by the browser tests (tests/browser/conftest.py) and the screenshot script
(`python -m tests.browser.screenshots`). The deployment always runs on SQLite
(GOVERNANCE_DATABASE_URL is emptied), also when GOVERNANCE_TEST_DATABASE_URL points the rest of
the suite at PostgreSQL: the console's pages sit over the same services either way, and the
PostgreSQL paths of those services are covered by the integration tests.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.integration.served import Govern, Server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("GOVERNANCE_CHROMIUM", "/usr/bin/chromium"))
# Never a downloaded browser; these flags keep a closed network from seeing Chromium's own traffic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}

STEWARD = "steward@genebody.example"
HUGE_STEWARD = "steward@huge100k.example"
ADMIN = "admin@governance.example"
AUDITOR = "auditor@governance.example"
ALICE = "alice@ust.hk"
TRAIN_FILE = "genebody:train40/subject01/img_0001.jpg"
ACADEMIC = "research/non-commercial/academic"

# Pending genebody requests added to the demo's one (chen's train40), so each test that decides
# one has its own: (user, subset, project).
EXTRA_PENDING = [
    ("dana@tuebingen.mpg.de", "extended370", "Long clothed-body sequences (browser test: deny)"),
    (ALICE, "extended370", "Long clothed-body sequences (browser test: cross-site target)"),
]


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it). "
                "Never `playwright install`: the tests drive Debian's Chromium only.")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the python playwright package is missing: make .venv/.installed-test (the `test` extra)"
    return None


@dataclass
class Deployment:
    """The seeded data directory, its logins, and the server answering over it."""

    govern: Govern
    server: Server
    password: str
    api_key: str
    pending: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (user, dataset, subset) -> request id

    @property
    def url(self) -> str:
        return self.server.url

    def request_id(self, user: str, dataset: str, subset: str) -> int:
        return self.pending[(user, dataset, subset)]

    def api_login(self, email: str) -> dict[str, str]:
        return _token(self.url, email, self.password)

    def api(self, path: str, *, as_user: str = AUDITOR) -> Any:
        """GET /v1/<path> as `as_user` (the auditor sees everything and changes nothing)."""
        response = httpx.get(f"{self.url}/v1/{path}", headers=self.api_login(as_user), timeout=10)
        assert response.status_code == 200, f"GET /v1/{path}: {response.status_code} {response.text}"
        return response.json()


def seed(workdir: Path) -> Govern:
    """`govern demo` into workdir/data, on SQLite."""
    govern = Govern(data_dir=workdir / "data", database_url="", cwd=ROOT)
    govern.env.pop("GOVERNANCE_MASTER_KEY", None)
    govern.env["GOVERNANCE_CONSOLE_SECURE_COOKIE"] = "0"  # plain http on 127.0.0.1
    govern.run("demo")
    return govern


def credentials(govern: Govern) -> tuple[str, str]:
    text = (govern.data_dir / "demo-credentials.txt").read_text(encoding="utf-8")
    password = re.search(r"^password \(every demo user\): (\S+)$", text, re.M)
    key = re.search(r"^API key of alice@ust\.hk: (\S+)$", text, re.M)
    assert password and key, "demo-credentials.txt lost its password or API key line"
    return password.group(1), key.group(1)


def _token(url: str, email: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{url}/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def add_requests(url: str, password: str) -> None:
    """The researchers of EXTRA_PENDING ask for access through the API, as they would."""
    for user, subset, project in EXTRA_PENDING:
        response = httpx.post(f"{url}/v1/requests", headers=_token(url, user, password), timeout=10, json={
            "dataset": "genebody", "subsets": [subset], "purpose": "research/non-commercial", "project": project})
        assert response.status_code == 201 and response.json()["state"] == "pending", response.text


def pending_requests(url: str, password: str) -> dict[tuple[str, str, str], int]:
    response = httpx.get(f"{url}/v1/requests", params={"state": "pending", "limit": 500},
                         headers=_token(url, AUDITOR, password), timeout=10)
    assert response.status_code == 200, response.text
    found: dict[tuple[str, str, str], int] = {}
    for r in response.json()["items"]:
        for subset in r["subsets"] or ["*"]:
            found[(r["user"], r["dataset"], subset)] = int(r["id"])
    return found


@contextmanager
def serve(govern: Govern, log: Path, **env: str) -> Iterator[Server]:
    """`govern serve` on a free port over `govern`'s data directory, extra settings in `env`;
    stops exactly that process."""
    saved = dict(govern.env)
    govern.env.update(env)
    try:
        server = Server(govern, log=log).wait_healthy()
    finally:
        govern.env = saved
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def deployment(workdir: Path) -> Iterator[Deployment]:
    govern = seed(workdir)
    password, api_key = credentials(govern)
    with serve(govern, workdir / "serve.log") as server:
        add_requests(server.url, password)
        yield Deployment(govern=govern, server=server, password=password, api_key=api_key,
                         pending=pending_requests(server.url, password))


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright's sync API (the caller checked chromium_missing())."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def login(page: Any, base_url: str, email: str, password: str) -> None:
    """Log in through the form, as a person would; lands on the approval queue."""
    page.goto(f"{base_url}/console/login")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/console/requests")
