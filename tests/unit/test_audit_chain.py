"""The audit chain finds any edit, deletion, insertion or reordering and names the first bad
position; a signed checkpoint also exposes a cut tail and a chain recomputed after an edit."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from governance.audit.chain import (
    GENESIS,
    AuditEvent,
    Checkpoint,
    canonical,
    canonical_event,
    link_hash,
    next_event,
    sign_checkpoint,
    verify_chain,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
KEY = Ed25519PrivateKey.generate()


def chain(n: int) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    for i in range(n):
        out.append(next_event(out[-1] if out else None, at=T0 + timedelta(seconds=i), actor=f"user{i % 3}",
                              action="check", target=f"huge100k:flux_batch1/{i}.jpg", outcome="deny" if i % 2 else "permit",
                              reasons=("no_grant",) if i % 2 else (), details={"n": i, "name": "Zoë"}))
    return out


def recompute_from(events: list[AuditEvent], start: int) -> list[AuditEvent]:
    """What an attacker with database access does: fix every hash after an edit."""
    fixed = events[:start]
    for ev in events[start:]:
        prev = fixed[-1].hash if fixed else GENESIS
        draft = dataclasses.replace(ev, prev_hash=prev)
        fixed.append(dataclasses.replace(draft, hash=link_hash(prev, draft.fields())))
    return fixed


def test_an_untouched_chain_verifies_with_and_without_its_checkpoint() -> None:
    events = chain(20)
    assert verify_chain(events).ok
    cp = sign_checkpoint(KEY, log_id="main", head=events[-1], at=T0)
    assert verify_chain(events, checkpoint=cp, public_key=KEY.public_key()).ok
    assert verify_chain(events + chain(25)[20:], checkpoint=cp, public_key=KEY.public_key()).ok  # grew since


def test_an_edited_row_is_named() -> None:
    events = chain(10)
    events[6] = dataclasses.replace(events[6], outcome="tampered")
    v = verify_chain(events)
    assert not v.ok and v.first_bad == 7 and "altered" in (v.problem or "")


def test_a_deleted_row_is_named() -> None:
    events = chain(10)
    del events[3]
    v = verify_chain(events)
    assert not v.ok and v.first_bad == 4


def test_an_inserted_row_is_named() -> None:
    events = chain(10)
    events.insert(5, events[5])
    assert verify_chain(events).first_bad == 7


def test_swapped_rows_are_named() -> None:
    events = chain(10)
    events[2], events[3] = events[3], events[2]
    assert verify_chain(events).first_bad == 3


def test_a_cut_tail_is_found_only_with_a_checkpoint() -> None:
    events = chain(10)
    cp = sign_checkpoint(KEY, log_id="main", head=events[-1], at=T0)
    assert verify_chain(events[:7]).ok  # a bare hash chain cannot tell
    v = verify_chain(events[:7], checkpoint=cp, public_key=KEY.public_key())
    assert not v.ok and "cut tail" in (v.problem or "") and v.first_bad == 8


def test_a_chain_recomputed_after_an_edit_is_found_with_a_checkpoint() -> None:
    events = chain(10)
    cp = sign_checkpoint(KEY, log_id="main", head=events[-1], at=T0)
    forged = recompute_from([*events[:4], dataclasses.replace(events[4], outcome="tampered"), *events[5:]], 4)
    assert verify_chain(forged).ok  # consistent on its own
    v = verify_chain(forged, checkpoint=cp, public_key=KEY.public_key())
    assert not v.ok and "rewritten" in (v.problem or "")


def test_a_forged_or_foreign_checkpoint_is_refused() -> None:
    events = chain(5)
    cp = sign_checkpoint(KEY, log_id="main", head=events[-1], at=T0)
    other = Ed25519PrivateKey.generate()
    assert not verify_chain(events, checkpoint=cp, public_key=other.public_key()).ok
    tampered = dataclasses.replace(cp, seq=4, head=events[3].hash)
    assert not verify_chain(events, checkpoint=tampered, public_key=KEY.public_key()).ok
    assert Checkpoint.from_json(cp.to_json()) == cp


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        next_event(None, at=datetime(2026, 1, 1), actor="a", action="b", target="c", outcome="d")


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 30), st.data())
def test_any_single_change_is_found_at_or_before_its_position(n: int, data: st.DataObject) -> None:
    events = chain(n)
    i = data.draw(st.integers(0, n - 1))
    kind = data.draw(st.sampled_from(["edit", "delete", "duplicate", "swap"]))
    changed = list(events)
    if kind == "edit":
        field_name = data.draw(st.sampled_from(["actor", "action", "target", "outcome", "at"]))
        changed[i] = dataclasses.replace(changed[i], **{field_name: getattr(changed[i], field_name) + "x"})
    elif kind == "delete":
        if i == n - 1:
            i -= 1  # deleting the last row is a cut tail: covered by the checkpoint test
        del changed[i]
    elif kind == "duplicate":
        changed.insert(i, changed[i])
    else:
        j = min(i + 1, n - 1)
        if j == i:
            i, j = i - 1, i
        changed[i], changed[j] = changed[j], changed[i]
    v = verify_chain(changed)
    assert not v.ok and v.first_bad is not None and v.first_bad <= i + 2


_json_leaf = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=8)


@given(seq=st.integers(min_value=1, max_value=2**62), at=st.text(), actor=st.text(), action=st.text(), target=st.text(),
       outcome=st.text(), reasons=st.lists(st.text(), max_size=4), details=st.dictionaries(st.text(), _json, max_size=4),
       prev=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
def test_the_fast_canonical_form_is_byte_identical_to_the_reference(seq: int, at: str, actor: str, action: str, target: str,
                                                                   outcome: str, reasons: list[str], details: dict[str, object],
                                                                   prev: str) -> None:
    fields = {"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "outcome": outcome,
              "reasons": list(reasons), "details": details, "prev_hash": prev}
    try:
        expected = canonical(fields)
    except UnicodeEncodeError:  # lone surrogates cannot be stored either way
        with pytest.raises(UnicodeEncodeError):
            canonical_event(seq, at, actor, action, target, outcome, tuple(reasons), details, prev)
        return
    assert canonical_event(seq, at, actor, action, target, outcome, tuple(reasons), details, prev) == expected
