"""Dataset key rotation (issue 5, item 2): `govern keys rotate` makes a new key version and
re-seals every stored header to it, rewriting rows only (payloads byte-identical), in batches
with one counts-only `keys.reseal` audit event each, resumable after an interruption that
leaves every row openable. SQLite, and PostgreSQL when GOVERNANCE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select, text

from governance.crypto.crypt4gh import ExpectedFile, decrypt
from governance.crypto.errors import Crypt4GHWrongKeyError
from governance.crypto.keys import format_public_key
from governance.crypto.master import MASTER_ENV
from governance.errors import ForbiddenError
from governance.files import rotation
from governance.files.ingest import FILES, ingest_files
from governance.files.rotation import reseal_stored_headers, rotate_dataset_key
from governance.files.sources import open_source
from governance.identity.roles import Actor, Role
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, NOW, OPERATOR, add_user

SIZES = [0, 1, 100, 65_535, 65_536, 65_537, 200_000]


@pytest.fixture
def kws(ws: Workspace) -> Workspace:
    """The test workspace with a master key in the environment and a genebody key (v1)."""
    env = {MASTER_ENV: base64.b64encode(os.urandom(32)).decode()}
    out = Workspace(ws.settings, db=ws.db, mailer=ws.mailer, env=env)
    out.keystore.create("genebody", now=NOW)
    return out


def _tree(root: Path, start: int = 0, sizes: list[int] = SIZES) -> dict[str, bytes]:
    files = {f"{'test10' if i % 2 else 'train40'}/subject{i:02d}/img_{i:04d}.jpg": os.urandom(size)
             for i, size in enumerate(sizes, start=start)}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


def _ingest(ws: Workspace, src: Path) -> None:
    ingest_files(ws, actor=OPERATOR, now=NOW, dataset_id="genebody", source=open_source(src, password=None))


def _rows(ws: Workspace) -> dict[str, Any]:
    with ws.connect() as conn:
        return {r.path: r for r in conn.execute(select(FILES).where(FILES.c.dataset == "genebody"))}


def _payload_digests(ws: Workspace) -> dict[str, str]:
    root = ws.settings.objects_dir
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.c4gh"))}


def _decrypt_row(ws: Workspace, row: Any) -> bytes:
    """The row's header opened with exactly the version the row names, re-sealed to a fresh
    reader, then header + object decrypted with the manifest's size, MAC-sequence and sha256 checks."""
    header = base64.b64decode(row.header)
    ws.keystore.open_header("genebody", header, version=row.key_version)
    reader = X25519PrivateKey.generate()
    (sealed,) = ws.keystore.reseal_headers("genebody", [header], recipient=reader.public_key(), version=row.key_version)
    payload = (ws.settings.objects_dir / row.object).read_bytes()
    out = io.BytesIO()
    decrypt(io.BytesIO(sealed + payload), out, reader=reader, expected=ExpectedFile(row.size, row.mac_digest, row.sha256))
    return out.getvalue()


def _reseal_events(ws: Workspace) -> list[dict[str, Any]]:
    with ws.connect() as conn:
        return [json.loads(r.details) for r in
                conn.execute(text("SELECT details FROM audit_events WHERE action = 'keys.reseal' ORDER BY seq"))]


