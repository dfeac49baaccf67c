"""Errors on console pages: an HTML page with the same status the API would give, a redirect to
the login page when there is no session, and nothing of an unexpected error but a request id."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from api.console.render import HEADERS, page

TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed", 404: "Not found", 405: "Not allowed here",
          409: "Already changed", 413: "Too large", 422: "Please check the form", 429: "Too many attempts",
          500: "Something went wrong", 503: "Temporarily unavailable"}


def status_of(exc: BaseException) -> int:
    from api.errors import status_for

    return status_for(exc)


def is_console(request: Request) -> bool:
    return request.url.path == "/console" or request.url.path.startswith("/console/")


def login_redirect(request: Request, next_path: str) -> Response:
    target = next_path if request.method == "GET" else "/console/requests"
    response = RedirectResponse(f"/console/login?next={quote(target)}", status_code=303)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render_error(request: Request, status: int, detail: str) -> Response:
    if status == 401:
        return login_redirect(request, request.url.path)
    try:
        return page(request, "error.html", status=status, title=TITLES.get(status, "Error"), detail=detail)
    except Exception:  # noqa: BLE001 - the error page itself failed: plain text, no details
        return Response(f"{TITLES.get(status, 'Error')}: {detail}", status_code=status, media_type="text/plain",
                        headers=HEADERS)
