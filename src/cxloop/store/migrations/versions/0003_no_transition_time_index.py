"""drop the stage-history index on (model, time): no query reads moves by time alone

Reports read every move of a model (the app database's report orders them per customer;
the DuckDB copy serves the embedded default), and a customer's history is read through
the (model, customer, seq) key. The time index only cost writes: about half the time of
writing a rebuilt history into SQLite.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:40:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("stage_transitions", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_transitions_model_id_at")


def downgrade() -> None:
    with op.batch_alter_table("stage_transitions", schema=None) as batch_op:
        batch_op.create_index("ix_stage_transitions_model_id_at", ["model_id", "at"], unique=False)
