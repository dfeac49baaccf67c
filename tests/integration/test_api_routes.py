"""Every route of the HTTP API through the real app and database: its main path, and the
authorisation failures that matter — a researcher never reaches another user's records by id,
an approver acts only for the datasets they steward and never on their own request, an auditor
reads everything and changes nothing, and nothing answers without credentials. Errors are RFC 9457
problem documents; ids out of range are 422, never 500."""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from governance.identity.roles import Role, grant_role
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, OPERATOR, add_approver, add_login, bearer, last_token

PURPOSE = "research/non-commercial"
H = dict[str, str]


@dataclass
class World:
    """A seeded deployment: two researchers, a steward for genebody (and a second one), a steward
    for 2k2k, and an auditor, each with a bearer token."""

    c: Any
    ws: Workspace
    alice: H
    bob: H
    steward: H
    steward2: H
    ioys: H
    auditor: H


def _login_approver(ws: Workspace, c: Any, address: str, dataset: str, organisation: str) -> H:
    add_approver(ws, address, dataset, organisation=organisation)
    ws.authenticator.set_password(actor=OPERATOR, now=NOW, email=address, password="approver password 123")
    return bearer(c, address, "approver password 123")


@pytest.fixture
def w(ws: Workspace, api: Any) -> World:
    add_login(ws, "alice@ust.hk", organisation="hkust", site="cwb")
    add_login(ws, "bob@cuhk.edu.hk", organisation="cuhk")
    add_login(ws, "audit@lab.example", organisation="lab")
    grant_role(ws, actor=OPERATOR, now=NOW, email="audit@lab.example", role=Role.AUDITOR, dataset=None,
               datasets=ws.policies.datasets)
    return World(c=api, ws=ws, alice=bearer(api, "alice@ust.hk"), bob=bearer(api, "bob@cuhk.edu.hk"),
                 steward=_login_approver(ws, api, "steward@sensetime.com", "genebody", "sensetime"),
                 steward2=_login_approver(ws, api, "second@sensetime.com", "genebody", "sensetime"),
                 ioys=_login_approver(ws, api, "steward@ioys.co.kr", "2k2k", "ioys"),
                 auditor=bearer(api, "audit@lab.example"))


