"""lifecycle models, departments, stage history

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 19:32:20.094430
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_departments")),
        sa.UniqueConstraint("name", name=op.f("uq_departments_name")),
    )
    op.create_table(
        "lifecycle_models",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("key", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lifecycle_models")),
        sa.UniqueConstraint("key", name=op.f("uq_lifecycle_models_key")),
    )
    op.create_table(
        "lifecycle_state",
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=63), nullable=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_message_id", sa.String(length=200), nullable=True),
        sa.Column("swept_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("traits", sa.JSON(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("inactive_exits", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["lifecycle_models.id"],
            name=op.f("fk_lifecycle_state_model_id_lifecycle_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "customer_id", name=op.f("pk_lifecycle_state")),
    )
    with op.batch_alter_table("lifecycle_state", schema=None) as batch_op:
        batch_op.create_index(
            "ix_lifecycle_state_model_id_stage", ["model_id", "stage"], unique=False
        )

    op.create_table(
        "stage_transitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("model_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("from_stage", sa.String(length=63), nullable=True),
        sa.Column("to_stage", sa.String(length=63), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=True),
        sa.Column("event", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["lifecycle_models.id"],
            name=op.f("fk_stage_transitions_model_id_lifecycle_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_transitions")),
        sa.UniqueConstraint("model_id", "customer_id", "seq", name="uq_stage_transitions_model_id"),
    )
    with op.batch_alter_table("stage_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_stage_transitions_model_id_at", ["model_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stage_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_transitions_model_id_at")

    op.drop_table("stage_transitions")
    with op.batch_alter_table("lifecycle_state", schema=None) as batch_op:
        batch_op.drop_index("ix_lifecycle_state_model_id_stage")

    op.drop_table("lifecycle_state")
    op.drop_table("lifecycle_models")
    op.drop_table("departments")
