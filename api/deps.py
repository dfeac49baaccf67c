"""Request dependencies: the workspace, the clock, and the authenticated caller. They parse and
look up; they never decide access (the services do)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from governance.auth.service import AuthenticationError, Principal
from governance.workspace import Workspace

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /v1/auth/login, or an API key (gk_…)")


def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def now() -> datetime:
    return datetime.now(UTC)


def client_label(request: Request) -> str:
    host = request.client.host if request.client is not None else "unknown"
    agent = request.headers.get("user-agent", "")[:120]
    return f"{host} {agent}".strip()


def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ws: Annotated[Workspace, Depends(workspace)],
) -> Principal:
    """The caller, from `Authorization: Bearer <token or API key>` or `X-API-Key`."""
    raw = credentials.credentials if credentials is not None else request.headers.get("x-api-key")
    if not raw:
        raise AuthenticationError()
    return ws.authenticator.authenticate(raw, now=now())


WS = Annotated[Workspace, Depends(workspace)]
Caller = Annotated[Principal, Depends(principal)]
