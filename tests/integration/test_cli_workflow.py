"""The issue's acceptance flow, from the command line as an admin would script it, on SQLite and
on PostgreSQL: request -> approve -> check -> revoke -> check, then `govern audit verify`
passes, and after a hand edit of any audit row it fails naming that row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.integration.conftest import PG_URL

Govern = Callable[..., subprocess.CompletedProcess[str]]
RESOURCE = "genebody:train40/subject01/img_0001.jpg"


@pytest.fixture(params=["sqlite"] + (["postgresql"] if PG_URL else []))
def govern(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Govern, str]]:
    env = {**os.environ, "GOVERNANCE_DATA_DIR": str(tmp_path / "data")}
    env.pop("GOVERNANCE_ACTOR", None)
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'governance.db'}"
    else:
        assert PG_URL is not None
        schema = f"cli_{uuid.uuid4().hex[:12]}"
        with create_engine(PG_URL).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    env["GOVERNANCE_DATABASE_URL"] = url

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "governance.cli", *args], cwd=tmp_path, env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)

    try:
        yield run, url
    finally:
        if schema is not None:
            assert PG_URL is not None
            with create_engine(PG_URL).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_request_approve_check_revoke_check_then_verify_and_tamper(govern: tuple[Govern, str], tmp_path: Path) -> None:
    run, url = govern
    ok(run("db", "upgrade"))
    ok(run("user", "add", "Alice@UST.hk", "--org", "hkust", "--site", "clear-water-bay"))
    ok(run("user", "add", "steward@sensetime.com", "--org", "sensetime"))
    ok(run("role", "grant", "steward@sensetime.com", "approver", "--dataset", "genebody"))
    ok(run("user", "verify", "alice@ust.hk"))
    mail = sorted((tmp_path / "data" / "outbox").glob("*.eml"))[-1]
    assert "is verified" in ok(run("user", "confirm-email", "--message", str(mail)))
    ok(run("agreement", "accept", "genebody", "--user", "alice@ust.hk", "--version", "seed-001"))
    (tmp_path / "form.pdf").write_bytes(b"%PDF-1.4\nsigned by hand\n%%EOF\n")
    ok(run("form", "upload", "genebody", "form.pdf", "--user", "alice@ust.hk"))
    request = json.loads(ok(run("request", "create", "genebody", "--user", "alice@ust.hk", "--subset", "train40",
                                "--purpose", "research/non-commercial", "--project", "neural rendering", "--json")))
    assert request["state"] == "pending"

    check = ("check", "--user", "alice@ust.hk", "--resource", RESOURCE, "--action", "read",
             "--purpose", "research/non-commercial/academic", "--json")
    before = run(*check)
    assert before.returncode == 1 and json.loads(before.stdout)["results"][0]["decision"]["reasons"][0]["code"] == "no_grant"

    # The researcher cannot approve their own request; the steward can.
    refused = run("--as", "alice@ust.hk", "request", "approve", str(request["id"]))
    assert refused.returncode == 3 and refused.stderr.startswith("error: alice@ust.hk is not an approver for genebody")
    grants = json.loads(ok(run("--as", "steward@sensetime.com", "request", "approve", str(request["id"]), "--json")))
    again = run("--as", "steward@sensetime.com", "request", "approve", str(request["id"]))
    assert again.returncode == 5 and "already approved by steward@sensetime.com" in again.stderr

    permitted = run(*check)
    assert permitted.returncode == 0, permitted.stderr
    assert json.loads(permitted.stdout)["results"][0]["decision"]["effect"] == "permit"

    ok(run("--as", "steward@sensetime.com", "revoke", str(grants[0]["id"]), "--reason", "licensor's notice"))
    revoked = run(*check)
    assert revoked.returncode == 1
    assert json.loads(revoked.stdout)["results"][0]["decision"]["reasons"][0]["code"] == "grant_revoked"

    ok(run("audit", "checkpoint"))
    verified = ok(run("audit", "verify", "--json"))
    report = json.loads(verified)
    assert report["ok"] is True and report["events"] >= 12

    # Edit one row by hand: verify fails and names it.
    engine = create_engine(url)
    with engine.begin() as conn:
        seq = conn.execute(text("SELECT seq FROM audit_events WHERE action = 'grant.revoke'")).scalar_one()
        conn.execute(text("UPDATE audit_events SET outcome = 'refused' WHERE seq = :s"), {"s": seq})
    engine.dispose()
    bad = run("audit", "verify")
    assert bad.returncode == 1 and f"event {seq}" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_errors_are_one_line_with_distinct_exit_codes(govern: tuple[Govern, str]) -> None:
    run, _ = govern
    unmigrated = run("request", "list")
    assert unmigrated.returncode == 2 and "run `govern db upgrade`" in unmigrated.stderr
    ok(run("db", "upgrade"))
    missing = run("request", "approve", "42")
    assert missing.returncode == 4 and missing.stderr.strip() == "error: no request with id 42"
    unknown = run("request", "create", "genebody", "--user", "nobody@ust.hk", "--purpose", "research/non-commercial",
                  "--project", "p")
    assert unknown.returncode == 4 and "no user with the address nobody@ust.hk" in unknown.stderr
    ok(run("user", "add", "bob@gmail.com"))
    bad_subset = run("request", "create", "genebody", "--user", "bob@gmail.com", "--subset", "train41",
                     "--purpose", "research/non-commercial", "--project", "p")
    assert bad_subset.returncode == 2 and "genebody has no subset 'train41'" in bad_subset.stderr
    assert len(bad_subset.stderr.strip().splitlines()) == 1
    listed = json.loads(ok(run("request", "list", "--json")))
    assert listed == []  # the refusal wrote nothing


def test_a_steward_asks_for_more_and_the_requester_replies(govern: tuple[Govern, str], tmp_path: Path) -> None:
    run, _ = govern
    ok(run("db", "upgrade"))
    ok(run("user", "add", "alice@ust.hk", "--org", "hkust"))
    ok(run("user", "add", "steward@sensetime.com", "--org", "sensetime"))
    ok(run("role", "grant", "steward@sensetime.com", "approver", "--dataset", "genebody"))
    request = json.loads(ok(run("request", "create", "genebody", "--user", "alice@ust.hk", "--subset", "train40",
                                "--purpose", "research/non-commercial", "--project", "neural rendering", "--json")))
    asked = ok(run("--as", "steward@sensetime.com", "request", "ask", str(request["id"]), "--question", "Which site?"))
    assert "recorded and mailed" in asked
    mail = sorted((tmp_path / "data" / "outbox").glob("*.eml"))[-1].read_text()
    assert "Which site?" in mail and "more information needed" in mail
    refused = run("--as", "steward@sensetime.com", "request", "reply", str(request["id"]), "--text", "not mine")
    assert refused.returncode == 3 and "only the requester" in refused.stderr
    ok(run("--as", "alice@ust.hk", "request", "reply", str(request["id"]), "--text", "Clear Water Bay only."))
    listed = json.loads(ok(run("request", "list", "--json")))
    assert [r["state"] for r in listed] == ["pending"]
