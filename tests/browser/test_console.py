"""The console in a real browser: Debian's Chromium against a real `govern serve` over the demo.

Each test is a flow a steward (or an attacker) would go through: log in and see the queue,
approve and deny with a reason, revoke a grant and watch a loader's next check be refused, a
forged cross-site form post, a decision on a dataset the steward does not steward, logout and
the idle timeout. Every test decides a request or grant of its own, so their order is free.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from governance.client import Client
from tests.browser import deployment as dep
from tests.browser.deployment import Deployment

DANA = "dana@tuebingen.mpg.de"
CHEN = "chen@tsinghua.edu.cn"
BEN = "ben@cs.ox.ac.uk"
REFUSED = "did not come from this console"


def expect_text(page: Any, selector: str, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_contain_text(re.compile(pattern), timeout=15_000)


def flash(page: Any) -> str:
    text: str = page.locator(".flash").first.inner_text()
    return text


def state_badge(page: Any) -> str:
    text: str = page.locator(".heading .badge").first.inner_text()
    return text.strip()


def request_state(demo: Deployment, request_id: int) -> dict[str, Any]:
    record: dict[str, Any] = demo.api(f"requests/{request_id}")
    return record


def grant_row(page: Any, user: str, scope: str) -> Any:
    """The grants table's row for `user` holding `scope`."""
    rows = page.locator("table.list tbody tr").filter(has_text=user).filter(has_text=scope)
    assert rows.count() == 1, f"expected one grant row for {user} on {scope}, found {rows.count()}: {page.inner_text('main')}"
    return rows.first


def grant_id_of(row: Any) -> int:
    return int(row.locator("td").first.inner_text().strip())


def grant_status(demo: Deployment, grant_id: int) -> str:
    body = demo.api("grants?limit=500")
    for g in body["items"]:
        if int(g["id"]) == grant_id:
            return str(g["status"])
    raise AssertionError(f"grant {grant_id} is not listed for the auditor")


# ---------------------------------------------------------------- log in, the queue


def test_login_shows_the_stewards_queue(page: Any, demo: Deployment) -> None:
    dep.login(page, demo.url, dep.STEWARD, demo.password)
    expect_text(page, "h1", "Approval queue")
    expect_text(page, "header .who", re.escape(dep.STEWARD))
    rows = page.locator("table.list tbody tr")
    assert rows.count() >= 1
    # Only the datasets this approver stewards: every row and every filter option is genebody.
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").nth(2).inner_text().strip() == "genebody"
    options = page.locator("select[name=dataset] option").all_inner_texts()
    assert options[1:] == ["GeneBody"], options
    # Chen's train40 request (the demo's pending one) is there and opens its request page.
    page.locator("table.list tbody tr").filter(has_text=CHEN).get_by_role("link", name=CHEN).click()
    page.wait_for_url(re.compile(r"/console/requests/\d+$"))
    expect_text(page, "h1", r"Request \d+: GeneBody")
    # The session cookie: HttpOnly and SameSite=Lax (not Secure here: plain http, by setting).
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "gov_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"


def test_wrong_password_is_refused(page: Any, demo: Deployment) -> None:
    page.goto(f"{demo.url}/console/requests")
    page.wait_for_url(re.compile(r"/console/login\?next="))
    page.get_by_label("E-mail address").fill(dep.ADMIN)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect_text(page, ".flash.error", "e-mail address or password is wrong")
    assert "/console/login" in page.url
    assert not [c for c in page.context.cookies() if c["name"] == "gov_console"]


# ---------------------------------------------------------------- decisions


def test_approve_a_request_end_to_end(steward: Any, demo: Deployment) -> None:
    page = steward
    request_id = demo.request_id(CHEN, "genebody", "train40")
    page.goto(f"{demo.url}/console/requests?dataset=genebody&state=pending")
    page.get_by_role("link", name=str(request_id), exact=True).click()
    page.wait_for_url(f"{demo.url}/console/requests/{request_id}")
    assert state_badge(page) == "pending"
    expect_text(page, "main", "Who is asking")
    page.get_by_label(re.compile("^Reason")).fill("Institutional address, signed form on file (browser test)")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(f"{demo.url}/console/requests/{request_id}")
    assert f"Request {request_id} approved: 1 grant made." in flash(page)
    assert state_badge(page) == "approved"
    expect_text(page, "main", "signed form on file \\(browser test\\)")
    # The service agrees, and the grant is under /console/grants.
    assert request_state(demo, request_id)["state"] == "approved"
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Grants").click()
    page.wait_for_url(f"{demo.url}/console/grants")
    row = grant_row(page, CHEN, "genebody/train40")
    assert "active" in row.inner_text()
    assert row.get_by_role("link").get_attribute("href") == f"/console/requests/{request_id}"


