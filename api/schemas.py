"""API models: what comes in (`…In`, strict) and what goes out (`…Out`). Routes never return table
rows; records from the services are copied into these."""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from governance.policy.decision import Decision

MAX_BATCH = 100_000
T = TypeVar("T")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Out(BaseModel):
    model_config = ConfigDict(extra="ignore")

    @classmethod
    def of(cls, record: Any) -> Any:
        return cls.model_validate(asdict(record) if is_dataclass(record) else record)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: int | None = Field(None, description="pass as `cursor` for the next page; null on the last page")


# ------------------------------------------------------------------ auth


class LoginIn(In):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(In):
    refresh_token: str = Field(max_length=256)


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class PasswordIn(In):
    password: str = Field(max_length=1024)
    current_password: str | None = Field(None, max_length=1024)


class RoleOut(Out):
    role: str
    dataset: str


class MeOut(Out):
    id: str
    email: str
    email_verified: bool
    organisation: str | None
    site: str | None
    roles: list[RoleOut]
    authenticated_by: Literal["session", "api_key"]
    key_datasets: list[str] | None = None


class ApiKeyIn(In):
    name: str = Field(min_length=1, max_length=128)
    datasets: list[str] | None = Field(None, max_length=64, description="limit the key to these datasets")


class ApiKeyOut(Out):
    id: int
    prefix: str
    name: str
    email: str
    datasets: list[str] | None
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a digest")


# ------------------------------------------------------------------ checks


class CheckIn(In):
    resource: str = Field(max_length=2048, description="dataset:path, or artefact:<id>")
    action: str = Field(max_length=64)
    purpose: str = Field(max_length=128)
    destination: str | None = Field(None, max_length=32)


class CheckOut(Out):
    resource: str
    decision: Decision


class BatchCheckIn(In):
    resources: list[str] = Field(min_length=1, max_length=MAX_BATCH)
    action: str = Field(max_length=64)
    purpose: str = Field(max_length=128)
    destination: str | None = Field(None, max_length=32)


class DecisionGroup(Out):
    effect: Literal["permit", "deny"]
    decision: Decision
    resources: list[str]


class BatchCheckOut(Out):
    action: str
    purpose: str
    checked: int
    permitted: int
    denied: int
    groups: list[DecisionGroup] = Field(description="resources sharing one decision, permits first")


# ------------------------------------------------------------------ workflow records


class RequestIn(In):
    dataset: str = Field(max_length=64)
    subsets: list[str] = Field(default_factory=list, max_length=64)
    purpose: str = Field(max_length=128)
    project: str = Field(max_length=4000)


class RequestOut(Out):
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


class ApproveIn(In):
    days: int | None = Field(None, ge=1, le=3650)
    note: str | None = Field(None, max_length=4000)


class ReasonIn(In):
    reason: str = Field(min_length=1, max_length=4000)


class NoteIn(In):
    text: str = Field(min_length=1, max_length=4000, description="the question (approver) or the answer (requester)")


class NoteOut(Out):
    id: int
    request_id: int
    at: str
    by: str
    kind: str = Field(description="ask: an approver's question; reply: the requester's answer")
    text: str


class GrantOut(Out):
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


class AcceptIn(In):
    version: str = Field(max_length=128, description="the current agreement's version name or sha256")


class AcceptanceOut(Out):
    dataset: str
    version: str
    sha256: str
    accepted_at: str


class AcceptanceRecordOut(AcceptanceOut):
    id: int
    current: bool = Field(description="false once the dataset's agreement text has changed: accept the new one")


class FormOut(Out):
    id: int
    user: str
    dataset: str
    agreement_sha256: str
    document: str
    uploaded_at: str
    confirmed_by: str | None
    confirmed_at: str | None


class TerminateIn(In):
    dataset: str = Field(max_length=64)
    reason: str = Field(min_length=1, max_length=4000)
    email: str | None = Field(None, max_length=320)
    organisation: str | None = Field(None, max_length=64)


class TerminationOut(Out):
    id: int
    dataset: str
    holder: str
    at: str
    by: str
    reason: str
    grants_revoked: int


class WaiverOut(Out):
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


class ArtefactIn(In):
    id: str = Field(max_length=64)
    inputs: list[str] = Field(min_length=1, max_length=1000)
    description: str = Field(min_length=1, max_length=4000)


class ArtefactOut(Out):
    id: str
    owner: str
    description: str
    inputs: list[str]
    created_at: str


class ConfirmEmailIn(In):
    token: str = Field(max_length=2048)


class PublicKeyIn(In):
    key: str = Field(max_length=512, description="a Crypt4GH public key file, or the base64 of its 32 bytes")
    name: str = Field("default", min_length=1, max_length=128)


class PublicKeyOut(Out):
    id: int
    name: str
    key: str
    created_at: str
    revoked_at: str | None


class DatasetOut(Out):
    id: str
    title: str
    licensor: str | None
    version: str | None
    sha256: str | None
    has_terms: bool
    subsets: list[str]


class VerifyOut(Out):
    ok: bool
    events: int
    detail: str
    first_bad: int | None = None


class Message(Out):
    detail: str


# ------------------------------------------------------------------ errors


class ProblemItem(BaseModel):
    loc: list[str] = Field(description="where in the request: body, query, path or header, then the field")
    msg: str


class Problem(BaseModel):
    """An RFC 9457 problem document (served as application/problem+json)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a stable URI naming the kind of problem, e.g. urn:governance:problem:not-found")
    title: str = Field(description="a short, fixed summary of the kind of problem")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="this occurrence, in one sentence")
    errors: list[ProblemItem] | None = Field(None, description="invalid input: each field refused, at most 20")
    request_id: str | None = Field(None, description="internal errors: quote it to the operators")


# ------------------------------------------------------------------ key release and files


class KeyReleaseIn(In):
    files: list[str] | None = Field(None, min_length=1, max_length=MAX_BATCH,
                                    description="files as dataset:path; or give `subset` instead")
    subset: str | None = Field(None, min_length=3, max_length=130, description="every ingested file of dataset/subset")
    public_key_id: int = Field(ge=1, le=2_147_483_647, description="one of your keys from GET /v1/me/keys, not revoked")
    purpose: str = Field(min_length=1, max_length=128)


class ReleasedFileOut(Out):
    resource: str
    header: str = Field(description="base64 of the Crypt4GH header re-sealed to your public key; put it before the payload")
    size: int = Field(description="plaintext bytes: a decryption must produce exactly this many")
    sha256: str = Field(description="hex sha256 of the plaintext")
    mac_digest: str = Field(description="hex sha256 over the payload's 16-byte segment MACs in order")
    object: str = Field(description="the payload's path below the object store")


class DeniedFileOut(Out):
    resource: str
    decision: Decision


class KeyReleaseOut(Out):
    released: list[ReleasedFileOut]
    denied: list[DeniedFileOut]
