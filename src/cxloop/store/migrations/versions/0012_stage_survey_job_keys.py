"""re-key stage-entry survey sends by what the move is; fit over-long job keys

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 23:40:00

Stage-entry survey sends were keyed by the stage move's row id (``transition:ID``). A
rebuild of the stage history writes the same moves as new rows, so those keys would not
stop the first rebuild after upgrading from surveying the same customers again. This
rewrites them in the form cxloop now uses (``cxloop.lifecycle.service.move_key``); the
format is repeated here, since a migration must keep doing what it did when written.
Job keys longer than their column, which SQLite stored as they were, get the fitted form
cxloop now gives them (``cxloop.domain.values.bounded_key``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OLD = re.compile(r"^survey\.send:(\d+):transition:(\d+)$")
_CHUNK = 500


def _iso_utc(at: datetime) -> str:
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)).isoformat()


def upgrade() -> None:
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id"), sa.column("idempotency_key"))
    moves = sa.table(
        "stage_transitions",
        *(sa.column(c) for c in ("id", "model_id", "customer_id", "cycle", "kind", "to_stage")),
        sa.column("at", sa.DateTime(timezone=True)),
    )
    models = sa.table("lifecycle_models", sa.column("id"), sa.column("key"))
    old = [
        (int(row.id), match)
        for row in conn.execute(
            sa.select(jobs.c.id, jobs.c.idempotency_key).where(
                jobs.c.idempotency_key.like("survey.send:%:transition:%")
            )
        )
        if (match := _OLD.match(row.idempotency_key)) is not None
    ]
    taken = {
        row[0]
        for row in conn.execute(
            sa.select(jobs.c.idempotency_key).where(
                jobs.c.idempotency_key.like("survey.send:%:stage:%")
            )
        )
    }
    for start in range(0, len(old), _CHUNK):
        chunk = old[start : start + _CHUNK]
        found = {
            int(row.id): row
            for row in conn.execute(
                sa.select(moves, models.c.key)
                .join(models, models.c.id == moves.c.model_id)
                .where(moves.c.id.in_([int(m.group(2)) for _, m in chunk]))
            )
        }
        for job_id, match in chunk:
            move = found.get(int(match.group(2)))
            if move is None:  # rebuilt already: nothing left to say what it was
                continue
            key = (
                f"survey.send:{match.group(1)}:stage:{move.key}:{move.customer_id}:"
                f"{move.cycle}:{move.kind}:{move.to_stage}:{_iso_utc(move.at)}"
            )
            key = _fit(key)
            if key in taken:
                continue
            taken.add(key)
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(idempotency_key=key))

    _fit_long_keys(conn, jobs)


def _fit(key: str) -> str:
    """As ``cxloop.domain.values.bounded_key`` fits a key into 200 characters."""
    if len(key) <= 200:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: 200 - len(digest) - 1]}#{digest}"


def _fit_long_keys(conn: sa.Connection, jobs: sa.TableClause) -> None:
    """SQLite kept keys longer than the column (PostgreSQL refused them); cxloop now
    looks for their fitted form, so they get it."""
    long = conn.execute(
        sa.select(jobs.c.id, jobs.c.idempotency_key).where(
            sa.func.length(jobs.c.idempotency_key) > 200
        )
    ).all()
    for row in long:
        conn.execute(
            sa.update(jobs)
            .where(jobs.c.id == row.id)
            .values(idempotency_key=_fit(row.idempotency_key))
        )


def downgrade() -> None:
    """The new keys say more than the old ones; they are kept."""
