"""Request dependencies: the workspace, the clock, and the authenticated caller. They parse and
look up; they never decide access (the services do)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from governance.auth.service import AuthenticationError, Principal
from governance.workspace import Workspace

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /v1/auth/login, or an API key (gk_…)")


# Dependencies are `async def` where they do no I/O: FastAPI runs every sync dependency in the
# thread pool, and a hop costs more than a whole cached authentication.


async def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def now() -> datetime:
    return datetime.now(UTC)


def client_label(request: Request) -> str:
    host = request.client.host if request.client is not None else "unknown"
    agent = request.headers.get("user-agent", "")[:120]
    return f"{host} {agent}".strip()


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ws: Annotated[Workspace, Depends(workspace)],
) -> Principal:
    """The caller, from `Authorization: Bearer <token or API key>` or `X-API-Key`. A credential
    verified within the cache bound is answered here; anything else reads the database in the
    thread pool."""
    raw = credentials.credentials if credentials is not None else request.headers.get("x-api-key")
    if not raw:
        raise AuthenticationError()
    found = ws.authenticator.cached(raw)
    if found is not None:
        return found
    return await run_in_threadpool(ws.authenticator.authenticate, raw, now=now())


WS = Annotated[Workspace, Depends(workspace)]
Caller = Annotated[Principal, Depends(principal)]
