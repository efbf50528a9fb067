"""The durable job queue, kept in the app database (SQLite or PostgreSQL).

Work that must happen later or outside a request (a survey e-mail three days after a
delivery, a retry while the mail server is down) is a row here. Keeping it in the app
database rather than a separate broker means a job is enqueued in the same transaction as
the change that calls for it: a follow-up and its survey are stored together or not at
all. A job runs at least once: a worker claims it for a lease; if the worker dies, the
lease runs out and another claim takes it again. Handlers make a second run harmless.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

from sqlalchemy import Connection, Table, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cxloop.domain.values import bounded_key, iso_utc
from cxloop.store.models import Job, ScanCursor

jobs_t = cast(Table, Job.__table__)
cursors_t = cast(Table, ScanCursor.__table__)
STATUSES = ("queued", "running", "done", "failed")
LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    max_attempts: int


def enqueue(
    conn: Connection,
    kind: str,
    payload: dict[str, Any],
    *,
    run_at: datetime | None = None,
    key: str | None = None,
    max_attempts: int = 8,
) -> int | None:
    """Queue a job; with ``key``, a job of that key already queued or run is not queued
    again (None is returned), so a replayed trigger never sends twice."""
    now = datetime.now(UTC)
    values = {
        "kind": kind,
        "payload": payload,
        "status": "queued",
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "idempotency_key": None if key is None else bounded_key(key),
        "created_at": now,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(jobs_t)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(jobs_t.c.id)
    )
    found = conn.execute(statement).first()
    return None if found is None else int(found.id)


class NewJob(NamedTuple):
    kind: str
    payload: dict[str, Any]
    run_at: datetime
    key: str


def enqueue_many(conn: Connection, new: Sequence[NewJob], *, max_attempts: int = 8) -> None:
    """Queue many keyed jobs in one statement (``enqueue`` one at a time is what the
    ingestion listener cannot afford per event); keys queued before are skipped."""
    if not new:
        return
    now = datetime.now(UTC)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(
        dialect.insert(jobs_t).on_conflict_do_nothing(index_elements=["idempotency_key"]),
        [
            {
                "kind": job.kind,
                "payload": job.payload,
                "status": "queued",
                "run_at": job.run_at,
                "attempts": 0,
                "max_attempts": max_attempts,
                "idempotency_key": bounded_key(job.key),
                "created_at": now,
            }
            for job in new
        ],
    )


def claim(
    conn: Connection,
    *,
    now: datetime | None = None,
    limit: int = 20,
    lease: timedelta = LEASE,
    kinds: Collection[str] | None = None,
) -> list[ClaimedJob]:
    """Take up to ``limit`` due jobs for ``lease``: queued ones whose time has come, and
    running ones whose worker's lease ran out (it died). One statement, so two workers
    never take the same job (PostgreSQL skips rows another worker has locked). With
    ``kinds``, only jobs of those kinds: a worker without the event store leaves the jobs
    that read events to one that has it."""
    now = now or datetime.now(UTC)
    due = (
        select(jobs_t.c.id)
        .where(
            or_(
                (jobs_t.c.status == "queued") & (jobs_t.c.run_at <= now),
                (jobs_t.c.status == "running") & (jobs_t.c.locked_until < now),
            )
        )
        .order_by(jobs_t.c.run_at, jobs_t.c.id)
        .limit(limit)
    )
    if kinds is not None:
        due = due.where(jobs_t.c.kind.in_(list(kinds)))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(
        update(jobs_t)
        .where(jobs_t.c.id.in_(due.scalar_subquery()))
        .values(status="running", locked_until=now + lease, attempts=jobs_t.c.attempts + 1)
        .returning(
            jobs_t.c.id, jobs_t.c.kind, jobs_t.c.payload, jobs_t.c.attempts, jobs_t.c.max_attempts
        )
    ).all()
    return sorted(
        (ClaimedJob(int(r.id), r.kind, dict(r.payload), r.attempts, r.max_attempts) for r in rows),
        key=lambda job: job.id,
    )


def save_payload(conn: Connection, job_id: int, payload: dict[str, Any]) -> None:
    """Remember what a run found out (an invite it created) for a later attempt."""
    conn.execute(update(jobs_t).where(jobs_t.c.id == job_id).values(payload=payload))


def finish(
    conn: Connection, job: ClaimedJob, outcome: str, *, payload: dict[str, Any] | None = None
) -> None:
    values: dict[str, Any] = {
        "status": "done",
        "outcome": outcome[:2000],
        "finished_at": datetime.now(UTC),
        "locked_until": None,
    }
    if payload is not None:
        values["payload"] = payload
    conn.execute(update(jobs_t).where(jobs_t.c.id == job.id).values(**values))


def fail(conn: Connection, job: ClaimedJob, error: str, *, now: datetime | None = None) -> str:
    """Record a failed attempt: retried later with exponential backoff (30 s, 1 min, 2
    min, … up to 6 h), or given up after ``max_attempts`` and left as ``failed`` for a
    person to see and retry. Returns the new status."""
    now = now or datetime.now(UTC)
    status = "failed" if job.attempts >= job.max_attempts else "queued"
    delay = min(timedelta(seconds=30 * 2 ** max(job.attempts - 1, 0)), MAX_BACKOFF)
    conn.execute(
        update(jobs_t)
        .where(jobs_t.c.id == job.id)
        .values(
            status=status,
            last_error=error[:2000],
            run_at=now + delay,
            locked_until=None,
            finished_at=now if status == "failed" else None,
        )
    )
    return status


def retry(conn: Connection, job_id: int) -> str | None:
    """Queue a failed job again, now, with a fresh set of attempts. Returns the job's
    status before (None: no such job); only a failed job is touched."""
    found = conn.execute(select(jobs_t.c.status).where(jobs_t.c.id == job_id)).first()
    if found is None or found.status != "failed":
        return None if found is None else str(found.status)
    conn.execute(
        update(jobs_t)
        .where(jobs_t.c.id == job_id)
        .values(status="queued", attempts=0, run_at=datetime.now(UTC), finished_at=None)
    )
    return "failed"


def list_jobs(
    conn: Connection, *, status: str | None = None, kind: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}, not {status!r}")
    if not 1 <= limit <= 10_000:
        raise ValueError("limit: must be between 1 and 10000")
    query = select(jobs_t).order_by(jobs_t.c.id.desc()).limit(limit)
    if status is not None:
        query = query.where(jobs_t.c.status == status)
    if kind is not None:
        query = query.where(jobs_t.c.kind == kind)
    return [
        {
            "id": int(r.id),
            "kind": r.kind,
            "status": r.status,
            "run_at": iso_utc(r.run_at),
            "attempts": r.attempts,
            "max_attempts": r.max_attempts,
            "key": r.idempotency_key,
            "outcome": r.outcome,
            "last_error": r.last_error,
            "created_at": iso_utc(r.created_at),
            "finished_at": iso_utc(r.finished_at),
        }
        for r in conn.execute(query)
    ]


def counts(conn: Connection) -> dict[str, int]:
    rows = conn.execute(select(jobs_t.c.status, func.count()).group_by(jobs_t.c.status)).all()
    found = {status: 0 for status in STATUSES}
    found.update({r[0]: int(r[1]) for r in rows})
    return found


def read_cursor(conn: Connection, name: str) -> int:
    """How far the scan ``name`` has read (0: from the start)."""
    found = conn.execute(select(cursors_t.c.position).where(cursors_t.c.name == name)).first()
    return 0 if found is None else int(found.position)


def save_cursor(conn: Connection, name: str, position: int) -> None:
    changed = conn.execute(
        update(cursors_t).where(cursors_t.c.name == name).values(position=position)
    ).rowcount
    if not changed:
        conn.execute(insert(cursors_t).values(name=name, position=position))


def skip_to_end(conn: Connection, name: str, table: Table) -> None:
    """Move the scan ``name`` past every row of ``table``: with nobody reading a source
    (no rule or endpoint on it), its history must not flood whoever subscribes later."""
    latest = conn.execute(select(func.max(table.c.id))).scalar_one()
    save_cursor(conn, name, int(latest or 0))
