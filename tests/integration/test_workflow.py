"""Every workflow path through the real services and database (SQLite, and PostgreSQL where
GOVERNANCE_TEST_DATABASE_URL is set): requests, approvals, denials, withdrawals, revocation,
termination, agreements and forms, waivers, artefacts, roles, domain lists and audit."""

from __future__ import annotations

import hashlib
import shutil
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from governance.approvals import state, workflow
from governance.approvals.documents import blob_path, sniff
from governance.audit import store as audit
from governance.errors import ConflictError, ForbiddenError, NotFoundError, WorkflowError
from governance.identity import service as identity
from governance.identity.roles import Role, grant_role, set_domain
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, OPERATOR, PURPOSE, add_approver, add_user

TRAIN = "genebody:train40/subject01/img_0001.jpg"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 17 + b"\x00\x00\x00\x00IEND\xaeB`\x82"


def ready_researcher(ws: Workspace, address: str = "alice@ust.hk", organisation: str = "hkust"):  # type: ignore[no-untyped-def]
    """A verified institutional researcher with the GeneBody agreement accepted and form on file."""
    me = add_user(ws, address, organisation=organisation, site="clear-water-bay")
    workflow.accept_agreement(ws, actor=me, now=NOW, email=address, dataset_id="genebody", version="seed-001", client="test")
    workflow.upload_form(ws, actor=me, now=NOW, email=address, dataset_id="genebody", data=FORM_PDF)
    return me


def read(ws: Workspace, who: str = "alice@ust.hk", resource: str = TRAIN, *, at=NOW + timedelta(hours=1), purpose: str = ACADEMIC):  # type: ignore[no-untyped-def]
    return state.check(ws, email=who, resources=[resource], action="read", purpose=purpose, now=at).decisions[0]


def events(ws: Workspace) -> list[audit.AuditEvent]:
    with ws.connect() as conn:
        return list(audit.events(conn))


def test_request_approve_check_revoke_check(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="neural rendering of clothed humans")
    assert req.state == "pending"
    assert read(ws).codes == ("no_grant",)
    grants = workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    assert [g.scope for g in grants] == ["genebody/train40"]
    assert grants[0].expires == (NOW + timedelta(days=365)).isoformat()  # the policy's default validity
    assert read(ws).permitted
    workflow.revoke(ws, actor=steward, now=NOW + timedelta(hours=2), grant_id=grants[0].id, reason="licensor asked")
    later = read(ws, at=NOW + timedelta(hours=3))
    assert later.codes == ("grant_revoked",)
    actions = [e.action for e in events(ws)]
    for expected in ("request.create", "request.approve", "grant.revoke", "access.check"):
        assert expected in actions
    denial = [e for e in events(ws) if e.action == "access.check"][-1]
    assert denial.outcome == "denied" and denial.reasons == ("grant_revoked",) and denial.details["resources"] == [TRAIN]


def test_a_grant_expires_at_its_policy_default(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id, days=30)
    assert read(ws, at=NOW + timedelta(days=29)).permitted
    assert read(ws, at=NOW + timedelta(days=30)).codes == ("grant_expired",)
    with pytest.raises(WorkflowError, match="at most 365 days"):
        req2 = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody",
                                       subsets=["extended370"], purpose=PURPOSE, project="p")
        workflow.approve(ws, actor=steward, now=NOW, request_id=req2.id, days=400)
    assert workflow.list_requests(ws, actor=steward, state="pending")[0].id == req2.id  # nothing half-written


def test_test10_is_approved_automatically_by_the_policy(ws: Workspace) -> None:
    me = add_user(ws, "bob@gmail.com")
    workflow.accept_agreement(ws, actor=me, now=NOW, email="bob@gmail.com", dataset_id="genebody", version="seed-001", client="t")
    req = workflow.request_access(ws, actor=me, now=NOW, email="bob@gmail.com", dataset_id="genebody", subsets=["test10"],
                                  purpose=PURPOSE, project="evaluation only")
    assert req.state == "approved" and req.decided_by == workflow.AUTOMATIC
    assert read(ws, "bob@gmail.com", "genebody:test10/s1/a.jpg").permitted
    # Train40 is never automatic, and a free-mail address does not count as institutional.
    req2 = workflow.request_access(ws, actor=me, now=NOW, email="bob@gmail.com", dataset_id="genebody",
                                   subsets=["test10", "train40"], purpose=PURPOSE, project="p")
    assert req2.state == "pending"


