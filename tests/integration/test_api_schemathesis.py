"""Property-based tests of the served OpenAPI document (schemathesis): every operation of
create_app, over a seeded SQLite workspace, called with generated input by a logged-in
researcher (and, for the routes a loader uses, with an API key). Whatever is sent, the answer
is never a server error, its status code is one the document declares, and its body matches the
declared schema (problem documents included)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from schemathesis.checks import (
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )
    from schemathesis.core.result import Err

from api.app import create_app
from governance.approvals import workflow
from governance.config import Settings
from governance.identity.mail import OutboxMailer
from governance.storage.db import make_engine, upgrade
from governance.workspace import Workspace
from tests.integration.helpers import FORM_PDF, NOW, PURPOSE, add_approver, add_login

CHECKS: list[Callable[..., Any]] = [not_a_server_error, status_code_conformance, response_schema_conformance]
try:  # present in schemathesis 4
    from schemathesis.checks import content_type_conformance

    CHECKS.append(content_type_conformance)
except ImportError:  # pragma: no cover
    pass

FUZZ = settings(max_examples=25, deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    """The app over a seeded SQLite workspace: a researcher with a request, a grant, a form and
    an artefact, and a steward of genebody, so that generated ids sometimes hit real records."""
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    engine = make_engine(f"sqlite:///{tmp / 'governance.db'}")
    upgrade(engine)
    ws = Workspace(Settings(data_dir=tmp / "data", database_url=str(engine.url), checkpoint_every=50), db=engine,
                   mailer=OutboxMailer(tmp / "outbox", sender="governance@lab.example"))
    alice = add_login(ws, "alice@ust.hk", organisation="hkust", site="cwb")
    steward = add_approver(ws, "steward@sensetime.com", "genebody", organisation="sensetime")
    workflow.accept_agreement(ws, actor=alice, now=NOW, email="alice@ust.hk", dataset_id="genebody", version="seed-001",
                              client="seed")
    workflow.upload_form(ws, actor=alice, now=NOW, email="alice@ust.hk", dataset_id="genebody", data=FORM_PDF)
    for _ in range(2):
        req = workflow.request_access(ws, actor=alice, now=NOW, email="alice@ust.hk", dataset_id="genebody",
                                      subsets=["train40"], purpose=PURPOSE, project="rendering")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    workflow.register_artefact(ws, actor=alice, now=NOW, ident="nerf-1", inputs=["genebody/train40"], description="NeRF")
    ws.authenticator.create_api_key(actor=alice, now=NOW, name="seeded")
    yield create_app(workspace=ws)
    engine.dispose()


def _login(app: FastAPI) -> dict[str, str]:
    with TestClient(app) as client:
        r = client.post("/v1/auth/login", json={"email": "alice@ust.hk", "password": "correct horse battery staple"})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _api_key(app: FastAPI, token: dict[str, str]) -> dict[str, str]:
    with TestClient(app) as client:
        r = client.post("/v1/me/api-keys", headers=token, json={"name": "fuzz loader"})
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['key']}"}


def _fuzz(app: FastAPI, credentials: Callable[[], dict[str, str]], *, keep: Callable[[str, str], bool]) -> list[str]:
    """Run every kept operation; the failures, one line each (all operations run, then report)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    ran = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"an operation the document does not describe validly: {result.err()}")
            continue
        op = result.ok()
        if not keep(op.method.upper(), op.path):
            continue
        ran += 1
        headers = credentials()  # a fresh session per operation: logout or a password change ends only its own

        @FUZZ
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure, then report
            first = str(exc).strip().splitlines()
            failures.append(f"{op.method.upper()} {op.path}: {type(exc).__name__}: {' | '.join(first[:12])}")
    assert ran >= 5
    return failures


def test_the_document_declares_problem_documents_for_every_failure(app: FastAPI) -> None:
    spec = app.openapi()
    assert {"type", "title", "status", "detail"} <= set(spec["components"]["schemas"]["Problem"]["required"])
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (method, path, status)
            if op.get("security"):
                assert {"401", "422"} <= set(op["responses"]), (method, path)


def test_every_operation_answers_within_its_documented_schema_for_a_logged_in_researcher(app: FastAPI) -> None:
    failures = _fuzz(app, lambda: _login(app), keep=lambda method, path: True)
    assert not failures, "\n".join(failures)


LOADER = {("POST", "/v1/check"), ("POST", "/v1/check/batch"), ("GET", "/v1/me"), ("GET", "/v1/datasets"),
          ("GET", "/v1/grants"), ("POST", "/v1/auth/logout")}


def test_the_loaders_routes_answer_within_their_schema_for_an_api_key(app: FastAPI) -> None:
    token = _login(app)
    failures = _fuzz(app, lambda: _api_key(app, token), keep=lambda method, path: (method, path) in LOADER)
    assert not failures, "\n".join(failures)