def test_deny_a_request_with_a_reason(steward: Any, demo: Deployment) -> None:
    page = steward
    request_id = demo.request_id(DANA, "genebody", "extended370")
    page.goto(f"{demo.url}/console/requests/{request_id}")
    assert state_badge(page) == "pending"
    # The reason is required: the browser will not send the form without one.
    page.get_by_role("button", name="Deny").click()
    assert page.get_by_label(re.compile("^Reason")).evaluate("el => el.validity.valueMissing")
    assert state_badge(page) == "pending"
    page.get_by_label(re.compile("^Reason")).fill("Extended370 is for the licensor's partners only (browser test)")
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url(f"{demo.url}/console/requests/{request_id}")
    assert f"Request {request_id} denied." in flash(page)
    assert state_badge(page) == "denied"
    expect_text(page, "main", "partners only \\(browser test\\)")
    record = request_state(demo, request_id)
    assert record["state"] == "denied" and "partners only" in record["reason"]
    assert record["decided_by"].startswith("user:")  # the steward, by id


def test_revoke_a_grant_and_the_loaders_next_check_is_refused(steward: Any, demo: Deployment) -> None:
    page = steward
    with Client(demo.url, demo.api_key, retries=0) as loader:
        before = loader.check(dep.TRAIN_FILE, "read", dep.ACADEMIC)
        assert before.permitted, before
        page.goto(f"{demo.url}/console/grants?dataset=genebody")
        row = grant_row(page, dep.ALICE, "genebody/train40")
        grant_id = grant_id_of(row)
        row.locator("summary", has_text="Revoke").click()
        row.get_by_label("Reason").fill("Agreement breached: data shared outside the lab (browser test)")
        row.get_by_role("button", name=f"Revoke grant {grant_id}").click()
        page.wait_for_url(re.compile(r"/console/grants"))
        assert f"Grant {grant_id} (genebody/train40 for {dep.ALICE}) revoked" in flash(page)
        # Gone from the active list; listed as revoked with its reason.
        assert page.locator("table.list tbody tr").filter(has_text=dep.ALICE).filter(has_text="genebody/train40").count() == 0
        page.goto(f"{demo.url}/console/grants?status=revoked")
        revoked = grant_row(page, dep.ALICE, "genebody/train40")
        assert "revoked" in revoked.inner_text() and "data shared outside the lab" in revoked.inner_text()
        # The loader's next check: refused, naming the revocation. The server is one process,
        # so it applies at once; allow the documented cross-process bound (0.75 s) regardless.
        deadline = time.monotonic() + 2.0
        after = loader.check(dep.TRAIN_FILE, "read", dep.ACADEMIC)
        while after.permitted and time.monotonic() < deadline:
            time.sleep(0.05)
            after = loader.check(dep.TRAIN_FILE, "read", dep.ACADEMIC)
        assert not after.permitted, after
        assert "grant_revoked" in after.codes, after.codes
    assert grant_status(demo, grant_id) == "revoked"


# ---------------------------------------------------------------- cross-site forms


class Attacker:
    """A second HTTP server, on another origin, whose page auto-submits a form to the console."""

    def __init__(self) -> None:
        self.html = b""
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(attacker.html)))
                self.end_headers()
                self.wfile.write(attacker.html)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, action: str, fields: dict[str, str]) -> None:
        inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
        self.html = (f'<!doctype html><title>You won a prize</title><form method="post" action="{action}">{inputs}</form>'
                     "<script>document.forms[0].submit()</script>").encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def attacker() -> Iterator[Attacker]:
    served = Attacker()
    try:
        yield served
    finally:
        served.close()


def attack(page: Any, attacker: Attacker, origin_host: str, action: str, fields: dict[str, str]) -> Any:
    """Open the attacker's page in the victim's (logged-in) browser; the console's answer to the post."""
    attacker.page(action, fields)
    with page.expect_response(lambda r: r.url == action and r.request.method == "POST") as answer:
        page.goto(f"http://{origin_host}:{attacker.port}/")
    page.wait_for_load_state()
    return answer.value


@pytest.mark.parametrize("token", ["none", "leaked"])
def test_a_cross_origin_form_post_is_refused(steward: Any, demo: Deployment, attacker: Attacker, token: str) -> None:
    """The attacker's page is on 127.0.0.1 too, another port: another origin but the same site,
    so the SameSite=Lax cookie IS sent; the origin check and the CSRF token must refuse it. With
    a leaked (valid) token, the origin check alone must."""
    page = steward
    request_id = demo.request_id(dep.ALICE, "genebody", "extended370")
    page.goto(f"{demo.url}/console/requests/{request_id}")
    fields = {"reason": "pwned"}
    if token == "leaked":
        fields["csrf"] = page.locator("form[action$='/approve'] input[name=csrf]").get_attribute("value")
    action = f"{demo.url}/console/requests/{request_id}/deny"
    response = attack(page, attacker, "127.0.0.1", action, fields)
    assert response.status == 403
    assert response.request.headers.get("sec-fetch-site") != "same-origin" or response.request.headers.get("origin")
    expect_text(page, "h1", "Not allowed")
    expect_text(page, "main", REFUSED)
    # Nothing changed: the console and the API both still say pending.
    page.goto(f"{demo.url}/console/requests/{request_id}")
    assert state_badge(page) == "pending"
    record = request_state(demo, request_id)
    assert record["state"] == "pending" and record["decided_at"] is None


