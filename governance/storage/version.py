"""The state version: one counter that every state-changing transaction increments, and a cache
whose entries are valid only at the version they were read at.

`governance.audit.store.append` increments it for every event that records a state change (every
state change appends one in its own transaction: that is the audit invariant), so no service can
forget to. A reader reads the version first, in the same read transaction as anything it then
loads; an entry is used only while the version is unchanged, so a change committed by any
process (a revocation on another replica) is seen by the next read: never stale, not even
boundedly.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from sqlalchemy import Connection, select, update

from governance.storage.tables import StateVersionRow

VERSION = StateVersionRow.__table__  # type: ignore[attr-defined]
V = TypeVar("V")


def bump(conn: Connection) -> None:
    """Increment the state version in the caller's (writing) transaction."""
    conn.execute(update(VERSION).where(VERSION.c.id == 1).values(version=VERSION.c.version + 1))


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
