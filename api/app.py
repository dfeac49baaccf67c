"""The FastAPI app factory. `govern serve` runs `uvicorn --factory api.app:create_app`.

Settings come from the environment when the factory is called (never at import time):
GOVERNANCE_DATA_DIR, GOVERNANCE_DATABASE_URL, GOVERNANCE_POLICIES_DIR and the authentication
settings documented in README.md. Routes are plain `def`: database and crypto calls block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI

from api import console, errors
from api.v1 import auth, checks, datasets, files, researcher, steward
from governance.config import Settings, SettingsError
from governance.storage.db import require_current
from governance.workspace import Workspace

log = logging.getLogger("api")


def _threads(environ: Mapping[str, str]) -> int:
    raw = environ.get("GOVERNANCE_API_THREADS") or "4"
    if not raw.isdigit() or not 1 <= int(raw) <= 256:
        raise SettingsError(f"GOVERNANCE_API_THREADS={raw!r} must be a whole number from 1 to 256")
    return int(raw)


def create_app(settings: Settings | None = None, *, workspace: Workspace | None = None,
               env: Mapping[str, str] | None = None) -> FastAPI:
    """The app over one workspace (built from `env`, default the process environment)."""
    environ = dict(os.environ if env is None else env)
    if workspace is None:
        policies = environ.get("GOVERNANCE_POLICIES_DIR")
        workspace = Workspace(settings or Settings.from_env(environ), policies=Path(policies) if policies else None, env=environ)
        require_current(workspace.db)
    workspace.policies  # noqa: B018 - compile now, not on the first request
    workspace.authenticator.keys  # noqa: B018 - load or create the token keys at start-up

    threads = _threads(environ)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Blocking calls (database, crypto) run in this many threads per worker (default 4): more
        # only contend for the GIL and stretch the tail (bench/api.py, 32 connections: p99 of a
        # check 45 ms with anyio's 40 threads, 29 ms with 8, 20-27 ms with 4; 2 starve denials).
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        workspace.start_group_commit()
        workspace.start_version_watch()
        try:
            yield
        finally:
            workspace.close()  # commit every audit event still queued

    app = FastAPI(
        lifespan=lifespan,
        title="Data governance API",
        version="1",
        summary="Licence- and provenance-aware access decisions, approvals and audit.",
        description="Authenticate with `POST /v1/auth/login` (people) or an API key (loaders), then send "
                    "`Authorization: Bearer <token or key>`. Errors are RFC 9457 problem documents.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.workspace = workspace
    app.state.debug = environ.get("GOVERNANCE_DEBUG") == "1"
    app.state.verify_url = environ.get("GOVERNANCE_VERIFY_URL") or None  # the mailed link's base
    errors.install(app)

    @app.get("/v1/health", tags=["service"], summary="Liveness: answers without authentication")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    for router in (auth.router, datasets.router, checks.router, files.router, researcher.router, steward.router):
        app.include_router(router, prefix="/v1")
    console.install(app)
    return app
