"""Key release and gated reads through the real app and database (SQLite, and PostgreSQL where
configured): a header leaves only after a permit and only after its audit event is committed;
a revoked grant stops releases; another user's public key is not found; GET /v1/files serves
exactly the plaintext, whole or by range, to permitted callers only."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import insert

from governance.approvals import workflow
from governance.audit import store as audit
from governance.crypto import crypt4gh
from governance.crypto.crypt4gh import ExpectedFile
from governance.crypto.master import MasterKey
from governance.storage.tables import EncryptedFileRow
from governance.identity.roles import load_actor
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, OPERATOR, PURPOSE, add_approver, add_login, bearer

FILES_TABLE = EncryptedFileRow.__table__  # type: ignore[attr-defined]
SIZES = {  # multi-segment and boundary sizes, so ranges cross segments
    "train40/subject01/img_0001.jpg": 1,
    "train40/subject01/img_0002.jpg": 65_536,
    "train40/subject02/img_0001.jpg": 3 * 65_536 + 17,
    "train40/subject02/img_0002.jpg": 0,
}
EXTENDED = "extended370/seq001/img_0001.jpg"


def plaintext(path: str, size: int) -> bytes:
    """Deterministic, position-dependent bytes (a swapped or shifted segment shows)."""
    seed = hashlib.sha256(path.encode()).digest()
    out = bytearray()
    block = 0
    while len(out) < size:
        out += hashlib.sha256(seed + block.to_bytes(8, "little")).digest()
        block += 1
    return bytes(out[:size])


def setup_keystore(ws: Workspace, dataset: str = "genebody") -> None:
    """A master key file (0600) and a key pair for `dataset`."""
    ws.settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not ws.settings.master_key_path.exists():
        MasterKey.generate().create_file(ws.settings.master_key_path)
    if dataset not in ws.keystore.datasets():
        ws.keystore.create(dataset, now=NOW)


def ingest_file(ws: Workspace, dataset: str, path: str, data: bytes, *, subset: str) -> None:
    """What `govern ingest` records for one file: the payload below objects_dir, the header sealed
    to the dataset key in the manifest with size, sha256 and MAC-sequence digest."""
    out = io.BytesIO()
    info = crypt4gh.encrypt(io.BytesIO(data), out, recipients=[ws.keystore.public_key(dataset)])
    obj = f"{dataset}/{hashlib.sha256(path.encode()).hexdigest()}.c4gh"
    target = ws.settings.objects_dir / obj
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out.getvalue()[info.header_length:])
    version = ws.keystore.versions(dataset)[-1].version
    with ws.begin() as conn:
        conn.execute(insert(FILES_TABLE).values(
            dataset=dataset, path=path, subset=subset, size=info.size, sha256=info.sha256, mac_digest=info.mac_digest,
            segments=info.segments, header=base64.b64encode(info.header).decode(), key_version=version, object=obj,
            sources="[]", ingested_at=NOW.isoformat()))


def seed_files(ws: Workspace) -> dict[str, bytes]:
    """The four train40 files of SIZES and one extended370 file; resource -> plaintext."""
    setup_keystore(ws)
    plain: dict[str, bytes] = {}
    for path, size in [*SIZES.items(), (EXTENDED, 100)]:
        data = plaintext(path, size)
        ingest_file(ws, "genebody", path, data, subset=path.split("/")[0])
        plain[f"genebody:{path}"] = data
    return plain


def grant_train40(ws: Workspace, address: str) -> int:
    """Agreement, form and an approved request for genebody/train40; the grant id."""
    actor = load_actor(ws, address)
    workflow.accept_agreement(ws, actor=actor, now=NOW, email=address, dataset_id="genebody", version="seed-001", client="test")
    workflow.upload_form(ws, actor=actor, now=NOW, email=address, dataset_id="genebody", data=FORM_PDF)
    req = workflow.request_access(ws, actor=actor, now=NOW, email=address, dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="neural rendering of clothed humans")
    steward = add_approver(ws, f"steward{req.id}@sensetime.com", "genebody", organisation="sensetime")
    (grant,) = workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    return grant.id


def revoke(ws: Workspace, grant_id: int) -> None:
    workflow.revoke(ws, actor=OPERATOR, now=datetime.now(UTC), grant_id=grant_id, reason="licensor asked")


def register_key(client: Any, headers: dict[str, str], key: X25519PrivateKey) -> int:
    r = client.post("/v1/me/keys", headers=headers,
                    json={"key": base64.b64encode(key.public_key().public_bytes_raw()).decode(), "name": "laptop"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


@dataclass
class World:
    c: Any
    ws: Workspace
    plain: dict[str, bytes]
    alice: dict[str, str]
    bob: dict[str, str]
    alice_key: X25519PrivateKey
    alice_key_id: int
    bob_key_id: int


@pytest.fixture
def w(ws: Workspace, api: Any) -> World:
    plain = seed_files(ws)
    add_login(ws, "alice@ust.hk", organisation="hkust", site="clear-water-bay")
    add_login(ws, "bob@ust.hk", organisation="hkust", site="clear-water-bay")
    alice, bob = bearer(api, "alice@ust.hk"), bearer(api, "bob@ust.hk")
    alice_key = X25519PrivateKey.generate()
    return World(c=api, ws=ws, plain=plain, alice=alice, bob=bob, alice_key=alice_key,
                 alice_key_id=register_key(api, alice, alice_key), bob_key_id=register_key(api, bob, X25519PrivateKey.generate()))


TRAIN = [f"genebody:{p}" for p in SIZES]


def release(w: World, who: dict[str, str], key_id: int, **body: Any) -> Any:
    return w.c.post("/v1/keys/release", headers=who, json={"public_key_id": key_id, "purpose": ACADEMIC, **body})


def events(ws: Workspace, action: str) -> list[audit.AuditEvent]:
    with ws.connect() as conn:
        return [e for e in audit.events(conn) if e.action == action]


def test_no_grant_no_header_and_the_reasons_come_back(w: World) -> None:
    r = release(w, w.alice, w.alice_key_id, files=TRAIN)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["released"] == []
    assert [d["resource"] for d in body["denied"]] == TRAIN
    assert {tuple(x["code"] for x in d["decision"]["reasons"]) for d in body["denied"]} == {
        ("agreement_not_accepted", "signed_agreement_missing", "no_grant")}
    assert events(w.ws, "key.release") == []
    assert events(w.ws, "access.check")[-1].outcome == "denied"


def test_after_approval_headers_open_with_the_users_key_and_the_reference_tool(w: World) -> None:
    grant_train40(w.ws, "alice@ust.hk")
    r = release(w, w.alice, w.alice_key_id, files=[*TRAIN, f"genebody:{EXTENDED}", "genebody:train40/nope.jpg"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [f["resource"] for f in body["released"]] == TRAIN
    denied = {d["resource"]: [x["code"] for x in d["decision"]["reasons"]] for d in body["denied"]}
    assert denied == {f"genebody:{EXTENDED}": ["no_grant"], "genebody:train40/nope.jpg": ["unknown_resource"]}
    from crypt4gh import lib as ref_lib  # the reference implementation

    for f in body["released"]:
        header = base64.b64decode(f["header"])
        payload = (w.ws.settings.objects_dir / f["object"]).read_bytes()
        out = io.BytesIO()
        crypt4gh.decrypt(io.BytesIO(header + payload), out, reader=w.alice_key,
                         expected=ExpectedFile(size=f["size"], mac_digest=f["mac_digest"], sha256=f["sha256"]))
        assert out.getvalue() == w.plain[f["resource"]]
        ref_out = io.BytesIO()
        ref_lib.decrypt([(0, w.alice_key.private_bytes_raw(), None)], io.BytesIO(header + payload), ref_out)
        assert ref_out.getvalue() == w.plain[f["resource"]]
        assert hashlib.sha256(out.getvalue()).hexdigest() == f["sha256"]
    # A subset by name: every ingested file of it.
    r = release(w, w.alice, w.alice_key_id, subset="genebody/train40")
    assert sorted(f["resource"] for f in r.json()["released"]) == sorted(TRAIN)
    (first, second) = events(w.ws, "key.release")
    assert first.details["files"] == 4 and first.details["public_key"] == w.alice_key_id
    assert first.details["fingerprint"] == hashlib.sha256(w.alice_key.public_key().public_bytes_raw()).hexdigest()
    assert first.details["purpose"] == ACADEMIC and first.details["resources"] == TRAIN
    # SECURITY: no header, key or base64 of either in the audit record
    text = json.dumps(first.details)
    assert all(f["header"][:40] not in text for f in body["released"])


def test_revocation_stops_releases(w: World) -> None:
    grant = grant_train40(w.ws, "alice@ust.hk")
    assert len(release(w, w.alice, w.alice_key_id, files=TRAIN).json()["released"]) == 4
    revoke(w.ws, grant)
    body = release(w, w.alice, w.alice_key_id, files=TRAIN).json()
    assert body["released"] == []
    assert {d["decision"]["reasons"][0]["code"] for d in body["denied"]} == {"grant_revoked"}


def test_the_audit_event_commits_before_any_header_is_resealed(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant_train40(w.ws, "alice@ust.hk")
    order: list[str] = []
    real_append, real_reseal = audit.append, w.ws.keystore.reseal_headers

    def append(conn: Any, **kw: Any) -> Any:
        ev = real_append(conn, **kw)
        order.append(kw["action"])
        return ev

    def reseal(*a: Any, **kw: Any) -> Any:
        # By now the release event is committed: a fresh connection sees it.
        order.append(f"reseal after {[e.action for e in events(w.ws, 'key.release')]}")
        return real_reseal(*a, **kw)

    monkeypatch.setattr("governance.files.release.audit.append", append)
    monkeypatch.setattr(w.ws.keystore, "reseal_headers", reseal)
    assert len(release(w, w.alice, w.alice_key_id, files=TRAIN).json()["released"]) == 4
    assert order == ["key.release", "reseal after ['key.release']"]


def test_a_failing_audit_write_releases_nothing(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    grant_train40(w.ws, "alice@ust.hk")
    resealed: list[object] = []

    def broken(conn: Any, **kw: Any) -> Any:
        raise OSError("disk full")

    monkeypatch.setattr("governance.files.release.audit.append", broken)
    monkeypatch.setattr(w.ws.keystore, "reseal_headers", lambda *a, **kw: resealed.append(a) or [])
    r = release(w, w.alice, w.alice_key_id, files=TRAIN)
    assert r.status_code == 500 and "header" not in r.text and "released" not in r.text
    assert resealed == [] and events(w.ws, "key.release") == []
    # The same for a gated read: no audit, no plaintext.
    monkeypatch.setattr("governance.files.reading.audit.append", broken)
    r = w.c.get(f"/v1/files/genebody/{list(SIZES)[1]}", headers=w.alice, params={"purpose": ACADEMIC})
    assert r.status_code == 500 and w.plain[TRAIN[1]][:64] not in r.content


def test_the_failing_commit_itself_releases_nothing(w: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The append succeeds but the transaction cannot commit (the connection fails)."""
    grant_train40(w.ws, "alice@ust.hk")
    real_append = audit.append

    def append_then_break(conn: Any, **kw: Any) -> Any:
        ev = real_append(conn, **kw)
        conn.invalidate()  # the connection dies before COMMIT
        return ev

    monkeypatch.setattr("governance.files.release.audit.append", append_then_break)
    r = release(w, w.alice, w.alice_key_id, files=TRAIN)
    assert r.status_code == 500 and "released" not in r.text
    assert events(w.ws, "key.release") == []