def test_deny_needs_a_reason_and_grants_nothing(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    with pytest.raises(WorkflowError, match="reason"):
        workflow.deny(ws, actor=steward, now=NOW, request_id=req.id, reason="  ")
    denied = workflow.deny(ws, actor=steward, now=NOW, request_id=req.id, reason="project outside research")
    assert denied.state == "denied" and denied.reason == "project outside research"
    assert read(ws).codes == ("no_grant",)
    with pytest.raises(ConflictError, match="already denied by steward@sensetime.com"):
        workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)


def test_only_the_requester_withdraws_and_only_while_pending(ws: Workspace) -> None:
    me = ready_researcher(ws)
    other = add_user(ws, "eve@ust.hk", organisation="hkust")
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    # Someone else's request does not exist for them (ids cannot be probed); nothing changes.
    with pytest.raises(NotFoundError, match=f"no request with id {req.id}"):
        workflow.withdraw(ws, actor=other, now=NOW, request_id=req.id)
    assert workflow.withdraw(ws, actor=me, now=NOW, request_id=req.id).state == "withdrawn"
    with pytest.raises(ConflictError, match="already withdrawn"):
        workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)


def test_roles_are_checked_on_every_decision(ws: Workspace) -> None:
    me = ready_researcher(ws)
    add_approver(ws, "steward@sensetime.com", "genebody")
    shhq_steward = add_approver(ws, "steward@shlab.org", "shhq")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    with pytest.raises(ForbiddenError, match="alice@ust.hk is not an approver for genebody"):
        workflow.approve(ws, actor=me, now=NOW, request_id=req.id)
    # Another dataset's steward cannot see the request at all, so it is not found for them.
    with pytest.raises(NotFoundError, match=f"no request with id {req.id}"):
        workflow.approve(ws, actor=shhq_steward, now=NOW, request_id=req.id)
    with pytest.raises(NotFoundError):
        workflow.deny(ws, actor=shhq_steward, now=NOW, request_id=req.id, reason="not mine")
    assert workflow.get_request(ws, actor=me, request_id=req.id).state == "pending"
    with pytest.raises(ForbiddenError):
        workflow.request_access(ws, actor=shhq_steward, now=NOW, email="alice@ust.hk", dataset_id="genebody",
                                subsets=["train40"], purpose=PURPOSE, project="on someone else's behalf")
    # An approver cannot approve their own request.
    grant_role(ws, actor=OPERATOR, now=NOW, email="alice@ust.hk", role=Role.APPROVER, dataset="genebody",
               datasets=ws.policies.datasets)
    from governance.identity.roles import load_actor

    with pytest.raises(ForbiddenError, match="own request"):
        workflow.approve(ws, actor=load_actor(ws, "alice@ust.hk"), now=NOW, request_id=req.id)
    assert workflow.list_requests(ws, actor=shhq_steward) == []  # not their dataset


def test_two_approvers_at_once_exactly_one_wins(ws: Workspace) -> None:
    me = ready_researcher(ws)
    stewards = [add_approver(ws, f"steward{i}@sensetime.com", "genebody") for i in range(2)]
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    barrier = threading.Barrier(2)
    outcomes: list[object] = [None, None]

    def decide(i: int) -> None:
        barrier.wait()
        try:
            if i == 0:
                outcomes[i] = workflow.approve(ws, actor=stewards[i], now=NOW, request_id=req.id)
            else:
                outcomes[i] = workflow.deny(ws, actor=stewards[i], now=NOW, request_id=req.id, reason="no")
        except ConflictError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(conflicts) == 1, outcomes
    assert "already" in str(conflicts[0]) and "nothing was changed" in str(conflicts[0])
    decided = [e for e in events(ws) if e.action in ("request.approve", "request.deny")]
    assert len(decided) == 1
    grants = workflow.list_grants(ws, actor=OPERATOR, now=NOW)
    assert len(grants) == (1 if decided[0].action == "request.approve" else 0)
    assert audit.verify(ws.db).ok


