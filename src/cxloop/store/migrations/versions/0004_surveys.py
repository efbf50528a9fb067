"""surveys (NPS, CSAT, CES, custom; tied to a stage and/or a touchpoint), their responses,
and score benchmarks

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "surveys",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("ask_why", sa.Boolean(), nullable=False),
        sa.Column("scale_low", sa.Integer(), nullable=True),
        sa.Column("scale_high", sa.Integer(), nullable=True),
        sa.Column("choices", sa.JSON(), nullable=True),
        sa.Column("stage_model", sa.String(length=63), nullable=True),
        sa.Column("stage", sa.String(length=63), nullable=True),
        sa.Column("touchpoint", sa.String(length=200), nullable=True),
        sa.Column("audience", sa.String(length=16), nullable=False),
        sa.Column("department_id", big, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_surveys_department_id_departments"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("name", name=op.f("uq_surveys_name")),
    )

    op.create_table(
        "survey_responses",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("survey_id", big, nullable=False),
        sa.Column("customer_id", big, nullable=True),
        sa.Column("department_id", big, nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("choice", sa.String(length=200), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("sentiment", sa.Float(), nullable=True),
        sa.Column("touchpoint", sa.String(length=200), nullable=True),
        sa.Column("stage_model", sa.String(length=63), nullable=True),
        sa.Column("stage", sa.String(length=63), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("import_key", sa.String(length=80), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"],
            name=op.f("fk_survey_responses_customer_id_customers"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["departments.id"],
            name=op.f("fk_survey_responses_department_id_departments"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"],
            name=op.f("fk_survey_responses_survey_id_surveys"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint(
            "survey_id", "import_key", name=op.f("uq_survey_responses_import_key")
        ),
    )  # fmt: skip
    op.create_index(
        "ix_survey_responses_survey_id_submitted_at",
        "survey_responses",
        ["survey_id", "submitted_at"],
    )
    op.create_index(op.f("ix_survey_responses_customer_id"), "survey_responses", ["customer_id"])

    op.create_table(
        "score_benchmarks",
        sa.Column("id", big, autoincrement=True, nullable=False),
        sa.Column("measure", sa.String(length=8), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_score_benchmarks")),
        sa.UniqueConstraint("measure", "scope", "name", name=op.f("uq_score_benchmarks_measure")),
    )


def downgrade() -> None:
    op.drop_table("score_benchmarks")
    op.drop_table("survey_responses")
    op.drop_table("surveys")
