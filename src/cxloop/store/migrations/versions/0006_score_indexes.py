"""covering indexes for scores per month and per touchpoint

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 03:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_survey_responses_survey_id_score_submitted_at",
        "survey_responses",
        ["survey_id", "score", "submitted_at"],
    )
    op.create_index(
        "ix_survey_responses_touchpoint_score_survey_id",
        "survey_responses",
        ["touchpoint", "score", "survey_id", "submitted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_survey_responses_touchpoint_score_survey_id", "survey_responses")
    op.drop_index("ix_survey_responses_survey_id_score_submitted_at", "survey_responses")
