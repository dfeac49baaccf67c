"""The decision object (DESIGN §3.9): effect, reasons, obligations, remedies, notes.

Decisions are values. Reasons, obligations and remedies are built once when policies compile
and shared between decisions, so explaining costs nothing on the hot path.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from governance.types import NoteCode, ReasonCode


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reason(_Strict):
    """Why a decision denies: a stable code, a sentence, and where it comes from."""

    code: ReasonCode
    message: str
    rule: str | None = None
    clause: str | None = None
    terms: str | None = None
    section: str | None = None
    path: tuple[str, ...] = ()
    waivable_by: str | None = None


class Obligation(_Strict):
    """Something the subject must do when the decision permits (cite the paper, meet a licence)."""

    kind: str
    id: str
    clause: str
    terms: str
    bibtex: str | None = None
    reference: str | None = None


class Remedy(_Strict):
    """What would turn a deny into a permit."""

    code: ReasonCode
    text: str


class Note(_Strict):
    """Information that is not a reason to deny (a waiver relied on, an unrecorded origin)."""

    code: NoteCode
    message: str
    rule: str | None = None


class Decision(_Strict):
    effect: Literal["permit", "deny"]
    reasons: tuple[Reason, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    remedies: tuple[Remedy, ...] = ()
    notes: tuple[Note, ...] = ()
    permitted_by: tuple[str, ...] = ()

    @property
    def permitted(self) -> bool:
        return self.effect == "permit"

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code.value for r in self.reasons)
