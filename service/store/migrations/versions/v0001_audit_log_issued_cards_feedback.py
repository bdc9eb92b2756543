"""Audit log, issued cards, feedback.

Migrations are frozen: they use plain SQLAlchemy types, never the app's (which may change later).

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-22 14:22:52.874941
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("hook", sa.String(length=64), nullable=True),
        sa.Column("hook_instance", sa.String(length=128), nullable=True),
        sa.Column("patient_hash", sa.String(length=64), nullable=True),
        sa.Column("key_id", sa.String(length=16), nullable=True),
        sa.Column("recommendation", sa.String(length=32), nullable=True),
        sa.Column("rules_version", sa.String(length=128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("cards", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_at", ["at"], unique=False)
        batch_op.create_index("ix_audit_log_hook_instance", ["hook_instance"], unique=False)
        batch_op.create_index("ix_audit_log_patient_hash", ["patient_hash"], unique=False)

    op.create_table(
        "feedback",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("card_uuid", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("outcome_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_suggestions", sa.Text(), nullable=False),
        sa.Column("override_system", sa.String(length=255), nullable=True),
        sa.Column("override_code", sa.String(length=128), nullable=True),
        sa.Column("override_display", sa.String(length=255), nullable=True),
        sa.Column("has_comment", sa.Boolean(), nullable=False),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("card_known", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("card_uuid", "outcome", "outcome_at", name="uq_feedback_item"),
    )
    op.create_table(
        "issued_card",
        sa.Column("uuid", sa.String(length=64), nullable=False),
        sa.Column("audit_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("recommendation", sa.String(length=32), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["audit_id"], ["audit_log.id"], name=op.f("fk_issued_card_audit_id_audit_log")),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_issued_card")),
    )


def downgrade() -> None:
    op.drop_table("issued_card")
    op.drop_table("feedback")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_patient_hash")
        batch_op.drop_index("ix_audit_log_hook_instance")
        batch_op.drop_index("ix_audit_log_at")

    op.drop_table("audit_log")
