"""The audit chain in a real database (SQLite always, PostgreSQL when configured): appends are
transactional and linear under concurrent writers; any hand edit of the table is found and
named; a signed checkpoint exposes a cut tail and a recomputed chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, text

from governance.audit import store
from governance.audit.chain import GENESIS, link_hash
from governance.storage.db import DatabaseError, current_revision, head_revision, make_engine, require_current, upgrade
from governance.storage.tables import AuditEventRow

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def fill(db: Engine, n: int) -> None:
    for i in range(n):
        with db.begin() as conn:
            store.append(conn, at=T0 + timedelta(seconds=i), actor="approver@ust.hk", action="approve",
                         target=f"request:{i}", outcome="ok", reasons=(), details={"i": i})


def test_migrations_create_the_tables_the_models_describe_and_are_idempotent(db: Engine) -> None:
    assert current_revision(db) == head_revision()
    upgrade(db)  # a second run changes nothing
    cols = {c["name"] for c in inspect(db).get_columns("audit_events")}
    assert cols == set(AuditEventRow.model_fields)
    require_current(db)


def test_an_unmigrated_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(DatabaseError, match="govern db upgrade"):
        require_current(engine)


def test_appended_events_form_a_verified_chain(db: Engine) -> None:
    fill(db, 30)
    result = store.verify(db)
    assert result.ok and result.events == 30


def test_an_event_rolls_back_with_its_transaction(db: Engine) -> None:
    fill(db, 3)
    with pytest.raises(RuntimeError), db.begin() as conn:
        store.append(conn, at=T0, actor="a", action="approve", target="request:x", outcome="ok")
        raise RuntimeError("the state change failed")
    assert store.verify(db).events == 3


@pytest.mark.parametrize(
    ("tamper", "first_bad"),
    [
        ("UPDATE audit_events SET outcome = 'denied' WHERE seq = 17", 17),
        ("DELETE FROM audit_events WHERE seq = 12", 12),
        ("UPDATE audit_events SET actor = (SELECT actor FROM audit_events WHERE seq = 1) || 'x' WHERE seq = 25", 25),
    ],
)
def test_a_hand_edit_of_any_row_is_found_and_named(db: Engine, tamper: str, first_bad: int) -> None:
    fill(db, 30)
    with db.begin() as conn:
        conn.execute(text(tamper))
    result = store.verify(db)
    assert not result.ok and result.first_bad == first_bad


def test_swapped_rows_are_found(db: Engine) -> None:
    fill(db, 20)
    with db.begin() as conn:
        a = conn.execute(text("SELECT target, details, hash, prev_hash FROM audit_events WHERE seq = 8")).one()
        b = conn.execute(text("SELECT target, details, hash, prev_hash FROM audit_events WHERE seq = 9")).one()
        conn.execute(text("UPDATE audit_events SET hash = 'x' WHERE seq = 8"))  # free the unique hash
        for seq, row in ((9, a), (8, b)):
            conn.execute(text("UPDATE audit_events SET target=:t, details=:d, hash=:h, prev_hash=:p WHERE seq=:s"),
                         {"t": row.target, "d": row.details, "h": row.hash, "p": row.prev_hash, "s": seq})
    assert store.verify(db).first_bad == 8


def test_an_inserted_row_is_found(db: Engine) -> None:
    fill(db, 10)
    with db.begin() as conn:
        conn.execute(text("UPDATE audit_events SET seq = seq + 1000 WHERE seq > 5"))
        conn.execute(text("UPDATE audit_events SET seq = seq - 999 WHERE seq > 1000"))
        fields = {"seq": 6, "at": T0.isoformat(), "actor": "mallory", "action": "approve", "target": "request:evil",
                  "outcome": "ok", "reasons": [], "details": {}, "prev_hash": GENESIS}
        conn.execute(text("INSERT INTO audit_events VALUES (6, :at, 'mallory', 'approve', 'request:evil', 'ok', '[]', '{}', :p, :h)"),
                     {"at": fields["at"], "p": GENESIS, "h": link_hash(GENESIS, fields)})
    assert store.verify(db).first_bad == 6


def test_a_checkpoint_exposes_a_cut_tail_and_a_recomputed_chain(db: Engine, tmp_path: Path) -> None:
    fill(db, 40)
    key = store.load_or_create_key(tmp_path / "k.pem")
    out = tmp_path / "checkpoint.json"
    cp = store.checkpoint(db, key=key, at=T0, out=out)
    assert cp is not None and cp.seq == 40
    assert store.verify(db, checkpoint_file=out, key=key).ok
    # Rewrite event 20 and recompute every later hash, as an attacker with the database would.
    with db.begin() as conn:
        rows = conn.execute(text("SELECT * FROM audit_events WHERE seq >= 20 ORDER BY seq")).mappings().all()
        prev = conn.execute(text("SELECT hash FROM audit_events WHERE seq = 19")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 20"))
        for r in rows:
            fields = {k: r[k] for k in ("seq", "at", "actor", "action", "target", "outcome", "prev_hash")}
            fields["outcome"] = "denied" if r["seq"] == 20 else r["outcome"]
            fields["reasons"], fields["details"], fields["prev_hash"] = json.loads(r["reasons"]), json.loads(r["details"]), prev
            h = link_hash(prev, fields)
            conn.execute(text("INSERT INTO audit_events VALUES (:seq, :at, :actor, :action, :target, :outcome, :reasons, :details, :prev_hash, :hash)"),
                         {**fields, "reasons": r["reasons"], "details": r["details"], "hash": h})
            prev = h
    assert store.verify(db).ok  # consistent without the checkpoint
    rewritten = store.verify(db, checkpoint_file=out, key=key)
    assert not rewritten.ok and "rewritten" in (rewritten.problem or "")
    with db.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq > 30"))
    cut = store.verify(db, checkpoint_file=out, key=key)
    assert not cut.ok and cut.first_bad == 31 and "cut tail" in (cut.problem or "")


def test_concurrent_writers_keep_the_chain_linear(db: Engine) -> None:
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(25):
                with db.begin() as conn:
                    store.append(conn, at=T0, actor=f"writer{w}", action="check", target=f"t{i}", outcome="deny",
                                 reasons=("no_grant",))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    result = store.verify(db)
    assert result.ok and result.events == 200


def test_a_signing_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    store.load_or_create_key(path)
    assert (path.stat().st_mode & 0o777) == 0o600
    path.chmod(0o644)
    with pytest.raises(store.AuditKeyError, match="chmod 600"):
        store.load_or_create_key(path)


def test_cli_verify_passes_then_names_a_hand_edited_row(tmp_path: Path) -> None:
    env = {**os.environ, "GOVERNANCE_DATA_DIR": str(tmp_path / "data")}
    env.pop("GOVERNANCE_DATABASE_URL", None)

    def govern(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "governance.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert govern("db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'governance.db'}")
    fill(engine, 12)
    assert govern("audit", "checkpoint").returncode == 0
    ok = govern("audit", "verify")
    assert ok.returncode == 0 and "ok: 12 events" in ok.stdout
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET target = 'request:forged' WHERE seq = 7"))
    bad = govern("audit", "verify")
    assert bad.returncode == 1 and "event 7" in bad.stderr and "Traceback" not in bad.stderr


def test_an_auditor_verifies_with_the_public_key_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "GOVERNANCE_DATA_DIR": str(data)}
    env.pop("GOVERNANCE_DATABASE_URL", None)

    def govern(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "governance.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    assert govern("db", "upgrade").returncode == 0
    fill(make_engine(f"sqlite:///{data / 'governance.db'}"), 5)
    assert govern("audit", "checkpoint").returncode == 0
    auditor_copy = tmp_path / "auditor"
    auditor_copy.mkdir()
    (auditor_copy / "key.pub").write_bytes((data / "audit-signing.pub").read_bytes())
    (auditor_copy / "checkpoint.json").write_bytes((data / "audit-checkpoint.json").read_bytes())
    (data / "audit-signing.key").unlink()  # the auditor never sees the signing key
    ok = govern("audit", "verify", "--public-key", str(auditor_copy / "key.pub"), "--checkpoint", str(auditor_copy / "checkpoint.json"))
    assert ok.returncode == 0, ok.stderr
    store.load_or_create_key(tmp_path / "other" / "k.key")
    foreign = store.public_key_path(tmp_path / "other" / "k.key")
    bad = govern("audit", "verify", "--public-key", str(foreign), "--checkpoint", str(auditor_copy / "checkpoint.json"))
    assert bad.returncode == 1 and "signature" in bad.stderr
    missing = govern("audit", "verify", "--checkpoint", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and missing.stderr.startswith("error:")


def test_a_missing_public_key_is_rewritten_from_the_signing_key(tmp_path: Path) -> None:
    key_path = tmp_path / "audit-signing.key"
    key = store.load_or_create_key(key_path)
    store.public_key_path(key_path).unlink()
    store.load_or_create_key(key_path)
    assert store.load_public_key(store.public_key_path(key_path)).public_bytes_raw() == key.public_key().public_bytes_raw()


def test_every_table_model_matches_what_the_migrations_create(db: Engine) -> None:
    from sqlmodel import SQLModel

    inspector = inspect(db)
    for name, table in SQLModel.metadata.tables.items():
        assert {c["name"] for c in inspector.get_columns(name)} == {c.name for c in table.columns}, name
