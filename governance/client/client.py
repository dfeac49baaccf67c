"""The HTTP client loaders use: one check, or a batch of any size chunked into calls.

Retries: a check is a read plus an audit record, so sending it again is safe. The client retries
5xx answers, refused or dropped connections and timeouts, with exponential backoff
(`backoff * 2**n` seconds, or the service's `Retry-After` when longer, at most `MAX_DELAY`). It
never retries a 4xx: the same request would be refused the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from governance.client.errors import (
    AccessDeniedError,
    AuthenticationFailedError,
    GovernanceClientError,
    InvalidRequestError,
    Problem,
    ProtocolError,
    RateLimitedError,
    RequestRejectedError,
    ServiceUnavailableError,
)
from governance.client.results import BatchResult, denied_message
from governance.policy.decision import Decision

log = logging.getLogger("governance.client")

MAX_BATCH = 100_000  # the service's limit for one POST /v1/check/batch
MAX_DELAY = 30.0
USER_AGENT = "governance-client/1"

# Transport failures worth another attempt. Not UnsupportedProtocol or LocalProtocolError: those
# are the caller's mistakes and fail the same way every time.
_RETRYABLE: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)


class _BearerKey(httpx.Auth):
    """Adds `Authorization: Bearer <key>` to each request as it is sent, so the key lives in no
    default header, and prints as asterisks."""

    def __init__(self, key: SecretStr) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._key.get_secret_value()
        yield request

    def __repr__(self) -> str:
        return "_BearerKey(**********)"


def _display(url: httpx.URL) -> str:
    """The base URL as messages show it: no user-info, no query, no trailing slash."""
    return str(url.copy_with(userinfo=b"", query=None, fragment=None)).rstrip("/")


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


class Client:
    """A client for the governance service's checks, authenticated by an API key (`gk_…`).

    `Client(base_url, api_key)` then `check(...)` for one resource or `check_batch(...)` for
    many; `require(...)` raises `AccessDeniedError` unless permitted. Close it, or use it as a
    context manager. `transport` replaces the network (an `httpx.MockTransport` in tests)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | SecretStr,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        chunk_size: int = 10_000,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        secret = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        raw = secret.get_secret_value()
        # SECURITY: these messages describe the key, never quote it.
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("api_key is empty: pass the key printed by `govern apikey create`")
        if raw != raw.strip() or any(c in raw for c in "\r\n\t "):
            raise ValueError("api_key contains whitespace: copy only the key's first line")
        if not 1 <= chunk_size <= MAX_BATCH:
            raise ValueError(f"chunk_size must be between 1 and {MAX_BATCH:,}, not {chunk_size}")
        if retries < 0 or backoff < 0 or timeout <= 0:
            raise ValueError("retries and backoff must be >= 0 and timeout > 0")
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL such as https://governance.example, not {_display(url)!r}")
        self.base_url = _display(url)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.chunk_size = chunk_size
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=_BearerKey(secret),
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,  # SECURITY: a redirect must not carry the key to another host
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, api_key='**********', retries={self.retries}, chunk_size={self.chunk_size})"

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ checks

    def check(self, resource: str, action: str, purpose: str, destination: str | None = None) -> Decision:
        """The service's decision on `action` of `resource` for `purpose` (a deny is a value)."""
        body = self._post("/v1/check", _body(action, purpose, destination, resource=resource))
        try:
            return Decision.model_validate(body["decision"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ProtocolError(f"POST {self.base_url}/v1/check answered with no decision the client can read "
                                f"({type(exc).__name__})") from None

    def require(self, resource: str, action: str, purpose: str, destination: str | None = None) -> Decision:
        """`check`, raising `AccessDeniedError` (why, and what to do) unless it permits; returns
        the permit, whose obligations the caller must still meet."""
        decision = self.check(resource, action, purpose, destination)
        if not decision.permitted:
            denied = [(resource, decision)]
            raise AccessDeniedError(denied_message(action, purpose, denied, total=1, base_url=self.base_url),
                                    action=action, purpose=purpose, denied=denied)
        return decision

    def check_batch(self, resources: Iterable[str], action: str, purpose: str, destination: str | None = None) -> BatchResult:
        """Decisions on every resource, in input order, sent `chunk_size` at a time."""
        if isinstance(resources, str | bytes):
            raise TypeError("resources must be a list of resource names, not one string")
        names: Sequence[str] = resources if isinstance(resources, list | tuple) else list(resources)
        decisions: list[Decision] = []
        for start in range(0, len(names), self.chunk_size):
            chunk = names[start:start + self.chunk_size]
            decisions.extend(self._check_chunk(list(chunk), action, purpose, destination))
        return BatchResult(action=action, purpose=purpose, destination=destination, resources=tuple(names),
                           decisions=tuple(decisions), base_url=self.base_url)

    def _check_chunk(self, chunk: list[str], action: str, purpose: str, destination: str | None) -> list[Decision]:
        body = self._post("/v1/check/batch", _body(action, purpose, destination, resources=chunk))
        bad = f"POST {self.base_url}/v1/check/batch answered"
        try:
            by_resource: dict[str, Decision] = {}
            for group in body["groups"]:
                decision = Decision.model_validate(group["decision"])
                for resource in group["resources"]:
                    by_resource[resource] = decision
            checked = int(body["checked"])
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            raise ProtocolError(f"{bad} with groups the client cannot read ({type(exc).__name__})") from None
        if checked != len(chunk):
            raise ProtocolError(f"{bad} for {checked} resources, but {len(chunk)} were sent")
        try:
            return [by_resource[r] for r in chunk]
        except KeyError:
            missing = sum(1 for r in chunk if r not in by_resource)
            raise ProtocolError(f"{bad} with no decision for {missing} of the {len(chunk)} resources sent") from None

    # ------------------------------------------------------------------ the wire

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload`, retrying what may succeed next time; the JSON body of a 2xx answer."""
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            last = attempt == attempts
            try:
                response = self._http.post(path, json=payload)
            except _RETRYABLE as exc:
                what = type(exc).__name__
                if last:
                    raise ServiceUnavailableError(
                        f"the governance service at {self.base_url} did not answer POST {path} after {attempts} "
                        f"attempt{'s' if attempts > 1 else ''} ({what})", attempts=attempts) from exc
                self._wait(attempt, path, what, None)
                continue
            except httpx.HTTPError as exc:
                raise GovernanceClientError(f"cannot send POST {self.base_url}{path} ({type(exc).__name__})") from None
            if response.status_code >= 500:
                problem = Problem.from_body(response.status_code, _json_or_none(response), reason=response.reason_phrase)
                if last:
                    quoted = f": {problem.detail}" if problem.detail else ""
                    raise ServiceUnavailableError(
                        f"the governance service at {self.base_url} answered {response.status_code} {response.reason_phrase} "
                        f"to POST {path} after {attempts} attempt{'s' if attempts > 1 else ''}{quoted}",
                        attempts=attempts, problem=problem)
                self._wait(attempt, path, str(response.status_code), _retry_after(response))
                continue
            if response.status_code >= 400:
                raise self._rejected(response, path)
            body = _json_or_none(response)
            if not isinstance(body, dict):
                raise ProtocolError(f"POST {self.base_url}{path} answered {response.status_code} without a JSON object")
            return body
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, attempt: int, path: str, what: str, retry_after: float | None) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        delay = min(delay, MAX_DELAY)
        log.warning("POST %s%s failed (%s); attempt %d of %d again in %.2f s",
                    self.base_url, path, what, attempt + 1, self.retries + 1, delay)
        self._sleep(delay)

    def _rejected(self, response: httpx.Response, path: str) -> RequestRejectedError:
        status = response.status_code
        problem = Problem.from_body(status, _json_or_none(response), reason=response.reason_phrase)
        where = f"POST {self.base_url}{path}"
        detail = f": {problem.detail}" if problem.detail else ""
        if status == 401:
            return AuthenticationFailedError(
                f"{where} refused the API key (401){detail}; check it is the whole key from `govern apikey create` "
                "and that it has not been revoked", problem=problem, method="POST", path=path)
        if status == 429:
            return RateLimitedError(f"{where} is rate-limited (429){detail}", problem=problem, method="POST", path=path,
                                    retry_after=_retry_after(response))
        if status in (400, 413, 422):
            return InvalidRequestError(f"{where} refused the request ({status}){detail}", problem=problem, method="POST",
                                       path=path)
        return RequestRejectedError(f"{where} refused the request ({status} {response.reason_phrase}){detail}",
                                    problem=problem, method="POST", path=path)


def _body(action: str, purpose: str, destination: str | None, **fields: object) -> dict[str, Any]:
    body: dict[str, Any] = {**fields, "action": action, "purpose": purpose}
    if destination is not None:
        body["destination"] = destination
    return body


def _json_or_none(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None
