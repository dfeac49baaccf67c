"""The audit hash chain and its signed checkpoints (DESIGN §6), pure: no storage, no clock.

Each event holds `prev_hash` and `hash = sha256(prev_hash ‖ canonical(event))`, where the
canonical form is the event's fields (without `hash`) as UTF-8 JSON with sorted keys and no
white space. A hash chain alone cannot show a cut tail or a chain recomputed from an edit
onwards, so the service periodically signs a checkpoint (sequence number, head hash) with an
Ed25519 key and keeps it outside the database too, as Certificate Transparency signs tree heads.
`verify_chain` checks every link and the newest checkpoint, and names the first bad position.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS = "0" * 64


# One encoder for the canonical form, built once: json.dumps with non-default options builds a
# new encoder on every call, which dominated the cost of an append.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The bytes an event's hash covers: sorted-key JSON, no white space, UTF-8."""
    return _CANONICAL.encode(fields).encode("utf-8")


_string = json.encoder.encode_basestring  # what _CANONICAL uses for str with ensure_ascii=False


def canonical_event(seq: int, at: str, actor: str, action: str, target: str, outcome: str, reasons: tuple[str, ...],
                    details: Mapping[str, Any], prev_hash: str) -> bytes:
    """`canonical(AuditEvent.fields())`, byte for byte, assembled directly: the append hot path
    (a property test holds the two equal)."""
    if type(seq) is not int or not all(type(r) is str for r in reasons):  # noqa: E721 - exact types only
        return canonical({"seq": seq, "at": at, "actor": actor, "action": action, "target": target, "outcome": outcome,
                          "reasons": list(reasons), "details": dict(details), "prev_hash": prev_hash})
    return "".join((
        '{"action":', _string(action), ',"actor":', _string(actor), ',"at":', _string(at),
        ',"details":', _CANONICAL.encode(details) if details else "{}", ',"outcome":', _string(outcome),
        ',"prev_hash":', _string(prev_hash), ',"reasons":[', ",".join(map(_string, reasons)), '],"seq":', str(seq),
        ',"target":', _string(target), "}",
    )).encode("utf-8")


def link_hash(prev_hash: str, fields: Mapping[str, Any]) -> str:
    """sha256(prev_hash ‖ canonical(fields)) as lower-case hex."""
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(fields)).hexdigest()


@dataclass(frozen=True)
class AuditEvent:
    """One append-only record. `reasons` holds reason codes, never secrets or plaintext."""

    seq: int
    at: str  # ISO 8601 with offset; a string so the hashed form is exactly what is stored
    actor: str
    action: str
    target: str
    outcome: str
    reasons: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS
    hash: str = ""

    def fields(self) -> dict[str, Any]:
        """Everything the hash covers (all fields but `hash`)."""
        return {
            "seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
            "target": self.target, "outcome": self.outcome, "reasons": list(self.reasons),
            "details": dict(self.details), "prev_hash": self.prev_hash,
        }


def next_event(
    prev: AuditEvent | None,
    *,
    at: datetime,
    actor: str,
    action: str,
    target: str,
    outcome: str,
    reasons: Iterable[str] = (),
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """The event that follows `prev` (or starts the chain), with its hash computed."""
    if at.tzinfo is None:
        raise ValueError("audit times must carry a time zone")
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS if prev is None else prev.hash
    stamp = at.isoformat()
    why = tuple(reasons)
    info = dict(details or {})
    digest = hashlib.sha256(prev_hash.encode("ascii")
                            + canonical_event(seq, stamp, actor, action, target, outcome, why, info, prev_hash)).hexdigest()
    return AuditEvent(seq=seq, at=stamp, actor=actor, action=action, target=target, outcome=outcome, reasons=why,
                      details=info, prev_hash=prev_hash, hash=digest)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the chain had `seq` events and its head hash was `head`."""

    log_id: str
    seq: int
    head: str
    at: str
    signature: str  # base64 Ed25519 signature over `signed_bytes()`

    def signed_bytes(self) -> bytes:
        return canonical({"log_id": self.log_id, "seq": self.seq, "head": self.head, "at": self.at})

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        return cls(log_id=str(data["log_id"]), seq=int(data["seq"]), head=str(data["head"]),
                   at=str(data["at"]), signature=str(data["signature"]))


def sign_checkpoint(key: Ed25519PrivateKey, *, log_id: str, head: AuditEvent, at: datetime) -> Checkpoint:
    unsigned = Checkpoint(log_id=log_id, seq=head.seq, head=head.hash, at=at.isoformat(), signature="")
    sig = key.sign(unsigned.signed_bytes())
    return Checkpoint(**{**unsigned.__dict__, "signature": base64.b64encode(sig).decode("ascii")})


def checkpoint_signature_ok(cp: Checkpoint, public_key: Ed25519PublicKey) -> bool:
    try:
        public_key.verify(base64.b64decode(cp.signature, validate=True), cp.signed_bytes())
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Verification:
    """The verdict: ok, or the first bad position (1-based sequence number) and what is wrong."""

    ok: bool
    events: int
    first_bad: int | None = None
    problem: str | None = None


def verify_chain(
    events: Iterable[AuditEvent],
    *,
    checkpoint: Checkpoint | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> Verification:
    """Check every link, then the newest checkpoint; stop at the first bad position.

    Finds an edited row (its hash no longer matches), a deleted or inserted row (a gap or
    repeat in the sequence, or a broken `prev_hash` link), reordered rows, and, with a
    checkpoint, a cut tail (fewer events than signed) or a chain recomputed after an edit
    (the hash at the checkpoint's position differs from the signed head).
    """
    prev_hash = GENESIS
    expected = 1
    count = 0
    hash_at: dict[int, str] = {}
    for ev in events:
        count += 1
        if ev.seq != expected:
            return Verification(False, count, expected, f"expected event {expected} here, found event {ev.seq} (deleted, inserted or reordered rows)")
        if ev.prev_hash != prev_hash:
            return Verification(False, count, ev.seq, f"event {ev.seq} does not link to event {ev.seq - 1} (prev_hash mismatch)")
        if link_hash(ev.prev_hash, ev.fields()) != ev.hash:
            return Verification(False, count, ev.seq, f"event {ev.seq} was altered (its hash does not match its content)")
        if checkpoint is not None and ev.seq == checkpoint.seq:
            hash_at[ev.seq] = ev.hash
        prev_hash = ev.hash
        expected += 1
    if checkpoint is None:
        return Verification(True, count)
    if public_key is None or not checkpoint_signature_ok(checkpoint, public_key):
        return Verification(False, count, None, "the checkpoint's signature does not verify")
    if count < checkpoint.seq:
        return Verification(False, count, count + 1, f"the chain ends at event {count} but a signed checkpoint covers {checkpoint.seq} events (cut tail)")
    if hash_at.get(checkpoint.seq) != checkpoint.head:
        return Verification(False, count, None, f"event {checkpoint.seq} differs from the signed checkpoint (the chain was rewritten up to it)")
    return Verification(True, count)
