"""Read models of the workflow's records, shared by the services, the CLI and (later) the API."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from governance.errors import WorkflowError


def iso(moment: datetime) -> str:
    """The stored form of a time: UTC, ISO 8601. Naive times are refused (no guessing zones)."""
    if moment.tzinfo is None:
        raise WorkflowError("times must carry a time zone")
    return moment.astimezone(UTC).isoformat()


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


class _Record:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True)
class RequestRecord(_Record):
    id: int
    user: str
    dataset: str
    subsets: list[str]
    purpose: str
    project: str
    state: str
    created_at: str
    decided_at: str | None
    decided_by: str | None
    reason: str | None

    @classmethod
    def from_row(cls, row: Any, email: str) -> RequestRecord:
        return cls(id=row.id, user=email, dataset=row.dataset, subsets=json.loads(row.subsets), purpose=row.purpose,
                   project=row.project, state=row.state, created_at=row.created_at, decided_at=row.decided_at,
                   decided_by=row.decided_by, reason=row.reason)


@dataclass(frozen=True)
class GrantRecord(_Record):
    id: int
    user: str
    request_id: int | None
    scope: str
    purpose: str
    agreement_sha256: str | None
    approver: str
    starts: str
    expires: str | None
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None
    status: str

    @classmethod
    def from_row(cls, row: Any, email: str, now: datetime) -> GrantRecord:
        if row.revoked_at is not None:
            status = "revoked"
        elif row.expires is not None and now >= datetime.fromisoformat(row.expires):
            status = "expired"
        elif now < datetime.fromisoformat(row.starts):
            status = "pending"
        else:
            status = "active"
        return cls(id=row.id, user=email, request_id=row.request_id, scope=row.scope, purpose=row.purpose,
                   agreement_sha256=row.agreement_sha256, approver=row.approver, starts=row.starts, expires=row.expires,
                   revoked_at=row.revoked_at, revoked_by=row.revoked_by, revoke_reason=row.revoke_reason, status=status)


@dataclass(frozen=True)
class FormRecord(_Record):
    id: int
    user: str
    dataset: str
    agreement_sha256: str
    document: str
    uploaded_at: str
    confirmed_by: str | None
    confirmed_at: str | None


@dataclass(frozen=True)
class WaiverRecord(_Record):
    id: int
    holder: str
    owner: str
    dataset: str
    action: str
    destination: str | None
    purpose: str | None
    rule: str | None
    subset: str | None
    expires: str | None
    document: str
    recorded_at: str
    revoked_at: str | None


@dataclass(frozen=True)
class TerminationRecord(_Record):
    id: int
    dataset: str
    holder: str
    at: str
    by: str
    reason: str
    grants_revoked: int


@dataclass(frozen=True)
class ArtefactRecord(_Record):
    id: str
    owner: str
    description: str
    inputs: list[str]
    created_at: str


@dataclass(frozen=True)
class NoteRecord(_Record):
    """A note on a request: an approver's question ("ask") or the requester's answer ("reply")."""

    id: int
    request_id: int
    at: str
    by: str
    kind: str
    text: str