def test_another_users_or_a_revoked_public_key_is_not_found(w: World) -> None:
    grant_train40(w.ws, "alice@ust.hk")
    r = release(w, w.alice, w.bob_key_id, files=TRAIN)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert w.c.delete(f"/v1/me/keys/{w.alice_key_id}", headers=w.alice).status_code == 200
    assert release(w, w.alice, w.alice_key_id, files=TRAIN).status_code == 404
    assert release(w, w.alice, 2_000_000, files=TRAIN).status_code == 404
    assert events(w.ws, "key.release") == []


def test_bad_release_requests_are_422(w: World) -> None:
    assert release(w, w.alice, w.alice_key_id).status_code == 422  # neither files nor subset
    assert release(w, w.alice, w.alice_key_id, files=TRAIN, subset="genebody/train40").status_code == 422
    assert release(w, w.alice, w.alice_key_id, files=["no-colon"]).status_code == 422
    assert release(w, w.alice, w.alice_key_id, files=[]).status_code == 422
    assert release(w, w.alice, w.alice_key_id, subset="genebody/nothing-here").status_code == 404
    assert w.c.post("/v1/keys/release", json={"public_key_id": 1, "purpose": ACADEMIC, "files": TRAIN}).status_code == 401


def test_get_files_serves_the_plaintext_whole_and_by_range(w: World) -> None:
    path = list(SIZES)[2]  # 3 segments and 17 bytes
    url, q = f"/v1/files/genebody/{path}", {"purpose": ACADEMIC}
    r = w.c.get(url, headers=w.alice, params=q)
    assert r.status_code == 403 and "no_grant" in r.json()["reasons"]
    grant_train40(w.ws, "alice@ust.hk")
    data = w.plain[f"genebody:{path}"]
    r = w.c.get(url, headers=w.alice, params=q)
    assert r.status_code == 200 and r.content == data and r.headers["accept-ranges"] == "bytes"
    for spec, (start, end) in {"bytes=0-0": (0, 0), "bytes=65530-65545": (65530, 65545), "bytes=100-": (100, len(data) - 1),
                               "bytes=-20": (len(data) - 20, len(data) - 1), "bytes=131072-999999": (131072, len(data) - 1),
                               "bytes=65536-131071": (65536, 131071)}.items():
        r = w.c.get(url, headers={**w.alice, "Range": spec}, params=q)
        assert r.status_code == 206, (spec, r.text)
        assert r.content == data[start:end + 1], spec
        assert r.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    for spec in ("bytes=999999-", "bytes=5-1", "bytes=0-1,5-6", "items=0-1", "bytes=-0"):
        r = w.c.get(url, headers={**w.alice, "Range": spec}, params=q)
        assert r.status_code == 416, spec
    empty = w.c.get(f"/v1/files/genebody/{list(SIZES)[3]}", headers=w.alice, params=q)
    assert empty.status_code == 200 and empty.content == b""
    assert w.c.get(f"/v1/files/genebody/{EXTENDED}", headers=w.alice, params=q).status_code == 403
    missing = w.c.get("/v1/files/genebody/train40/nope.jpg", headers=w.alice, params=q)
    assert missing.status_code == 403 and missing.json()["reasons"] == ["unknown_resource"]
    reads = events(w.ws, "file.read")
    assert len(reads) == 8 and reads[0].details["resource"] == f"genebody:{path}" and reads[0].details["range"] is None
    assert reads[1].details["range"] == [0, 0]


