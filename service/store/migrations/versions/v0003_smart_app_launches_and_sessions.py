"""SMART app launches and sessions.

Migrations are frozen: they use plain SQLAlchemy types, never the app's (which may change later).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 13:06:59.116649
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "smart_launch",
        sa.Column("state_hash", sa.String(length=64), nullable=False),
        sa.Column("browser_hash", sa.String(length=64), nullable=False),
        sa.Column("iss", sa.String(length=512), nullable=False),
        sa.Column("code_verifier", sa.String(length=128), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_smart_launch")),
    )
    op.create_table(
        "smart_session",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("iss", sa.String(length=512), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("fhir_user", sa.String(length=512), nullable=True),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("app_context", sa.String(length=256), nullable=True),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_smart_session")),
    )
    with op.batch_alter_table("smart_session", schema=None) as batch_op:
        batch_op.create_index("ix_smart_session_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("smart_session", schema=None) as batch_op:
        batch_op.drop_index("ix_smart_session_expires_at")
    op.drop_table("smart_session")
    op.drop_table("smart_launch")