def test_rotation_reseals_every_stored_header_to_the_new_version_and_leaves_payloads_byte_identical(
        kws: Workspace, tmp_path: Path) -> None:
    files = _tree(tmp_path / "src")
    _ingest(kws, tmp_path / "src")
    before_rows, before_payloads = _rows(kws), _payload_digests(kws)
    assert {r.key_version for r in before_rows.values()} == {1}

    result = rotate_dataset_key(kws, actor=OPERATOR, now=NOW, dataset_id="genebody", batch_rows=3)

    assert result.key.version == 2 and result.key.current
    assert result.reseal is not None
    assert result.reseal.as_dict() == {"dataset": "genebody", "key_version": 2, "resealed": len(files), "skipped": 0,
                                       "batches": 3, "from_versions": {"1": len(files)}}
    rows = _rows(kws)
    assert {r.key_version for r in rows.values()} == {2}
    for path, data in files.items():
        assert rows[path].header != before_rows[path].header
        assert (rows[path].object, rows[path].sha256) == (before_rows[path].object, before_rows[path].sha256)
        assert _decrypt_row(kws, rows[path]) == data
        with pytest.raises(Crypt4GHWrongKeyError):  # sealed to the new version only
            kws.keystore.open_header("genebody", base64.b64decode(rows[path].header), version=1)
    assert _payload_digests(kws) == before_payloads  # payloads untouched
    events = _reseal_events(kws)
    assert [e["files"] for e in events] == [3, 3, 1]
    for e in events:  # counts only: no paths, no headers, no keys
        assert set(e) == {"files", "to_version", "from_versions", "unchanged"}
        assert e["to_version"] == 2 and e["unchanged"] == 0


