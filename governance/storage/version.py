"""The state version: one counter that every state-changing transaction increments, and a cache
whose entries are valid only at the version they were read at.

`governance.audit.store.append` increments it for every event that records a state change (every
state change appends one in its own transaction: that is the audit invariant), so no service can
forget to. A reader takes the version first, then loads what it vouches for; an entry is used
only while the version is unchanged. Without a `VersionWatch` the version is read from the
database on every call, so a change committed by any process is seen by the next read. With a
watch (the API), the version comes from PostgreSQL notifications or the SQLite signal file,
confirmed against the database every 0.25 s, so another process's change is seen within
milliseconds and at worst within 0.75 s (ADR 004).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy import Connection, Engine, select, text, update

from governance.storage.tables import StateVersionRow

VERSION = StateVersionRow.__table__  # type: ignore[attr-defined]
V = TypeVar("V")
log = logging.getLogger(__name__)


CHANNEL = "governance_state"
WRITTEN = "governance.state_version.written"  # Connection.info: the version this transaction wrote


def bump(conn: Connection) -> None:
    """Increment the state version in the caller's (writing) transaction. On PostgreSQL the
    transaction also notifies listeners (delivered at commit, never before)."""
    new = conn.execute(update(VERSION).where(VERSION.c.id == 1).values(version=VERSION.c.version + 1)
                       .returning(VERSION.c.version)).scalar_one_or_none()
    if new is None:
        return
    conn.info[WRITTEN] = int(new)
    if conn.dialect.name == "postgresql":
        # One channel per database: the payload names the schema, so deployments (and test runs)
        # sharing a database never take each other's counters.
        conn.execute(text("SELECT pg_notify(:channel, current_schema() || ':' || :v)"), {"channel": CHANNEL, "v": str(new)})


def current(conn: Connection) -> int:
    value = conn.execute(select(VERSION.c.version).where(VERSION.c.id == 1)).scalar_one_or_none()
    # INVARIANT: a database without the row is treated as always changed (-1 never matches)
    return int(value) if value is not None else -1


class VersionedCache(Generic[V]):
    """Values keyed by a string, each valid at one state version. Bounded: past `limit` entries
    it starts afresh."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._entries: dict[str, tuple[int, V]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, version: int) -> V | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] != version or version < 0:
            return None
        return hit[1]

    def put(self, key: str, version: int, value: V) -> None:
        if version < 0:
            return
        with self._lock:
            if len(self._entries) >= self.limit:
                self._entries.clear()
            self._entries[key] = (version, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class VersionWatch:
    """The state version as this process knows it without asking the database.

    On PostgreSQL a thread LISTENs on the version's channel: every state change's notification
    arrives after its commit, and commits made through this process are noted as they happen.
    The listener also reads the version itself every `CONFIRM_EVERY` seconds, and `known()`
    answers only while that last confirmation is younger than `FRESH_FOR`; otherwise (not
    started, SQLite, a lost or silently dead connection) it answers None and readers query the
    database as before. So another replica's change is seen once its notification arrives
    (milliseconds on one network) and, should one be lost, within `FRESH_FOR` at the latest;
    a failed listener costs speed, never correctness.
    """

    CONFIRM_EVERY = 0.25
    FRESH_FOR = 0.75  # INVARIANT: below the one second within which replicas must agree

    def __init__(self) -> None:
        self._known = -1
        self._confirmed = float("-inf")
        self._healthy = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._file: Path | None = None
        self._stamp: tuple[int, int, int] | None = None

    def known(self) -> int | None:
        if self._file is not None:
            return self._known_from_file()
        fresh = time.monotonic() - self._confirmed < self.FRESH_FOR
        return self._known if self._healthy and fresh and self._known >= 0 else None

    def confirm(self, value: int) -> None:
        """A version just read from the database by a reader."""
        self.saw(value)
        self._confirmed = time.monotonic()

    def _known_from_file(self) -> int | None:
        # SQLite: every committing process rewrites the signal file after its commit; a reader
        # stats it (about a microsecond) and rereads it when it changed. The database itself is
        # asked every CONFIRM_EVERY seconds, so a process that died between its commit and the
        # file costs at most that long.
        assert self._file is not None
        if time.monotonic() - self._confirmed >= self.CONFIRM_EVERY or self._known < 0:
            return None  # the caller reads the version and calls confirm()
        try:
            st = os.stat(self._file)
        except OSError:
            return self._known  # no process has signalled a change since we confirmed
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            try:
                value = int(self._file.read_text(encoding="ascii"))
            except (OSError, ValueError):
                return None
            self._stamp = stamp
            self.saw(value)
        return self._known

    def saw(self, value: int) -> None:
        """A version this process committed, or was told of."""
        with self._lock:
            if value > self._known:
                self._known = value

    def start(self, engine: Engine) -> None:
        """Listen on PostgreSQL; watch the version file beside a SQLite database (idempotent)."""
        if engine.dialect.name == "sqlite":
            path = signal_file(engine)
            if path is not None:
                self._file = path
                self._healthy = True
            return
        if engine.dialect.name != "postgresql" or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._listen, args=(engine,), name="state-version-listener", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._healthy = False
        self._file = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _listen(self, engine: Engine) -> None:
        while not self._stop.is_set():
            try:
                proxied = engine.raw_connection()
                proxied.detach()  # a dedicated session, never handed back to the pool
                raw = proxied.dbapi_connection  # psycopg.Connection (driver_connection is None once detached)
                assert raw is not None
                try:
                    raw.autocommit = True
                    raw.execute(f"LISTEN {CHANNEL}")
                    schema = raw.execute("SELECT current_schema()").fetchone()[0]
                    prefix = f"{schema}:"
                    self._healthy = True
                    while not self._stop.is_set():
                        # Read the version (catching up on anything missed), then wait for news.
                        value = raw.execute("SELECT version FROM state_version WHERE id = 1").fetchone()[0]
                        self.saw(int(value))
                        self._confirmed = time.monotonic()
                        for note in raw.notifies(timeout=self.CONFIRM_EVERY):
                            if note.payload.startswith(prefix):
                                self.saw(int(note.payload[len(prefix):]))
                finally:
                    self._healthy = False
                    raw.close()
            except Exception as exc:  # noqa: BLE001 - readers fall back to querying; try again shortly
                self._healthy = False
                log.warning("state version listener lost its connection (%s); checks query the version meanwhile",
                            type(exc).__name__)
                self._stop.wait(0.5)


def signal_file(engine: Engine) -> Path | None:
    """The file beside a SQLite database file that carries its latest committed version."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database + "-version")


def publish(engine: Engine, value: int) -> None:
    """After a commit on SQLite, tell the other processes on this machine (best effort: readers
    confirm against the database every `VersionWatch.CONFIRM_EVERY` seconds anyway)."""
    path = signal_file(engine)
    if path is None:
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_text(str(value), encoding="ascii")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not signal the state version (%s); other processes will see it within a second", type(exc).__name__)
        with contextlib.suppress(OSError):
            tmp.unlink()
