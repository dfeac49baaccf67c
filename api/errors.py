"""Core errors to RFC 9457 problem documents. Each error class has one status and a stable `type`;
anything unexpected is a 500 that names a request id and nothing of the exception."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from governance.auth.jwt import InvalidTokenError
from governance.auth.passwords import PasswordPolicyError
from governance.auth.service import AuthenticationError, RateLimitedError
from governance.errors import (
    ClassifierConfigError,
    ConflictError,
    ForbiddenError,
    GovernanceError,
    LineageError,
    NotFoundError,
    WorkflowError,
)
from governance.identity.mail import MailDeliveryError
from governance.identity.service import IdentityError
from governance.identity.tokens import InvalidEmailError
from governance.identity.tokens import InvalidTokenError as InvalidLinkError

log = logging.getLogger("api")
PROBLEM = "application/problem+json"
TYPE_BASE = "urn:governance:problem:"

# Most specific first: the first class an error is an instance of decides.
_MAP: list[tuple[type[BaseException], int, str, str]] = [
    (InvalidTokenError, 401, "unauthenticated", "Authentication required"),
    (AuthenticationError, 401, "unauthenticated", "Authentication required"),
    (RateLimitedError, 429, "rate-limited", "Too many attempts"),
    (ForbiddenError, 403, "forbidden", "Not allowed"),
    (NotFoundError, 404, "not-found", "Not found"),
    (ConflictError, 409, "conflict", "Conflict"),
    (InvalidLinkError, 400, "invalid-link", "The link is not valid"),
    (InvalidEmailError, 422, "invalid-input", "Invalid input"),
    (PasswordPolicyError, 422, "invalid-input", "Invalid input"),
    (LineageError, 422, "invalid-lineage", "Invalid lineage"),
    (WorkflowError, 422, "invalid-input", "Invalid input"),
    (IdentityError, 422, "invalid-input", "Invalid input"),
    (ClassifierConfigError, 422, "invalid-input", "Invalid input"),
    (MailDeliveryError, 503, "mail-unavailable", "Mail unavailable"),
]

_DESCRIPTIONS = {
    400: "The verification link is not valid",
    401: "No valid access token or API key (the answer never says which check failed)",
    403: "Authenticated, but the caller's roles do not allow this",
    404: "No such record, or one the caller may not see",
    409: "The record changed first (already decided, revoked, confirmed or registered)",
    422: "Invalid input",
    429: "Too many failed attempts; retry after Retry-After seconds",
    500: "Internal error: the problem names a request id and nothing else",
    503: "A service this needs (the mail server) is unavailable",
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting these statuses as problem documents (for routers and routes)."""
    return {status: {"description": _DESCRIPTIONS[status],
                     "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for status in statuses}


# What every authenticated route can answer besides its success.
AUTHENTICATED = responses(401, 403, 404, 409, 422, 500)


def status_for(exc: BaseException) -> int:
    """The HTTP status of a core error (500 for anything not mapped)."""
    for cls, status, _, _ in _MAP:
        if isinstance(exc, cls):
            return status
    return 500


def _console(request: Request) -> bool:
    path = request.url.path
    return path == "/console" or path.startswith("/console/")


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _governance(request: Request, exc: Exception) -> Response:
    if _console(request):
        from api.console.errors import render_error

        status = status_for(exc)
        if status >= 500:
            return _unexpected(request, exc)
        if isinstance(exc, MailDeliveryError):
            log.error("mail delivery failed in %s %s: %s", request.method, request.url.path, exc)
            return render_error(request, status, "the message could not be sent; try again later")
        return render_error(request, status, str(exc))
    for cls, status, slug, title in _MAP:
        if isinstance(exc, cls):
            if status == 401:
                # SECURITY: one answer for every authentication failure; nothing says which check failed
                return problem(401, slug, title, "a valid access token or API key is required")
            if isinstance(exc, RateLimitedError):
                resp = problem(status, slug, title, str(exc))
                resp.headers["Retry-After"] = str(exc.retry_after)
                return resp
            if isinstance(exc, MailDeliveryError):
                # SECURITY: the message names the mail server or the outbox path; the log keeps it
                log.error("mail delivery failed in %s %s: %s", request.method, request.url.path, exc)
                return problem(status, slug, title, "the message could not be sent; try again later")
            return problem(status, slug, title, str(exc))
    # A core error no class above covers (the database, the audit key, the policies) is the
    # service's fault, not the caller's: a 500 that says nothing of it.
    return _unexpected(request, exc)


def _validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]} for e in exc.errors()[:20]]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(first["loc"])
    if _console(request):
        from api.console.errors import render_error

        return render_error(request, 422, f"{where}: {first['msg']}" if where else str(first["msg"]))
    return problem(422, "invalid-input", "Invalid input", f"{where}: {first['msg']}" if where else str(first["msg"]),
                   errors=errors)


def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if _console(request):
        from api.console.errors import render_error

        text = {404: "there is no such page", 405: "this page does not take that kind of request"}.get(exc.status_code)
        return render_error(request, exc.status_code, text or (exc.detail if isinstance(exc.detail, str) else "request refused"))
    slug = {401: "unauthenticated", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
            413: "too-large"}.get(exc.status_code, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    return problem(exc.status_code, slug, detail if exc.status_code != 401 else "Authentication required",
                   detail if exc.status_code != 401 else "a valid access token or API key is required")


def _unexpected(request: Request, exc: Exception) -> Response:
    request_id = uuid.uuid4().hex[:16]
    # SECURITY: the exception's text may hold data; the log gets its type and the request id only,
    # the traceback only when GOVERNANCE_DEBUG asks for it.
    log.error("internal error %s in %s %s (%s)", request_id, request.method, request.url.path, type(exc).__name__,
              exc_info=request.app.state.debug)
    if _console(request):
        from api.console.errors import render_error

        return render_error(request, 500, f"an internal error occurred; quote request id {request_id}")
    return problem(500, "internal", "Internal error", f"an internal error occurred; quote request id {request_id}",
                   request_id=request_id)


def document(app: FastAPI) -> None:
    """Serve the Problem schema that `responses()` refers to in the OpenAPI document."""
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema

    from api.schemas import Problem

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                               routes=app.routes)
            _, defs = models_json_schema([(Problem, "serialization")], ref_template="#/components/schemas/{model}")
            spec.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _login_required(request: Request, exc: Exception) -> Response:
    from api.console.errors import login_redirect
    from api.console.session import LoginRequired

    assert isinstance(exc, LoginRequired)
    return login_redirect(request, exc.next_path)


def install(app: FastAPI) -> None:
    from api.console.session import LoginRequired

    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(GovernanceError, _governance)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
    document(app)