def test_an_interrupted_reseal_leaves_every_row_openable_and_a_rerun_completes(
        kws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _tree(tmp_path / "src")
    _ingest(kws, tmp_path / "src")
    before_payloads = _payload_digests(kws)
    real = rotation._write_batch
    calls = {"n": 0}

    def failing_on_the_second_batch(*args: Any, **kw: Any) -> dict[int, int]:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("interrupted")
        return real(*args, **kw)

    monkeypatch.setattr(rotation, "_write_batch", failing_on_the_second_batch)
    with pytest.raises(RuntimeError, match="interrupted"):
        rotate_dataset_key(kws, actor=OPERATOR, now=NOW, dataset_id="genebody", batch_rows=2)
    rows = _rows(kws)
    assert sorted(r.key_version for r in rows.values()) == [1] * (len(files) - 2) + [2, 2]
    for path, data in files.items():  # the old version is kept, so every row still opens
        assert _decrypt_row(kws, rows[path]) == data
    assert [e["files"] for e in _reseal_events(kws)] == [2]  # the failed batch rolled back with its event

    monkeypatch.setattr(rotation, "_write_batch", real)
    again = reseal_stored_headers(kws, actor=OPERATOR, now=NOW, dataset_id="genebody", batch_rows=2)
    assert (again.key_version, again.resealed, again.skipped) == (2, len(files) - 2, 2)
    rows = _rows(kws)
    assert {r.key_version for r in rows.values()} == {2}
    for path, data in files.items():
        assert _decrypt_row(kws, rows[path]) == data
    assert _payload_digests(kws) == before_payloads
    done = reseal_stored_headers(kws, actor=OPERATOR, now=NOW, dataset_id="genebody")
    assert (done.resealed, done.skipped, done.batches) == (0, len(files), 0)  # nothing left; no event
    assert sum(e["files"] for e in _reseal_events(kws)) == len(files)


def test_no_reseal_only_makes_the_version_and_a_later_reseal_moves_rows_off_every_old_version(
        kws: Workspace, tmp_path: Path) -> None:
    first = _tree(tmp_path / "src", sizes=[10, 20, 30])
    _ingest(kws, tmp_path / "src")
    only = rotate_dataset_key(kws, actor=OPERATOR, now=NOW, dataset_id="genebody", reseal=False)
    assert only.key.version == 2 and only.reseal is None and only.as_dict()["reseal"] is None
    assert {r.key_version for r in _rows(kws).values()} == {1}
    second = _tree(tmp_path / "src", start=3, sizes=[40, 50])
    _ingest(kws, tmp_path / "src")  # encrypted to v2
    rotate_dataset_key(kws, actor=OPERATOR, now=NOW, dataset_id="genebody", reseal=False)
    assert sorted(r.key_version for r in _rows(kws).values()) == [1, 1, 1, 2, 2]
    assert _reseal_events(kws) == []

    result = reseal_stored_headers(kws, actor=OPERATOR, now=NOW, dataset_id="genebody")
    assert (result.key_version, result.resealed, result.from_versions) == (3, 5, {1: 3, 2: 2})
    rows = _rows(kws)
    for path, data in (first | second).items():
        assert rows[path].key_version == 3 and _decrypt_row(kws, rows[path]) == data


def test_only_an_admin_or_the_operator_rotates_or_reseals(kws: Workspace, tmp_path: Path) -> None:
    _tree(tmp_path / "src", sizes=[10])
    _ingest(kws, tmp_path / "src")
    for role in (Role.RESEARCHER, Role.APPROVER, Role.AUDITOR):
        someone = Actor(label="user:u1", user_id="u1", email="u1@ust.hk", roles=frozenset({(role, "*")}))
        with pytest.raises(ForbiddenError):
            rotate_dataset_key(kws, actor=someone, now=NOW, dataset_id="genebody")
        with pytest.raises(ForbiddenError):
            reseal_stored_headers(kws, actor=someone, now=NOW, dataset_id="genebody")
    assert [i.version for i in kws.keystore.versions("genebody")] == [1]
    admin = Actor(label="user:a1", user_id="a1", email="a1@ust.hk", roles=frozenset({(Role.ADMIN, "*")}))
    assert rotate_dataset_key(kws, actor=admin, now=NOW, dataset_id="genebody").key.version == 2


def test_a_key_release_after_rotation_opens_with_the_users_key(kws: Workspace, tmp_path: Path) -> None:
    from governance.files.release import release_keys
    from governance.identity.publickeys import register_public_key
    from governance.identity.roles import load_actor
    from tests.integration.test_key_release import grant_train40

    files = _tree(tmp_path / "src", sizes=[1, 65_537])
    _ingest(kws, tmp_path / "src")
    rotate_dataset_key(kws, actor=OPERATOR, now=NOW, dataset_id="genebody")
    add_user(kws, "alice@ust.hk", organisation="hkust", site="clear-water-bay")
    grant_train40(kws, "alice@ust.hk")
    alice = load_actor(kws, "alice@ust.hk")
    key = X25519PrivateKey.generate()
    record = register_public_key(kws, actor=alice, now=NOW, key=format_public_key(key.public_key()).decode(), name="laptop")
    result = release_keys(kws, actor=alice, now=NOW, public_key_id=record.id, purpose=ACADEMIC, subset="genebody/train40")
    train = {p: d for p, d in files.items() if p.startswith("train40/")}
    assert [f.resource for f in result.released] == [f"genebody:{p}" for p in sorted(train)]
    for f in result.released:
        out = io.BytesIO()
        payload = (kws.settings.objects_dir / f.object).read_bytes()
        decrypt(io.BytesIO(f.header + payload), out, reader=key, expected=ExpectedFile(f.size, f.mac_digest, f.sha256))
        assert out.getvalue() == train[f.resource.partition(":")[2]]


def test_cli_rotate_reseals_with_progress_on_stderr_and_a_json_summary(tmp_path: Path) -> None:
    """`govern keys rotate` end to end on a SQLite workspace; `keys reseal` then has nothing to do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOVERNANCE_")}
    env |= {"GOVERNANCE_DATA_DIR": str(tmp_path / "data"), MASTER_ENV: base64.b64encode(os.urandom(32)).decode()}

    def govern(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "governance.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc

    files = _tree(tmp_path / "src", sizes=[5, 70_000, 0])
    govern("db", "upgrade")
    govern("keys", "init")
    govern("ingest", "genebody", str(tmp_path / "src"))
    rotated = govern("keys", "rotate", "genebody", "--json")
    summary = json.loads(rotated.stdout)
    assert summary["version"] == 2 and summary["current"] is True
    assert summary["reseal"] == {"dataset": "genebody", "key_version": 2, "resealed": len(files), "skipped": 0,
                                 "batches": 1, "from_versions": {"1": len(files)}}
    assert f"{len(files)}/{len(files)} header(s) re-sealed" in rotated.stderr
    again = govern("keys", "reseal", "genebody")
    assert again.stdout.strip() == (f"genebody: 0 stored header(s) re-sealed to key v2, {len(files)} already at it; "
                                    "payloads untouched")
    assert env[MASTER_ENV] not in rotated.stdout + rotated.stderr + again.stdout + again.stderr
