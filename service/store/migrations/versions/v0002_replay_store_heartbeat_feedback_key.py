"""JWT replay store, readiness heartbeat; the feedback item key includes the service.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "jwt_replay",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_jwt_replay")),
    )
    with op.batch_alter_table("jwt_replay", schema=None) as batch_op:
        batch_op.create_index("ix_jwt_replay_expires_at", ["expires_at"], unique=False)

    op.create_table(
        "heartbeat",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_heartbeat")),
    )
    # SQLite cannot alter a constraint: batch mode copies the table (a short exclusive lock)
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint("uq_feedback_item", type_="unique")
        batch_op.create_unique_constraint("uq_feedback_item", ["service", "card_uuid", "outcome", "outcome_at"])


def downgrade() -> None:
    # two services' feedback on one card uuid at one moment would now collide: keep the first
    op.execute(
        "DELETE FROM feedback WHERE id NOT IN (SELECT MIN(id) FROM feedback GROUP BY card_uuid, outcome, outcome_at)"
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint("uq_feedback_item", type_="unique")
        batch_op.create_unique_constraint("uq_feedback_item", ["card_uuid", "outcome", "outcome_at"])
    op.drop_table("heartbeat")
    with op.batch_alter_table("jwt_replay", schema=None) as batch_op:
        batch_op.drop_index("ix_jwt_replay_expires_at")
    op.drop_table("jwt_replay")
