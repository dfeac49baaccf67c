"""The keystore: dataset key pairs sealed by a master key, rotation of both, and no key ever printed.

Unit tests drive `FileKeyStore` directly; the CLI tests run `govern keys …` in subprocesses.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from governance.crypto import crypt4gh, keys
from governance.crypto.errors import (
    Crypt4GHWrongKeyError,
    DatasetKeyExistsError,
    DatasetKeyNotFoundError,
    KeyRecordError,
    KeyStoreError,
    MasterKeyError,
    WrongMasterKeyError,
)
from governance.crypto.keystore import FileKeyStore, KeyStore, MasterKey, load_master_key
from governance.errors import GovernanceError
from tests.conftest import NOW, ROOT


def _encrypt_to(store: KeyStore, dataset: str, data: bytes) -> bytes:
    out = io.BytesIO()
    crypt4gh.encrypt(io.BytesIO(data), out, recipients=[store.public_key(dataset)])
    return out.getvalue()


def _header(blob: bytes) -> bytes:
    return crypt4gh.read_header(io.BytesIO(blob))


def _decrypt(blob: bytes, reader: X25519PrivateKey) -> bytes:
    out = io.BytesIO()
    crypt4gh.decrypt(io.BytesIO(blob), out, reader=reader)
    return out.getvalue()


def _secrets(master: MasterKey) -> list[str]:
    raw = master.get_secret_value()
    return [base64.b64encode(raw).decode(), raw.hex(), repr(raw)[2:-1]]


@pytest.fixture()
def master() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture()
def store(tmp_path: Path, master: MasterKey) -> FileKeyStore:
    s = FileKeyStore(tmp_path / "keys", master)
    s.create("genebody", now=NOW)
    s.create("shhq", now=NOW)
    return s


def _record(store: FileKeyStore, master: MasterKey, dataset: str, version: int = 1) -> Path:
    return store.directory / f"gen-{master.key_id}" / dataset / f"v{version:04d}.json"


# ------------------------------------------------------------------ create, load, seal and open


def test_file_keystore_satisfies_the_port(store: FileKeyStore) -> None:
    port: KeyStore = store
    assert port.datasets() == ["genebody", "shhq"]


def test_create_writes_a_sealed_record_and_a_crypt4gh_public_key_0600(store: FileKeyStore, master: MasterKey) -> None:
    rec = _record(store, master, "genebody")
    pub = rec.with_suffix(".pub")
    assert oct(rec.stat().st_mode & 0o777) == "0o600" and oct(pub.stat().st_mode & 0o777) == "0o600"
    assert oct(rec.parent.stat().st_mode & 0o777) == "0o700"
    body = json.loads(rec.read_text())
    assert body["dataset"] == "genebody" and body["version"] == 1
    assert keys.parse_public_key(pub.read_bytes()).public_bytes_raw() == store.public_key("genebody").public_bytes_raw()
    assert not list(rec.parent.glob(".*.tmp"))


def test_a_second_create_is_refused(store: FileKeyStore) -> None:
    with pytest.raises(DatasetKeyExistsError, match="genebody already has a key"):
        store.create("genebody", now=NOW)


def test_a_dataset_without_a_key_is_not_found(store: FileKeyStore) -> None:
    with pytest.raises(DatasetKeyNotFoundError, match="2k2k has no key"):
        store.public_key("2k2k")


def test_dataset_ids_that_could_leave_the_directory_are_refused(store: FileKeyStore) -> None:
    for bad in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(KeyStoreError, match="not a usable dataset id"):
            store.create(bad, now=NOW)


def test_a_fresh_store_with_the_same_master_opens_what_was_sealed(tmp_path: Path, store: FileKeyStore,
                                                                   master: MasterKey) -> None:
    blob = _encrypt_to(store, "genebody", b"x" * 70_000)
    reopened = FileKeyStore(store.directory, MasterKey(master.get_secret_value()))
    assert reopened.datasets() == ["genebody", "shhq"]
    assert reopened.versions("genebody")[0].fingerprint == store.versions("genebody")[0].fingerprint
    assert len(reopened.open_header("genebody", _header(blob)).keys) == 1


def test_reseal_releases_a_header_the_recipient_alone_can_open(store: FileKeyStore) -> None:
    data = b"plaintext " * 10_000
    blob = _encrypt_to(store, "genebody", data)
    header = _header(blob)
    user = X25519PrivateKey.generate()
    [released] = store.reseal_headers("genebody", [header], recipient=user.public_key())
    assert _decrypt(released + blob[len(header):], user) == data
    with pytest.raises(Crypt4GHWrongKeyError):
        store.open_header("shhq", header)  # another dataset's key does not open it


# ------------------------------------------------------------------ the sealed records are bound to their place


def test_a_sealed_key_file_copied_to_another_datasets_name_is_refused(tmp_path: Path, store: FileKeyStore,
                                                                     master: MasterKey) -> None:
    src, dst = _record(store, master, "genebody"), _record(store, master, "shhq")
    dst.write_bytes(src.read_bytes())
    with pytest.raises(KeyRecordError, match="another dataset or version than its path"):
        FileKeyStore(store.directory, master).public_key("shhq")
    # Also with the record's own fields rewritten to match: the AAD still binds the path.
    body = json.loads(src.read_text())
    body["dataset"] = "shhq"
    dst.write_text(json.dumps(body))
    with pytest.raises(KeyRecordError, match="does not authenticate"):
        FileKeyStore(store.directory, master).public_key("shhq")


def test_a_sealed_key_file_moved_to_another_version_is_refused(store: FileKeyStore, master: MasterKey) -> None:
    store.rotate("genebody", now=NOW)
    body = json.loads(_record(store, master, "genebody", 1).read_text())
    body["version"] = 2
    _record(store, master, "genebody", 2).write_text(json.dumps(body))
    with pytest.raises(KeyRecordError, match="does not authenticate"):
        FileKeyStore(store.directory, master).versions("genebody")


def test_an_altered_public_key_is_refused(store: FileKeyStore, master: MasterKey) -> None:
    rec = _record(store, master, "genebody")
    body = json.loads(rec.read_text())
    body["public_key"] = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes_raw()).decode()
    rec.write_text(json.dumps(body))
    with pytest.raises(KeyRecordError, match="does not authenticate"):
        FileKeyStore(store.directory, master).public_key("genebody")


def test_a_wrong_master_key_is_refused_with_a_clear_error(store: FileKeyStore) -> None:
    other = FileKeyStore(store.directory, MasterKey.generate())
    with pytest.raises(WrongMasterKeyError, match="the master key does not open the keystore in .*sealed under another"):
        other.datasets()
    with pytest.raises(WrongMasterKeyError):
        other.create("2k2k", now=NOW)  # and it does not start a second store beside the first
    assert len(list(store.directory.glob("gen-*"))) == 1


# ------------------------------------------------------------------ the master key's sources


def test_master_key_file_is_created_0600_and_read_back(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "master.key"
    master.create_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert MasterKey.from_file(path).key_id == master.key_id
    with pytest.raises(MasterKeyError, match="already exists"):
        MasterKey.generate().create_file(path)
    assert MasterKey.from_file(path).key_id == master.key_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_master_key_file_others_can_read_is_refused(tmp_path: Path, master: MasterKey, mode: int) -> None:
    path = tmp_path / "master.key"
    master.create_file(path)
    path.chmod(mode)
    with pytest.raises(MasterKeyError) as err:
        MasterKey.from_file(path)
    assert str(err.value) == (f"master key file {path} has mode {mode:04o}, so others may read it; "
                              f"it must be 0600 or stricter (chmod 600 {path})")


def test_a_master_key_file_0400_is_accepted(tmp_path: Path, master: MasterKey) -> None:
    path = tmp_path / "master.key"
    master.create_file(path)
    path.chmod(0o400)
    assert MasterKey.from_file(path).key_id == master.key_id


def test_a_missing_or_malformed_master_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyError, match="does not exist"):
        MasterKey.from_file(tmp_path / "absent.key")
    path = tmp_path / "bad.key"
    path.write_text("c2hvcnQ=\n")  # base64 of 5 bytes
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match="does not hold base64 of 32 bytes") as err:
        MasterKey.from_file(path)
    assert "c2hvcnQ" not in str(err.value)


def test_env_master_key_is_used_before_the_file(tmp_path: Path, master: MasterKey) -> None:
    env = {"GOVERNANCE_MASTER_KEY": base64.b64encode(master.get_secret_value()).decode()}
    assert load_master_key(env=env, path=tmp_path / "absent.key").key_id == master.key_id
    file_master = MasterKey.generate()
    file_master.create_file(tmp_path / "master.key")
    assert load_master_key(env={}, path=tmp_path / "master.key").key_id == file_master.key_id
    assert load_master_key(env={"GOVERNANCE_MASTER_KEY": ""}, path=tmp_path / "master.key").key_id == file_master.key_id


def test_a_malformed_env_master_key_is_refused_without_echoing_it() -> None:
    value = base64.b64encode(b"k" * 31).decode()
    with pytest.raises(MasterKeyError, match="environment variable GOVERNANCE_MASTER_KEY does not hold") as err:
        MasterKey.from_env({"GOVERNANCE_MASTER_KEY": value})
    assert value not in str(err.value)


# ------------------------------------------------------------------ rotation


def test_rotating_a_dataset_key_keeps_old_versions_openable(store: FileKeyStore) -> None:
    old_blob = _encrypt_to(store, "genebody", b"old file")
    old_pk = store.public_key("genebody").public_bytes_raw()
    info = store.rotate("genebody", now=NOW + timedelta(days=1))
    assert info.version == 2 and info.current
    assert store.public_key("genebody").public_bytes_raw() != old_pk
    assert store.public_key("genebody", version=1).public_bytes_raw() == old_pk
    new_blob = _encrypt_to(store, "genebody", b"new file")
    assert [(i.version, i.current) for i in store.versions("genebody")] == [(1, False), (2, True)]
    fresh = FileKeyStore(store.directory, MasterKey(store._master.get_secret_value()))
    user = X25519PrivateKey.generate()
    headers = [_header(old_blob), _header(new_blob)]
    released = fresh.reseal_headers("genebody", headers, recipient=user.public_key())
    assert _decrypt(released[0] + old_blob[len(headers[0]):], user) == b"old file"
    assert _decrypt(released[1] + new_blob[len(headers[1]):], user) == b"new file"
    assert len(fresh.open_header("genebody", headers[0]).keys) == 1
    with pytest.raises(Crypt4GHWrongKeyError):
        fresh.open_header("genebody", headers[0], version=2)


def test_rotating_a_dataset_without_a_key_is_refused(store: FileKeyStore) -> None:
    with pytest.raises(DatasetKeyNotFoundError):
        store.rotate("2k2k", now=NOW)


def _everything_opens(store: FileKeyStore, blobs: dict[str, bytes]) -> None:
    for dataset, blob in blobs.items():
        assert len(store.open_header(dataset, _header(blob)).keys) == 1


def test_master_rotation_reseals_everything_under_the_new_key(tmp_path: Path, store: FileKeyStore,
                                                              master: MasterKey) -> None:
    store.rotate("genebody", now=NOW)
    blobs = {"genebody": _encrypt_to(store, "genebody", b"a"), "shhq": _encrypt_to(store, "shhq", b"b")}
    path = tmp_path / "master.key"
    master.create_file(path)
    new = MasterKey.generate()
    rotated = store.rotate_master(new, master_file=path)
    assert MasterKey.from_file(path).key_id == new.key_id
    assert path.stat().st_mode & 0o777 == 0o600
    _everything_opens(FileKeyStore(store.directory, MasterKey.from_file(path)), blobs)
    assert [i.version for i in rotated.versions("genebody")] == [1, 2]
    with pytest.raises(WrongMasterKeyError):
        FileKeyStore(store.directory, master).datasets()
    assert [p.name for p in store.directory.glob("gen-*")] == [f"gen-{new.key_id}"]


def test_master_rotation_interrupted_mid_way_leaves_the_old_master_in_charge(
        tmp_path: Path, store: FileKeyStore, master: MasterKey, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = {"genebody": _encrypt_to(store, "genebody", b"a"), "shhq": _encrypt_to(store, "shhq", b"b")}
    path = tmp_path / "master.key"
    master.create_file(path)
    before = path.read_bytes()
    real_replace, calls = os.replace, []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    new = MasterKey.generate()
    with pytest.raises(OSError, match="No space left"):
        store.rotate_master(new, master_file=path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in store.directory.iterdir() if p.name.startswith("gen-")] == [f"gen-{master.key_id}"]
    _everything_opens(FileKeyStore(store.directory, MasterKey.from_file(path)), blobs)
    with pytest.raises(WrongMasterKeyError):
        FileKeyStore(store.directory, new).datasets()


def test_master_rotation_failing_at_the_commit_leaves_the_old_master_in_charge(
        tmp_path: Path, store: FileKeyStore, master: MasterKey, monkeypatch: pytest.MonkeyPatch) -> None:
    blobs = {"genebody": _encrypt_to(store, "genebody", b"a")}
    path = tmp_path / "master.key"
    master.create_file(path)
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == path:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        store.rotate_master(MasterKey.generate(), master_file=path)
    monkeypatch.undo()
    assert MasterKey.from_file(path).key_id == master.key_id
    assert not list(tmp_path.glob(".master.key*"))
    _everything_opens(FileKeyStore(store.directory, MasterKey.from_file(path)), blobs)


def test_a_generation_left_by_a_crash_before_the_commit_is_pruned_by_the_next_write(
        store: FileKeyStore, master: MasterKey) -> None:
    # A kill -9 after the new generation's rename but before the master file's: simulate it by
    # rotating without a master file and restoring the old generation by hand.
    orphan_master = MasterKey.generate()
    old_gen = store.directory / f"gen-{master.key_id}"
    backup = store.directory / "backup"
    shutil.copytree(old_gen, backup)
    store.rotate_master(orphan_master)
    backup.rename(old_gen)
    assert len(list(store.directory.glob("gen-*"))) == 2
    survivor = FileKeyStore(store.directory, master)
    survivor.rotate("shhq", now=NOW)
    assert [p.name for p in store.directory.glob("gen-*")] == [f"gen-{master.key_id}"]
    assert [i.version for i in survivor.versions("shhq")] == [1, 2]


def test_master_rotation_to_the_same_key_is_refused(store: FileKeyStore, master: MasterKey) -> None:
    with pytest.raises(MasterKeyError, match="is the current one"):
        store.rotate_master(MasterKey(master.get_secret_value()))


# ------------------------------------------------------------------ nothing secret prints


def test_master_key_cannot_print_or_pickle(master: MasterKey) -> None:
    for text in (repr(master), str(master), f"{master}", repr([master]), repr({"k": master})):
        assert text.count("MasterKey(<redacted>)") == 1
        for secret in _secrets(master):
            assert secret not in text
    with pytest.raises(TypeError):
        pickle.dumps(master)
    assert not hasattr(master, "__dict__")


def test_no_secret_in_any_error_message_or_repr(tmp_path: Path, store: FileKeyStore, master: MasterKey) -> None:
    private = store._open("genebody", 1)[1].private_bytes_raw()
    secrets = _secrets(master) + [base64.b64encode(private).decode(), private.hex()]
    texts = [repr(store), repr(store.versions("genebody")), repr(store.open_header("genebody", _header(
        _encrypt_to(store, "genebody", b"x"))))]
    rec = _record(store, master, "genebody")
    errors: list[GovernanceError] = []
    for attempt in (
        lambda: FileKeyStore(store.directory, MasterKey.generate()).datasets(),
        lambda: MasterKey.from_env({"GOVERNANCE_MASTER_KEY": base64.b64encode(master.get_secret_value())[:-4].decode()}),
        lambda: store.rotate_master(master),
    ):
        with pytest.raises(GovernanceError) as err:
            attempt()
        errors.append(err.value)
    body = json.loads(rec.read_text())
    body["dataset"] = "shhq"
    _record(store, master, "shhq").write_text(json.dumps(body))
    with pytest.raises(KeyRecordError) as err2:
        FileKeyStore(store.directory, master).public_key("shhq")
    errors.append(err2.value)
    for e in errors:
        assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__)  # no chained secret
        texts += [str(e), repr(e)]
    for text in texts:
        for secret in secrets:
            assert secret not in text, text


# ------------------------------------------------------------------ the CLI


def _govern(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "governance.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GOVERNANCE_")}
    env["GOVERNANCE_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_cli_keys_init_list_public_rotate_and_rotate_master(tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = _govern("keys", "init", env=cli_env)
    assert proc.returncode == 0, proc.stderr
    master_file = tmp_path / "data" / "master.key"
    assert master_file.stat().st_mode & 0o777 == 0o600
    assert "created, 0600" in proc.stdout and "genebody: key v1 created" in proc.stdout
    again = _govern("keys", "init", "--json", env=cli_env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created"] == [] and "genebody" in json.loads(again.stdout)["existing"]

    listed = json.loads(_govern("keys", "list", "--json", env=cli_env).stdout)
    assert {r["dataset"] for r in listed} == {"2k2k", "clonedperson", "genebody", "huge100k", "shhq"}
    assert all(r["version"] == 1 and r["current"] and len(r["fingerprint"]) == 64 for r in listed)

    public = _govern("keys", "public", "genebody", env=cli_env)
    assert public.returncode == 0, public.stderr
    pk = keys.parse_public_key(public.stdout)
    genebody = next(r for r in listed if r["dataset"] == "genebody")
    assert hashlib.sha256(pk.public_bytes_raw()).hexdigest() == genebody["fingerprint"]
    reference = pytest.importorskip("crypt4gh.keys")
    pub_file = tmp_path / "genebody.pub"
    pub_file.write_text(public.stdout)
    assert reference.get_public_key(str(pub_file)) == pk.public_bytes_raw()

    rotated = _govern("keys", "rotate", "genebody", "--no-reseal", "--json", env=cli_env)  # the keystore alone, no database
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["version"] == 2
    old_public = _govern("keys", "public", "genebody", "--version", "1", env=cli_env).stdout
    assert old_public == public.stdout

    before = master_file.read_bytes()
    listed_before = json.loads(_govern("keys", "list", "--json", env=cli_env).stdout)
    rm = _govern("keys", "rotate-master", env=cli_env)
    assert rm.returncode == 0, rm.stderr
    assert "re-sealed under a new master key" in rm.stdout
    assert master_file.read_bytes() != before and master_file.stat().st_mode & 0o777 == 0o600
    after = json.loads(_govern("keys", "list", "--json", env=cli_env).stdout)
    assert after == listed_before  # the same key pairs, only re-sealed
    assert len(after) == 6
    assert _govern("keys", "public", "genebody", "--version", "1", env=cli_env).stdout == public.stdout
    for out in (proc, again, rotated, rm):
        for secret in (before.decode().strip(), master_file.read_text().strip()):
            assert secret not in out.stdout + out.stderr


def test_cli_refuses_a_master_key_file_others_can_read(tmp_path: Path, cli_env: dict[str, str]) -> None:
    assert _govern("keys", "init", env=cli_env).returncode == 0
    master_file = tmp_path / "data" / "master.key"
    master_file.chmod(0o644)
    proc = _govern("keys", "list", env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: master key file {master_file} has mode 0644, so others may read it; "
                                        f"it must be 0600 or stricter (chmod 600 {master_file})"]


def test_cli_with_env_master_key_writes_no_key_file(tmp_path: Path, cli_env: dict[str, str]) -> None:
    old, new = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    env = cli_env | {"GOVERNANCE_MASTER_KEY": old}
    proc = _govern("keys", "init", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "from GOVERNANCE_MASTER_KEY" in proc.stdout
    assert not (tmp_path / "data" / "master.key").exists()
    refused = _govern("keys", "rotate-master", env=env)
    assert refused.returncode == 2 and "GOVERNANCE_NEW_MASTER_KEY" in refused.stderr
    rotated = _govern("keys", "rotate-master", env=env | {"GOVERNANCE_NEW_MASTER_KEY": new})
    assert rotated.returncode == 0, rotated.stderr
    assert _govern("keys", "list", env=env).returncode == 2  # the old key no longer opens the store
    listed = _govern("keys", "list", "--json", env=cli_env | {"GOVERNANCE_MASTER_KEY": new})
    assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 5
    for out in (proc, refused, rotated, listed):
        assert old not in out.stdout + out.stderr and new not in out.stdout + out.stderr


def test_cli_unknown_dataset_is_one_line_exit_4(cli_env: dict[str, str]) -> None:
    assert _govern("keys", "init", env=cli_env).returncode == 0
    proc = _govern("keys", "public", "nosuch", env=cli_env)
    assert proc.returncode == 4
    assert proc.stderr.startswith("error: dataset nosuch has no key") and len(proc.stderr.splitlines()) == 1


def test_now_is_kept_in_the_listing(tmp_path: Path, master: MasterKey) -> None:
    s = FileKeyStore(tmp_path / "k", master)
    when = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    s.create("genebody", now=when)
    assert FileKeyStore(tmp_path / "k", master).versions("genebody")[0].created == when
