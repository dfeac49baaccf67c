"""The loader client against a real `govern serve` over a SQLite data directory seeded with the
CLI, and against `httpx.MockTransport` for what a healthy server cannot show (503s, timeouts)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from governance.client import (
    AccessDeniedError,
    AuthenticationFailedError,
    BatchResult,
    Client,
    Decision,
    GovernanceClientError,
    InvalidRequestError,
    ProtocolError,
    RateLimitedError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from tests.integration.served import ACADEMIC, TRAIN, Govern, Server, free_port

EXTENDED = "genebody:extended370/seq001/img_0001.jpg"
FAKE_KEY = "gk_0123abcd_ThisIsNotARealKeyButLooksLikeOne0123456789"


@dataclass
class Deployment:
    govern: Govern
    server: Server
    alice_key: str
    bob_key: str
    bob_grant: int

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("client")
    govern = Govern(data_dir=root / "data", database_url=f"sqlite:///{root / 'data' / 'governance.db'}", cwd=root)
    govern.run("db", "upgrade")
    govern.add_researcher_with_grant("alice@ust.hk", org="hkust", site="clear-water-bay")
    (bob_grant,) = govern.add_researcher_with_grant("bob@ust.hk", org="hkust", site="clear-water-bay")
    _, alice_key = govern.api_key("alice@ust.hk")
    _, bob_key = govern.api_key("bob@ust.hk")
    server = Server(govern)
    try:
        server.wait_healthy()
        yield Deployment(govern=govern, server=server, alice_key=alice_key, bob_key=bob_key, bob_grant=bob_grant)
    finally:
        server.stop()


class CountingTransport(httpx.BaseTransport):
    """The real network, with a record of every request's path and resource count."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[tuple[str, int]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.read() or b"{}")
        self.sent.append((request.url.path, len(body.get("resources", [body.get("resource")]))))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def scripted(*responses: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering with `responses` in turn (an exception is raised instead)."""
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handle), seen


def permit(resource: str = TRAIN) -> httpx.Response:
    return httpx.Response(200, json={"resource": resource, "decision": {"effect": "permit"}})


def problem(status: int, slug: str, detail: str = "") -> httpx.Response:
    return httpx.Response(status, json={"type": f"urn:governance:problem:{slug}", "title": slug, "status": status,
                                        "detail": detail}, headers={"content-type": "application/problem+json"})


def mock_client(transport: httpx.BaseTransport, **kw: object) -> tuple[Client, list[float]]:
    slept: list[float] = []
    options: dict[str, object] = {"retries": 3, "backoff": 0.2, "sleep": slept.append, **kw}
    return Client("http://gov.test", FAKE_KEY, transport=transport, **options), slept  # type: ignore[arg-type]


def assert_no_secret(key: str, *things: object) -> None:
    for thing in things:
        for text in (str(thing), repr(thing)):
            assert key not in text, f"the API key shows in {type(thing).__name__}"
        if isinstance(thing, BaseException):
            cause = thing.__cause__ or thing.__context__
            if cause is not None:
                assert_no_secret(key, cause)


# ------------------------------------------------------------------ against the real server


def test_check_permits_under_a_grant_and_denies_without_one_with_the_reason(deployment: Deployment) -> None:
    with Client(deployment.url, deployment.alice_key) as gov:
        allowed = gov.check(TRAIN, "read", ACADEMIC)
        denied = gov.check(EXTENDED, "read", ACADEMIC)
    assert isinstance(allowed, Decision) and allowed.permitted and allowed.effect == "permit"
    assert not denied.permitted and "no_grant" in denied.codes
    assert denied.remedies and all(r.text for r in denied.remedies)


def test_require_raises_access_denied_saying_where_to_request_access(deployment: Deployment) -> None:
    with Client(deployment.url, deployment.alice_key) as gov:
        assert gov.require(TRAIN, "read", ACADEMIC).permitted
        with pytest.raises(AccessDeniedError) as caught:
            gov.require(EXTENDED, "read", ACADEMIC)
    message = str(caught.value)
    assert "no grant covering genebody/extended370" in message
    assert f"request it at {deployment.url}/v1/requests (POST) or ask a steward" in message
    assert caught.value.resource == EXTENDED and "no_grant" in caught.value.decision.codes
    assert_no_secret(deployment.alice_key, caught.value)


def test_check_batch_chunks_a_large_list_and_keeps_input_order(deployment: Deployment) -> None:
    kinds = ["genebody:train40/s{:05d}/img.jpg", "genebody:extended370/s{:05d}/img.jpg", "genebody:test10/s{:05d}/img.jpg"]
    resources = [kinds[i % 3 if i % 7 else 1].format(i) for i in range(25_000)]
    transport = CountingTransport()
    with Client(deployment.url, deployment.alice_key, chunk_size=10_000, timeout=60, transport=transport) as gov:
        result = gov.check_batch(resources, "read", ACADEMIC)
    assert transport.sent == [("/v1/check/batch", 10_000), ("/v1/check/batch", 10_000), ("/v1/check/batch", 5_000)]
    assert isinstance(result, BatchResult) and len(result) == result.checked == 25_000
    assert [r for r, _ in result] == resources
    expected_permits = [r for r in resources if ":train40/" in r]
    assert result.permitted == len(expected_permits) and result.denied == 25_000 - len(expected_permits)
    assert result.permitted_resources == expected_permits
    assert result.denied_resources == [r for r in resources if ":train40/" not in r]
    for i in (0, 1, 2, 7, 9_999, 10_000, 19_999, 20_000, 24_999):
        assert result.decision_for(resources[i]).permitted == (":train40/" in resources[i])
    assert "no_grant" in result.decision_for(resources[1]).codes
    with pytest.raises(AccessDeniedError) as caught:
        result.raise_for_denied()
    assert f"denied for {result.denied} of 25000 resources" in str(caught.value)
    assert len(caught.value.denied) == result.denied and caught.value.denied[0][0] == result.denied_resources[0] == resources[0]


def test_a_revoked_grant_is_denied_with_grant_revoked_on_the_next_check(deployment: Deployment) -> None:
    with Client(deployment.url, deployment.bob_key) as gov:
        assert gov.check(TRAIN, "read", ACADEMIC).permitted
        deployment.govern.run("revoke", str(deployment.bob_grant), "--reason", "licensor's notice")
        after = gov.check(TRAIN, "read", ACADEMIC)
        batch = gov.check_batch([TRAIN], "read", ACADEMIC)
    assert not after.permitted and "grant_revoked" in after.codes
    assert batch.denied_resources == [TRAIN] and "grant_revoked" in batch.decision_for(TRAIN).codes


def test_a_wrong_api_key_is_authentication_failed_and_not_retried(deployment: Deployment) -> None:
    transport = CountingTransport()
    with Client(deployment.url, FAKE_KEY, transport=transport, backoff=0.01) as gov:
        with pytest.raises(AuthenticationFailedError) as caught:
            gov.check(TRAIN, "read", ACADEMIC)
    assert len(transport.sent) == 1
    assert caught.value.status == 401 and caught.value.problem.slug == "unauthenticated"
    assert "govern apikey create" in str(caught.value)
    assert_no_secret(FAKE_KEY, caught.value)


def test_an_invalid_request_from_the_real_server_is_invalid_request(deployment: Deployment) -> None:
    with Client(deployment.url, deployment.alice_key) as gov, pytest.raises(InvalidRequestError) as caught:
        gov.check("x" * 5000, "read", ACADEMIC)
    assert caught.value.status == 422 and caught.value.problem.slug == "invalid-input"


def test_nothing_listening_is_service_unavailable_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, FAKE_KEY, retries=2, backoff=0.01, timeout=2) as gov, pytest.raises(ServiceUnavailableError) as caught:
        gov.check(TRAIN, "read", ACADEMIC)
    assert time.monotonic() - started < 5
    assert caught.value.attempts == 3 and caught.value.problem is None
    assert f"the governance service at {url} did not answer POST /v1/check after 3 attempts (ConnectError)" == str(caught.value)
    assert_no_secret(FAKE_KEY, caught.value)


# ------------------------------------------------------------------ retries, against a scripted transport


def test_two_503s_then_a_permit_succeeds_after_exponential_backoff() -> None:
    transport, seen = scripted(problem(503, "unavailable"), problem(503, "unavailable"), permit())
    gov, slept = mock_client(transport)
    with gov:
        assert gov.check(TRAIN, "read", ACADEMIC).permitted
    assert len(seen) == 3 and slept == [0.2, 0.4]
    assert all(r.headers["authorization"] == f"Bearer {FAKE_KEY}" for r in seen)


def test_timeouts_and_dropped_connections_are_retried() -> None:
    transport, seen = scripted(httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("dropped"), httpx.ConnectError("refused"),
                               permit())
    gov, slept = mock_client(transport, backoff=0.05)
    with gov:
        assert gov.check(TRAIN, "read", ACADEMIC).permitted
    assert len(seen) == 4 and slept == [0.05, 0.1, 0.2]


def test_a_5xx_on_every_attempt_is_service_unavailable_with_the_last_problem() -> None:
    transport, seen = scripted(*[problem(500, "internal", "an internal error occurred; quote request id abc")] * 3)
    gov, slept = mock_client(transport, retries=2)
    with gov, pytest.raises(ServiceUnavailableError) as caught:
        gov.check(TRAIN, "read", ACADEMIC)
    assert len(seen) == 3 and caught.value.attempts == 3
    assert caught.value.problem is not None and caught.value.problem.status == 500
    assert "answered 500 Internal Server Error to POST /v1/check after 3 attempts" in str(caught.value)
    assert "quote request id abc" in str(caught.value)


def test_retry_after_on_a_503_is_honoured_when_longer_than_the_backoff() -> None:
    busy = httpx.Response(503, headers={"Retry-After": "1.5"}, json={"status": 503})
    transport, _ = scripted(busy, permit())
    gov, slept = mock_client(transport)
    with gov:
        gov.check(TRAIN, "read", ACADEMIC)
    assert slept == [1.5]


@pytest.mark.parametrize(("status", "slug", "error"), [
    (400, "bad-request", InvalidRequestError),
    (401, "unauthenticated", AuthenticationFailedError),
    (403, "forbidden", RequestRejectedError),
    (404, "not-found", RequestRejectedError),
    (413, "too-large", InvalidRequestError),
    (422, "invalid-input", InvalidRequestError),
    (429, "rate-limited", RateLimitedError),
])
def test_a_4xx_is_never_retried(status: int, slug: str, error: type[RequestRejectedError]) -> None:
    transport, seen = scripted(problem(status, slug, "refused for a reason"), permit())
    gov, slept = mock_client(transport)
    with gov, pytest.raises(error) as caught:
        gov.check(TRAIN, "read", ACADEMIC)
    assert len(seen) == 1 and slept == []
    assert caught.value.status == status and caught.value.problem.slug == slug
    assert "refused for a reason" in str(caught.value)


def test_batch_results_keep_input_order_whatever_order_the_groups_come_in() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        resources = json.loads(request.read())["resources"]
        denied = [r for r in resources if "bad" in r]
        deny = {"effect": "deny", "reasons": [{"code": "no_grant", "message": "you hold no grant covering d/bad"}],
                "remedies": [{"code": "no_grant", "text": "request access"}]}
        groups = [{"effect": "deny", "decision": deny, "resources": denied},  # denies first, reversed
                  {"effect": "permit", "decision": {"effect": "permit"}, "resources": [r for r in resources if r not in denied][::-1]}]
        return httpx.Response(200, json={"action": "read", "purpose": ACADEMIC, "checked": len(resources),
                                         "permitted": len(resources) - len(denied), "denied": len(denied),
                                         "groups": [g for g in groups if g["resources"]]})

    calls: list[int] = []

    def counted(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return handle(request)

    resources = ["d:ok/1", "d:bad/2", "d:ok/3", "d:ok/4", "d:bad/5", "d:ok/6", "d:ok/7"]
    gov, _ = mock_client(httpx.MockTransport(counted), chunk_size=3)
    with gov:
        result = gov.check_batch(iter(resources), "read", ACADEMIC)
        empty = gov.check_batch([], "read", ACADEMIC)
    assert len(calls) == 3
    assert [r for r, _ in result] == resources
    assert [d.permitted for _, d in result] == ["ok" in r for r in resources]
    assert result.denied_resources == ["d:bad/2", "d:bad/5"] and result.permitted == 5
    assert "d:bad/5" in result and "d:missing" not in result
    assert empty.checked == 0 and empty.all_permitted
    assert [len(rs) for _, rs in result.groups()] == [5, 2]
    assert repr(result) == f"BatchResult(action='read', purpose='{ACADEMIC}', checked=7, permitted=5, denied=2)"


def test_a_batch_answer_missing_a_resource_is_a_protocol_error() -> None:
    body = {"action": "read", "purpose": ACADEMIC, "checked": 2, "permitted": 1, "denied": 0,
            "groups": [{"effect": "permit", "decision": {"effect": "permit"}, "resources": ["d:a"]}]}
    transport, _ = scripted(httpx.Response(200, json=body))
    gov, _ = mock_client(transport)
    with gov, pytest.raises(ProtocolError, match="no decision for 1 of the 2 resources"):
        gov.check_batch(["d:a", "d:b"], "read", ACADEMIC)


def test_one_string_is_refused_as_a_batch() -> None:
    gov, _ = mock_client(httpx.MockTransport(lambda r: permit()))
    with gov, pytest.raises(TypeError):
        gov.check_batch("genebody:train40/x.jpg", "read", ACADEMIC)


# ------------------------------------------------------------------ secrets


def test_the_api_key_never_shows_in_repr_str_exceptions_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[Callable[[Client], object]] = [
        lambda c: c.check(TRAIN, "read", ACADEMIC),
        lambda c: c.require(TRAIN, "read", ACADEMIC),
    ]
    deny = httpx.Response(200, json={"resource": TRAIN, "decision": {
        "effect": "deny", "reasons": [{"code": "no_grant", "message": "you hold no grant covering genebody/train40"}]}})
    transport, _ = scripted(problem(503, "unavailable"), problem(401, "unauthenticated"), problem(503, "x"), deny)
    gov, _ = mock_client(transport, retries=1)
    raised: list[GovernanceClientError] = []
    with gov:
        for call in failures:
            try:
                call(gov)
            except GovernanceClientError as exc:
                raised.append(exc)
        assert_no_secret(FAKE_KEY, gov, gov._http, gov._http.auth)
    assert [type(e) for e in raised] == [AuthenticationFailedError, AccessDeniedError]
    assert_no_secret(FAKE_KEY, *raised)
    assert FAKE_KEY not in caplog.text and "attempt 2 of 2 again" in caplog.text
    with pytest.raises(ValueError) as bad:
        Client("http://gov.test", FAKE_KEY + "\n")
    assert_no_secret(FAKE_KEY, bad.value)
    assert "'**********'" in repr(Client("http://gov.test", FAKE_KEY))


def test_client_arguments_are_checked() -> None:
    for bad in ({"chunk_size": 0}, {"chunk_size": 100_001}, {"retries": -1}, {"timeout": 0}):
        with pytest.raises(ValueError):
            Client("http://gov.test", FAKE_KEY, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="api_key is empty"):
        Client("http://gov.test", "")
    with pytest.raises(ValueError, match="base_url"):
        Client("gov.test", FAKE_KEY)
    assert Client("https://user:pw@gov.test/", FAKE_KEY).base_url == "https://gov.test"


def test_close_is_idempotent_and_the_context_manager_closes() -> None:
    gov, _ = mock_client(httpx.MockTransport(lambda r: permit()))
    with gov as inside:
        assert inside is gov
    assert gov._http.is_closed
    gov.close()
