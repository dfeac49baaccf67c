"""Database engines for SQLite (embedded default) and PostgreSQL, and migrations."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

from governance.errors import GovernanceError

MIGRATIONS = Path(__file__).parent / "migrations"
READ_ONLY = "governance_read_only"  # execution option: this connection only reads


class DatabaseError(GovernanceError):
    """The database cannot be reached or is not in the expected state."""


class Transactional(Protocol):
    """What services need to open units of work: an `Engine`, or a `Workspace` (which also
    signs checkpoints after commits)."""

    def begin(self) -> AbstractContextManager[Connection]: ...

    def connect(self) -> Connection: ...


def redact(url: str) -> str:
    """A database URL safe to print: the password is replaced."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as a placeholder, never raw
        return "<unparsable database url>"


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for `url`. SQLite: WAL, foreign keys, full sync, and BEGIN IMMEDIATE so writers
    serialise (the audit chain stays linear). PostgreSQL: `schema` sets the search path."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock at once (no lock upgrade, no SQLITE_BUSY mid-way);
            # connections marked read-only read a WAL snapshot beside them.
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    connect_args: dict[str, Any] = {}
    if schema is not None:
        connect_args["options"] = f"-csearch_path={schema}"
    # No pre-ping: it costs a round trip per checkout on the hot path. A connection that died
    # (a server restart) fails its statement once, SQLAlchemy then discards the whole pool, and
    # the caller gets an error, never an answer (fail closed).
    return create_engine(url, pool_recycle=1800, connect_args=connect_args)


def _config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Apply migrations up to `revision`; returns the revision the database is at."""
    try:
        with engine.begin() as conn:
            command.upgrade(_config(conn), revision)
    except Exception as exc:  # noqa: BLE001 - one clear sentence, no URL or password
        raise DatabaseError(f"cannot migrate the database at {redact(str(engine.url))} ({type(exc).__name__})") from exc
    return current_revision(engine) or "base"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    script = ScriptDirectory.from_config(_config(None))
    head = script.get_current_head()
    assert head is not None
    return head


def require_current(engine: Engine) -> None:
    """Refuse to work on a database whose schema is not at the latest migration."""
    try:
        rev = current_revision(engine)
    except Exception as exc:  # noqa: BLE001
        raise DatabaseError(f"cannot reach the database at {redact(str(engine.url))} ({type(exc).__name__})") from exc
    if rev != head_revision():
        raise DatabaseError(f"the database at {redact(str(engine.url))} is at revision {rev or 'none'}; run `govern db upgrade`")
