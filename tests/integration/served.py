"""Real `govern` processes for the client and replica tests: the CLI seeds a data directory,
`govern serve` answers on a free port, and teardown stops exactly the process it started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

FORM_PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\nsigned by hand\ntrailer <<>>\n%%EOF\n"
PURPOSE = "research/non-commercial"
ACADEMIC = "research/non-commercial/academic"
TRAIN = "genebody:train40/subject01/img_0001.jpg"
PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Govern:
    """`python -m governance.cli` over one data directory (and database URL)."""

    data_dir: Path
    database_url: str
    cwd: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.env = {**os.environ, "GOVERNANCE_DATA_DIR": str(self.data_dir), "GOVERNANCE_DATABASE_URL": self.database_url}
        for name in ("GOVERNANCE_ACTOR", "GOVERNANCE_DEBUG", "GOVERNANCE_HOST", "GOVERNANCE_PORT", "GOVERNANCE_WORKERS"):
            self.env.pop(name, None)

    def run(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "governance.cli", *args], cwd=self.cwd, env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"govern {' '.join(args)} exited {result.returncode}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))

    def add_verified_user(self, email: str, *, org: str, site: str | None = None) -> None:
        self.run("user", "add", email, "--org", org, *(["--site", site] if site else []))
        outbox = self.data_dir / "outbox"
        before = set(outbox.glob("*.eml")) if outbox.exists() else set()
        self.run("user", "verify", email)
        (mail,) = set(outbox.glob("*.eml")) - before
        self.run("user", "confirm-email", "--message", str(mail))

    def add_researcher_with_grant(self, email: str, *, org: str, site: str, subset: str = "train40") -> list[int]:
        """A verified researcher who accepted genebody's agreement, uploaded the signed form and
        holds an approved grant on `subset`; returns the grant ids."""
        self.add_verified_user(email, org=org, site=site)
        self.run("agreement", "accept", "genebody", "--user", email, "--version", "seed-001")
        form = self.cwd / "form.pdf"
        form.write_bytes(FORM_PDF)
        self.run("form", "upload", "genebody", str(form), "--user", email)
        request = self.json("request", "create", "genebody", "--user", email, "--subset", subset, "--purpose", PURPOSE,
                            "--project", "neural rendering of clothed humans")
        grants = self.json("request", "approve", str(request["id"]))
        return [int(g["id"]) for g in grants]

    def api_key(self, email: str) -> tuple[int, str]:
        record = self.json("apikey", "create", "--user", email)
        return int(record["id"]), str(record["key"])

    def set_password(self, email: str, password: str = PASSWORD) -> None:
        self.run("user", "set-password", email, "--stdin", stdin=password + "\n")


class Server:
    """One `govern serve` process; `stop()` ends it (and only it)."""

    def __init__(self, govern: Govern, *, port: int | None = None, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log or govern.cwd / f"serve-{self.port}.log"
        self._log = self._log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "governance.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            cwd=govern.cwd, env=govern.env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_healthy(self, timeout: float = 30.0) -> Server:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"govern serve exited {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"govern serve did not answer /v1/health within {timeout} s: {self.output()}")

    def output(self) -> str:
        self._log.flush()
        return self._log_path.read_text(encoding="utf-8", errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()


def login(base_url: str, email: str, password: str = PASSWORD) -> dict[str, str]:
    """The Authorization header of an access token from POST /v1/auth/login."""
    response = httpx.post(f"{base_url}/v1/auth/login", json={"email": email, "password": password}, timeout=10)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