def problem(response: Any, status: int) -> dict[str, Any]:
    """Assert an RFC 9457 problem document with this status; return its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(body), body
    assert body["status"] == status and body["type"].startswith("urn:governance:problem:")
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def ask(w: World, who: H, dataset: str = "genebody", subsets: list[str] | None = None) -> dict[str, Any]:
    r = w.c.post("/v1/requests", headers=who, json={"dataset": dataset, "subsets": subsets or ["train40"],
                                                    "purpose": PURPOSE, "project": "neural rendering"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def request_state(w: World, request_id: int) -> str:
    r = w.c.get(f"/v1/requests/{request_id}", headers=w.auditor)
    assert r.status_code == 200, r.text
    state: str = r.json()["state"]
    return state


def approved_grant(w: World, who: H | None = None) -> dict[str, Any]:
    req = ask(w, who or w.alice)
    r = w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.steward, json={})
    assert r.status_code == 200, r.text
    grant: dict[str, Any] = r.json()[0]
    return grant


def public_key_file(seed: int) -> str:
    raw = bytes((seed + i) % 256 for i in range(32))
    return f"-----BEGIN CRYPT4GH PUBLIC KEY-----\n{base64.b64encode(raw).decode()}\n-----END CRYPT4GH PUBLIC KEY-----\n"


def letter(**fields: str) -> dict[str, Any]:
    return {"data": fields, "files": {"letter": ("letter.pdf", FORM_PDF, "application/pdf")}}


# ------------------------------------------------------------------ datasets and purposes


def test_datasets_and_purposes_are_listed_and_an_unknown_dataset_is_not_found(w: World) -> None:
    listed = w.c.get("/v1/datasets", headers=w.alice)
    assert listed.status_code == 200
    ids = {d["id"] for d in listed.json()}
    assert {"genebody", "2k2k", "shhq", "huge100k", "clonedperson"} <= ids
    genebody = next(d for d in listed.json() if d["id"] == "genebody")
    assert {"test10", "train40"} <= set(genebody["subsets"]) and genebody["version"] == "seed-001"
    one = w.c.get("/v1/datasets/genebody", headers=w.alice)
    assert one.status_code == 200 and "genebody" in one.text
    problem(w.c.get("/v1/datasets/no-such-dataset", headers=w.alice), 404)
    purposes = w.c.get("/v1/purposes", headers=w.alice)
    assert purposes.status_code == 200 and PURPOSE in purposes.json() and ACADEMIC in purposes.json()


# ------------------------------------------------------------------ requests


def test_a_researcher_creates_lists_gets_and_withdraws_their_request(w: World) -> None:
    req = ask(w, w.alice)
    assert req["state"] == "pending" and req["user"] == "alice@ust.hk" and req["subsets"] == ["train40"]
    assert [r["id"] for r in w.c.get("/v1/requests", headers=w.alice).json()["items"]] == [req["id"]]
    assert w.c.get(f"/v1/requests/{req['id']}", headers=w.alice).json()["id"] == req["id"]
    assert w.c.get("/v1/requests?state=pending", headers=w.alice).json()["items"][0]["id"] == req["id"]
    assert w.c.get("/v1/requests?state=approved", headers=w.alice).json()["items"] == []
    withdrawn = w.c.post(f"/v1/requests/{req['id']}/withdraw", headers=w.alice)
    assert withdrawn.status_code == 200 and withdrawn.json()["state"] == "withdrawn"
    problem(w.c.post(f"/v1/requests/{req['id']}/withdraw", headers=w.alice), 409)
    problem(w.c.post("/v1/requests", headers=w.alice, json={"dataset": "genebody", "subsets": ["nope"],
                                                            "purpose": PURPOSE, "project": "p"}), 422)
    problem(w.c.post("/v1/requests", headers=w.alice, json={"dataset": "genebody", "purpose": "marketing",
                                                            "project": "p"}), 422)


def test_an_automatically_approved_subset_is_granted_at_once(w: World) -> None:
    req = ask(w, w.alice, subsets=["test10"])
    assert req["state"] == "approved"
    grants = w.c.get("/v1/grants", headers=w.alice).json()["items"]
    assert [g["scope"] for g in grants] == ["genebody/test10"] and grants[0]["status"] == "active"


def test_a_researcher_never_sees_or_withdraws_another_users_request(w: World) -> None:
    req = ask(w, w.alice)
    assert w.c.get("/v1/requests", headers=w.bob).json()["items"] == []
    for guess in (req["id"], req["id"] + 1, 999_999):
        problem(w.c.get(f"/v1/requests/{guess}", headers=w.bob), 404)
        problem(w.c.post(f"/v1/requests/{guess}/withdraw", headers=w.bob), 404)
    # The answer for someone else's request is the same as for one that does not exist.
    mine = w.c.get(f"/v1/requests/{req['id']}", headers=w.bob).json()["detail"]
    assert mine == f"no request with id {req['id']}"
    assert request_state(w, req["id"]) == "pending"


# ------------------------------------------------------------------ grants


def test_grants_are_paged_by_cursor_and_limit(w: World) -> None:
    req = ask(w, w.alice, dataset="2k2k", subsets=["train", "test", "smplx", "keypoints"])
    approved = w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.ioys, json={"days": 30})
    assert approved.status_code == 200, approved.text
    assert len(approved.json()) == 4
    first = w.c.get("/v1/grants?limit=3", headers=w.alice).json()
    assert len(first["items"]) == 3 and first["next_cursor"] == first["items"][-1]["id"]
    second = w.c.get(f"/v1/grants?limit=3&cursor={first['next_cursor']}", headers=w.alice).json()
    assert len(second["items"]) == 1 and second["next_cursor"] is None
    ids = [g["id"] for g in first["items"] + second["items"]]
    assert ids == sorted(ids) == sorted(g["id"] for g in approved.json())
    assert w.c.get("/v1/grants?dataset=genebody", headers=w.alice).json()["items"] == []
    assert len(w.c.get("/v1/grants?active=true", headers=w.alice).json()["items"]) == 4
    assert w.c.get("/v1/grants", headers=w.bob).json() == {"items": [], "next_cursor": None}
    assert w.c.get("/v1/grants", headers=w.steward).json()["items"] == []  # 2k2k is not theirs
    problem(w.c.get("/v1/grants?limit=0", headers=w.alice), 422)
    problem(w.c.get("/v1/grants?limit=100000", headers=w.alice), 422)
    problem(w.c.get("/v1/grants?cursor=-1", headers=w.alice), 422)


# ------------------------------------------------------------------ agreements and forms


def test_the_current_agreement_is_accepted_and_an_old_version_refused(w: World) -> None:
    ok = w.c.post("/v1/agreements/genebody/accept", headers=w.alice, json={"version": "seed-001"})
    assert ok.status_code == 201 and ok.json()["version"] == "seed-001" and len(ok.json()["sha256"]) == 64
    sha = ok.json()["sha256"]
    assert w.c.post("/v1/agreements/genebody/accept", headers=w.alice, json={"version": sha}).status_code == 201
    assert "not the current" in problem(w.c.post("/v1/agreements/genebody/accept", headers=w.alice,
                                                 json={"version": "seed-000"}), 422)["detail"]
    problem(w.c.post("/v1/agreements/no-such/accept", headers=w.alice, json={"version": "seed-001"}), 422)
    problem(w.c.post("/v1/agreements/genebody/accept", headers=w.alice, json={"version": "seed-001", "extra": 1}), 422)


def test_forms_are_uploaded_listed_and_confirmed_only_by_the_datasets_approver(w: World) -> None:
    up = w.c.post("/v1/forms/genebody", headers=w.alice, files={"file": ("form.pdf", FORM_PDF, "application/pdf")})
    assert up.status_code == 201 and up.json()["confirmed_by"] is None
    form = up.json()
    problem(w.c.post("/v1/forms/genebody", headers=w.alice, files={"file": ("form.pdf", b"not a pdf", "application/pdf")}), 422)
    problem(w.c.post("/v1/forms/2k2k", headers=w.alice, files={"file": ("form.pdf", FORM_PDF, "application/pdf")}), 422)
    assert [f["id"] for f in w.c.get("/v1/forms", headers=w.alice).json()["items"]] == [form["id"]]
    assert w.c.get("/v1/forms", headers=w.bob).json()["items"] == []
    assert w.c.get("/v1/forms", headers=w.ioys).json()["items"] == []
    assert [f["id"] for f in w.c.get("/v1/forms?pending=true", headers=w.steward).json()["items"]] == [form["id"]]
    # Neither the researcher, another researcher, the steward of another dataset nor an auditor
    # confirms it; those who cannot see it are told it does not exist (its dataset stays unsaid).
    for who in (w.alice, w.auditor):
        problem(w.c.post(f"/v1/forms/{form['id']}/confirm", headers=who), 403)
    for who in (w.bob, w.ioys):
        assert problem(w.c.post(f"/v1/forms/{form['id']}/confirm", headers=who), 404)["detail"] == \
            f"no signed form with id {form['id']}"
    assert w.c.get("/v1/forms", headers=w.alice).json()["items"][0]["confirmed_by"] is None
    confirmed = w.c.post(f"/v1/forms/{form['id']}/confirm", headers=w.steward)
    assert confirmed.status_code == 200 and confirmed.json()["confirmed_by"] and confirmed.json()["confirmed_at"]
    problem(w.c.post(f"/v1/forms/{form['id']}/confirm", headers=w.steward2), 409)
    problem(w.c.post("/v1/forms/999999/confirm", headers=w.steward), 404)
    assert w.c.get("/v1/forms?pending=true", headers=w.steward).json()["items"] == []


# ------------------------------------------------------------------ e-mail verification


def test_a_mailed_link_verifies_the_callers_address_once(ws: Workspace, api: Any) -> None:
    add_login(ws, "carol@ust.hk", organisation="hkust", verified=False)
    carol = bearer(api, "carol@ust.hk")
    assert api.get("/v1/me", headers=carol).json()["email_verified"] is False
    sent = api.post("/v1/me/email/verification", headers=carol)
    assert sent.status_code == 200 and "carol@ust.hk" in sent.json()["detail"]
    token = last_token(ws)
    verified = api.post("/v1/verify-email", json={"token": token})
    assert verified.status_code == 200 and verified.json()["detail"] == "carol@ust.hk is verified"
    assert api.get("/v1/me", headers=carol).json()["email_verified"] is True
    problem(api.post("/v1/verify-email", json={"token": token}), 400)
    problem(api.post("/v1/verify-email", json={"token": "forged.token"}), 400)


# ------------------------------------------------------------------ public keys and API keys


def test_public_keys_are_registered_listed_and_revoked_by_their_owner_only(w: World) -> None:
    pem = public_key_file(1)
    made = w.c.post("/v1/me/keys", headers=w.alice, json={"key": pem, "name": "laptop"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["name"] == "laptop" and base64.b64decode(key["key"]) == bytes(range(1, 33)) and key["revoked_at"] is None
    raw = w.c.post("/v1/me/keys", headers=w.alice, json={"key": base64.b64encode(bytes(range(2, 34))).decode()})
    assert raw.status_code == 201 and raw.json()["name"] == "default"
    problem(w.c.post("/v1/me/keys", headers=w.alice, json={"key": pem}), 422)  # already registered
    problem(w.c.post("/v1/me/keys", headers=w.alice, json={"key": "not a key"}), 422)
    problem(w.c.post("/v1/me/keys", headers=w.alice, json={"key": base64.b64encode(bytes(16)).decode()}), 422)
    assert [k["id"] for k in w.c.get("/v1/me/keys", headers=w.alice).json()] == [key["id"], raw.json()["id"]]
    assert w.c.get("/v1/me/keys", headers=w.bob).json() == []
    for who in (w.bob, w.steward, w.auditor):
        problem(w.c.delete(f"/v1/me/keys/{key['id']}", headers=who), 404)
    assert w.c.get("/v1/me/keys", headers=w.alice).json()[0]["revoked_at"] is None
    revoked = w.c.delete(f"/v1/me/keys/{key['id']}", headers=w.alice)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    problem(w.c.delete("/v1/me/keys/999999", headers=w.alice), 404)


def test_api_keys_of_another_user_cannot_be_listed_or_revoked(w: World) -> None:
    made = w.c.post("/v1/me/api-keys", headers=w.alice, json={"name": "loader", "datasets": ["genebody"]})
    assert made.status_code == 201 and made.json()["key"]
    assert w.c.get("/v1/me/api-keys", headers=w.bob).json() == []
    for who in (w.bob, w.steward, w.auditor):
        problem(w.c.delete(f"/v1/me/api-keys/{made.json()['id']}", headers=who), 404)
    key = {"Authorization": f"Bearer {made.json()['key']}"}
    assert w.c.get("/v1/me", headers=key).json()["authenticated_by"] == "api_key"
    assert w.c.delete(f"/v1/me/api-keys/{made.json()['id']}", headers=w.alice).status_code == 200
    problem(w.c.get("/v1/me", headers=key), 401)


# ------------------------------------------------------------------ artefacts


def test_artefacts_are_registered_and_read_by_owner_steward_and_auditor_only(w: World) -> None:
    made = w.c.post("/v1/artefacts", headers=w.alice, json={"id": "nerf-1", "inputs": ["genebody/train40"],
                                                            "description": "a NeRF of subject 1"})
    assert made.status_code == 201, made.text
    assert made.json()["owner"] == "alice@ust.hk" and made.json()["inputs"] == ["genebody/train40"]
    child = w.c.post("/v1/artefacts", headers=w.alice, json={"id": "distilled", "inputs": ["artefact:nerf-1"],
                                                             "description": "smaller"})
    assert child.status_code == 201
    problem(w.c.post("/v1/artefacts", headers=w.alice, json={"id": "nerf-1", "inputs": ["genebody/train40"],
                                                             "description": "again"}), 409)
    problem(w.c.post("/v1/artefacts", headers=w.alice, json={"id": "loop", "inputs": ["artefact:loop"],
                                                             "description": "x"}), 422)
    problem(w.c.post("/v1/artefacts", headers=w.alice, json={"id": "Bad Id", "inputs": ["genebody/train40"],
                                                             "description": "x"}), 422)
    assert w.c.get("/v1/artefacts/nerf-1", headers=w.alice).json()["description"] == "a NeRF of subject 1"
    for who in (w.steward, w.auditor):
        assert w.c.get("/v1/artefacts/nerf-1", headers=who).status_code == 200
    for guess in ("nerf-1", "distilled", "no-such"):
        problem(w.c.get(f"/v1/artefacts/{guess}", headers=w.bob), 404)


# ------------------------------------------------------------------ approvers


def test_a_steward_approves_denies_and_revokes_for_their_dataset(w: World) -> None:
    req = ask(w, w.alice)
    assert [r["id"] for r in w.c.get("/v1/requests", headers=w.steward).json()["items"]] == [req["id"]]
    approved = w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.steward, json={"days": 10, "note": "ok"})
    assert approved.status_code == 200, approved.text
    grant = approved.json()[0]
    assert grant["scope"] == "genebody/train40" and grant["status"] == "active" and grant["expires"]
    problem(w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.steward, json={}), 409)
    problem(w.c.post(f"/v1/requests/{req['id']}/deny", headers=w.steward, json={"reason": "late"}), 409)
    revoked = w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.steward, json={"reason": "licensor's notice"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert revoked.json()["revoke_reason"] == "licensor's notice"
    problem(w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.steward2, json={"reason": "again"}), 409)
    problem(w.c.post("/v1/grants/999999/revoke", headers=w.steward, json={"reason": "x"}), 404)
    other = ask(w, w.bob)
    denied = w.c.post(f"/v1/requests/{other['id']}/deny", headers=w.steward, json={"reason": "not institutional"})
    assert denied.status_code == 200 and denied.json()["state"] == "denied" and denied.json()["reason"] == "not institutional"
    problem(w.c.post(f"/v1/requests/{other['id']}/deny", headers=w.steward, json={"reason": ""}), 422)
    problem(w.c.post(f"/v1/requests/{other['id']}/approve", headers=w.steward, json={"days": 0}), 422)


def test_a_steward_of_another_dataset_cannot_approve_deny_or_revoke(w: World) -> None:
    req = ask(w, w.alice)
    for verb, body in (("approve", {}), ("deny", {"reason": "no"})):
        problem(w.c.post(f"/v1/requests/{req['id']}/{verb}", headers=w.ioys, json=body), 404)
    assert request_state(w, req["id"]) == "pending"
    grant = approved_grant(w)
    problem(w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.ioys, json={"reason": "no"}), 404)
    problem(w.c.post("/v1/terminations", headers=w.ioys,
                     json={"dataset": "genebody", "reason": "no", "email": "alice@ust.hk"}), 403)
    problem(w.c.post("/v1/waivers", headers=w.steward, **letter(terms="2k2k", action="export", email="alice@ust.hk",
                                                                 destination="third_party")), 403)
    assert [g["status"] for g in w.c.get("/v1/grants", headers=w.alice).json()["items"]] == ["active"]


def test_an_approver_cannot_approve_their_own_request(w: World) -> None:
    mine = ask(w, w.steward)
    problem(w.c.post(f"/v1/requests/{mine['id']}/approve", headers=w.steward, json={}), 403)
    assert request_state(w, mine["id"]) == "pending"
    assert w.c.post(f"/v1/requests/{mine['id']}/approve", headers=w.steward2, json={}).status_code == 200


def test_a_researcher_cannot_decide_revoke_terminate_or_waive(w: World) -> None:
    req = ask(w, w.alice)
    grant = approved_grant(w, w.bob)
    for who in (w.alice, w.bob):
        for verb, body in (("approve", {}), ("deny", {"reason": "no"})):
            assert w.c.post(f"/v1/requests/{req['id']}/{verb}", headers=who, json=body).status_code in (403, 404)
        assert w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=who, json={"reason": "x"}).status_code in (403, 404)
    problem(w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.bob, json={}), 404)  # not even visible
    problem(w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.alice, json={"reason": "x"}), 404)
    problem(w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.bob, json={"reason": "x"}), 403)  # their own
    problem(w.c.post("/v1/terminations", headers=w.alice, json={"dataset": "genebody", "reason": "x",
                                                                 "organisation": "cuhk"}), 403)
    problem(w.c.post("/v1/waivers", headers=w.alice, **letter(terms="2k2k", action="export", email="alice@ust.hk",
                                                               destination="third_party")), 403)
    assert request_state(w, req["id"]) == "pending"
    assert w.c.get("/v1/grants", headers=w.bob).json()["items"][0]["status"] == "active"


def test_a_termination_revokes_every_grant_of_the_holder(w: World) -> None:
    approved_grant(w)
    problem(w.c.post("/v1/terminations", headers=w.steward, json={"dataset": "genebody", "reason": "x"}), 422)
    problem(w.c.post("/v1/terminations", headers=w.steward, json={"dataset": "genebody", "reason": "x",
                                                                  "organisation": "no-such-org"}), 404)
    done = w.c.post("/v1/terminations", headers=w.steward,
                    json={"dataset": "genebody", "reason": "licensor's notice", "organisation": "hkust"})
    assert done.status_code == 201, done.text
    assert done.json()["holder"] == "organisation:hkust" and done.json()["grants_revoked"] == 1
    assert w.c.get("/v1/grants", headers=w.alice).json()["items"][0]["status"] == "revoked"
    user = w.c.post("/v1/terminations", headers=w.steward,
                    json={"dataset": "genebody", "reason": "again", "email": "bob@cuhk.edu.hk"})
    assert user.status_code == 201 and user.json()["grants_revoked"] == 0


def test_a_waiver_is_recorded_with_the_letter_and_revoked_by_the_licensors_steward(w: World) -> None:
    expires = (datetime.now(UTC) + timedelta(days=90)).isoformat()
    fields = {"terms": "2k2k", "action": "export", "email": "alice@ust.hk", "destination": "third_party",
              "rule": "no-third-party-without-permission"}
    made = w.c.post("/v1/waivers", headers=w.ioys, **letter(**fields, expires=expires))
    assert made.status_code == 201, made.text
    waiver = made.json()
    assert waiver["holder"] == "user:alice@ust.hk" and waiver["owner"] == "ioys" and waiver["expires"]
    problem(w.c.post("/v1/waivers", headers=w.ioys, data=fields,
                     files={"letter": ("letter.pdf", b"just text", "application/pdf")}), 422)
    problem(w.c.post("/v1/waivers", headers=w.ioys, **letter(**{**fields, "rule": "no-further-copies",
                                                                   "destination": "organisation"})), 422)
    problem(w.c.post("/v1/waivers", headers=w.ioys, **letter(**fields, expires="2030-01-01T00:00:00")), 422)
    problem(w.c.post("/v1/waivers", headers=w.ioys, **letter(**fields, expires="2001-01-01T00:00:00Z")), 422)
    for who in (w.alice, w.auditor):  # its holder and an auditor see it, and may not revoke it
        problem(w.c.delete(f"/v1/waivers/{waiver['id']}", headers=who), 403)
    for who in (w.bob, w.steward):
        problem(w.c.delete(f"/v1/waivers/{waiver['id']}", headers=who), 404)
    revoked = w.c.delete(f"/v1/waivers/{waiver['id']}", headers=w.ioys)
    assert revoked.status_code == 200
    problem(w.c.delete(f"/v1/waivers/{waiver['id']}", headers=w.ioys), 409)
    problem(w.c.delete("/v1/waivers/999999", headers=w.ioys), 404)


# ------------------------------------------------------------------ auditors


def test_an_auditor_reads_everything_and_verifies_the_chain_but_every_write_is_refused(w: World) -> None:
    req = ask(w, w.alice)
    grant = approved_grant(w, w.bob)
    form = w.c.post("/v1/forms/genebody", headers=w.alice, files={"file": ("f.pdf", FORM_PDF, "application/pdf")}).json()
    w.c.post("/v1/artefacts", headers=w.alice, json={"id": "nerf-1", "inputs": ["genebody/train40"], "description": "d"})
    assert len(w.c.get("/v1/requests", headers=w.auditor).json()["items"]) == 2
    assert [g["id"] for g in w.c.get("/v1/grants", headers=w.auditor).json()["items"]] == [grant["id"]]
    assert [f["id"] for f in w.c.get("/v1/forms", headers=w.auditor).json()["items"]] == [form["id"]]
    assert w.c.get(f"/v1/requests/{req['id']}", headers=w.auditor).status_code == 200
    assert w.c.get("/v1/artefacts/nerf-1", headers=w.auditor).status_code == 200
    verified = w.c.get("/v1/audit/verify", headers=w.auditor)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True and verified.json()["events"] > 10
    events = verified.json()["events"]

    writes = [
        w.c.post(f"/v1/requests/{req['id']}/approve", headers=w.auditor, json={}),
        w.c.post(f"/v1/requests/{req['id']}/deny", headers=w.auditor, json={"reason": "no"}),
        w.c.post(f"/v1/requests/{req['id']}/withdraw", headers=w.auditor),
        w.c.post(f"/v1/grants/{grant['id']}/revoke", headers=w.auditor, json={"reason": "no"}),
        w.c.post(f"/v1/forms/{form['id']}/confirm", headers=w.auditor),
        w.c.post("/v1/terminations", headers=w.auditor, json={"dataset": "genebody", "reason": "x", "email": "alice@ust.hk"}),
        w.c.post("/v1/waivers", headers=w.auditor, **letter(terms="2k2k", action="export", email="alice@ust.hk",
                                                             destination="third_party")),
    ]
    for response in writes:
        problem(response, 403)
    assert request_state(w, req["id"]) == "pending"
    assert w.c.get("/v1/grants", headers=w.auditor).json()["items"][0]["status"] == "active"
    assert w.c.get("/v1/forms", headers=w.auditor).json()["items"][0]["confirmed_by"] is None
    # Refusals are audited, but nothing else was written.
    assert w.c.get("/v1/audit/verify", headers=w.auditor).json()["events"] >= events


def test_a_researcher_or_steward_cannot_verify_the_audit_chain(w: World) -> None:
    problem(w.c.get("/v1/audit/verify", headers=w.alice), 403)
    problem(w.c.get("/v1/audit/verify", headers=w.steward), 403)


# ------------------------------------------------------------------ every route


PUBLIC = {("get", "/v1/health"), ("post", "/v1/verify-email"), ("post", "/v1/auth/login"), ("post", "/v1/auth/refresh")}


def _operations(api: Any) -> list[tuple[str, str, dict[str, Any]]]:
    spec = api.app.openapi()
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()
            if method in ("get", "post", "put", "delete", "patch")]


def _fill(path: str, op: dict[str, Any], value: int) -> str:
    for p in op.get("parameters", []):
        if p["in"] == "path":
            integer = p["schema"].get("type") == "integer"
            path = path.replace("{" + p["name"] + "}", str(value) if integer else "genebody")
    return path


def test_every_route_but_the_public_ones_needs_credentials(ws: Workspace, api: Any) -> None:
    ops = _operations(api)
    assert len(ops) >= 30
    public = {(m, p) for m, p, op in ops if not op.get("security")}
    assert public == PUBLIC, public
    for method, path, op in ops:
        if (method, path) in PUBLIC:
            continue
        url = _fill(path, op, 1)
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"X-API-Key": "gk_forged"},
                        {"Authorization": "Basic YWxpY2U6cHc="}):
            r = api.request(method.upper(), url, headers=headers)
            body = problem(r, 401)
            assert body["detail"] == "a valid access token or API key is required", (method, path)
            assert r.headers.get("www-authenticate") == "Bearer"
    assert api.get("/v1/health").json() == {"status": "ok"}


def test_huge_ids_are_refused_as_invalid_input_never_a_server_error(w: World) -> None:
    checked = 0
    for method, path, op in _operations(w.c):
        if not any(p["in"] == "path" and p["schema"].get("type") == "integer" for p in op.get("parameters", [])):
            continue
        for value in (2**40, 2**63, -1, 0):
            kwargs: dict[str, Any] = {"json": {"reason": "x"}} if method == "post" else {}
            r = w.c.request(method.upper(), _fill(path, op, value), headers=w.alice, **kwargs)
            problem(r, 422)
            checked += 1
    assert checked >= 4 * 8
    problem(w.c.get(f"/v1/grants?cursor={2**70}", headers=w.alice), 422)
    problem(w.c.get(f"/v1/requests/{'9' * 400}", headers=w.alice), 422)


def test_unknown_routes_and_methods_answer_problem_documents(w: World) -> None:
    problem(w.c.get("/v1/nothing-here", headers=w.alice), 404)
    problem(w.c.put("/v1/datasets", headers=w.alice), 405)
    problem(w.c.post("/v1/requests", headers={**w.alice, "content-type": "application/json"}, content=b"{not json"), 422)


# ------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("verb", ["approve", "deny"])
def test_two_approvers_deciding_at_once_exactly_one_wins(w: World, verb: str) -> None:
    req = ask(w, w.alice)
    barrier = threading.Barrier(2)
    results: list[int] = []
    body = {} if verb == "approve" else {"reason": "refused"}

    def decide(who: H) -> None:
        barrier.wait()
        results.append(w.c.post(f"/v1/requests/{req['id']}/{verb}", headers=who, json=body).status_code)

    threads = [threading.Thread(target=decide, args=(who,)) for who in (w.steward, w.steward2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [200, 409], results
    assert request_state(w, req["id"]) == ("approved" if verb == "approve" else "denied")
    grants = w.c.get("/v1/grants", headers=w.alice).json()["items"]
    assert len(grants) == (1 if verb == "approve" else 0)
    assert w.c.get("/v1/audit/verify", headers=w.auditor).json()["ok"] is True


def test_the_check_route_decides_from_stored_state(w: World) -> None:
    body = {"resource": "genebody:train40/subject01/img_0001.jpg", "action": "read", "purpose": ACADEMIC}
    assert w.c.post("/v1/check", headers=w.alice, json=body).json()["decision"]["effect"] == "deny"
    w.c.post("/v1/agreements/genebody/accept", headers=w.alice, json={"version": "seed-001"})
    w.c.post("/v1/forms/genebody", headers=w.alice, files={"file": ("f.pdf", FORM_PDF, "application/pdf")})
    approved_grant(w)
    assert w.c.post("/v1/check", headers=w.alice, json=body).json()["decision"]["effect"] == "permit"
    assert w.c.post("/v1/check", headers=w.bob, json=body).json()["decision"]["effect"] == "deny"
    batch = w.c.post("/v1/check/batch", headers=w.alice, json={"resources": [body["resource"]] * 3, "action": "read",
                                                               "purpose": ACADEMIC})
    assert batch.status_code == 200 and batch.json()["permitted"] == 3



# ------------------------------------------------------------------ server-side failures


def test_a_mail_server_failure_is_a_503_that_names_no_server(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from governance.identity.mail import MailDeliveryError, Message

    class Down:
        def send(self, message: Message) -> None:
            raise MailDeliveryError("cannot deliver mail via smtp.internal.example:25 (ConnectionRefusedError)")

    monkeypatch.setitem(w.ws.__dict__, "mailer", Down())  # the cached property's value
    body = problem(w.c.post("/v1/me/email/verification", headers=w.alice), 503)
    assert "smtp.internal" not in body["detail"]


def test_a_core_error_of_the_service_itself_is_a_500_that_says_nothing_of_it(w: World,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from api.v1 import steward
    from governance.storage.db import DatabaseError

    def broken(*args: object, **kwargs: object) -> None:
        raise DatabaseError("cannot reach the database at postgresql://gov:s3cret@db.internal/gov (OperationalError)")

    monkeypatch.setattr(steward, "verify_audit", broken)
    body = problem(w.c.get("/v1/audit/verify", headers=w.auditor), 500)
    assert "s3cret" not in body["detail"] and "db.internal" not in body["detail"] and body["request_id"]


def test_an_approver_asks_for_more_and_the_requester_answers(w: World) -> None:
    req = ask(w, w.alice)
    asked = w.c.post(f"/v1/requests/{req['id']}/ask", headers=w.steward, json={"text": "Which lab will hold the copy?"})
    assert asked.status_code == 201, asked.text
    assert asked.json()["kind"] == "ask" and request_state(w, req["id"]) == "pending"
    problem(w.c.post(f"/v1/requests/{req['id']}/ask", headers=w.ioys, json={"text": "mine?"}), 404)
    problem(w.c.post(f"/v1/requests/{req['id']}/ask", headers=w.alice, json={"text": "self"}), 403)
    problem(w.c.post(f"/v1/requests/{req['id']}/notes", headers=w.steward, json={"text": "not yours"}), 403)
    problem(w.c.get(f"/v1/requests/{req['id']}/notes", headers=w.bob), 404)
    answered = w.c.post(f"/v1/requests/{req['id']}/notes", headers=w.alice, json={"text": "The CWB lab, one copy."})
    assert answered.status_code == 201 and answered.json()["kind"] == "reply"
    notes = w.c.get(f"/v1/requests/{req['id']}/notes", headers=w.steward).json()
    assert [(n["kind"], n["text"]) for n in notes] == [("ask", "Which lab will hold the copy?"), ("reply", "The CWB lab, one copy.")]
    assert w.c.post(f"/v1/requests/{req['id']}/deny", headers=w.steward, json={"reason": "one site only"}).status_code == 200
    problem(w.c.post(f"/v1/requests/{req['id']}/ask", headers=w.steward, json={"text": "late"}), 409)
    problem(w.c.post(f"/v1/requests/{req['id']}/notes", headers=w.alice, json={"text": "late"}), 409)
