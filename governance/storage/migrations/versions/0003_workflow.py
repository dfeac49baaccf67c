"""Roles, e-mail domain lists, agreements and signed forms, requests, grants, terminations,
waivers, artefacts and the file manifest's origin tags.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roles",
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("granted_at", sa.String(40), nullable=False),
        sa.Column("granted_by", sa.String(320), nullable=False),
    )
    op.create_table(
        "email_domains",
        sa.Column("list", sa.String(8), primary_key=True),
        sa.Column("domain", sa.String(253), primary_key=True),
        sa.Column("added_at", sa.String(40), nullable=False),
        sa.Column("added_by", sa.String(320), nullable=False),
    )
    op.create_table(
        "documents",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("media_type", sa.String(32), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("stored_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "acceptances",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("accepted_at", sa.String(40), nullable=False),
        sa.Column("client", sa.String(256), nullable=False),
    )
    op.create_table(
        "signed_forms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("agreement_sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.String(64), sa.ForeignKey("documents.sha256"), nullable=False),
        sa.Column("uploaded_at", sa.String(40), nullable=False),
        sa.Column("confirmed_by", sa.String(320), nullable=True),
        sa.Column("confirmed_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("dataset", sa.String(64), nullable=False, index=True),
        sa.Column("subsets", sa.Text, nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("project", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("decided_at", sa.String(40), nullable=True),
        sa.Column("decided_by", sa.String(320), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=True),
        sa.Column("dataset", sa.String(64), nullable=False, index=True),
        sa.Column("scope", sa.String(192), nullable=False),
        sa.Column("purpose", sa.String(128), nullable=False),
        sa.Column("agreement_sha256", sa.String(64), nullable=True),
        sa.Column("approver", sa.String(320), nullable=False),
        sa.Column("starts", sa.String(40), nullable=False),
        sa.Column("expires", sa.String(40), nullable=True),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.Column("revoked_by", sa.String(320), nullable=True),
        sa.Column("revoke_reason", sa.Text, nullable=True),
    )
    op.create_table(
        "terminations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=True, index=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_table(
        "waivers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=True, index=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("dataset", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=True),
        sa.Column("purpose", sa.String(128), nullable=True),
        sa.Column("rule", sa.String(64), nullable=True),
        sa.Column("subset", sa.String(64), nullable=True),
        sa.Column("expires", sa.String(40), nullable=True),
        sa.Column("document", sa.String(64), sa.ForeignKey("documents.sha256"), nullable=False),
        sa.Column("recorded_at", sa.String(40), nullable=False),
        sa.Column("recorded_by", sa.String(320), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "artefacts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(36), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("inputs", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "manifest_files",
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("sources", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("manifest_files", "artefacts", "waivers", "terminations", "grants", "requests", "signed_forms",
                  "acceptances", "documents", "email_domains", "roles"):
        op.drop_table(table)