def test_a_cross_site_revoke_is_refused(steward: Any, demo: Deployment, attacker: Attacker) -> None:
    """From http://localhost (another site than 127.0.0.1) the Lax cookie is withheld: the
    console sees no session and asks for a login; the grant stays active either way."""
    page = steward
    page.goto(f"{demo.url}/console/grants?dataset=genebody")
    row = grant_row(page, BEN, "genebody/train40")
    grant_id = grant_id_of(row)
    action = f"{demo.url}/console/grants/{grant_id}/revoke"
    response = attack(page, attacker, "localhost", action, {"reason": "pwned", "back": "/console/grants"})
    assert response.status in (303, 403), response.status
    if response.status == 303:
        assert "/console/login" in response.headers["location"]
    assert "revoked" not in page.inner_text("body")
    assert grant_status(demo, grant_id) == "active"
    page.goto(f"{demo.url}/console/grants?dataset=genebody")
    assert "active" in grant_row(page, BEN, "genebody/train40").inner_text()


# ---------------------------------------------------------------- another dataset's request


def test_an_approver_cannot_decide_another_datasets_request(steward: Any, demo: Deployment) -> None:
    page = steward
    other = demo.request_id(CHEN, "huge100k", "flux_batch8")
    # Not in the queue, and its page is not found (ids cannot be probed).
    page.goto(f"{demo.url}/console/requests?state=any")
    assert page.locator("table.list tbody tr").filter(has_text="huge100k").count() == 0
    answer = page.goto(f"{demo.url}/console/requests/{other}")
    assert answer is not None and answer.status in (403, 404)
    # A post with the steward's own valid CSRF token, straight to the other dataset's approve.
    page.goto(f"{demo.url}/console/requests")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    posted = page.request.post(f"{demo.url}/console/requests/{other}/approve",
                               form={"csrf": csrf, "reason": "approving what I do not steward"}, max_redirects=0)
    assert posted.status in (403, 404), (posted.status, posted.text()[:500])
    assert "approved" not in posted.text().split("<main", 1)[-1].lower().replace("approve", "")
    # The same through the page itself: the steward's own decision form, pointed elsewhere.
    mine = demo.request_id(dep.ALICE, "genebody", "extended370")
    page.goto(f"{demo.url}/console/requests/{mine}")
    page.locator("button[formaction$='/approve']").evaluate(
        "(b, id) => b.setAttribute('formaction', `/console/requests/${id}/approve`)", other)
    page.get_by_label(re.compile("^Reason")).fill("approving what I do not steward")
    with page.expect_response(lambda r: r.url.endswith(f"/console/requests/{other}/approve")) as answer_info:
        page.get_by_role("button", name="Approve").click()
    assert answer_info.value.status in (403, 404)
    expect_text(page, "h1", "Not (found|allowed)")
    # Nothing changed: both requests still pending, and chen holds no huge100k grant.
    for request_id in (other, mine):
        record = request_state(demo, request_id)
        assert record["state"] == "pending" and record["decided_at"] is None, record
    grants = demo.api("grants?limit=500")["items"]
    assert not [g for g in grants if g["user"] == CHEN and g["scope"].startswith("huge100k/flux_batch8")]


# ---------------------------------------------------------------- sessions


def test_logout_ends_the_session(steward: Any, demo: Deployment, browser: Any) -> None:
    page = steward
    page.goto(f"{demo.url}/console/grants")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "gov_console"]
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/console/login"))
    expect_text(page, "h1", "Log in")
    # Back: the grants page is not shown again from a cache (no-store); it asks for a login.
    page.go_back()
    page.wait_for_url(re.compile(r"/console/login"))
    assert "Grants" not in page.locator("h1").inner_text()
    page.goto(f"{demo.url}/console/requests")
    page.wait_for_url(re.compile(r"/console/login\?next=%2Fconsole%2Frequests|/console/login\?next=/console/requests"))
    # The old cookie, replayed from another browser, is dead on the server too.
    other = browser.new_context()
    try:
        other.add_cookies([{"name": cookie["name"], "value": cookie["value"], "url": demo.url}])
        replay = other.new_page()
        replay.goto(f"{demo.url}/console/requests")
        replay.wait_for_url(re.compile(r"/console/login"))
    finally:
        other.close()


def test_the_logout_message_shows_on_the_login_page_not_after_the_next_login(steward: Any, demo: Deployment) -> None:
    page = steward
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/console/login"))
    logged_out_shown = page.locator(".flash", has_text="You are logged out").count() == 1
    dep.login(page, demo.url, dep.STEWARD, demo.password)
    stale_on_queue = page.locator(".flash", has_text="You are logged out").count() > 0
    assert logged_out_shown and not stale_on_queue, (logged_out_shown, stale_on_queue)


def test_an_idle_session_ends(page: Any, demo: Deployment, idle_server: str) -> None:
    dep.login(page, idle_server, dep.STEWARD, demo.password)  # lands on the queue: the session is live
    expect_text(page, "h1", "Approval queue")
    time.sleep(5.0)
    page.goto(f"{idle_server}/console/grants")
    page.wait_for_url(re.compile(r"/console/login\?next="))
    expect_text(page, "h1", "Log in")
