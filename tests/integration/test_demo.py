"""`govern demo` seeds every dataset in every request state, through the audited services."""

from __future__ import annotations

from datetime import timedelta

import pytest

from governance.approvals import state, workflow
from governance.audit import store as audit
from governance.demo import seed
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
