"""SQLModel tables (storage models; the domain types live beside their services).

Migrations under `migrations/versions/` create these; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class AuditEventRow(SQLModel, table=True):
    __tablename__ = "audit_events"

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: str = Field(max_length=40)
    actor: str = Field(max_length=320)
    action: str = Field(max_length=64)
    target: str = Field(max_length=2048)
    outcome: str = Field(max_length=32)
    reasons: str  # JSON list of reason codes
    details: str  # JSON object; never secrets or plaintext
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditCheckpointRow(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    id: int | None = Field(default=None, primary_key=True)
    log_id: str = Field(max_length=64)
    seq: int
    head: str = Field(max_length=64)
    at: str = Field(max_length=40)
    signature: str = Field(max_length=128)


class OrganisationRow(SQLModel, table=True):
    __tablename__ = "organisations"

    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=256)


class SiteRow(SQLModel, table=True):
    __tablename__ = "sites"

    id: int | None = Field(default=None, primary_key=True)
    organisation_id: str = Field(foreign_key="organisations.id", max_length=64)
    name: str = Field(max_length=128)


class UserRow(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=36)
    email: str = Field(max_length=320, unique=True)
    email_verified_at: str | None = Field(default=None, max_length=40)
    organisation_id: str | None = Field(default=None, foreign_key="organisations.id", max_length=64)
    site_id: int | None = Field(default=None, foreign_key="sites.id")
    created_at: str = Field(max_length=40)
    disabled: bool = False


class RedeemedTokenRow(SQLModel, table=True):
    __tablename__ = "redeemed_tokens"

    nonce_digest: str = Field(primary_key=True, max_length=64)
    redeemed_at: str = Field(max_length=40)


class RoleRow(SQLModel, table=True):
    """A role held by a user; `dataset` is the dataset an approver stewards, '*' for all."""

    __tablename__ = "roles"

    user_id: str = Field(primary_key=True, foreign_key="users.id", max_length=36)
    role: str = Field(primary_key=True, max_length=16)
    dataset: str = Field(primary_key=True, max_length=64)
    granted_at: str = Field(max_length=40)
    granted_by: str = Field(max_length=320)


class EmailDomainRow(SQLModel, table=True):
    """A per-deployment allow or deny entry for the institutional e-mail classifier."""

    __tablename__ = "email_domains"

    list: str = Field(primary_key=True, max_length=8)
    domain: str = Field(primary_key=True, max_length=253)
    added_at: str = Field(max_length=40)
    added_by: str = Field(max_length=320)


class DocumentRow(SQLModel, table=True):
    """A stored document (signed form, licensor's letter), addressed by its sha256."""

    __tablename__ = "documents"

    sha256: str = Field(primary_key=True, max_length=64)
    media_type: str = Field(max_length=32)
    size: int
    stored_at: str = Field(max_length=40)


class AcceptanceRow(SQLModel, table=True):
    __tablename__ = "acceptances"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    dataset: str = Field(max_length=64)
    version: str = Field(max_length=128)
    sha256: str = Field(max_length=64)
    accepted_at: str = Field(max_length=40)
    client: str = Field(max_length=256)


class SignedFormRow(SQLModel, table=True):
    __tablename__ = "signed_forms"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    dataset: str = Field(max_length=64)
    agreement_sha256: str = Field(max_length=64)
    document: str = Field(foreign_key="documents.sha256", max_length=64)
    uploaded_at: str = Field(max_length=40)
    confirmed_by: str | None = Field(default=None, max_length=320)
    confirmed_at: str | None = Field(default=None, max_length=40)


class RequestRow(SQLModel, table=True):
    __tablename__ = "requests"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    dataset: str = Field(max_length=64, index=True)
    subsets: str  # JSON list of subset ids
    purpose: str = Field(max_length=128)
    project: str
    state: str = Field(max_length=16, index=True)
    created_at: str = Field(max_length=40)
    decided_at: str | None = Field(default=None, max_length=40)
    decided_by: str | None = Field(default=None, max_length=320)
    reason: str | None = None


class RequestNoteRow(SQLModel, table=True):
    """A note on a request: an approver asking for more ("ask"), the requester answering ("reply")."""

    __tablename__ = "request_notes"

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="requests.id", index=True)
    at: str = Field(max_length=40)
    by: str = Field(max_length=320)
    kind: str = Field(max_length=16)
    text: str


class GrantRow(SQLModel, table=True):
    __tablename__ = "grants"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    request_id: int | None = Field(default=None, foreign_key="requests.id")
    dataset: str = Field(max_length=64, index=True)
    scope: str = Field(max_length=192)
    purpose: str = Field(max_length=128)
    agreement_sha256: str | None = Field(default=None, max_length=64)
    approver: str = Field(max_length=320)
    starts: str = Field(max_length=40)
    expires: str | None = Field(default=None, max_length=40)
    revoked_at: str | None = Field(default=None, max_length=40)
    revoked_by: str | None = Field(default=None, max_length=320)
    revoke_reason: str | None = None


class TerminationRow(SQLModel, table=True):
    """A licensor's termination of one user's or a whole organisation's access to a dataset."""

    __tablename__ = "terminations"

    id: int | None = Field(default=None, primary_key=True)
    dataset: str = Field(max_length=64)
    user_id: str | None = Field(default=None, foreign_key="users.id", max_length=36, index=True)
    organisation_id: str | None = Field(default=None, foreign_key="organisations.id", max_length=64, index=True)
    at: str = Field(max_length=40)
    by: str = Field(max_length=320)
    reason: str