def test_a_tampered_payload_is_never_served(w: World) -> None:
    grant_train40(w.ws, "alice@ust.hk")
    path = list(SIZES)[2]
    with w.ws.connect() as conn:
        obj = conn.execute(FILES_TABLE.select().where(FILES_TABLE.c.path == path)).one().object
    target = w.ws.settings.objects_dir / obj
    blob = bytearray(target.read_bytes())
    seg = crypt4gh.CIPHER_SEGMENT_SIZE
    blob[:seg], blob[seg:2 * seg] = blob[seg:2 * seg], blob[:seg]  # swap two segments: each still authenticates
    target.write_bytes(bytes(blob))
    r = w.c.get(f"/v1/files/genebody/{path}", headers={**w.alice, "Range": "bytes=0-9"}, params={"purpose": ACADEMIC})
    assert r.status_code == 500 and w.plain[f"genebody:{path}"][:10] not in r.content
    target.write_bytes(bytes(blob[:-1]))  # truncated
    assert w.c.get(f"/v1/files/genebody/{path}", headers=w.alice, params={"purpose": ACADEMIC}).status_code == 500
    assert events(w.ws, "file.read") == []


def test_the_routes_are_documented_with_problem_responses(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    post = spec["paths"]["/v1/keys/release"]["post"]
    assert {"401", "404", "422", "500"} <= set(post["responses"])
    get = spec["paths"]["/v1/files/{dataset}/{path}"]["get"]
    assert {"200", "206", "403", "416"} <= set(get["responses"])
    assert "application/problem+json" in get["responses"]["416"]["content"]
