"""Database fixtures: every test gets a fresh SQLite file, and, where
GOVERNANCE_TEST_DATABASE_URL is set, a fresh PostgreSQL schema of its own."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from governance.storage.db import make_engine, upgrade
from governance.workspace import Workspace

PG_URL = os.environ.get("GOVERNANCE_TEST_DATABASE_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'governance.db'}")
        upgrade(engine)
        yield engine
        engine.dispose()
        return
    assert PG_URL is not None
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(PG_URL, schema=schema)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def ws(db: Engine, tmp_path: Path) -> Workspace:
    """A workspace over the `db` fixture: bundled policies, a data directory in tmp_path, the
    outbox mailer, and a checkpoint every 5 events (so tests cross checkpoints)."""
    from governance.config import Settings
    from governance.identity.mail import OutboxMailer

    settings = Settings(data_dir=tmp_path / "data", database_url=str(db.url), checkpoint_every=5)
    return Workspace(settings, db=db, mailer=OutboxMailer(tmp_path / "outbox", sender="governance@lab.example"))


@pytest.fixture
def api(ws: Workspace) -> Iterator[object]:
    """The real FastAPI app over the `ws` workspace (SQLite, and PostgreSQL where configured),
    driven in-process by Starlette's TestClient."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(workspace=ws), raise_server_exceptions=False) as client:
        yield client