def test_a_revocation_committed_between_two_checks_is_seen_by_the_second(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    grant = workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)[0]
    files = [f"genebody:train40/subject{i:02d}/img_{j:04d}.jpg" for i in range(3) for j in range(100)]
    first = state.check(ws, email="alice@ust.hk", resources=files, action="read", purpose=ACADEMIC, now=NOW + timedelta(hours=1))
    assert first.denied == 0
    # The first workspace now holds alice compiled at the current state version.
    assert ws.subjects.get("alice@ust.hk", _version(ws)) is not None
    # Another workspace (as another replica would) revokes; the version moves, the entry lapses.
    other = Workspace(ws.settings, db=ws.db)
    workflow.revoke(other, actor=steward, now=NOW + timedelta(hours=1), grant_id=grant.id, reason="terminated contract")
    second = state.check(ws, email="alice@ust.hk", resources=files, action="read", purpose=ACADEMIC, now=NOW + timedelta(hours=1))
    assert second.denied == len(files)
    assert {d.codes for d in second.decisions} == {("grant_revoked",)}
    with pytest.raises(ConflictError, match="already revoked by steward@sensetime.com"):
        workflow.revoke(ws, actor=steward, now=NOW, grant_id=grant.id, reason="again")


def _version(ws: Workspace) -> int:
    from governance.storage import version

    with ws.connect() as conn:
        return version.current(conn)


def test_a_subject_is_compiled_once_per_state_version_and_again_after_any_change(ws: Workspace) -> None:
    me = ready_researcher(ws)
    files = ["genebody:train40/subject01/img_0001.jpg"]
    state.check(ws, email="alice@ust.hk", resources=files, action="read", purpose=ACADEMIC, now=NOW)
    at = _version(ws)
    kept = ws.subjects.get("alice@ust.hk", at)
    assert kept is not None
    # A denied check audits, but changes no state: the version and the compiled subject stay.
    state.check(ws, email="alice@ust.hk", resources=files, action="read", purpose=ACADEMIC, now=NOW)
    assert _version(ws) == at and ws.subjects.get("alice@ust.hk", at) is kept
    # Any state change, even someone else's, moves the version: the next check recompiles.
    workflow.accept_agreement(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="2k2k", version=ws.policies.datasets["2k2k"].version or "",
                              client="test")
    assert _version(ws) == at + 1 and ws.subjects.get("alice@ust.hk", at + 1) is None
    state.check(ws, email="alice@ust.hk", resources=files, action="read", purpose=ACADEMIC, now=NOW)
    assert ws.subjects.get("alice@ust.hk", at + 1) is not kept


