"""`govern ingest` (issue 5, item 3): a directory tree or an AES zip becomes Crypt4GH payloads in
the object store and rows in `encrypted_files`, all or nothing per refusal, resumable, and a
kill -9 leaves no plaintext and no row without its object. SQLite, and PostgreSQL when
GOVERNANCE_TEST_DATABASE_URL is set."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pyzipper
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pydantic import SecretStr
from sqlalchemy import func, select, text

from governance.crypto.crypt4gh import ExpectedFile, decrypt
from governance.crypto.master import MASTER_ENV
from governance.files.ingest import FILES, MANIFEST, ChangedFilesError, SourceTagError, UnassignedFilesError, ingest_files
from governance.files.ingest import read_source_tags
from governance.files.sources import ZipPasswordError, open_source
from governance.identity.roles import Actor, Role, operator
from governance.workspace import Workspace
from tests.integration.conftest import PG_URL

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OPERATOR = operator("tester")
MARKER = b"PLAINTEXT-MARKER-7f3a9c"
# Sizes around the 64 KiB segment: empty, one byte, one short of a segment, exactly one, one over, several.
SIZES = [0, 1, 65_535, 65_536, 65_537, 300_000]


def _content(i: int, size: int) -> bytes:
    """Distinctive plaintext: a marker wherever it fits, so a leak is found by a byte scan."""
    if size < len(MARKER) + 8:
        return os.urandom(size)
    unit = MARKER + f"{i:08d}".encode()
    body = bytearray(os.urandom(size))
    for at in range(0, size - len(unit), 4096):
        body[at:at + len(unit)] = unit
    return bytes(body)


def _genebody_tree(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i, size in enumerate(SIZES):
        subset = "test10" if i % 2 else "train40"
        files[f"{subset}/subject{i:02d}/img_{i:04d}.jpg"] = _content(i, size)
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return files


@pytest.fixture
def kws(ws: Workspace) -> Workspace:
    """The test workspace with a master key in the environment and a key for every dataset used."""
    env = {MASTER_ENV: base64.b64encode(os.urandom(32)).decode()}
    out = Workspace(ws.settings, db=ws.db, env=env)
    for ds in ("genebody", "shhq"):
        out.keystore.create(ds, now=NOW)
    return out


def _rows(ws: Workspace, dataset: str = "genebody") -> dict[str, object]:
    with ws.connect() as conn:
        return {r.path: r for r in conn.execute(select(FILES).where(FILES.c.dataset == dataset))}


def _decrypt_row(ws: Workspace, row: object) -> bytes:
    """Header from the row, payload from the object: re-sealed to a fresh key, as key release does."""
    header = base64.b64decode(row.header)  # type: ignore[attr-defined]
    ws.keystore.open_header(row.dataset, header)  # type: ignore[attr-defined]  # the dataset key opens it
    reader = X25519PrivateKey.generate()
    (sealed,) = ws.keystore.reseal_headers(row.dataset, [header], recipient=reader.public_key())  # type: ignore[attr-defined]
    payload = (ws.settings.objects_dir / row.object).read_bytes()  # type: ignore[attr-defined]
    out = io.BytesIO()
    decrypt(io.BytesIO(sealed + payload), out, reader=reader,
            expected=ExpectedFile(row.size, row.mac_digest, row.sha256))  # type: ignore[attr-defined]
    return out.getvalue()


def _audit_actions(ws: Workspace) -> list[tuple[str, dict[str, object]]]:
    with ws.connect() as conn:
        return [(r.action, json.loads(r.details)) for r in conn.execute(text("SELECT action, details FROM audit_events ORDER BY seq"))]


def _ingest(ws: Workspace, src: Path, dataset: str = "genebody", **kw: object):  # type: ignore[no-untyped-def]
    password = kw.pop("password", None)
    return ingest_files(ws, actor=OPERATOR, now=NOW, dataset_id=dataset,
                        source=open_source(src, password=password), **kw)  # type: ignore[arg-type]


def _object_files(ws: Workspace) -> list[Path]:
    root = ws.settings.objects_dir
    return sorted(p for p in root.rglob("*.c4gh")) if root.exists() else []


def test_directory_ingest_registers_rows_whose_objects_decrypt_to_the_originals(kws: Workspace, tmp_path: Path) -> None:
    files = _genebody_tree(tmp_path / "src")
    result = _ingest(kws, tmp_path / "src", batch_files=4)
    assert (result.ingested, result.skipped, result.bytes) == (len(files), 0, sum(map(len, files.values())))
    rows = _rows(kws)
    assert set(rows) == set(files)
    for path, data in files.items():
        row = rows[path]
        assert row.subset == path.split("/")[0]
        assert (row.size, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert row.key_version == 1 and json.loads(row.sources) == []
        assert row.object.startswith("genebody/") and row.object.endswith(".c4gh")
        assert _decrypt_row(kws, row) == data
    # Payload only in the object: the header is the row's (release re-seals it); no temp left.
    assert not (kws.settings.objects_dir / "genebody" / ".tmp").exists()
    events = [d for a, d in _audit_actions(kws) if a == "manifest.ingest"]
    assert sum(int(str(d["files"])) for d in events) == len(files) and len(events) == 2  # batches of 4


def test_rerun_is_a_no_op_and_changed_content_is_refused(kws: Workspace, tmp_path: Path) -> None:
    files = _genebody_tree(tmp_path / "src")
    _ingest(kws, tmp_path / "src")
    before = _rows(kws)
    # What a killed run leaves: a ciphertext temp file, and an object whose row never committed.
    root = kws.settings.objects_dir / "genebody"
    (root / ".tmp").mkdir()
    (root / ".tmp" / "x.part").write_bytes(b"ciphertext")
    orphan = root / "ab" / ("ab" + "0" * 62 + ".c4gh")
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"ciphertext")
    again = _ingest(kws, tmp_path / "src")
    assert (again.ingested, again.skipped) == (0, len(files))
    assert not orphan.exists() and not (root / ".tmp").exists() and len(_object_files(kws)) == len(files)
    assert {p: r.sha256 for p, r in _rows(kws).items()} == {p: r.sha256 for p, r in before.items()}
    # Same size, other bytes: found by the sha256 re-check, refused, nothing written.
    path = next(p for p, d in files.items() if len(d) == 65_536)
    (tmp_path / "src" / path).write_bytes(os.urandom(65_536))
    (tmp_path / "src" / "test10" / "new.jpg").write_bytes(b"new")
    with pytest.raises(ChangedFilesError, match=path):
        _ingest(kws, tmp_path / "src")
    assert set(_rows(kws)) == set(files)
    # --quick trusts path and size, and ingests only the new file.
    quick = _ingest(kws, tmp_path / "src", quick=True)
    assert (quick.ingested, quick.skipped) == (1, len(files))


def test_files_matching_no_subset_are_refused_listed_and_nothing_is_written(kws: Workspace, tmp_path: Path) -> None:
    _genebody_tree(tmp_path / "src")
    (tmp_path / "src" / "stray.txt").write_bytes(b"x")
    (tmp_path / "src" / "other" / "a.jpg").parent.mkdir()
    (tmp_path / "src" / "other" / "a.jpg").write_bytes(b"y")
    with pytest.raises(UnassignedFilesError) as err:
        _ingest(kws, tmp_path / "src")
    assert err.value.paths == ["other/a.jpg", "stray.txt"]
    assert "2 file(s) match no subset of genebody" in str(err.value) and "\n" not in str(err.value)
    assert _rows(kws) == {} and _object_files(kws) == []
    assert not any(a == "manifest.ingest" for a, _ in _audit_actions(kws))


def test_only_an_admin_ingests(kws: Workspace, tmp_path: Path) -> None:
    _genebody_tree(tmp_path / "src")
    researcher = Actor(label="user:r", user_id="r", email="r@uni.example", roles=frozenset({(Role.RESEARCHER, "*")}))
    from governance.errors import ForbiddenError

    with pytest.raises(ForbiddenError):
        ingest_files(kws, actor=researcher, now=NOW, dataset_id="genebody", source=open_source(tmp_path / "src"))
    assert _rows(kws) == {}


def _zip(path: Path, files: dict[str, bytes], password: bytes) -> None:
    with pyzipper.AESZipFile(path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES) as z:
        z.setpassword(password)
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("__MACOSX/test10/._img.jpg", b"resource fork")


def test_an_aes_zip_ingests_the_same_and_a_wrong_password_writes_nothing(kws: Workspace, tmp_path: Path) -> None:
    files = _genebody_tree(tmp_path / "src")
    archive = tmp_path / "genebody.zip"
    _zip(archive, files, b"s3cret pass")
    with pytest.raises(ZipPasswordError, match="the password does not open") as err:
        _ingest(kws, archive, password=lambda: SecretStr("wrong"))
    assert "s3cret" not in str(err.value) and "wrong" not in str(err.value).replace("wrong", "", 0)
    assert _rows(kws) == {} and _object_files(kws) == []
    with pytest.raises(ZipPasswordError, match="is encrypted; give its password"):
        _ingest(kws, archive)
    result = _ingest(kws, archive, password=lambda: SecretStr("s3cret pass"))
    assert (result.ingested, result.ignored) == (len(files), 1)
    rows = _rows(kws)
    assert set(rows) == set(files)
    for path, data in files.items():
        assert rows[path].sha256 == hashlib.sha256(data).hexdigest()
        assert _decrypt_row(kws, rows[path]) == data
    # The directory holding the same files is then a no-op: the content is the same.
    assert _ingest(kws, tmp_path / "src").skipped == len(files)


def test_shhq_with_a_sources_csv_records_sources(kws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "shhq"
    names = [f"SHHQ-1.0/no_segment/image_{i:06d}.png" for i in range(3)] + ["preview/image_000001.png"]
    for n in names:
        (src / n).parent.mkdir(parents=True, exist_ok=True)
        (src / n).write_bytes(os.urandom(100))
    mapping = tmp_path / "sources.csv"
    mapping.write_text("# path,source\n"
                       f"{names[0]},deepfashion\n{names[1]},pexels,pixabay\n{names[3]},cc0;infashai\n")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{names[0]},2k2k\nnot/there.png,cc0\n")
    with pytest.raises(SourceTagError) as err:
        _ingest(kws, src, "shhq", tags=read_source_tags(bad))
    assert any("not/there.png" in p for p in err.value.paths) and any("2k2k" in p for p in err.value.paths)
    assert _rows(kws, "shhq") == {}
    _ingest(kws, src, "shhq", tags=read_source_tags(mapping))
    rows = _rows(kws, "shhq")
    assert {p: json.loads(r.sources) for p, r in rows.items()} == {
        names[0]: ["deepfashion"], names[1]: ["pexels", "pixabay"], names[2]: [], names[3]: ["cc0", "infashai"]}
    assert rows[names[3]].subset == "preview" and rows[names[0]].subset == "1.0"
    # The tags also reach the origin manifest that decisions read.
    with kws.connect() as conn:
        tagged = {r.path: json.loads(r.sources) for r in conn.execute(select(MANIFEST).where(MANIFEST.c.dataset == "shhq"))}
    assert tagged == {names[0]: ["deepfashion"], names[1]: ["pexels", "pixabay"], names[3]: ["cc0", "infashai"]}


# ------------------------------------------------------------------ the CLI and kill -9


def _cli_env(ws: Workspace) -> dict[str, str]:
    env = {**os.environ, "GOVERNANCE_DATA_DIR": str(ws.settings.data_dir), MASTER_ENV: ws._env[MASTER_ENV]}
    env.pop("GOVERNANCE_ACTOR", None)
    if ws.db.dialect.name == "postgresql":
        assert PG_URL is not None
        with ws.db.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        env["GOVERNANCE_DATABASE_URL"] = f"{PG_URL}?options=-csearch_path%3D{schema}"
    else:
        env["GOVERNANCE_DATABASE_URL"] = ws.db.url.render_as_string(hide_password=False)
    return env


def _govern(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "governance.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_cli_ingest_json_and_one_line_errors(kws: Workspace, tmp_path: Path) -> None:
    files = _genebody_tree(tmp_path / "src")
    env = _cli_env(kws)
    archive = tmp_path / "g.zip"
    _zip(archive, files, b"pw")
    no_prompt = _govern(env, "ingest", "genebody", str(archive), cwd=tmp_path)
    assert no_prompt.returncode == 2 and no_prompt.stderr.count("\n") == 1 and "--password-file" in no_prompt.stderr
    (tmp_path / "pw.txt").write_text("pw\n")
    done = _govern(env, "ingest", "genebody", str(archive), "--password-file", str(tmp_path / "pw.txt"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ingested"] == len(files) and done.stderr == ""
    (tmp_path / "src" / "stray.txt").write_bytes(b"x")
    refused = _govern(env, "ingest", "genebody", str(tmp_path / "src"), cwd=tmp_path)
    assert refused.returncode == 2 and refused.stderr.strip().endswith("stray.txt") and refused.stderr.count("\n") == 1


def _scan_for_plaintext(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and MARKER in p.read_bytes()]


def test_kill_9_leaves_no_plaintext_no_row_without_object_and_the_rerun_completes(kws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "src"
    files: dict[str, bytes] = {}
    for i in range(300):
        path = f"train40/subject{i // 30:02d}/img_{i:04d}.jpg"
        files[path] = _content(i, 256 * 1024 + i)
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(files[path])
    env = _cli_env(kws)
    proc = subprocess.Popen([sys.executable, "-m", "governance.cli", "ingest", "genebody", str(src), "--json"], env=env,
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        count = 0
        while time.monotonic() < deadline and proc.poll() is None:
            with kws.connect() as conn:
                count = conn.execute(select(func.count()).select_from(FILES)).scalar_one()
            if count:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the ingest finished before it could be killed; give it more work"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rows = _rows(kws)
    assert 0 < len(rows) < len(files)
    assert _scan_for_plaintext(kws.settings.data_dir) == []
    for path, row in rows.items():
        assert _decrypt_row(kws, row) == files[path]
    rerun = _govern(env, "ingest", "genebody", str(src), "--json", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["skipped"] == len(rows) and summary["ingested"] == len(files) - len(rows)
    rows = _rows(kws)
    assert set(rows) == set(files)
    for path, row in rows.items():
        assert _decrypt_row(kws, row) == files[path]
    assert len(_object_files(kws)) == len(files)
    assert not (kws.settings.objects_dir / "genebody" / ".tmp").exists()
    assert _scan_for_plaintext(kws.settings.data_dir) == []


def test_a_resealed_row_header_and_its_object_decrypt_with_the_reference_tool(kws: Workspace, tmp_path: Path) -> None:
    ref_lib = pytest.importorskip("crypt4gh.lib")
    files = _genebody_tree(tmp_path / "src")
    _ingest(kws, tmp_path / "src")
    reader = X25519PrivateKey.generate()
    for path, row in _rows(kws).items():
        (sealed,) = kws.keystore.reseal_headers("genebody", [base64.b64decode(row.header)], recipient=reader.public_key())
        blob = sealed + (kws.settings.objects_dir / row.object).read_bytes()
        out = io.BytesIO()
        ref_lib.decrypt([(0, reader.private_bytes_raw(), None)], io.BytesIO(blob), out)
        assert out.getvalue() == files[path]
