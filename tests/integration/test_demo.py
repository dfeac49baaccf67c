"""`govern demo` seeds every dataset in every request state, through the audited services."""

from __future__ import annotations

from datetime import timedelta

import pytest

from governance.approvals import state, workflow
from governance.audit import store as audit
from governance.demo import ADMIN, seed
from governance.errors import WorkflowError
from governance.identity.roles import load_actor
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, NOW, OPERATOR

FILE = "genebody:train40/subject01/img_0001.jpg"


def test_the_demo_holds_every_dataset_in_every_state_and_decides_as_its_story_says(ws: Workspace) -> None:
    summary = seed(ws, now=NOW)
    assert set(summary.requests) == {"huge100k", "genebody", "2k2k", "shhq", "clonedperson"}
    stored = workflow.list_requests(ws, actor=OPERATOR)
    for ds in summary.requests:
        states = {r.state for r in stored if r.dataset == ds}
        assert {"pending", "denied", "withdrawn"} <= states, ds
        if ds != "clonedperson":  # no terms: never approved
            assert "approved" in states, ds
    grants = workflow.list_grants(ws, actor=OPERATOR, now=NOW)
    assert {g.status for g in grants} == {"active", "revoked"}
    later = NOW + timedelta(minutes=1)

    def read(who: str, resource: str = FILE) -> tuple[str, ...]:
        return state.check(ws, email=who, resources=[resource], action="read", purpose=ACADEMIC, now=later).decisions[0].codes

    assert read("alice@ust.hk") == ()
    assert set(read("eve.hacker@gmail.com")) == {"email_not_institutional", "signed_agreement_missing", "no_grant"}
    assert read("dana@tuebingen.mpg.de") == ("grant_revoked",)  # mpg.de counts via the allow list
    assert read("ben@cs.ox.ac.uk", "shhq:SHHQ-1.0/images/000002.png") == ()  # hand signature confirmed
    assert "access_terminated" in read("chen@tsinghua.edu.cn", "shhq:preview/000001.png")
    steward = load_actor(ws, "steward@genebody.example")
    assert [r.dataset for r in workflow.list_requests(ws, actor=steward, state="pending")] == ["genebody"]
    assert audit.verify(ws.db, checkpoint_file=ws.settings.checkpoint_path,
                        key=audit.load_public_key(audit.public_key_path(ws.settings.audit_key_path))).ok
    with pytest.raises(WorkflowError, match="already holds users"):
        seed(ws, now=NOW)


def test_the_demo_files_are_ingested_encrypted_and_decrypt_to_their_source(ws: Workspace) -> None:
    """Every demo tree lands in the object store as Crypt4GH payloads, one per source file, and a
    header released to a registered key decrypts its payload to the source bytes."""
    import io

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from governance.crypto import crypt4gh
    from governance.crypto.keys import format_public_key
    from governance.demo_files import DEMO_TREE, FILES_DIR, demo_file_bytes, encrypt_demo, write_demo_files
    from governance.files import release
    from governance.identity import publickeys

    seed(ws, now=NOW)
    results = encrypt_demo(ws, actor=load_actor(ws, ADMIN), now=NOW, env={})
    assert {d: r.ingested for d, r in results.items()} == {d: len(p) for d, p in DEMO_TREE.items()}
    assert results["shhq"].subsets == {"1.0": 24, "preview": 5}
    assert (ws.settings.data_dir / FILES_DIR / "genebody/train40/subject01/img_0001.jpg").read_bytes() == \
        demo_file_bytes("genebody", "train40/subject01/img_0001.jpg")
    other = ws.settings.data_dir / "again"
    write_demo_files(other)  # deterministic: a second tree is byte-identical
    assert (other / "2k2k/train/00001/00001.png").read_bytes() == \
        (ws.settings.data_dir / FILES_DIR / "2k2k/train/00001/00001.png").read_bytes()
    later = NOW + timedelta(minutes=1)
    alice = load_actor(ws, "alice@ust.hk")
    secret = X25519PrivateKey.generate()
    key = publickeys.register_public_key(ws, actor=alice, now=later, key=format_public_key(secret.public_key()).decode(), name="t")
    out = release.release_keys(ws, actor=alice, now=later, public_key_id=key.id, purpose=ACADEMIC, files=[FILE])
    (got,) = out.released
    payload = (ws.settings.objects_dir / got.object).read_bytes()
    plain = io.BytesIO()
    crypt4gh.decrypt(io.BytesIO(got.header + payload), plain, reader=secret)
    assert plain.getvalue() == demo_file_bytes("genebody", FILE.split(":", 1)[1])
    denied = release.release_keys(ws, actor=alice, now=later, public_key_id=key.id, purpose=ACADEMIC, subset="2k2k/train")
    assert not denied.released and {c for d in denied.denied for c in d.decision.codes} == {"no_grant"}
