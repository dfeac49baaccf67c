"""A stateful property test of the approval workflow through the real services and database
(SQLite, and PostgreSQL where GOVERNANCE_TEST_DATABASE_URL is set).

Hypothesis drives one or two researchers and a GeneBody approver through requests, approvals,
denials, withdrawals, revocations, terminations and the passing of time, while a plain model
tracks which grants are approved, not revoked, not expired and not terminated. The invariant
under test: no read without an approved grant, none after revocation, expiry or termination;
and every read that the model allows is permitted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from governance.approvals import state, workflow
from governance.audit import store
from governance.errors import ConflictError, WorkflowError
from governance.identity.roles import Actor
from governance.workspace import Workspace
from tests.integration.helpers import ACADEMIC, FORM_PDF, NOW, PURPOSE, add_approver, add_user

TRAIN = "genebody:train40/subject01/img_0001.jpg"
DEFAULT_DAYS = 365  # policies/datasets/genebody.yaml: grant_days of the default requirement
SECOND = timedelta(seconds=1)

# Each example registers fresh researchers in the same database, so addresses must never repeat
# within a pytest run (the counter is shared by both backends, which is harmless).
_serial = itertools.count(1)


@dataclass
class Req:
    user: str
    state: str  # pending | approved | denied | withdrawn


@dataclass
class Grant:
    user: str
    expires: datetime
    revoked: bool = False

    def active(self, now: datetime) -> bool:
        return not self.revoked and now < self.expires


def make_machine(ws: Workspace, approver: Actor) -> type[RuleBasedStateMachine]:
    """A state machine class bound to one workspace (hypothesis machines take no fixtures)."""

    class ApprovalWorkflow(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.now = NOW
            self.actors: dict[str, Actor] = {}
            self.requests: dict[int, Req] = {}
            self.grants: dict[int, Grant] = {}
            self.terminated: set[str] = set()

        # ------------------------------------------------------------ set-up

        @initialize(count=st.integers(1, 2))
        def researchers(self, count: int) -> None:
            for _ in range(count):
                address = f"r{next(_serial)}@ust.hk"
                me = add_user(ws, address, organisation="hkust")
                workflow.accept_agreement(ws, actor=me, now=NOW, email=address, dataset_id="genebody", version="seed-001",
                                          client="stateful-test")
                workflow.upload_form(ws, actor=me, now=NOW, email=address, dataset_id="genebody", data=FORM_PDF)
                self.actors[address] = me

        # ------------------------------------------------------------ helpers

        def users(self) -> list[str]:
            return sorted(self.actors)

        def in_state(self, wanted: str) -> list[int]:
            return sorted(i for i, r in self.requests.items() if r.state == wanted)

        def decided(self) -> list[int]:
            return sorted(i for i, r in self.requests.items() if r.state != "pending")

        def unrevoked(self) -> list[int]:
            return sorted(i for i, g in self.grants.items() if not g.revoked)

        def revoked(self) -> list[int]:
            return sorted(i for i, g in self.grants.items() if g.revoked)

        def expected_codes(self, user: str) -> set[str]:
            """The reasons a read of Train40 by `user` at the model's time must be denied for."""
            codes: set[str] = set()
            if user in self.terminated:
                codes.add("access_terminated")
            held = [g for g in self.grants.values() if g.user == user]
            if not held:
                codes.add("no_grant")
            elif not any(g.active(self.now) for g in held):
                if any(g.revoked for g in held):
                    codes.add("grant_revoked")
                if any(not g.revoked and self.now >= g.expires for g in held):
                    codes.add("grant_expired")
            return codes

        def snapshot(self) -> tuple[list[tuple[int, str]], list[tuple[int, str, str | None, str | None]]]:
            """What the service lists for our researchers: (id, state) of every request, and
            (id, status, revoked_at, expires) of every grant at the model's time."""
            reqs, grants = [], []
            for user in self.users():
                reqs += [(r.id, r.state) for r in workflow.list_requests(ws, actor=approver, email=user)]
                grants += [(g.id, g.status, g.revoked_at, g.expires)
                           for g in workflow.list_grants(ws, actor=approver, now=self.now, email=user)]
            return sorted(reqs), sorted(grants)

        # ------------------------------------------------------------ requests

        @precondition(lambda self: len(self.in_state("pending")) < 3)  # a backlog adds nothing but time
        @rule(data=st.data())
        def request(self, data: st.DataObject) -> None:
            user = data.draw(st.sampled_from(self.users()), label="user")
            rec = workflow.request_access(ws, actor=self.actors[user], now=self.now, email=user, dataset_id="genebody",
                                          subsets=["train40"], purpose=PURPOSE, project="neural rendering of clothed humans")
            assert rec.state == "pending", rec
            assert rec.id not in self.requests
            self.requests[rec.id] = Req(user=user, state="pending")

        @precondition(lambda self: self.in_state("pending"))
        @rule(data=st.data(), days=st.none() | st.integers(1, DEFAULT_DAYS))
        def approve(self, data: st.DataObject, days: int | None) -> None:
            rid = data.draw(st.sampled_from(self.in_state("pending")), label="request")
            made = workflow.approve(ws, actor=approver, now=self.now, request_id=rid, days=days)
            valid = timedelta(days=days if days is not None else DEFAULT_DAYS)
            assert [g.scope for g in made] == ["genebody/train40"], made
            g = made[0]
            assert g.purpose == PURPOSE and g.request_id == rid and g.status == "active", g
            assert g.starts == self.now.isoformat() and g.expires == (self.now + valid).isoformat(), g
            assert g.id not in self.grants
            self.requests[rid].state = "approved"
            self.grants[g.id] = Grant(user=self.requests[rid].user, expires=self.now + valid)

        @precondition(lambda self: self.in_state("pending"))
        @rule(data=st.data(), days=st.integers(DEFAULT_DAYS + 1, 5 * DEFAULT_DAYS))
        def approve_for_too_long(self, data: st.DataObject, days: int) -> None:
            """Longer than the policy allows: refused, and the request stays pending with no grant."""
            rid = data.draw(st.sampled_from(self.in_state("pending")), label="request")
            before = self.snapshot()
            try:
                workflow.approve(ws, actor=approver, now=self.now, request_id=rid, days=days)
            except WorkflowError as exc:
                assert "at most 365 days" in str(exc), exc
            else:
                raise AssertionError(f"approving request {rid} for {days} days was accepted")
            assert self.snapshot() == before

        @precondition(lambda self: self.in_state("pending"))
        @rule(data=st.data(), reason=st.sampled_from(["project outside research", "form illegible", "wrong subset"]))
        def deny(self, data: st.DataObject, reason: str) -> None:
            rid = data.draw(st.sampled_from(self.in_state("pending")), label="request")
            rec = workflow.deny(ws, actor=approver, now=self.now, request_id=rid, reason=reason)
            assert rec.state == "denied" and rec.reason == reason and rec.decided_by == approver.label, rec
            self.requests[rid].state = "denied"

        @precondition(lambda self: self.in_state("pending"))
        @rule(data=st.data())
        def withdraw(self, data: st.DataObject) -> None:
            rid = data.draw(st.sampled_from(self.in_state("pending")), label="request")
            requester = self.actors[self.requests[rid].user]
            rec = workflow.withdraw(ws, actor=requester, now=self.now, request_id=rid)
            assert rec.state == "withdrawn", rec
            self.requests[rid].state = "withdrawn"

        @precondition(lambda self: self.decided())
        @rule(data=st.data(), how=st.sampled_from(["approve", "deny", "withdraw"]))
        def decide_again(self, data: st.DataObject, how: str) -> None:
            """A decided request cannot be decided again, and the refusal changes nothing."""
            rid = data.draw(st.sampled_from(self.decided()), label="request")
            before = self.snapshot()
            try:
                if how == "approve":
                    workflow.approve(ws, actor=approver, now=self.now, request_id=rid)
                elif how == "deny":
                    workflow.deny(ws, actor=approver, now=self.now, request_id=rid, reason="second thoughts")
                else:
                    workflow.withdraw(ws, actor=self.actors[self.requests[rid].user], now=self.now, request_id=rid)
            except ConflictError as exc:
                assert f"already {self.requests[rid].state}" in str(exc), exc
            else:
                raise AssertionError(f"{how} of request {rid}, already {self.requests[rid].state}, was accepted")
            assert self.snapshot() == before

        # ------------------------------------------------------------ grants

        @precondition(lambda self: self.unrevoked())
        @rule(data=st.data())
        def revoke(self, data: st.DataObject) -> None:
            gid = data.draw(st.sampled_from(self.unrevoked()), label="grant")
            rec = workflow.revoke(ws, actor=approver, now=self.now, grant_id=gid, reason="the licensor asked")
            assert rec.status == "revoked" and rec.revoked_at == self.now.isoformat(), rec
            self.grants[gid].revoked = True

        @precondition(lambda self: self.revoked())
        @rule(data=st.data())
        def revoke_again(self, data: st.DataObject) -> None:
            gid = data.draw(st.sampled_from(self.revoked()), label="grant")
            before = self.snapshot()
            with pytest.raises(ConflictError, match="already revoked"):
                workflow.revoke(ws, actor=approver, now=self.now, grant_id=gid, reason="again")
            assert self.snapshot() == before

        # Terminating is final for the researcher, so it is kept rare: at most once per example,
        # and only once something has been requested. Holders of live grants lose them at once;
        # grants approved afterwards must still be refused.
        @precondition(lambda self: not self.terminated and self.requests)
        @rule(data=st.data())
        def terminate(self, data: st.DataObject) -> None:
            user = data.draw(st.sampled_from(self.users()), label="user")
            live = [i for i, g in self.grants.items() if g.user == user and not g.revoked]
            rec = workflow.terminate(ws, actor=approver, now=self.now, dataset_id="genebody",
                                     reason="breach of the release agreement", email=user)
            assert rec.grants_revoked == len(live), (rec, live)
            for i in live:
                self.grants[i].revoked = True
            self.terminated.add(user)

        # ------------------------------------------------------------ time

        @rule(step=st.one_of(st.integers(0, 400).map(lambda d: timedelta(days=d)),
                             st.integers(0, 86_400).map(lambda s: timedelta(seconds=s))))
        def advance(self, step: timedelta) -> None:
            self.now += step

        @precondition(lambda self: any(g.expires + SECOND >= self.now for g in self.grants.values()))
        @rule(data=st.data(), offset=st.sampled_from([-SECOND, timedelta(0), SECOND]))
        def advance_to_an_expiry(self, data: st.DataObject, offset: timedelta) -> None:
            """Land just before, exactly on, or just after some grant's expiry."""
            targets = sorted({g.expires + offset for g in self.grants.values() if g.expires + offset >= self.now})
            if targets:
                self.now = data.draw(st.sampled_from(targets), label="to")

        # ------------------------------------------------------------ the invariant

        @invariant()
        def reads_match_model(self) -> None:
            """After every step, each researcher's read of Train40 at the model's time is permitted
            exactly when the model holds a live grant for them, and refused for the right reasons."""
            for user in self.users():
                result = state.check(ws, email=user, resources=[TRAIN], action="read", purpose=ACADEMIC, now=self.now)
                assert len(result.decisions) == 1
                decision = result.decisions[0]
                expected = self.expected_codes(user)
                held = {i: g for i, g in self.grants.items() if g.user == user}
                context = (f"{user} reading {TRAIN} at {self.now.isoformat()}; model grants {held}, "
                           f"terminated={user in self.terminated}; engine said {decision.effect} {decision.codes}")
                assert decision.permitted == (not expected), context
                assert set(decision.codes) == expected, context
                assert len(decision.codes) == len(set(decision.codes)), context

        @invariant()
        def clock_is_utc(self) -> None:
            assert self.now.tzinfo is not None and self.now.utcoffset() == timedelta(0)

        @invariant()
        def service_agrees_with_model(self) -> None:
            """Request states and grant statuses as the service lists them match the model."""
            reqs, grants = self.snapshot()
            assert reqs == sorted((i, r.state) for i, r in self.requests.items())
            assert [g[0] for g in grants] == sorted(self.grants)
            for gid, status, _revoked_at, expires in grants:
                model = self.grants[gid]
                assert expires == model.expires.isoformat(), (gid, expires, model)
                assert status == ("revoked" if model.revoked else "active" if model.active(self.now) else "expired"), \
                    (gid, status, model, self.now)

    return ApprovalWorkflow


def test_no_read_without_a_live_grant(ws: Workspace) -> None:
    assert NOW.tzinfo is UTC
    approver = add_approver(ws, "steward@sensetime.com", "genebody")
    machine = make_machine(ws, approver)
    run_state_machine_as_test(machine, settings=settings(
        max_examples=40, stateful_step_count=20, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
    assert store.verify(ws.db).ok
