"""Organisations, sites, users and redeemed e-mail tokens.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False),
    )
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.UniqueConstraint("organisation_id", "name", name="uq_sites_organisation_name"),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("email_verified_at", sa.String(40), nullable=True),
        sa.Column("organisation_id", sa.String(64), sa.ForeignKey("organisations.id"), nullable=True),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id"), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "redeemed_tokens",
        sa.Column("nonce_digest", sa.String(64), primary_key=True),
        sa.Column("redeemed_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("redeemed_tokens")
    op.drop_table("users")
    op.drop_table("sites")
    op.drop_table("organisations")
