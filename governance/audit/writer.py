"""Group commit for high-volume audit events (denied accesses, key releases).

One transaction per event reaches only a few hundred durable events per second. Here callers
`submit` an event and receive a future; a background thread gathers what has arrived (up to
`max_batch` events or `max_wait` seconds after the first), appends the batch to the chain in one
transaction under the same lock as `store.append` (so both paths keep one linear chain) and
commits. Each future then resolves to its `AuditEvent`, or raises if the batch failed: a caller
that must not act without an audit record (a key release) waits on it and fails closed.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine

from governance.audit import store
from governance.audit.chain import AuditEvent, next_event
from governance.errors import GovernanceError


class AuditWriterClosedError(GovernanceError):
    """The writer is closed; nothing more can be audited through it."""


@dataclass(frozen=True)
class _Pending:
    at: datetime
    actor: str
    action: str
    target: str
    outcome: str
    reasons: tuple[str, ...]
    details: Mapping[str, Any]
    future: Future[AuditEvent]


_STOP = object()


@dataclass(frozen=True)
class CheckpointPolicy:
    """Sign a checkpoint whenever the chain crosses a multiple of `every` events."""

    key: Ed25519PrivateKey
    out: Path
    every: int = 1000
    log_id: str = "main"


class GroupCommitWriter:
    """A thread that appends submitted events in batches. Use as a context manager or `close()`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 1000,
        max_wait: float = 0.002,
        checkpoints: CheckpointPolicy | None = None,
    ) -> None:
        self._engine = engine
        self._checkpoints = checkpoints
        self.checkpoint_failures = 0
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
        self._thread.start()

    def __enter__(self) -> GroupCommitWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(
        self,
        *,
        at: datetime,
        actor: str,
        action: str,
        target: str,
        outcome: str,
        reasons: Iterable[str] = (),
        details: Mapping[str, Any] | None = None,
    ) -> Future[AuditEvent]:
        """Queue one event; the future resolves once it is committed (or raises if it was not)."""
        if at.tzinfo is None:
            raise ValueError("audit times must carry a time zone")
        fut: Future[AuditEvent] = Future()
        with self._lock:
            if self._closed:
                raise AuditWriterClosedError("the audit writer is closed")
            self._queue.put(_Pending(at, actor, action, target, outcome, tuple(reasons), dict(details or {}), fut))
        return fut

    def close(self) -> None:
        """Commit everything already submitted, then stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Pending] = [first]  # type: ignore[list-item]
            deadline = time.monotonic() + self._max_wait
            while len(batch) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            with self._engine.begin() as conn:
                store.lock_chain(conn)
                prev = store.head(conn)
                events: list[AuditEvent] = []
                for p in batch:
                    prev = next_event(prev, at=p.at, actor=p.actor, action=p.action, target=p.target,
                                      outcome=p.outcome, reasons=p.reasons, details=p.details)
                    events.append(prev)
                store.insert_events(conn, events)
        except Exception as exc:  # noqa: BLE001 - SECURITY: every waiter learns its event was not recorded
            failure = GovernanceError(f"the audit batch could not be committed ({type(exc).__name__})")
            for p in batch:
                p.future.set_exception(failure)
            return
        for p, ev in zip(batch, events, strict=True):
            p.future.set_result(ev)
        self._checkpoint_if_due(events[0].seq, events[-1].seq)

    def _checkpoint_if_due(self, first: int, last: int) -> None:
        policy = self._checkpoints
        if policy is None or (first - 1) // policy.every == last // policy.every:
            return
        try:
            store.checkpoint(self._engine, key=policy.key, at=datetime.now(UTC), out=policy.out, log_id=policy.log_id)
        except Exception:  # noqa: BLE001 - the events are committed; the next crossing retries
            self.checkpoint_failures += 1
