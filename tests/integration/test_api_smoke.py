"""The API's main path through the real app and database: log in, ask, get approved, check,
be revoked, be refused; an API key checks like a token."""

from __future__ import annotations

from sqlalchemy import text

from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, OPERATOR, add_approver, add_login, bearer

TRAIN = "genebody:train40/subject01/img_0001.jpg"


def test_request_approve_check_revoke_check_through_the_api(ws: Workspace, api: object) -> None:
    c = api
    add_login(ws, "alice@ust.hk", organisation="hkust", site="cwb")
    add_approver(ws, "steward@sensetime.com", "genebody", organisation="sensetime")
    ws.authenticator.set_password(actor=OPERATOR, now=NOW, email="steward@sensetime.com", password="steward password 123")
    alice = bearer(c, "alice@ust.hk")
    steward = bearer(c, "steward@sensetime.com", "steward password 123")
    assert c.post("/v1/agreements/genebody/accept", headers=alice, json={"version": "seed-001"}).status_code == 201
    assert c.post("/v1/forms/genebody", headers=alice, files={"file": ("form.pdf", FORM_PDF, "application/pdf")}).status_code == 201
    req = c.post("/v1/requests", headers=alice, json={"dataset": "genebody", "subsets": ["train40"],
                                                       "purpose": "research/non-commercial", "project": "rendering"})
    assert req.status_code == 201 and req.json()["state"] == "pending"
    body = {"resource": TRAIN, "action": "read", "purpose": ACADEMIC}
    before = c.post("/v1/check", headers=alice, json=body).json()["decision"]
    assert before["effect"] == "deny" and "no_grant" in [r["code"] for r in before["reasons"]]
    # the denial was made durable (through group commit) before the answer came back
    with ws.connect() as conn:
        audited = conn.execute(text("SELECT count(*) FROM audit_events WHERE action = 'access.check'")).scalar_one()
    assert audited == 1
    grants = c.post(f"/v1/requests/{req.json()['id']}/approve", headers=steward, json={})
    assert grants.status_code == 200, grants.text
    assert c.post("/v1/check", headers=alice, json=body).json()["decision"]["effect"] == "permit"
    key = c.post("/v1/me/api-keys", headers=alice, json={"name": "loader"}).json()["key"]
    batch = c.post("/v1/check/batch", headers={"Authorization": f"Bearer {key}"},
                   json={"resources": [TRAIN, "genebody:test10/x.jpg"], "action": "read", "purpose": ACADEMIC}).json()
    assert batch["permitted"] == 1 and batch["denied"] == 1
    revoked = c.post(f"/v1/grants/{grants.json()[0]['id']}/revoke", headers=steward, json={"reason": "licensor's notice"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    after = c.post("/v1/check", headers=alice, json=body).json()["decision"]
    assert after["effect"] == "deny" and "grant_revoked" in [r["code"] for r in after["reasons"]]
    assert c.post(f"/v1/requests/{req.json()['id']}/approve", headers=alice, json={}).status_code in (403, 404)


def test_acceptances_are_listed_and_marked_current(ws: Workspace, api: object) -> None:
    c = api
    add_login(ws, "alice@ust.hk", organisation="hkust")
    alice = bearer(c, "alice@ust.hk")
    assert c.get("/v1/me/acceptances", headers=alice).json() == []
    assert c.post("/v1/agreements/genebody/accept", headers=alice, json={"version": "seed-001"}).status_code == 201
    listed = c.get("/v1/me/acceptances", headers=alice).json()
    assert [(a["dataset"], a["version"], a["current"]) for a in listed] == [("genebody", "seed-001", True)]


def test_artefact_inputs_that_are_not_relative_paths_are_refused(ws: Workspace, api: object) -> None:
    c = api
    add_login(ws, "alice@ust.hk", organisation="hkust")
    alice = bearer(c, "alice@ust.hk")
    for bad in ["genebody:../../etc/passwd", "genebody:/abs/*.jpg", "genebody:train40//x", "genebody:a\\\\b", "genebody:a\x00b"]:
        r = c.post("/v1/artefacts", headers=alice, json={"id": "m1", "inputs": [bad], "description": "a model"})
        assert r.status_code == 422, (bad, r.text)
    ok = c.post("/v1/artefacts", headers=alice, json={"id": "m1", "inputs": ["genebody:train40/**"], "description": "a model"})
    assert ok.status_code == 201, ok.text


def test_a_denial_that_cannot_be_audited_is_an_error_not_an_answer(ws: Workspace, api: object) -> None:
    from concurrent.futures import Future

    from governance.errors import GovernanceError

    c = api
    add_login(ws, "alice@ust.hk", organisation="hkust")
    alice = bearer(c, "alice@ust.hk")
    writer = ws.audit_writer
    assert writer is not None  # the app's lifespan started group commit

    def failing_submit(**_: object) -> Future[object]:
        failed: Future[object] = Future()
        failed.set_exception(GovernanceError("the audit batch could not be committed (OperationalError)"))
        return failed

    writer.submit = failing_submit  # type: ignore[method-assign]
    body = {"resource": TRAIN, "action": "read", "purpose": ACADEMIC}
    single = c.post("/v1/check", headers=alice, json=body)
    assert single.status_code == 500 and "decision" not in single.json() and single.json()["type"].endswith(":internal")
    batch = c.post("/v1/check/batch", headers=alice, json={"resources": [TRAIN], "action": "read", "purpose": ACADEMIC})
    assert batch.status_code == 500 and "groups" not in batch.json()
