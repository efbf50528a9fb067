"""Runs the job queue: due jobs, and the scans that feed it.

The server runs one worker thread; ``cxloop jobs run`` runs the same loop once from the
command line (claims are atomic, so both can run). Jobs that read the event store (weekly
reports, segment refreshes) run only in a worker given the store; one without it (the
command line beside a running server, which owns an embedded store) leaves them queued.
A job that raises is retried with backoff and, after its last attempt, left as failed
with the error for a person to read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from cxloop import mail, segments
from cxloop.automations import firing, running, webhooks
from cxloop.events.base import EventStore
from cxloop.feedback import triggers
from cxloop.reports import schedules
from cxloop.service import followups
from cxloop.settings import Settings
from cxloop.store import jobs

log = logging.getLogger(__name__)
POLL_S = 5.0
STALLED_EVERY_S = 900.0
UNCONFIGURED_LOG_EVERY_S = 600.0


@dataclass
class RunSummary:
    scanned: dict[str, int] = field(default_factory=dict)
    done: int = 0
    retrying: int = 0
    failed: int = 0
    outcomes: list[dict[str, Any]] = field(default_factory=list)


class _QuietLog:
    """One warning for a missing setting rather than one per job it holds back.

    Without e-mail set up, every e-mail job fails the same way; a project with a backlog
    (the demo has hundreds) would bury every other line of the log. The first job is
    logged, then at most every ``every_s`` seconds how many more waited meanwhile."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._logged_at: float | None = None
        self._since = 0

    def note(self, job: jobs.ClaimedJob, exc: Exception) -> None:
        clock = time.monotonic()
        if self._logged_at is not None and clock - self._logged_at < self.every_s:
            self._since += 1
            return
        more = f" ({self._since} more jobs waited for it since)" if self._since else ""
        log.warning(
            "job %s (%s) waits, retried later: %s%s; further jobs that wait for it are "
            "counted here every %.0f minutes",
            job.id, job.kind, exc, more, self.every_s / 60,
        )  # fmt: skip
        self._logged_at, self._since = clock, 0


