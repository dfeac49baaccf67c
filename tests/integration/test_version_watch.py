"""The state version kept by LISTEN/NOTIFY (PostgreSQL): a listening process decides from its
cached subjects without a query, sees its own changes at once and another process's within the
bound, and falls back to querying when its listener is gone."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from governance.approvals import state, workflow
from governance.storage.version import VersionWatch
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, PURPOSE, add_approver, add_user

FILE = "genebody:train40/subject01/img_0001.jpg"


def _granted(ws: Workspace) -> int:
    me = add_user(ws, "alice@ust.hk", organisation="hkust")
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    workflow.accept_agreement(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", version="seed-001", client="t")
    workflow.upload_form(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", data=FORM_PDF)
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    return workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)[0].id


def _read(ws: Workspace) -> state.CheckResult:
    return state.check(ws, email="alice@ust.hk", resources=[FILE], action="read", purpose=ACADEMIC, now=NOW + timedelta(hours=1))


def _wait_known(watch: VersionWatch) -> int:
    deadline = time.monotonic() + 5
    while (value := watch.known()) is None:
        assert time.monotonic() < deadline, "the listener never connected"
        time.sleep(0.02)
    return value


def test_a_listening_replica_sees_its_own_change_at_once_and_another_replicas_within_the_bound(ws: Workspace, db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    grant = _granted(ws)
    ws.start_version_watch()
    other = Workspace(ws.settings, db=db)  # another replica, not listening
    try:
        start = _wait_known(ws.versions)
        assert _read(ws).denied == 0
        assert ws.subjects.get("alice@ust.hk", start) is not None  # decided from the cache from now on
        # Another replica revokes: the notification moves this one's version, the next check denies.
        workflow.revoke(other, actor=workflow_actor(other), now=NOW, grant_id=grant, reason="licensor's notice")
        t0 = time.monotonic()
        while _read(ws).denied == 0:
            assert time.monotonic() - t0 < VersionWatch.FRESH_FOR, "another replica's revocation was not seen in time"
            time.sleep(0.005)
        assert _read(ws).decisions[0].codes == ("grant_revoked",)
        # A change through this replica is seen by its very next check (no wait for the notification).
        req = workflow.request_access(ws, actor=workflow_actor(ws, "alice@ust.hk"), now=NOW, email="alice@ust.hk",
                                      dataset_id="genebody", subsets=["train40"], purpose=PURPOSE, project="again")
        workflow.approve(ws, actor=workflow_actor(ws), now=NOW, request_id=req.id)
        assert _read(ws).denied == 0
    finally:
        ws.close()


def test_without_its_listener_a_replica_queries_the_version_and_stays_exact(ws: Workspace, db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    grant = _granted(ws)
    ws.start_version_watch()
    _wait_known(ws.versions)
    ws.close()  # the listener stops; known() answers None from now on
    assert ws.versions.known() is None
    assert _read(ws).denied == 0
    workflow.revoke(Workspace(ws.settings, db=db), actor=workflow_actor(ws), now=NOW, grant_id=grant, reason="notice")
    assert _read(ws).decisions[0].codes == ("grant_revoked",)  # at once: the version was queried


def workflow_actor(ws: Workspace, email: str = "steward@sensetime.com") -> object:
    from governance.identity.roles import load_actor

    return load_actor(ws, email)


def test_on_sqlite_a_watching_process_sees_another_process_change_through_the_signal_file(ws: Workspace, db: Engine) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("the signal file is SQLite's")
    grant = _granted(ws)
    ws.start_version_watch()
    try:
        assert _read(ws).denied == 0  # confirms the version from the database
        assert ws.versions.known() is not None  # now answered by a stat of the signal file
        other = Workspace(ws.settings, db=db)  # another process: it publishes after its commit
        workflow.revoke(other, actor=workflow_actor(other), now=NOW, grant_id=grant, reason="licensor's notice")
        assert _read(ws).decisions[0].codes == ("grant_revoked",)  # at once
        # A process that died between its commit and the signal: the periodic confirmation bounds it.
        with db.begin() as conn:
            conn.exec_driver_sql("UPDATE grants SET revoked_at = NULL")
            conn.exec_driver_sql("UPDATE state_version SET version = version + 1")
        t0 = time.monotonic()
        while _read(ws).denied:
            assert time.monotonic() - t0 < VersionWatch.FRESH_FOR, "an unsignalled change was not seen in time"
            time.sleep(0.01)
    finally:
        ws.close()
