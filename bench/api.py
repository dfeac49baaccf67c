"""HTTP API benchmark: a real `govern serve` over loopback, against its own health route.

    .venv/bin/python bench/api.py [--pg URL] [--workers 2] [--connections 32] [--procs 2]
                                  [--duration 5] [--warmup 1] [--rounds 3] [--batch-runs 30] [--big-runs 3]
                                  [--no-profile]

For SQLite (always) and PostgreSQL (with --pg URL; in a database of its own, dropped after),
the script seeds state through the real services as bench/state.py does (alice@ust.hk with an
approved GeneBody Train40 grant, 200 other users with two grants each), creates an API key for
alice, starts `govern serve --workers N` on a free loopback port, waits for /v1/health, and
measures:

(a) the yardstick: GET /v1/health, requests/s and p50/p99;
(b) POST /v1/check with the API key: a permitted read, and a denied one (purpose
    commercial/model-training, one audit event per call), requests/s and p50/p99;
(c) POST /v1/check/batch of 10,000 resources (sequential calls, median/p99) and of 100,000.

The load generator is the same for every route: `--procs` processes, each an asyncio loop
(uvloop when installed) driving raw keep-alive HTTP/1.1 connections, closed loop, fixed
concurrency, a warm-up then a fixed measured window; rounds alternate yardstick, check,
denied check, and the figures are medians across rounds. It prints its own CPU use and the
server's, so a saturated generator shows. Then, in-process, where a check's time goes: auth,
the service call, the route function, pydantic, FastAPI's thread hops, and cProfile's top
functions. Nothing outside bench/ is changed; nothing is installed.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import cProfile
import http.client
import importlib.util
import io
import json
import multiprocessing as mp
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

from governance.config import Settings  # noqa: E402
from governance.identity.roles import load_actor  # noqa: E402
from governance.storage.db import make_engine, redact, upgrade  # noqa: E402
from governance.workspace import Workspace  # noqa: E402

# Reuse bench/state.py's seeding (registration, mailed link, agreement, form, request, approval).
_spec = importlib.util.spec_from_file_location("bench_state", ROOT / "bench" / "state.py")
assert _spec is not None and _spec.loader is not None
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

ALICE = bs.ALICE
PERMITTED = {"resource": "genebody:train40/subject01/img_0001.jpg", "action": "read", "purpose": "research/non-commercial/academic"}
DENIED = {**PERMITTED, "purpose": "commercial/model-training"}
TARGET_RATIO, TARGET_P99_MS, TARGET_BATCH_MS = 0.4, 20.0, 100.0
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- load generator (child processes)


def _request(method: str, path: str, key: str | None = None, body: dict[str, Any] | None = None) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: bench\r\n"
    payload = b""
    if key is not None:
        head += f"Authorization: Bearer {key}\r\n"
    if body is not None:
        payload = json.dumps(body).encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
    return (head + "\r\n").encode() + payload


class _Client(asyncio.Protocol):
    """One keep-alive connection, one request outstanding: send, read the whole answer, send again."""

    def __init__(self, req: bytes, run: dict[str, Any]) -> None:
        self.req, self.run = req, run
        self.buf = bytearray()
        self.need = -1
        self.code = b""
        self.t0 = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.fire()

    def fire(self) -> None:
        now = time.monotonic()
        if now >= self.run["until"]:
            self.transport.close()
            return
        self.t0 = now
        self.transport.write(self.req)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            self.code = head[9:12]
            at = head.find(b"content-length:")
            if at < 0:
                raise RuntimeError("answer without Content-Length")
            stop = head.find(b"\r\n", at)
            self.need = end + 4 + int(head[at + 15:stop if stop > 0 else None])
        if len(buf) < self.need:
            return
        del buf[:self.need]
        self.need = -1
        now = time.monotonic()
        run = self.run
        if self.t0 >= run["from"] and now <= run["until"]:
            run["lat"].append(now - self.t0)
            if self.code != b"200":
                run["errors"] += 1
        self.fire()

    def connection_lost(self, exc: Exception | None) -> None:
        if time.monotonic() < self.run["until"]:
            self.run["errors"] += 1
        if not self.done.done():
            self.done.set_result(None)


def _generator(pipe: Any, port: int, req: bytes, conns: int, start: float, warmup: float, duration: float) -> None:
    with contextlib.suppress(ImportError):
        import uvloop
        uvloop.install()

    async def main() -> None:
        run: dict[str, Any] = {"from": start + warmup, "until": start + warmup + duration, "lat": array.array("d"), "errors": 0}
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        loop = asyncio.get_running_loop()
        clients = []
        for _ in range(conns):
            _, proto = await loop.create_connection(lambda: _Client(req, run), "127.0.0.1", port)
            clients.append(proto)
        await asyncio.sleep(max(0.0, run["from"] - time.monotonic()))
        cpu0 = time.process_time()
        await asyncio.sleep(max(0.0, run["until"] - time.monotonic()))
        cpu = time.process_time() - cpu0
        await asyncio.wait([c.done for c in clients], timeout=10)
        pipe.send((run["lat"].tobytes(), run["errors"], cpu))

    asyncio.run(main())


def _proc_ticks(pid: int, into: dict[int, int] | None = None) -> dict[int, int]:
    """CPU ticks of a process and each of its descendants (uvicorn's supervisor and its workers)."""
    into = {} if into is None else into
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        into[pid] = int(fields[11]) + int(fields[12])
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                _proc_ticks(int(child), into)
    except (OSError, ValueError):
        pass
    return into


def load(port: int, req: bytes, *, server_pid: int, conns: int, procs: int, warmup: float, duration: float) -> dict[str, float]:
    """One closed-loop round: requests/s, p50/p99 (ms), errors, generator and server CPU (cores)."""
    ctx = mp.get_context("fork")
    start = time.monotonic() + 0.3
    children = []
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    for n in per:
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_generator, args=(child, port, req, n, start, warmup, duration), daemon=True)
        p.start()
        children.append((p, parent))
    time.sleep(max(0.0, start + warmup - time.monotonic()))
    t0 = _proc_ticks(server_pid)
    time.sleep(max(0.0, start + warmup + duration - time.monotonic()))
    t1 = _proc_ticks(server_pid)
    per_proc = {p: (t1[p] - t0.get(p, 0)) / CLK / duration for p in t1}
    server_cpu = sum(per_proc.values())
    workers = "+".join(f"{v:.2f}" for p, v in sorted(per_proc.items()) if p != server_pid)
    lat = array.array("d")
    errors, gen_cpu = 0, 0.0
    for p, parent in children:
        raw, err, cpu = parent.recv()
        p.join()
        part = array.array("d")
        part.frombytes(raw)
        lat.extend(part)
        errors += err
        gen_cpu += cpu
    ms = sorted(x * 1000 for x in lat)
    return {"rps": len(ms) / duration, "p50": pct(ms, 0.5), "p99": pct(ms, 0.99), "errors": errors,
            "gen_cpu": gen_cpu / duration, "server_cpu": server_cpu, "workers": workers, "n": len(ms)}


def pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else float("nan")


# ---------------------------------------------------------------- seeding and the server


def seed(url: str, data_dir: Path, noise: int) -> str:
    """Seed through the services (bench/state.py's seed, dated now) and return alice's API key."""
    now = datetime.now(UTC) - timedelta(minutes=10)
    bs.NOW = now  # seed's functions read the module's NOW
    engine = make_engine(url)
    upgrade(engine)
    inbox = bs.Inbox()
    ws = Workspace(Settings(data_dir=data_dir, database_url=url), db=engine, mailer=inbox)
    t0 = time.perf_counter()
    bs.seed(ws, inbox, noise)
    _, key = ws.authenticator.create_api_key(actor=load_actor(ws, ALICE), now=now, name="bench")
    print(f"  seeded through the services in {time.perf_counter() - t0:.1f} s: {bs.count(ws, 'users')} users, "
          f"{bs.count(ws, 'grants')} grants, {bs.count(ws, 'audit_events')} audit events", flush=True)
    engine.dispose()
    return key


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(url: str, data_dir: Path, workers: int) -> Iterator[tuple[int, int]]:
    """`govern serve` on a free port; yields (port, pid) once /v1/health answers; stops it after."""
    port = free_port()
    env = {**os.environ, "GOVERNANCE_DATA_DIR": str(data_dir), "GOVERNANCE_DATABASE_URL": url,
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    log = open(data_dir / "serve.log", "w+")  # noqa: SIM115 - closed below
    govern = Path(sys.executable).parent / "govern"
    proc = subprocess.Popen([str(govern), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"govern serve did not come up:\n{log.read()[-3000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v1/health")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                time.sleep(0.2)
        time.sleep(1.0)  # every worker up, not just the first
        yield port, proc.pid
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the server this script started
            proc.wait()
        log.close()


@contextlib.contextmanager
def pg_database(url: str) -> Iterator[str]:
    """A fresh database of its own on the server at `url`, dropped afterwards."""
    name = f"bench_api_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def post(conn: http.client.HTTPConnection, path: str, body: bytes, key: str) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, resp.read()


# ---------------------------------------------------------------- the measurements


def http_bench(label: str, url: str, data_dir: Path, key: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": label}
    with server(url, data_dir, args.workers) as (port, pid):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body, want in ((PERMITTED, "permit"), (DENIED, "deny")):
            status, raw = post(c, "/v1/check", json.dumps(body).encode(), key)
            got = json.loads(raw)
            assert status == 200 and got["decision"]["effect"] == want, (status, raw[:300])
        cases = {"health": _request("GET", "/v1/health"),
                 "check": _request("POST", "/v1/check", key, PERMITTED),
                 "denied": _request("POST", "/v1/check", key, DENIED)}
        rounds: dict[str, list[dict[str, float]]] = {k: [] for k in cases}
        for r in range(args.rounds):
            for name, req in cases.items():
                res = load(port, req, server_pid=pid, conns=args.connections, procs=args.procs, warmup=args.warmup,
                           duration=args.duration)
                rounds[name].append(res)
                print(f"  round {r + 1} {name:7} {res['rps']:7.0f} req/s  p50 {res['p50']:6.2f} ms  p99 {res['p99']:6.2f} ms  "
                      f"errors {res['errors']}  CPU: generator {res['gen_cpu']:.2f}, server {res['server_cpu']:.2f} cores (workers {res['workers']})  "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
        out["rounds"] = rounds
        light = {}
        for name in ("health", "check"):
            light[name] = load(port, cases[name], server_pid=pid, conns=args.light_connections, procs=1, warmup=args.warmup,
                               duration=args.duration)
        out["light"] = light

        c.close()  # idle past uvicorn's keep-alive timeout during the rounds: a fresh connection
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for n, runs in ((10_000, args.batch_runs), (100_000, args.big_runs)):
            files = bs.batch_files(n)
            body = json.dumps({"resources": files, "action": "read", "purpose": PERMITTED["purpose"]}).encode()
            status, raw = post(c, "/v1/check/batch", body, key)
            got = json.loads(raw)
            assert status == 200 and got["checked"] == n and got["denied"] == 0, (status, raw[:300])
            post(c, "/v1/check/batch", body, key)
            lat = []
            for _ in range(runs):
                t0 = time.perf_counter()
                status, raw = post(c, "/v1/check/batch", body, key)
                lat.append((time.perf_counter() - t0) * 1000)
                assert status == 200
            out[f"batch{n}"] = {"lat": sorted(lat), "req_bytes": len(body), "resp_bytes": len(raw)}
            print(f"  batch {n:>7,}: median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms over {runs} calls "
                  f"(request {len(body) / 1e6:.2f} MB, answer {len(raw) / 1e6:.2f} MB)", flush=True)
        c.close()
    return out


def med(rows: list[dict[str, float]], k: str) -> float:
    return statistics.median(r[k] for r in rows)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    print(f"HTTP API over loopback, `govern serve --workers {args.workers}`, {args.connections} keep-alive connections "
          f"from {args.procs} generator processes, closed loop, {args.duration:g} s measured after {args.warmup:g} s "
          f"warm-up, medians of {args.rounds} alternating rounds")
    head = f"{'backend':10} {'route':28} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}  {'gen CPU':>7} {'srv CPU':>7}"
    print(head)
    print("-" * len(head))
    for res in results:
        rounds = res["rounds"]
        base = med(rounds["health"], "rps")
        for name, title in (("health", "GET /v1/health (yardstick)"), ("check", "POST /v1/check, permitted"),
                            ("denied", "POST /v1/check, denied+audit")):
            rows = rounds[name]
            print(f"{res['backend']:10} {title:28} {med(rows, 'rps'):8.0f} {med(rows, 'p50'):8.2f} {med(rows, 'p99'):8.2f} "
                  f"{med(rows, 'rps') / base:6.2f}  {med(rows, 'gen_cpu'):7.2f} {med(rows, 'server_cpu'):7.2f}")
        for name in ("health", "check"):
            r = res["light"][name]
            print(f"{res['backend']:10} {name + f', {args.light_connections} connections':28} {r['rps']:8.0f} {r['p50']:8.2f} "
                  f"{r['p99']:8.2f}")
    print()
    print("batch checks (POST /v1/check/batch, one subject, files over 40 Train40 directories, sequential calls)")
    for res in results:
        for n in (10_000, 100_000):
            b = res[f"batch{n}"]
            lat = b["lat"]
            print(f"{res['backend']:10} {n:>7,} resources: median {statistics.median(lat):7.1f} ms, p99 {pct(lat, 0.99):7.1f} ms "
                  f"({len(lat)} calls; p99 of fewer than 100 calls is the slowest)")
    print()
    print(f"targets: single checks >= {TARGET_RATIO}x the yardstick with {args.workers} workers at p99 <= {TARGET_P99_MS:.0f} ms; "
          f"10,000-resource batch <= {TARGET_BATCH_MS:.0f} ms")
    for res in results:
        rounds = res["rounds"]
        base = med(rounds["health"], "rps")
        for name in ("check", "denied"):
            ratio = med(rounds[name], "rps") / base
            p99 = med(rounds[name], "p99")
            print(f"  {res['backend']:10} {name:7} ratio {ratio:.2f} ({'met' if ratio >= TARGET_RATIO else 'NOT met'}); "
                  f"p99 {p99:.1f} ms at {args.connections} connections ({'met' if p99 <= TARGET_P99_MS else 'NOT met'})"
                  + (f", {res['light']['check']['p99']:.1f} ms at {args.light_connections}" if name == "check" else ""))
        b = statistics.median(res["batch10000"]["lat"])
        print(f"  {res['backend']:10} batch   10,000 median {b:.1f} ms ({'met' if b <= TARGET_BATCH_MS else 'NOT met'})")
    print("At a fixed closed-loop concurrency the p99 is mostly queueing (about connections / throughput); the "
          "light-load rows show the per-request latency. 'gen CPU' and 'srv CPU' are cores used by the load generator "
          "and by the server (supervisor and workers) during the measured window.")


# ---------------------------------------------------------------- in-process: where a check's time goes


async def asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, bytes]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 80), "state": {}}
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def timed(fn: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return sorted(out)


def us(lat: list[float]) -> str:
    return f"{statistics.median(lat):8.1f} µs (p99 {pct(lat, 0.99):8.1f})"


def ms_(lat: list[float]) -> str:
    return f"{statistics.median(lat) / 1000:7.2f} ms"


def _checkout(ws: Workspace, query: Callable[[Any], Any] | None = None) -> None:
    with ws.connect() as conn:
        if query is not None:
            query(conn)
        conn.rollback()


def breakdown(label: str, url: str, data_dir: Path, key: str, args: argparse.Namespace) -> None:
    import fastapi.dependencies.utils as fdu
    import fastapi.routing as fr
    from anyio import to_thread

    from api.app import create_app
    from api.schemas import BatchCheckIn, BatchCheckOut, CheckIn, CheckOut
    from api.v1 import checks
    from governance.approvals import state

    print(f"\n--- {label}: where the time goes, in process (one thread, no network; µs median of many calls) ---")
    ws = Workspace(Settings(data_dir=data_dir, database_url=url))
    app = create_app(workspace=ws)
    auth = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")]
    single = json.dumps(PERMITTED).encode()
    denied_body = json.dumps(DENIED).encode()
    batches = {n: json.dumps({"resources": bs.batch_files(n), "action": "read", "purpose": PERMITTED["purpose"]}).encode()
               for n in (10_000, 100_000)}
    loop = asyncio.new_event_loop()

    def call(method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Callable[[], Any]:
        def go() -> None:
            status, _ = loop.run_until_complete(asyncio.wait_for(asgi(app, method, path, headers, body), 600))
            assert status == 200, status
        return go

    health = call("GET", "/v1/health", [(b"host", b"bench")])
    check = call("POST", "/v1/check", auth, single)
    denied = call("POST", "/v1/check", auth, denied_body)
    for fn in (health, check, denied):
        for _ in range(50):
            fn()
    now = datetime.now(UTC)
    principal = ws.authenticator.authenticate(key, now=now)
    t_health, t_check, t_denied = timed(health, 2000), timed(check, 2000), timed(denied, 500)

    # The thread hops: FastAPI runs each sync dependency, the sync route and the response
    # validation through anyio's thread pool. Count them, and time one hop.
    hops = 0
    real = fr.run_in_threadpool

    async def counting(fn: Any, *a: Any, **k: Any) -> Any:
        nonlocal hops
        hops += 1
        return await real(fn, *a, **k)

    async def inline(fn: Any, *a: Any, **k: Any) -> Any:
        return fn(*a, **k)

    fr.run_in_threadpool = fdu.run_in_threadpool = counting
    check()
    per_check = hops
    hops = 0
    health()
    per_health = hops
    fr.run_in_threadpool = fdu.run_in_threadpool = real
    t_hop = timed(lambda: loop.run_until_complete(to_thread.run_sync(lambda: None)), 2000)
    fr.run_in_threadpool = fdu.run_in_threadpool = inline
    t_check_inline = timed(check, 2000)
    t_health_inline = timed(health, 2000)
    # What one hop per request would cost (async dependencies, the route's service call in the
    # pool, response validation on the loop): only the endpoint itself goes to the pool.
    endpoints = {checks._check}

    async def one_hop(fn: Any, *a: Any, **k: Any) -> Any:
        endpoint = fn is getattr(fr, "_run_sync_endpoint", None) or fn in endpoints
        return await (real(fn, *a, **k) if endpoint else inline(fn, *a, **k))

    fr.run_in_threadpool = one_hop
    t_check_one = timed(check, 2000)
    fr.run_in_threadpool = fdu.run_in_threadpool = real

    t_auth_hit = timed(lambda: ws.authenticator.authenticate(key, now=now), 5000)

    def auth_miss() -> None:
        ws.authenticator.cache.entries.clear()
        ws.authenticator.authenticate(key, now=now)
    t_auth_miss = timed(auth_miss, 500)
    t_state = timed(lambda: state.check(ws, email=ALICE, resources=[PERMITTED["resource"]], action="read",
                                        purpose=PERMITTED["purpose"], now=now, actor=principal.actor.label), 1000)
    t_state_denied = timed(lambda: state.check(ws, email=ALICE, resources=[PERMITTED["resource"]], action="read",
                                               purpose=DENIED["purpose"], now=now, actor=principal.actor.label), 300)
    with bs.phase_timers() as acc:
        parts: dict[str, list[float]] = {}
        for _ in range(300):
            acc.clear()
            state.check(ws, email=ALICE, resources=[PERMITTED["resource"]], action="read", purpose=PERMITTED["purpose"],
                        now=now, actor=principal.actor.label)
            for k, v in acc.items():
                parts.setdefault(k, []).append(v * 1e6)
    from governance.identity.tokens import normalise_email
    t_norm = timed(lambda: normalise_email(ALICE), 5000)
    t_conn = timed(lambda: _checkout(ws), 1000)
    t_version: list[float] = []
    with contextlib.suppress(ImportError):
        from governance.storage import version
        t_version = timed(lambda: _checkout(ws, version.current), 1000)
    body_in = CheckIn.model_validate_json(single)
    t_route = timed(lambda: checks._check(body_in, principal, ws), 1000)
    t_in = timed(lambda: CheckIn.model_validate_json(single), 5000)
    out = CheckOut.model_validate_json(checks._check(body_in, principal, ws)[0].body)
    t_out = timed(lambda: CheckOut(resource=out.resource, decision=out.decision).model_dump_json(), 5000)

    print(f"{label:10} GET /v1/health through the app            {us(t_health)}   ({per_health} thread hops)")
    print(f"{label:10} POST /v1/check permitted, through the app  {us(t_check)}   ({per_check} thread hops)")
    print(f"{label:10} POST /v1/check denied (+ audit event)      {us(t_denied)}")
    print(f"{label:10}   one anyio thread-pool hop (idle pool)      {us(t_hop)}")
    print(f"{label:10}   check with the hops run inline             {us(t_check_inline)};  health inline {us(t_health_inline)}")
    print(f"{label:10}   check with only the route's hop (emulated)  {us(t_check_one)}")
    print(f"{label:10}   auth, cache hit                            {us(t_auth_hit)}")
    print(f"{label:10}   auth, cache miss (API key row + roles)     {us(t_auth_miss)}  (every {ws.settings.auth_cache_seconds} s per worker)")
    print(f"{label:10}   state.check, one permitted file            {us(t_state)}")
    print(f"{label:10}   state.check, one denied file + audit       {us(t_state_denied)}")
    print(f"{label:10}     of which " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in sorted(parts.items())
                                                  if k not in ("read", "engine", "audit")) + " µs")
    print(f"{label:10}       normalise_email(address) per call        {us(t_norm)}")
    print(f"{label:10}       connection checkout + rollback           {us(t_conn)}")
    if t_version:
        print(f"{label:10}       ... + state-version query                {us(t_version)}")
    print(f"{label:10}   route function checks._check (state.check + CheckOut)  {us(t_route)}")
    print(f"{label:10}   CheckIn.model_validate_json                {us(t_in)}")
    print(f"{label:10}   CheckOut build + model_dump_json           {us(t_out)}")
    framework = statistics.median(t_check) - statistics.median(t_route) - statistics.median(t_auth_hit)
    print(f"{label:10}   => FastAPI/Starlette/pydantic around the route and auth: {framework:.0f} µs of "
          f"{statistics.median(t_check):.0f} µs (health alone {statistics.median(t_health):.0f} µs)")

    fr.run_in_threadpool = fdu.run_in_threadpool = real
    for n, body in batches.items():
        runs = 10 if n == 10_000 else 2
        b = call("POST", "/v1/check/batch", auth, body)
        b()
        t_b = timed(b, runs)
        t_json = timed(lambda body=body: json.loads(body), runs)
        t_val = timed(lambda body=body: BatchCheckIn.model_validate(json.loads(body)), runs)
        parsed = BatchCheckIn.model_validate_json(body)
        t_state_b = timed(lambda parsed=parsed: state.check(ws, email=ALICE, resources=parsed.resources, action="read",
                                                            purpose=parsed.purpose, now=now), runs)
        t_route_b = timed(lambda parsed=parsed: checks._check_batch(parsed, principal, ws), runs)
        body_out = checks._check_batch(parsed, principal, ws)[0].body
        result = BatchCheckOut.model_validate_json(body_out)
        t_dump = timed(lambda result=result: result.model_dump_json(), runs)
        t_revalidate = timed(lambda result=result: type(result).model_validate(result.model_dump()), runs)
        print(f"{label:10} batch {n:>7,} through the app {ms_(t_b)} = body json.loads {ms_(t_json)} ; json.loads + "
              f"BatchCheckIn {ms_(t_val)} ; state.check {ms_(t_state_b)} ; route function (state.check + grouping + models + serialisation) "
              f"{ms_(t_route_b)} ; model_dump_json {ms_(t_dump)} (a dump + re-validate would cost {ms_(t_revalidate)})")

    if args.profile:
        fr.run_in_threadpool = fdu.run_in_threadpool = inline  # so cProfile (this thread only) sees the route
        for name, fn, runs in (("single permitted check", check, 2000), ("10,000-resource batch", call("POST", "/v1/check/batch", auth, batches[10_000]), 10)):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(runs):
                fn()
            prof.disable()
            buf = io.StringIO()
            st = pstats.Stats(prof, stream=buf).strip_dirs()
            st.sort_stats("tottime").print_stats(args.profile_top)
            lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
            start = next(i for i, ln in enumerate(lines) if "ncalls" in ln)
            print(f"--- {label} cProfile, {runs} x {name} through the app (thread hops inline), top by own time ---")
            print("\n".join(lines[start - 1:]))
        fr.run_in_threadpool = fdu.run_in_threadpool = real
    loop.close()
    ws.db.dispose()


# ---------------------------------------------------------------- main


def run_backend(label: str, url: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(f"{label}: {redact(url)}", flush=True)
    key = seed(url, data_dir, args.noise_users)
    res = http_bench(label, url, data_dir, key, args)
    if args.profile or args.breakdown:
        breakdown(label, url, data_dir, key, args)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", default=None, help="also PostgreSQL at this URL (a database of its own, dropped after)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections, all generator processes together")
    parser.add_argument("--procs", type=int, default=2, help="load-generator processes")
    parser.add_argument("--light-connections", type=int, default=2, help="connections for the light-load latency rows")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-runs", type=int, default=30, help="sequential 10,000-resource batch calls")
    parser.add_argument("--big-runs", type=int, default=3, help="sequential 100,000-resource batch calls")
    parser.add_argument("--noise-users", type=int, default=200)
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip cProfile's listing")
    parser.add_argument("--no-breakdown", dest="breakdown", action="store_false", help="skip the in-process breakdown")
    parser.add_argument("--profile-top", type=int, default=18)
    args = parser.parse_args()
    if not args.breakdown:
        args.profile = False
    la = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start (the load generator, the server "
          "and anything else running share these cores)", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run_backend("sqlite", f"sqlite:///{tmp}/sqlite-data/governance.db", Path(tmp) / "sqlite-data", args))
        if args.pg:
            with pg_database(args.pg) as url:
                results.append(run_backend("postgresql", url, Path(tmp) / "pg-data", args))
    report(results, args)
    la = os.getloadavg()
    print(f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at the end")


if __name__ == "__main__":
    main()
