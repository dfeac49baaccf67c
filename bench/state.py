"""Stored-state benchmark (issue 3), part one: durable audit appends per second.

    .venv/bin/python bench/state.py [--events 2000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

For each database (a SQLite file; PostgreSQL when --pg or GOVERNANCE_TEST_DATABASE_URL is
given, in a schema of its own that is dropped afterwards): one writer, then 8 concurrent
writers, each event in its own committed transaction (the path for state changes, which must
commit with their audit event); then group commit (governance.audit.writer) with 8 producers,
the path for high-volume events such as denied accesses. Decisions from stored state come with the workflow.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from governance.audit import store  # noqa: E402
from governance.audit.writer import GroupCommitWriter  # noqa: E402
from governance.storage.db import make_engine, upgrade  # noqa: E402

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def appends(engine: Engine, writers: int, per_writer: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()

    def work(w: int) -> None:
        mine = []
        for i in range(per_writer):
            t0 = time.perf_counter()
            with engine.begin() as conn:
                store.append(conn, at=NOW, actor=f"loader{w}", action="check", target=f"huge100k:flux_batch1/{i}.jpg",
                             outcome="deny", reasons=("no_grant",))
            mine.append((time.perf_counter() - t0) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return writers * per_writer / elapsed, sorted(latencies)


def group_commit(engine: Engine, writers: int, per_writer: int) -> tuple[float, list[float]]:
    """8 producers submit without waiting per event; latency is submit -> durable commit."""
    latencies: list[float] = []
    with GroupCommitWriter(engine) as writer:
        def work(w: int) -> None:
            futures = []
            for i in range(per_writer):
                t0 = time.perf_counter()
                fut = writer.submit(at=NOW, actor=f"loader{w}", action="check", target=f"huge100k:flux_batch1/{i}.jpg",
                                    outcome="deny", reasons=("no_grant",))
                fut.add_done_callback(lambda _f, t0=t0: latencies.append((time.perf_counter() - t0) * 1000))
                futures.append(fut)
            for f in futures:
                f.result()

        threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    return writers * per_writer / elapsed, sorted(latencies)


def run(label: str, engine: Engine, events: int) -> None:
    upgrade(engine)
    one, lat1 = appends(engine, 1, events)
    eight, lat8 = appends(engine, 8, events // 8)
    grouped, latg = group_commit(engine, 8, events * 5 // 8)
    v = store.verify(engine)
    assert v.ok, v
    p99 = lat8[int(0.99 * len(lat8))]
    print(f"{label:11} one transaction per event: 1 writer {one:7.0f} events/s (median commit {statistics.median(lat1):.2f} ms); "
          f"8 writers {eight:7.0f} events/s (median {statistics.median(lat8):.2f} ms, p99 {p99:.2f} ms)")
    print(f"{label:11} group commit, 8 writers: {grouped:7.0f} events/s, submit-to-durable median "
          f"{statistics.median(latg):.2f} ms, p99 {latg[int(0.99 * len(latg))]:.2f} ms; chain verified: {v.events} events")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pg", default=os.environ.get("GOVERNANCE_TEST_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("sqlite", make_engine(f"sqlite:///{tmp}/bench.db"), args.events)
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(args.pg)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            run("postgresql", make_engine(args.pg, schema=schema), args.events)
        finally:
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    print("targets (issue 3): >= 10,000 durable events/s with 8 writers, each commit within 5 ms")


if __name__ == "__main__":
    main()