def test_termination_of_a_user_and_of_an_organisation(ws: Workspace) -> None:
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    people = [ready_researcher(ws, f"r{i}@ust.hk") for i in range(3)]
    outsider = ready_researcher(ws, "x@ox.ac.uk", organisation="oxford")
    for who in [*people, outsider]:
        req = workflow.request_access(ws, actor=who, now=NOW, email=who.email or "", dataset_id="genebody",
                                      subsets=["train40", "extended370"], purpose=PURPOSE, project="p")
        workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    one = workflow.terminate(ws, actor=steward, now=NOW, dataset_id="genebody", reason="breach notice", email="r0@ust.hk")
    assert one.grants_revoked == 2
    assert "access_terminated" in read(ws, "r0@ust.hk").codes
    assert read(ws, "r1@ust.hk").permitted
    org = workflow.terminate(ws, actor=steward, now=NOW, dataset_id="genebody", reason="licence ended", organisation="hkust")
    assert org.grants_revoked == 4  # r1 and r2, two subsets each (r0's were already revoked)
    assert "access_terminated" in read(ws, "r2@ust.hk").codes
    assert read(ws, "x@ox.ac.uk").permitted
    # A grant made after the termination does not restore access.
    req = workflow.request_access(ws, actor=people[1], now=NOW, email="r1@ust.hk", dataset_id="genebody",
                                  subsets=["train40"], purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    assert "access_terminated" in read(ws, "r1@ust.hk").codes
    with pytest.raises(WorkflowError, match="either one user or one organisation"):
        workflow.terminate(ws, actor=steward, now=NOW, dataset_id="genebody", reason="r")
    with pytest.raises(NotFoundError):
        workflow.terminate(ws, actor=steward, now=NOW, dataset_id="genebody", reason="r", organisation="nowhere")


def test_agreement_versions_and_a_new_text_makes_acceptances_outdated(ws: Workspace, tmp_path: Path) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    with pytest.raises(WorkflowError, match="not the current GeneBody agreement"):
        workflow.accept_agreement(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", version="v0", client="t")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    assert read(ws).permitted
    # The licensor publishes a new text: a copy of the policies with the agreement changed.
    root = Path(ws.policies.root)
    changed = tmp_path / "policies"
    shutil.copytree(root, changed)
    text_file = changed / "texts" / "genebody.md"
    text_file.write_bytes(text_file.read_bytes() + b"\nAmendment: keep a log of every copy.\n")
    policy = changed / "datasets" / "genebody.yaml"
    old_sha = ws.policies.datasets["genebody"].sha256
    assert old_sha is not None
    new_sha = hashlib.sha256(text_file.read_bytes()).hexdigest()
    policy.write_text(policy.read_text().replace(old_sha, new_sha).replace('version: "seed-001"', 'version: "seed-001-a"'))
    upgraded = Workspace(ws.settings, db=ws.db, policies=changed)
    assert set(read(upgraded).codes) == {"agreement_outdated", "signed_agreement_missing"}
    workflow.accept_agreement(upgraded, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", version=new_sha, client="t")
    assert read(upgraded).codes == ("signed_agreement_missing",)  # the form was for the old text
    workflow.upload_form(upgraded, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", data=PNG)
    assert read(upgraded).permitted


def test_forms_are_checked_by_content_and_stored_by_sha256(ws: Workspace) -> None:
    me = add_user(ws, "alice@ust.hk", organisation="hkust")
    for bad, message in [(b"", "empty"), (b"MZ\x90\x00 not a pdf", "not a PDF, PNG or JPEG"),
                         (b"%PDF-1.4 but cut off", "not a PDF"), (b"%PDF-" + b"x" * (10 * 1024 * 1024) + b"%%EOF", "limit")]:
        with pytest.raises(WorkflowError, match=message):
            workflow.upload_form(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", data=bad)
    with pytest.raises(WorkflowError, match="needs no signed form"):
        workflow.upload_form(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="2k2k", data=FORM_PDF)
    rec = workflow.upload_form(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", data=FORM_PDF)
    assert rec.document == hashlib.sha256(FORM_PDF).hexdigest()
    assert blob_path(ws.documents_dir, rec.document).read_bytes() == FORM_PDF
    assert sniff(b"\xff\xd8\xff\xe0JFIF....\xff\xd9") == "image/jpeg" and sniff(PNG) == "image/png"
    with ws.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM signed_forms")).scalar() == 1  # the refusals wrote nothing


def test_a_hand_signed_agreement_counts_only_once_an_approver_confirms_it(ws: Workspace) -> None:
    me = add_user(ws, "alice@ust.hk", organisation="hkust")
    steward = add_approver(ws, "steward@shlab.org", "shhq")
    shhq = ws.policies.datasets["shhq"]
    workflow.accept_agreement(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="shhq", version=shhq.version or "", client="t")
    form = workflow.upload_form(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="shhq", data=FORM_PDF)
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="shhq", subsets=["1.0"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    resource = "shhq:SHHQ-1.0/images/0001.png"
    ws_path = ws.policies.datasets["shhq"].find_subset("SHHQ-1.0/images/0001.png")
    assert ws_path is not None
    assert "signed_agreement_missing" in read(ws, resource=resource).codes
    with pytest.raises(ForbiddenError):
        workflow.confirm_signature(ws, actor=me, now=NOW, form_id=form.id)
    workflow.confirm_signature(ws, actor=steward, now=NOW, form_id=form.id)
    assert "signed_agreement_missing" not in read(ws, resource=resource).codes
    with pytest.raises(ConflictError):
        workflow.confirm_signature(ws, actor=steward, now=NOW, form_id=form.id)


def test_a_waiver_with_its_document_lifts_only_the_owners_waivable_rule(ws: Workspace) -> None:
    me = add_user(ws, "alice@ust.hk", organisation="hkust")
    steward = add_approver(ws, "steward@ioys.co.kr", "2k2k")
    workflow.accept_agreement(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="2k2k",
                              version=ws.policies.datasets["2k2k"].version or "", client="t")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="2k2k", subsets=["train"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)

    def export() -> tuple[str, ...]:
        return state.check(ws, email="alice@ust.hk", resources=["2k2k:train/0001.ply"], action="export", purpose=ACADEMIC,
                           destination="third_party", now=NOW + timedelta(hours=1)).decisions[0].codes

    assert "destination_forbidden" in export() or "action_forbidden" in export()
    with pytest.raises(WorkflowError, match="not waivable"):
        workflow.record_waiver(ws, actor=steward, now=NOW, terms="2k2k", action="export", rule="no-further-copies",
                               email="alice@ust.hk", destination="organisation", document=FORM_PDF)
    with pytest.raises(WorkflowError, match="not a PDF"):
        workflow.record_waiver(ws, actor=steward, now=NOW, terms="2k2k", action="export", email="alice@ust.hk",
                               destination="third_party", document=b"just text")
    waiver = workflow.record_waiver(ws, actor=steward, now=NOW, terms="2k2k", action="export",
                                    rule="no-third-party-without-permission", email="alice@ust.hk",
                                    destination="third_party", document=FORM_PDF, expires=NOW + timedelta(days=90))
    assert export() == ()
    workflow.revoke_waiver(ws, actor=steward, now=NOW, waiver_id=waiver.id)
    assert export() != ()


def test_artefacts_are_registered_with_lineage_and_cycles_are_refused(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    art = workflow.register_artefact(ws, actor=me, now=NOW, ident="nerf-1", inputs=["genebody/train40"], description="NeRF")
    assert art.owner == "alice@ust.hk"
    workflow.register_artefact(ws, actor=me, now=NOW, ident="distilled", inputs=["artefact:nerf-1"], description="small")
    d = state.check(ws, email="alice@ust.hk", resources=["artefact:distilled"], action="read", purpose=ACADEMIC,
                    now=NOW + timedelta(hours=1)).decisions[0]
    assert d.permitted
    with pytest.raises(WorkflowError, match="cycle"):
        workflow.register_artefact(ws, actor=me, now=NOW, ident="loop", inputs=["artefact:loop"], description="x")
    with pytest.raises(WorkflowError, match="unknown artefact"):
        workflow.register_artefact(ws, actor=me, now=NOW, ident="orphan", inputs=["artefact:nope"], description="x")
    with pytest.raises(WorkflowError, match="no subset 'train41'"):
        workflow.register_artefact(ws, actor=me, now=NOW, ident="typo", inputs=["genebody/train41"], description="x")
    with pytest.raises(ConflictError, match="already registered"):
        workflow.register_artefact(ws, actor=me, now=NOW, ident="nerf-1", inputs=["genebody/train40"], description="x")
    assert workflow.lineage(ws, "distilled").inputs == ["artefact:nerf-1"]


def test_origin_tags_bring_deepfashion_terms_to_shhq_files(ws: Workspace) -> None:
    with pytest.raises(WorkflowError, match="does not list"):
        workflow.tag_origins(ws, actor=OPERATOR, now=NOW, dataset_id="shhq", tags={"SHHQ-1.0/images/0001.png": ["pexels-x"]})
    shhq = ws.policies.datasets["shhq"]
    sub = shhq.find_subset("SHHQ-1.0/images/0001.png")
    assert sub is not None and "deepfashion" in sub.file_sources
    assert workflow.tag_origins(ws, actor=OPERATOR, now=NOW, dataset_id="shhq",
                                tags={"SHHQ-1.0/images/0001.png": ["deepfashion"], "SHHQ-1.0/images/0002.png": []}) == 2
    me = add_user(ws, "alice@ust.hk", organisation="hkust")
    d = state.check(ws, email="alice@ust.hk", resources=["shhq:SHHQ-1.0/images/0001.png", "shhq:SHHQ-1.0/images/0002.png"],
                    action="read", purpose=ACADEMIC, now=NOW)
    assert not any("origin_unrecorded" in [n.code for n in x.notes] for x in d.decisions)
    del me


def test_domain_lists_change_who_counts_as_institutional(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    assert read(ws).permitted
    with pytest.raises(ForbiddenError):
        set_domain(ws, actor=steward, now=NOW, domain="ust.hk", listed="deny")
    set_domain(ws, actor=OPERATOR, now=NOW, domain="ust.hk", listed="deny")
    assert read(ws).codes == ("email_not_institutional",)
    set_domain(ws, actor=OPERATOR, now=NOW, domain="ust.hk", listed=None)
    assert read(ws).permitted


def test_a_changed_address_must_be_verified_again_and_a_disabled_account_is_denied(ws: Workspace) -> None:
    me = ready_researcher(ws)
    steward = add_approver(ws, "steward@sensetime.com", "genebody")
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="genebody", subsets=["train40"],
                                  purpose=PURPOSE, project="p")
    workflow.approve(ws, actor=steward, now=NOW, request_id=req.id)
    identity.change_email(engine=ws, now=NOW, user_id=me.user_id or "", email="alice@connect.ust.hk", actor=me.label)
    assert "email_unverified" in read(ws, "alice@connect.ust.hk").codes
    identity.set_disabled(engine=ws, now=NOW, email="alice@connect.ust.hk", disabled=True, actor=OPERATOR.label)
    assert read(ws, "alice@connect.ust.hk").codes == ("account_disabled",)


def test_bad_input_is_refused_with_one_clear_sentence_and_nothing_written(ws: Workspace) -> None:
    me = ready_researcher(ws)
    before = len(events(ws))
    cases = [
        (dict(dataset_id="genebody", subsets=["train41"], purpose=PURPOSE, project="p"), "genebody has no subset 'train41'"),
        (dict(dataset_id="nope", subsets=[], purpose=PURPOSE, project="p"), "unknown dataset 'nope'"),
        (dict(dataset_id="genebody", subsets=["train40"], purpose="fun", project="p"), "unknown purpose 'fun'"),
        (dict(dataset_id="genebody", subsets=["train40"], purpose=PURPOSE, project=" "), "project description is required"),
    ]
    for kwargs, message in cases:
        with pytest.raises(WorkflowError, match=message):
            workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError, match="no user with the address nobody@ust.hk"):
        state.check(ws, email="nobody@ust.hk", resources=[TRAIN], action="read", purpose=ACADEMIC, now=NOW)
    with pytest.raises(NotFoundError):
        workflow.approve(ws, actor=OPERATOR, now=NOW, request_id=999)
    assert len(events(ws)) == before
    # ClonedPerson has no terms: it can be asked for, never granted.
    req = workflow.request_access(ws, actor=me, now=NOW, email="alice@ust.hk", dataset_id="clonedperson", subsets=[],
                                  purpose=PURPOSE, project="re-identification")
    with pytest.raises(WorkflowError, match="ClonedPerson has no recorded terms"):
        workflow.approve(ws, actor=OPERATOR, now=NOW, request_id=req.id)
    assert workflow.list_requests(ws, actor=OPERATOR, dataset_id="clonedperson")[0].state == "pending"


def test_every_state_change_is_audited_and_checkpoints_are_signed_every_n_events(ws: Workspace) -> None:
    test_request_approve_check_revoke_check(ws)
    assert ws.settings.checkpoint_path.exists()
    key = audit.load_public_key(audit.public_key_path(ws.settings.audit_key_path))
    result = audit.verify(ws.db, checkpoint_file=ws.settings.checkpoint_path, key=key)
    assert result.ok and result.events >= 10
    with ws.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM audit_checkpoints")).scalar()
    assert count == result.events // ws.settings.checkpoint_every
    assert ws.checkpoint_failures == 0
