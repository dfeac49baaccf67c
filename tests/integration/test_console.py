"""The console through the real app, database and sessions (SQLite, and PostgreSQL where
configured): logins and cookies, CSRF and cross-site posts, the approval queue and a request's
evidence, approve / deny / ask-for-more, revocation seen by the next check, terminations with
the password entered again, waivers, the audit page, and role scoping — an approver acts only
for the datasets they steward, an auditor reads everything and changes nothing."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from governance.approvals import state as decisions
from governance.approvals import workflow
from governance.audit.store import EVENTS
from governance.auth.console import ConsoleSessions
from governance.auth.service import AuthenticationError
from governance.identity.roles import Role, grant_role, load_actor
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, OPERATOR, PASSWORD, add_approver, add_login

PURPOSE = "research/non-commercial"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Browser:
    """A TestClient with its own cookie jar, logged in (or not) as one person."""

    c: Any
    csrf: str = ""

    def get(self, path: str) -> Any:
        response = self.c.get(path, follow_redirects=False)
        found = CSRF.search(response.text)
        if found and "/console/login" not in path:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, str] | None = None, *, csrf: str | None = None, **kwargs: Any) -> Any:
        body = {"csrf": self.csrf if csrf is None else csrf, **(data or {})}
        return self.c.post(path, data=body, follow_redirects=False, **kwargs)


def _client(ws: Workspace) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from api.app import create_app

    # https: the console's cookie is Secure (and __Host-), which a client only sends over TLS
    return TestClient(create_app(workspace=ws), base_url="https://testserver", raise_server_exceptions=False)


def login(c: Any, address: str, password: str = PASSWORD) -> Browser:
    form = c.get("/console/login")
    assert form.status_code == 200
    token = CSRF.search(form.text)
    assert token
    done = c.post("/console/login", data={"csrf": token.group(1), "email": address, "password": password,
                                          "next": "/console/requests"}, follow_redirects=False)
    assert done.status_code == 303, done.text
    b = Browser(c)
    b.get("/console/requests")
    return b


@dataclass
class World:
    ws: Workspace
    apps: list[Any]

    def browser(self, address: str | None = None, password: str = PASSWORD) -> Browser:
        c = _client(self.ws).__enter__()
        self.apps.append(c)
        return login(c, address, password) if address else Browser(c)


@pytest.fixture
def w(ws: Workspace) -> Iterator[World]:
    add_login(ws, "alice@ust.hk", organisation="hkust", site="cwb")
    add_login(ws, "bob@cuhk.edu.hk", organisation="cuhk")
    add_login(ws, "audit@lab.example", organisation="lab")
    grant_role(ws, actor=OPERATOR, now=NOW, email="audit@lab.example", role=Role.AUDITOR, dataset=None,
               datasets=ws.policies.datasets)
    for address, ds, org in (("steward@sensetime.com", "genebody", "sensetime"), ("steward@ioys.co.kr", "2k2k", "ioys")):
        add_approver(ws, address, ds, organisation=org)
        ws.authenticator.set_password(actor=OPERATOR, now=NOW, email=address, password=PASSWORD)
    world = World(ws=ws, apps=[])
    yield world
    for c in world.apps:
        c.__exit__(None, None, None)


def ask(w: World, who: str, dataset: str = "genebody", subsets: list[str] | None = None) -> int:
    actor = load_actor(w.ws, who)
    return workflow.request_access(w.ws, actor=actor, now=datetime.now(UTC), email=who, dataset_id=dataset,
                                   subsets=subsets or ["train40"], purpose=PURPOSE, project="neural rendering").id


def state_of(w: World, request_id: int) -> str:
    return workflow.get_request(w.ws, actor=OPERATOR, request_id=request_id).state


def actions(w: World) -> list[str]:
    with w.ws.connect() as conn:
        return [r.action for r in conn.execute(select(EVENTS.c.action).order_by(EVENTS.c.seq)).all()]


# ------------------------------------------------------------------ logins, cookies, sessions


def test_pages_need_a_login_and_the_login_sets_a_locked_down_cookie(w: World) -> None:
    b = w.browser()
    first = b.get("/console/requests")
    assert first.status_code == 303 and first.headers["location"] == "/console/login?next=/console/requests"
    form = b.get("/console/login")
    assert form.headers["content-security-policy"].startswith("default-src 'none'")
    token = CSRF.search(form.text)
    assert token
    wrong = b.c.post("/console/login", data={"csrf": token.group(1), "email": "steward@sensetime.com", "password": "nope"})
    assert wrong.status_code == 401 and "The e-mail address or password is wrong." in wrong.text
    assert "__Host-gov_console" not in b.c.cookies
    token = CSRF.search(wrong.text)
    assert token
    ok = b.c.post("/console/login", data={"csrf": token.group(1), "email": "steward@sensetime.com", "password": PASSWORD,
                                          "next": "https://evil.example/"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/console/requests"  # never off-site
    cookie = next(h for h in ok.headers.get_list("set-cookie") if h.startswith("__Host-gov_console="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags
    assert b.get("/console/requests").status_code == 200


def test_a_login_without_its_csrf_cookie_or_from_another_site_is_refused(w: World) -> None:
    b = w.browser()
    assert b.c.post("/console/login", data={"csrf": "x", "email": "steward@sensetime.com", "password": PASSWORD}).status_code == 403
    b.get("/console/login")
    token = CSRF.search(b.get("/console/login").text)
    assert token
    cross = b.c.post("/console/login", data={"csrf": token.group(1), "email": "steward@sensetime.com", "password": PASSWORD},
                     headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert cross.status_code == 403 and "__Host-gov_console" not in b.c.cookies


def test_logout_ends_the_session_and_its_cookie_never_refreshes_api_tokens(w: World) -> None:
    b = w.browser("steward@sensetime.com")
    cookie = b.c.cookies["__Host-gov_console"]
    assert b.c.post("/v1/auth/refresh", json={"refresh_token": cookie}).status_code == 401
    out = b.post("/console/logout")
    assert out.status_code == 303 and out.headers["location"] == "/console/login"
    b.c.cookies.set("__Host-gov_console", cookie)  # a copy kept from before the logout
    again = b.c.get("/console/requests", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/console/login")
    assert "auth.logout" in actions(w)


def test_an_idle_session_ends_and_is_audited(w: World) -> None:
    sessions = ConsoleSessions(w.ws)
    start = datetime.now(UTC)
    done = sessions.login(email="steward@sensetime.com", password=PASSWORD, now=start, client="test")
    idle = w.ws.settings.console_idle_seconds
    assert sessions.resume(done.cookie, now=start + timedelta(seconds=idle - 5)).principal.email == "steward@sensetime.com"
    # the request above counted as activity: the idle clock restarted there
    later = start + timedelta(seconds=2 * idle - 10)
    assert sessions.resume(done.cookie, now=later).id == done.session.id
    with pytest.raises(AuthenticationError):
        sessions.resume(done.cookie, now=later + timedelta(seconds=idle + 1))
    with pytest.raises(AuthenticationError):  # ended for good, not just late
        sessions.resume(done.cookie, now=later)
    with pytest.raises(AuthenticationError):
        sessions.resume(done.cookie.rsplit(".", 1)[0] + ".guessed-secret", now=start)
    assert actions(w).count("auth.session_end") == 1


def test_the_session_lifetime_is_bounded_however_busy(w: World) -> None:
    ws = Workspace(replace(w.ws.settings, console_session_seconds=600), db=w.ws.db, mailer=w.ws.mailer)
    sessions = ConsoleSessions(ws)
    start = datetime.now(UTC)
    done = sessions.login(email="steward@sensetime.com", password=PASSWORD, now=start, client="test")
    for minute in range(1, 10):
        sessions.resume(done.cookie, now=start + timedelta(minutes=minute))
    with pytest.raises(AuthenticationError):
        sessions.resume(done.cookie, now=start + timedelta(minutes=10, seconds=1))


# ------------------------------------------------------------------ the queue and a request


def test_the_queue_shows_only_the_stewards_datasets_oldest_first(w: World) -> None:
    first, second = ask(w, "alice@ust.hk"), ask(w, "bob@cuhk.edu.hk")
    other = ask(w, "alice@ust.hk", dataset="2k2k", subsets=["2k2k"]) if "2k2k" in w.ws.policies.datasets["2k2k"].subsets else None
    b = w.browser("steward@sensetime.com")
    page = b.get("/console/requests")
    ids = [int(i) for i in dict.fromkeys(re.findall(r'href="/console/requests/(\d+)"', page.text))]
    assert ids == [first, second]
    if other is not None:
        assert other not in ids
        assert b.get(f"/console/requests/{other}").status_code == 404
    assert "Nothing to decide" in b.get("/console/requests?dataset=huge100k").text
    assert b.get("/console/requests?state=approved").text.count('href="/console/requests/') == 0


def test_the_request_page_shows_the_evidence_the_clauses_and_a_preview(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    b = w.browser("steward@sensetime.com")
    page = b.get(f"/console/requests/{rid}")
    assert page.status_code == 200
    text = page.text
    assert "alice@ust.hk" in text and "verified" in text
    basis = w.ws.decision_engine(frozenset(), frozenset()).classifier.classify("alice@ust.hk")
    assert basis.institutional and basis.basis in text.replace("&#39;", "'")
    assert "has not accepted this dataset's agreement" in text
    ds = w.ws.policies.datasets["genebody"]
    quotes = ds.subsets["train40"].requirement.clauses.values()
    assert any(q.replace("'", "&#39;").replace('"', "&#34;") in text for q in quotes)
    assert 'formaction="/console/requests/%d/deny"' % rid in text


def test_approve_deny_and_ask_need_a_reason_and_are_audited(w: World) -> None:
    first, second, third = ask(w, "alice@ust.hk"), ask(w, "bob@cuhk.edu.hk"), ask(w, "bob@cuhk.edu.hk")
    b = w.browser("steward@sensetime.com")
    b.get(f"/console/requests/{first}")
    empty = b.post(f"/console/requests/{first}/approve", {"reason": "  "})
    assert empty.status_code == 422 and "reason for the approval is required" in empty.text
    assert state_of(w, first) == "pending"
    bad_days = b.post(f"/console/requests/{first}/approve", {"reason": "fine", "days": "ten"})
    assert bad_days.status_code == 422 and state_of(w, first) == "pending"
    ok = b.post(f"/console/requests/{first}/approve", {"reason": "institutional, agreement on file", "days": "30"})
    assert ok.status_code == 303 and ok.headers["location"] == f"/console/requests/{first}"
    shown = b.get(f"/console/requests/{first}")
    assert "approved: 1 grant made" in shown.text and "badge approved" in shown.text
    grants = [g for g in workflow.list_grants(w.ws, actor=OPERATOR, now=datetime.now(UTC), email="alice@ust.hk")
              if g.request_id == first]
    assert [g.scope for g in grants] == ["genebody/train40"] and grants[0].expires is not None
    twice = b.post(f"/console/requests/{first}/approve", {"reason": "again"})
    assert twice.status_code == 409 and "already approved" in twice.text

    assert b.post(f"/console/requests/{second}/deny", {"reason": ""}).status_code == 422
    assert b.post(f"/console/requests/{second}/deny", {"reason": "not an institutional address"}).status_code == 303
    denied = workflow.get_request(w.ws, actor=OPERATOR, request_id=second)
    assert denied.state == "denied" and denied.reason == "not an institutional address"

    asked = b.post(f"/console/requests/{third}/ask", {"reason": "Please upload the signed form."})
    assert asked.status_code == 303 and state_of(w, third) == "pending"
    assert "Please upload the signed form." in b.get(f"/console/requests/{third}").text
    mails = sorted((w.ws.mailer.directory).glob("*.eml"))  # type: ignore[attr-defined]
    assert b"more information needed" in mails[-1].read_bytes()
    assert "request.ask" in actions(w)
    assert {"request.approve", "request.deny"} <= set(actions(w))


def test_forms_without_the_sessions_csrf_token_or_from_another_site_change_nothing(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    b = w.browser("steward@sensetime.com")
    other = w.browser("steward@ioys.co.kr")
    for attempt in (b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, csrf=""),
                    b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, csrf="0" * 64),
                    b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, csrf=other.csrf),  # another session's token
                    b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, headers={"origin": "https://evil.example"}),
                    b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, headers={"sec-fetch-site": "cross-site"})):
        assert attempt.status_code == 403, attempt.text
        assert "did not come from this console" in attempt.text
    assert state_of(w, rid) == "pending"
    assert b.post(f"/console/requests/{rid}/deny", {"reason": "x"}, headers={"sec-fetch-site": "same-origin"}).status_code == 303


def test_an_approver_cannot_act_on_a_dataset_they_do_not_steward(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    grant_request = ask(w, "bob@cuhk.edu.hk")
    workflow.approve(w.ws, actor=load_actor(w.ws, "steward@sensetime.com"), now=datetime.now(UTC), request_id=grant_request)
    grant = workflow.list_grants(w.ws, actor=OPERATOR, now=datetime.now(UTC), email="bob@cuhk.edu.hk")[0]
    b = w.browser("steward@ioys.co.kr")
    for verb in ("approve", "deny", "ask"):
        refused = b.post(f"/console/requests/{rid}/{verb}", {"reason": "mine now"})
        assert refused.status_code == 404, refused.text
    assert b.post(f"/console/grants/{grant.id}/revoke", {"reason": "no"}).status_code == 404
    assert state_of(w, rid) == "pending"
    assert workflow.list_grants(w.ws, actor=OPERATOR, now=datetime.now(UTC), email="bob@cuhk.edu.hk")[0].status == "active"
    assert "genebody" not in b.get("/console/grants?status=any").text.split("<tbody>")[-1]


def test_an_auditor_reads_everything_and_changes_nothing(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    b = w.browser("audit@lab.example")
    page = b.get(f"/console/requests/{rid}")
    assert page.status_code == 200 and "You are not an approver for genebody" in page.text
    assert "/approve" not in page.text
    assert b.post(f"/console/requests/{rid}/approve", {"reason": "sneaky"}).status_code == 403
    assert state_of(w, rid) == "pending"
    audit = b.get("/console/audit")
    assert audit.status_code == 200 and "intact" in audit.text and "request.create" in audit.text
    steward = w.browser("steward@sensetime.com")
    assert steward.get("/console/audit").status_code == 403


def test_a_grant_revoked_in_the_console_refuses_the_next_check(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    workflow.accept_agreement(w.ws, actor=load_actor(w.ws, "alice@ust.hk"), now=datetime.now(UTC), email="alice@ust.hk",
                              dataset_id="genebody", version=w.ws.policies.datasets["genebody"].version or "", client="test")
    workflow.upload_form(w.ws, actor=load_actor(w.ws, "alice@ust.hk"), now=datetime.now(UTC), email="alice@ust.hk",
                         dataset_id="genebody", data=FORM_PDF)
    workflow.approve(w.ws, actor=load_actor(w.ws, "steward@sensetime.com"), now=datetime.now(UTC), request_id=rid)
    resource = "genebody:train40/subject01/img_0001.jpg"

    def check() -> Any:
        return decisions.check(w.ws, email="alice@ust.hk", action="read", resources=[resource], purpose=ACADEMIC,
                               now=datetime.now(UTC)).decisions[0]

    before = check()
    assert before.effect == "permit", before
    grant = workflow.list_grants(w.ws, actor=OPERATOR, now=datetime.now(UTC), email="alice@ust.hk")[0]
    b = w.browser("steward@sensetime.com")
    listing = b.get("/console/grants")
    assert f"Revoke grant {grant.id}" in listing.text
    assert b.post(f"/console/grants/{grant.id}/revoke", {"reason": ""}).status_code == 422
    done = b.post(f"/console/grants/{grant.id}/revoke", {"reason": "licensor's notice", "back": "/console/grants"})
    assert done.status_code == 303
    assert "revoked; their next check is refused" in b.get("/console/grants?status=revoked").text
    after = check()
    assert after.effect == "deny" and "grant_revoked" in after.codes, after


def test_a_termination_needs_the_password_again(w: World) -> None:
    rid = ask(w, "alice@ust.hk")
    workflow.approve(w.ws, actor=load_actor(w.ws, "steward@sensetime.com"), now=datetime.now(UTC), request_id=rid)
    b = w.browser("steward@sensetime.com")
    assert b.get("/console/terminations").status_code == 200
    fields = {"dataset": "genebody", "holder": "user", "who": "alice@ust.hk", "reason": "licensor's notice"}
    wrong = b.post("/console/terminations", {**fields, "password": "not it"})
    assert wrong.status_code == 403 and "password is wrong; nothing was recorded" in wrong.text
    assert "access.terminate" not in actions(w)
    assert b.get("/console/requests").status_code == 200  # a wrong password here does not end the session
    done = b.post("/console/terminations", {**fields, "password": PASSWORD})
    assert done.status_code == 303
    page = b.get("/console/terminations")
    assert "1 grant revoked" in page.text and "user:alice@ust.hk" in page.text
    assert {"auth.reauthenticate", "access.terminate"} <= set(actions(w))
    other = w.browser("steward@ioys.co.kr")
    refused = other.post("/console/terminations", {**fields, "password": PASSWORD})
    assert refused.status_code == 403


def test_a_waiver_is_recorded_with_its_letter_downloaded_and_revoked(w: World) -> None:
    b = w.browser("steward@ioys.co.kr")
    fields = {"terms": "2k2k", "action": "export", "holder": "user", "who": "alice@ust.hk", "destination": "third_party",
              "rule": "no-third-party-without-permission"}
    missing = b.post("/console/waivers", fields)
    assert missing.status_code == 422 and "attach the licensor" in missing.text
    fake = b.post("/console/waivers", fields, files={"letter": ("letter.pdf", b"not a pdf", "application/pdf")})
    assert fake.status_code == 422
    done = b.post("/console/waivers", fields, files={"letter": ("letter.pdf", FORM_PDF, "application/pdf")})
    assert done.status_code == 303, done.text
    page = b.get("/console/waivers")
    assert "user:alice@ust.hk" in page.text and "in force" in page.text
    link = re.search(r'href="(/console/documents/[0-9a-f]{64})"', page.text)
    assert link
    letter = b.c.get(link.group(1))
    assert letter.status_code == 200 and letter.content == FORM_PDF
    assert letter.headers["content-disposition"].startswith("attachment")
    stranger = w.browser("bob@cuhk.edu.hk")
    assert stranger.c.get(link.group(1)).status_code == 404
    waiver = re.search(r'action="/console/waivers/(\d+)/revoke"', page.text)
    assert waiver
    assert b.post(f"/console/waivers/{waiver.group(1)}/revoke").status_code == 303
    assert "badge revoked" in b.get("/console/waivers").text


def test_console_errors_are_pages_not_json_and_unknown_ids_are_not_found(w: World) -> None:
    b = w.browser("steward@sensetime.com")
    missing = b.get("/console/requests/999999")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "No such" in missing.text or "Not found" in missing.text
    assert b.get("/console/no-such-page").status_code == 404
    assert b.get("/console/requests/not-a-number").status_code == 422
    api = b.c.get("/v1/requests/999999")
    assert api.headers["content-type"] == "application/problem+json"  # the API keeps its problem documents
