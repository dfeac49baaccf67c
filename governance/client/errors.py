"""The loader client's one error tree.

`GovernanceClientError` is the root. Below it: what the service refused (`RequestRejectedError`
for a 4xx, with `AuthenticationFailedError` for 401, `InvalidRequestError` for 400/413/422 and
`RateLimitedError` for 429), what it could not answer (`ServiceUnavailableError`, after the
retries), what it answered in a shape the client does not know (`ProtocolError`), and a decision
that denies when the caller asked for a permit (`AccessDeniedError`).

# SECURITY: no message or attribute here ever holds the API key: messages are built from the
# service's problem document, the URL (without user-info) and the decision only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from governance.policy.decision import Decision

PROBLEM_TYPE_BASE = "urn:governance:problem:"


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document as the service sent it (or as near as it came)."""

    status: int
    type: str = "about:blank"
    title: str = ""
    detail: str = ""
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The stable part of `type`: `unauthenticated` for `urn:governance:problem:unauthenticated`."""
        return self.type.removeprefix(PROBLEM_TYPE_BASE)

    @property
    def request_id(self) -> str | None:
        found = self.extra.get("request_id")
        return found if isinstance(found, str) else None

    @classmethod
    def from_body(cls, status: int, body: object, *, reason: str = "") -> Problem:
        """The problem in a response body; a body that is no problem document gives a bare one."""
        if not isinstance(body, dict):
            return cls(status=status, title=reason, detail=reason)
        known = {"type", "title", "status", "detail"}
        return cls(
            status=status,
            type=str(body.get("type") or "about:blank"),
            title=str(body.get("title") or reason),
            detail=str(body.get("detail") or ""),
            extra={k: v for k, v in body.items() if k not in known},
        )


class GovernanceClientError(Exception):
    """Anything the loader client raises on purpose."""


class RequestRejectedError(GovernanceClientError):
    """The service refused the request (a 4xx). Never retried: sending it again changes nothing."""

    def __init__(self, message: str, *, problem: Problem, method: str, path: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.status = problem.status
        self.method = method
        self.path = path


class AuthenticationFailedError(RequestRejectedError):
    """401: the API key is wrong, revoked or expired, or its owner's account is disabled."""


class InvalidRequestError(RequestRejectedError):
    """400, 413 or 422: the request itself is malformed (an over-long name, too many resources)."""


class RateLimitedError(RequestRejectedError):
    """429: too many attempts; `retry_after` seconds is the service's advice, when it gave one."""

    def __init__(self, message: str, *, problem: Problem, method: str, path: str, retry_after: float | None) -> None:
        super().__init__(message, problem=problem, method=method, path=path)
        self.retry_after = retry_after


class ServiceUnavailableError(GovernanceClientError):
    """No usable answer after every attempt: 5xx responses, refused connections or timeouts.
    `problem` is the last 5xx's problem document (None when nothing answered)."""

    def __init__(self, message: str, *, attempts: int, problem: Problem | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.problem = problem


class ProtocolError(GovernanceClientError):
    """The service answered 2xx with a body the client cannot read (a different API version?)."""


class AccessDeniedError(GovernanceClientError):
    """A decision denied what the caller required (`Client.require`, `BatchResult.raise_for_denied`).

    `denied` holds each denied resource with its decision, in input order. The message says why
    and what to do, from the decisions' reason codes and remedies."""

    def __init__(self, message: str, *, action: str, purpose: str, denied: Sequence[tuple[str, Decision]]) -> None:
        super().__init__(message)
        self.action = action
        self.purpose = purpose
        self.denied = tuple(denied)

    @property
    def decision(self) -> Decision:
        """The first denied resource's decision."""
        return self.denied[0][1]

    @property
    def resource(self) -> str:
        return self.denied[0][0]