class WaiverRow(SQLModel, table=True):
    __tablename__ = "waivers"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str | None = Field(default=None, foreign_key="users.id", max_length=36, index=True)
    organisation_id: str | None = Field(default=None, foreign_key="organisations.id", max_length=64, index=True)
    owner: str = Field(max_length=64)
    dataset: str = Field(max_length=64)
    action: str = Field(max_length=32)
    destination: str | None = Field(default=None, max_length=32)
    purpose: str | None = Field(default=None, max_length=128)
    rule: str | None = Field(default=None, max_length=64)
    subset: str | None = Field(default=None, max_length=64)
    expires: str | None = Field(default=None, max_length=40)
    document: str = Field(foreign_key="documents.sha256", max_length=64)
    recorded_at: str = Field(max_length=40)
    recorded_by: str = Field(max_length=320)
    revoked_at: str | None = Field(default=None, max_length=40)


class ArtefactRow(SQLModel, table=True):
    __tablename__ = "artefacts"

    id: str = Field(primary_key=True, max_length=64)
    owner_id: str = Field(foreign_key="users.id", max_length=36)
    description: str
    inputs: str  # JSON list of lineage references
    created_at: str = Field(max_length=40)


class ManifestFileRow(SQLModel, table=True):
    """Source tags recorded for one file (which SHHQ images are DeepFashion's)."""

    __tablename__ = "manifest_files"

    dataset: str = Field(primary_key=True, max_length=64)
    path: str = Field(primary_key=True, max_length=1024)
    sources: str  # JSON list of source ids


class PasswordRow(SQLModel, table=True):
    """A user's password hash (argon2id, PHC string); never the password."""

    __tablename__ = "passwords"

    user_id: str = Field(primary_key=True, foreign_key="users.id", max_length=36)
    hash: str = Field(max_length=256)
    set_at: str = Field(max_length=40)


class AuthSessionRow(SQLModel, table=True):
    """A login: access tokens name it (`sid`), a refresh token's digest rotates on each use;
    logging out or an administrator's revocation ends every token of it."""

    __tablename__ = "auth_sessions"

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    refresh_digest: str = Field(max_length=64, unique=True)
    previous_digest: str | None = Field(default=None, max_length=64)  # the refresh token the last refresh spent
    created_at: str = Field(max_length=40)
    expires_at: str = Field(max_length=40)
    last_refresh_at: str | None = Field(default=None, max_length=40)
    revoked_at: str | None = Field(default=None, max_length=40)
    client: str = Field(max_length=256)
    kind: str = Field(default="api", max_length=16)  # "api" (tokens) or "console" (a cookie)
    last_seen_at: str | None = Field(default=None, max_length=40)  # the console's idle timeout
    reauth_at: str | None = Field(default=None, max_length=40)  # the password last re-entered


class ApiKeyRow(SQLModel, table=True):
    """A loader's API key: the visible prefix, the secret's digest, its owner and scope."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    prefix: str = Field(max_length=16, unique=True)
    digest: str = Field(max_length=64)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    name: str = Field(max_length=128)
    datasets: str | None = None  # JSON list of dataset ids the key is limited to; None: all
    created_at: str = Field(max_length=40)
    last_used_at: str | None = Field(default=None, max_length=40)
    revoked_at: str | None = Field(default=None, max_length=40)


class LoginFailureRow(SQLModel, table=True):
    """A failed login, kept for the rate limit (shared by every replica through the database)."""

    __tablename__ = "login_failures"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, index=True)
    at: str = Field(max_length=40)


class PublicKeyRow(SQLModel, table=True):
    """A user's registered X25519 public key (Crypt4GH key format), for key release."""

    __tablename__ = "public_keys"

    id: int | None = Field(default=None, primary_key=True)
    user_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    key: str = Field(max_length=64, unique=True)  # base64 of the 32 raw bytes
    name: str = Field(max_length=128)
    created_at: str = Field(max_length=40)
    revoked_at: str | None = Field(default=None, max_length=40)


class StateVersionRow(SQLModel, table=True):
    """One row: a counter every state-changing transaction increments (with its audit event), so
    a process may keep subjects' states while the counter is unchanged and knows when not to."""

    __tablename__ = "state_version"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    version: int = 0


class EncryptedFileRow(SQLModel, table=True):
    """One ingested file: where its Crypt4GH payload lies, its header sealed to the dataset key,
    and what every decryption must find (plaintext size, sha256, digest of the segment MACs)."""

    __tablename__ = "encrypted_files"

    dataset: str = Field(primary_key=True, max_length=64)
    path: str = Field(primary_key=True, max_length=1024)
    subset: str = Field(max_length=64, index=True)
    size: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    mac_digest: str = Field(max_length=64)
    segments: int
    header: str  # base64 of the Crypt4GH header sealed to the dataset key (version `key_version`)
    key_version: int
    object: str = Field(max_length=1024)  # the payload's path below the object store
    sources: str  # JSON list of upstream source ids recorded at ingest
    ingested_at: str = Field(max_length=40)
