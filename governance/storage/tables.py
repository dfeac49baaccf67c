"""SQLModel tables (storage models; the domain types live beside their services).

Migrations under `migrations/versions/` create these; a test checks they agree.
"""

from __future__ import annotations

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
