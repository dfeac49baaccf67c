"""Group commit keeps one linear, verifiable chain alongside direct appends, resolves every
future once its event is durable, and fails every waiter (never silently) when it cannot."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from governance.audit import store
from governance.audit.writer import AuditWriterClosedError, GroupCommitWriter
from governance.storage.db import make_engine

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def test_submitted_events_are_committed_in_order_and_verify(db: Engine) -> None:
    with GroupCommitWriter(db, max_batch=50) as writer:
        futures = [writer.submit(at=T0, actor="loader", action="check", target=f"t{i}", outcome="deny",
                                 reasons=("no_grant",)) for i in range(300)]
        seqs = [f.result(timeout=30).seq for f in futures]
    assert seqs == list(range(1, 301))
    assert store.verify(db).ok


def test_group_commit_and_direct_appends_share_one_linear_chain(db: Engine) -> None:
    errors: list[BaseException] = []

    def direct() -> None:
        try:
            for i in range(40):
                with db.begin() as conn:
                    store.append(conn, at=T0, actor="approver", action="approve", target=f"request:{i}", outcome="ok")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    with GroupCommitWriter(db) as writer:
        t = threading.Thread(target=direct)
        t.start()
        futures = []
        for w in range(4):
            futures += [writer.submit(at=T0, actor=f"loader{w}", action="check", target=f"t{i}", outcome="deny") for i in range(60)]
        t.join()
        for f in futures:
            f.result(timeout=30)
    assert not errors
    result = store.verify(db)
    assert result.ok and result.events == 40 + 240


def test_a_failed_batch_fails_every_waiter(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}")  # no audit table: inserts fail
    with GroupCommitWriter(engine) as writer:
        futures = [writer.submit(at=T0, actor="a", action="check", target="t", outcome="deny") for _ in range(5)]
        for f in futures:
            with pytest.raises(Exception, match="could not be committed"):
                f.result(timeout=30)


def test_close_commits_what_was_submitted_and_refuses_more(db: Engine) -> None:
    writer = GroupCommitWriter(db, max_wait=0.05)
    futures = [writer.submit(at=T0, actor="a", action="check", target=f"t{i}", outcome="deny") for i in range(20)]
    writer.close()
    assert all(f.done() and not f.exception() for f in futures)
    with pytest.raises(AuditWriterClosedError):
        writer.submit(at=T0, actor="a", action="check", target="t", outcome="deny")
    assert store.verify(db).events == 20


def test_checkpoints_are_signed_every_n_events(db: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from governance.audit.chain import Checkpoint
    from governance.audit.writer import CheckpointPolicy

    key = store.load_or_create_key(tmp_path / "k.key")
    out = tmp_path / "checkpoint.json"
    with GroupCommitWriter(db, max_batch=7, checkpoints=CheckpointPolicy(key=key, out=out, every=25)) as writer:
        for f in [writer.submit(at=T0, actor="a", action="check", target=f"t{i}", outcome="deny") for i in range(60)]:
            f.result(timeout=30)
        assert writer.checkpoint_failures == 0
    cp = Checkpoint.from_json(out.read_text())
    assert 50 <= cp.seq <= 60
    assert store.verify(db, checkpoint_file=out, key=key).ok
