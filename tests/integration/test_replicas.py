"""Two `govern serve` replicas on one PostgreSQL database: a revocation, a termination or a
revoked API key made through replica A is enforced by replica B within one second.

Grants are read from the database on every check, so those denials arrive at once; an API key
is trusted for at most `auth_cache_seconds` (0.5 s by default) after B last verified it. The
test gets a PostgreSQL schema of its own, passed to both processes in the URL as
`?options=-csearch_path%3D<schema>`; both share one data directory, hence one set of token keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import create_engine, text

from governance.client import AuthenticationFailedError, Client, Decision
from tests.integration.conftest import PG_URL
from tests.integration.served import ACADEMIC, TRAIN, Govern, Server, login

pytestmark = pytest.mark.skipif(not PG_URL, reason="set GOVERNANCE_TEST_DATABASE_URL to run two replicas on PostgreSQL")

WITHIN = 1.0  # seconds: the bound
STEWARD = "steward@sensetime.com"


@dataclass
class Replicas:
    a: Server
    b: Server
    keys: dict[str, tuple[int, str]]
    grants: dict[str, int]

    def steward(self) -> dict[str, str]:
        return login(self.a.url, STEWARD)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    assert PG_URL is not None
    schema = f"replicas_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    servers: list[Server] = []
    try:
        root = tmp_path_factory.mktemp("replicas")
        govern = Govern(data_dir=root / "data", database_url=f"{PG_URL}?options=-csearch_path%3D{schema}", cwd=root)
        govern.run("db", "upgrade")
        with admin.connect() as conn:  # the URL's search path took: the tables are in our schema
            tables = set(conn.execute(text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                                      {"s": schema}).scalars())
        assert {"grants", "api_keys", "audit_events"} <= tables, sorted(tables)

        govern.add_verified_user(STEWARD, org="sensetime")
        govern.run("role", "grant", STEWARD, "approver", "--dataset", "genebody")
        govern.set_password(STEWARD)
        grants = {
            "alice@ust.hk": govern.add_researcher_with_grant("alice@ust.hk", org="hkust", site="clear-water-bay")[0],
            "bob@ust.hk": govern.add_researcher_with_grant("bob@ust.hk", org="hkust", site="clear-water-bay")[0],
        }
        govern.add_verified_user("carol@ust.hk", org="hkust", site="clear-water-bay")
        govern.set_password("carol@ust.hk")
        keys = {email: govern.api_key(email) for email in ("alice@ust.hk", "bob@ust.hk", "carol@ust.hk")}

        # One after the other: the first creates the token keys in the shared data directory.
        servers.append(Server(govern, log=root / "a.log").wait_healthy())
        servers.append(Server(govern, log=root / "b.log").wait_healthy())
        yield Replicas(a=servers[0], b=servers[1], keys=keys, grants=grants)
    finally:
        for server in servers:
            server.stop()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def seconds_until(condition: Callable[[], bool], *, give_up: float = 5.0) -> float:
    """Seconds from now until `condition()` first holds (polled as fast as B answers)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > give_up:
            raise AssertionError(f"still not enforced after {give_up} s")
        time.sleep(0.01)
    return time.monotonic() - started


def denied_with(gov: Client, code: str) -> Callable[[], bool]:
    def check() -> bool:
        decision: Decision = gov.check(TRAIN, "read", ACADEMIC)
        return not decision.permitted and code in decision.codes
    return check


def test_a_grant_revoked_through_replica_a_is_denied_by_replica_b_within_a_second(replicas: Replicas) -> None:
    _, key = replicas.keys["alice@ust.hk"]
    with Client(replicas.b.url, key, retries=0) as on_b:
        assert on_b.check(TRAIN, "read", ACADEMIC).permitted
        revoked = httpx.post(f"{replicas.a.url}/v1/grants/{replicas.grants['alice@ust.hk']}/revoke",
                             headers=replicas.steward(), json={"reason": "licensor's notice"}, timeout=10)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
        elapsed = seconds_until(denied_with(on_b, "grant_revoked"))
    assert elapsed <= WITHIN, f"replica B still permitted {elapsed:.3f} s after the revocation on A"


def test_a_termination_through_replica_a_is_enforced_by_replica_b_within_a_second(replicas: Replicas) -> None:
    _, key = replicas.keys["bob@ust.hk"]
    with Client(replicas.b.url, key, retries=0) as on_b:
        assert on_b.check(TRAIN, "read", ACADEMIC).permitted
        terminated = httpx.post(f"{replicas.a.url}/v1/terminations", headers=replicas.steward(), timeout=10,
                                json={"dataset": "genebody", "email": "bob@ust.hk", "reason": "the licensor's letter"})
        assert terminated.status_code == 201 and terminated.json()["grants_revoked"] == 1, terminated.text
        elapsed = seconds_until(denied_with(on_b, "access_terminated"))
    assert elapsed <= WITHIN, f"replica B still permitted {elapsed:.3f} s after the termination on A"


def test_an_api_key_revoked_through_replica_a_is_refused_by_replica_b_within_a_second(replicas: Replicas) -> None:
    key_id, key = replicas.keys["carol@ust.hk"]
    carol = login(replicas.a.url, "carol@ust.hk")
    with Client(replicas.b.url, key, retries=0) as on_b, Client(replicas.a.url, key, retries=0) as on_a:
        on_b.check(TRAIN, "read", ACADEMIC)  # B has verified the key just now: its cache holds it
        on_a.check(TRAIN, "read", ACADEMIC)
        revoked = httpx.delete(f"{replicas.a.url}/v1/me/api-keys/{key_id}", headers=carol, timeout=10)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"], revoked.text
        started = time.monotonic()
        with pytest.raises(AuthenticationFailedError):  # the replica that revoked forgets at once
            on_a.check(TRAIN, "read", ACADEMIC)

        def refused_by_b() -> bool:
            try:
                on_b.check(TRAIN, "read", ACADEMIC)
            except AuthenticationFailedError:
                return True
            return False

        seconds_until(refused_by_b)
        elapsed = time.monotonic() - started  # from the DELETE's answer
    assert elapsed <= WITHIN, f"replica B still accepted the key {elapsed:.3f} s after its revocation on A"
