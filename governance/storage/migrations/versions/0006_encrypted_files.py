"""The manifest of ingested, encrypted files (issue 5).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encrypted_files",
        sa.Column("dataset", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("subset", sa.String(64), nullable=False, index=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("mac_digest", sa.String(64), nullable=False),
        sa.Column("segments", sa.Integer, nullable=False),
        sa.Column("header", sa.Text, nullable=False),
        sa.Column("key_version", sa.Integer, nullable=False),
        sa.Column("object", sa.String(1024), nullable=False),
        sa.Column("sources", sa.Text, nullable=False),
        sa.Column("ingested_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("encrypted_files")
