"""The console (issue 6): sessions know their kind (API or console), when they were last seen
(the idle timeout) and when their holder last re-entered the password (re-authentication);
requests carry notes (an approver asking for more, the requester's answer).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="api"))
        batch.add_column(sa.Column("last_seen_at", sa.String(40), nullable=True))
        batch.add_column(sa.Column("reauth_at", sa.String(40), nullable=True))
    op.create_table(
        "request_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False, index=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("request_notes")
    with op.batch_alter_table("auth_sessions") as batch:
        batch.drop_column("reauth_at")
        batch.drop_column("last_seen_at")
        batch.drop_column("kind")