class Worker:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        sender: triggers.Sender = mail.send,
        events: EventStore | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.handlers: dict[str, Callable[[jobs.ClaimedJob], tuple[str, dict[str, Any]]]] = {
            triggers.SEND_JOB: lambda job: triggers.run_send(engine, settings, job, sender),
            firing.RUN_JOB: lambda job: running.run_rule(engine, job),
            firing.TICK_JOB: lambda job: firing.run_tick(engine, job),
            running.STEP_JOB: lambda job: running.run_step(engine, settings, job, sender),
            webhooks.DELIVER_JOB: lambda job: webhooks.run_delivery(engine, settings, job),
            webhooks.NOTICE_JOB: lambda job: webhooks.run_notice(settings, job, sender),
        }
        if events is not None:
            self.handlers[schedules.REPORT_JOB] = lambda job: schedules.run_email(
                engine, events, settings, job, sender
            )
            self.handlers[SEGMENTS_JOB] = lambda job: _refresh_segments(engine, events)
        self._stalled_at: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._unconfigured = _QuietLog(UNCONFIGURED_LOG_EVERY_S)

    def scan(self, now: datetime | None = None) -> dict[str, int]:
        """Queue what stage entries call for and open the follow-ups now due. New stage
        entries and answers are read from cursors at every pass; stalled customers, a
        read of the lifecycle state that changes by the day, at most every
        ``STALLED_EVERY_S``."""
        with self.engine.begin() as conn:
            found = {
                "stage_triggers": triggers.scan_stage_entries(conn),
                "detractors": followups.scan_detractors(conn),
                "stalled": 0,
                "reports": schedules.scan_due(conn, self.settings.zone, now),
                "segments": _queue_segment_refresh(conn, self.settings, now),
                "automations": firing.scan(conn, self.settings.zone, now=now),
                "webhooks": webhooks.scan(conn),
            }
            clock = time.monotonic()
            if self._stalled_at is None or clock - self._stalled_at >= STALLED_EVERY_S:
                found["stalled"] = followups.scan_stalled(conn, now=now)
                self._stalled_at = clock
        return found

    def run_due(self, *, now: datetime | None = None, limit: int = 20) -> RunSummary:
        """Claim up to ``limit`` due jobs and run them in turn, except webhook deliveries:
        they are read and logged in turn, but their POSTs, which wait on someone else's
        server, go out side by side (``webhooks_concurrency``)."""
        summary = RunSummary()
        with self.engine.begin() as conn:
            claimed = jobs.claim(
                conn,
                now=now,
                limit=limit,
                kinds=self.handlers.keys(),
                lease=timedelta(seconds=self.settings.jobs_lease_s),
            )
        deliveries = [j for j in claimed if j.kind == webhooks.DELIVER_JOB]
        if len(deliveries) < 2 or self.settings.webhooks_concurrency < 2:
            deliveries = []
        outcomes = [self._run(job, now) for job in claimed if job not in deliveries]
        outcomes += self._deliver(deliveries, now)
        for outcome in outcomes:
            status = outcome["status"]
            if status == "done":
                summary.done += 1
            elif status == "failed":
                summary.failed += 1
            else:
                summary.retrying += 1
            summary.outcomes.append(outcome)
        return summary

    def _run(self, job: jobs.ClaimedJob, now: datetime | None) -> dict[str, Any]:
        """One job: its handler, then finished, or failed for a retry (or for good)."""
        handler = self.handlers.get(job.kind)
        try:
            if handler is None:
                raise LookupError(f"no handler for jobs of kind {job.kind!r}")
            outcome, payload = handler(job)
        except Exception as exc:
            return self._failed(job, exc, now)
        return self._finished(job, outcome, payload)

    def _deliver(
        self, claimed: list[jobs.ClaimedJob], now: datetime | None
    ) -> list[dict[str, Any]]:
        engine, settings = self.engine, self.settings
        outcomes: list[dict[str, Any]] = []
        ready: list[webhooks.Prepared] = []
        for job in claimed:
            try:
                prepared = webhooks.prepare_delivery(engine, job)
            except Exception as exc:
                outcomes.append(self._failed(job, exc, now))
                continue
            if prepared.done is not None:
                outcomes.append(self._finished(job, *prepared.done))
            else:
                ready.append(prepared)
        sent = list(self._pool().map(lambda p: webhooks.send_delivery(settings, p), ready))
        # One transaction logs the round: one commit (an fsync) for up to ``limit`` POSTs.
        # Should it fail, the jobs' leases run out and they are sent again, same ids.
        with engine.begin() as conn:
            for prepared, result in zip(ready, sent, strict=True):
                job = prepared.job
                said, again = webhooks.record_delivery(conn, settings, prepared, result)
                if again:
                    # The job's error reads as it does when the delivery runs alone.
                    status = jobs.fail(conn, job, f"RetryLater: {said}", now=now)
                    log.warning("job %s (%s) failed, retried later: %s", job.id, job.kind, said)
                    outcomes.append(
                        {"id": job.id, "kind": job.kind, "status": status, "error": said}
                    )
                else:
                    jobs.finish(conn, job, said, payload=job.payload)
                    outcomes.append(
                        {"id": job.id, "kind": job.kind, "status": "done", "outcome": said}
                    )
        return outcomes

    def _finished(
        self, job: jobs.ClaimedJob, outcome: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        with self.engine.begin() as conn:
            jobs.finish(conn, job, outcome, payload=payload)
        return {"id": job.id, "kind": job.kind, "status": "done", "outcome": outcome}

    def _failed(self, job: jobs.ClaimedJob, exc: Exception, now: datetime | None) -> dict[str, Any]:
        with self.engine.begin() as conn:
            status = jobs.fail(conn, job, f"{type(exc).__name__}: {exc}", now=now)
        if status == "failed":
            log.error("job %s (%s) failed for good: %s", job.id, job.kind, exc)
        elif isinstance(exc, mail.MailNotConfigured):
            self._unconfigured.note(job, exc)
        else:
            log.warning("job %s (%s) failed, retried later: %s", job.id, job.kind, exc)
        return {"id": job.id, "kind": job.kind, "status": status, "error": str(exc)}

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                self.settings.webhooks_concurrency, thread_name_prefix="cxloop-webhooks"
            )
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def run_once(
        self, *, now: datetime | None = None, stopping: Callable[[], bool] | None = None
    ) -> RunSummary:
        """One pass: scan, then run every job due (in rounds of 20), or until ``stopping``
        says the server is shutting down (the rest stays queued for the next start)."""
        scanned = self.scan(now)
        total = RunSummary(scanned=scanned)
        while stopping is None or not stopping():
            part = self.run_due(now=now)
            total.done += part.done
            total.retrying += part.retrying
            total.failed += part.failed
            total.outcomes.extend(part.outcomes)
            if part.done + part.retrying + part.failed == 0:
                break
        return total


SEGMENTS_JOB = "segments.refresh"


def _queue_segment_refresh(conn: Connection, settings: Settings, now: datetime | None) -> int:
    """One refresh of every saved segment per ``segments_refresh_minutes``, keyed by its
    period so that scans, however many, queue it once."""
    every = settings.segments_refresh_minutes * 60
    if not every or not segments.any_saved(conn):
        return 0
    now = now or datetime.now(UTC)
    key = f"{SEGMENTS_JOB}:{every}:{int(now.timestamp() // every)}"
    queued = jobs.enqueue(conn, SEGMENTS_JOB, {}, key=key, run_at=now, max_attempts=3)
    return 0 if queued is None else 1


def _refresh_segments(engine: Engine, events: EventStore) -> tuple[str, dict[str, Any]]:
    with engine.begin() as conn:
        done = segments.refresh_all(conn, events)
    return f"refreshed {done} segments", {}


class WorkerThread:
    """The server's worker: a pass every few seconds until the server stops."""

    def __init__(self, worker: Worker, every_s: float = POLL_S) -> None:
        self.worker = worker
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cxloop-jobs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.worker.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.worker.run_once(now=datetime.now(UTC), stopping=self._stop.is_set)
            except Exception:
                log.exception("the job worker's pass failed; it runs again shortly")
            self._stop.wait(self.every_s)
