"""Weekly report e-mails, one schedule per department, sent by the job queue.

A schedule names a weekday and an hour in the project's time zone. Each worker pass looks
for the latest such moment that has passed and queues one ``report.email`` job for it,
keyed by the schedule and that moment: however many workers scan, and however often, a
week's report is queued once, and a worker that was down at the hour sends it when it
comes back. The report covers the seven days before the moment, as the department sees
it (``document.gather`` with the department). Each recipient is kept in the job once
their copy is out, so a retry after a mail-server failure sends only the missing ones.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, Engine, Table, delete, insert, select, update

from cxloop.domain.values import as_utc
from cxloop.events.base import EventStore
from cxloop.feedback.triggers import Sender
from cxloop.lifecycle.mirror import moves_store
from cxloop.lifecycle.service import NotFound, department_id, get_model
from cxloop.mail import compose
from cxloop.reports.document import ReportRequest, gather, render_html, render_pdf
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.store.models import Department, ReportSchedule, User

schedules_t = cast(Table, ReportSchedule.__table__)
departments_t = cast(Table, Department.__table__)
users_t = cast(Table, User.__table__)
REPORT_JOB = "report.email"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_RECIPIENTS = 50


class ScheduleIn(BaseModel):
    """A department's weekly report: when, and to whom (none: the department's users)."""

    model_config = ConfigDict(extra="forbid")

    department: Annotated[str, Field(min_length=1, max_length=120)]
    weekday: str = "mon"
    hour: Annotated[int, Field(ge=0, le=23)] = 8
    model: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    recipients: Annotated[list[str], Field(max_length=MAX_RECIPIENTS)] = []
    enabled: bool = True

    @field_validator("weekday")
    @classmethod
    def _day(cls, value: str) -> str:
        day = value.strip().lower()[:3]
        if day not in WEEKDAYS:
            raise ValueError(f"use one of {', '.join(WEEKDAYS)}, not {value!r}")
        return day

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value if v.strip()]
        for address in cleaned:
            local, _, domain = address.partition("@")
            if not local or "." not in domain or any(c.isspace() for c in address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return list(dict.fromkeys(cleaned))


def save_schedule(
    conn: Connection, schedule: ScheduleIn, zone: ZoneInfo | None = None
) -> dict[str, Any]:
    """Create or replace the department's schedule."""
    found = department_id(conn, schedule.department)
    assert found is not None
    if schedule.model is not None:
        get_model(conn, schedule.model)
    now = datetime.now(UTC)
    values = {
        "model": schedule.model,
        "weekday": WEEKDAYS.index(schedule.weekday),
        "hour": schedule.hour,
        "recipients": schedule.recipients or None,
        "enabled": schedule.enabled,
        "updated_at": now,
    }
    existing = conn.execute(
        select(schedules_t.c.id).where(schedules_t.c.department_id == found)
    ).scalar()
    if existing is None:
        conn.execute(insert(schedules_t).values(department_id=found, created_at=now, **values))
    else:
        conn.execute(update(schedules_t).where(schedules_t.c.id == existing).values(**values))
    return next(s for s in list_schedules(conn, zone) if s["department_id"] == found)


def delete_schedule(conn: Connection, department: str) -> None:
    found = department_id(conn, department)
    gone = conn.execute(delete(schedules_t).where(schedules_t.c.department_id == found))
    if not gone.rowcount:
        raise NotFound("department", f"{department!r} has no report schedule")


def list_schedules(conn: Connection, zone: ZoneInfo | None = None) -> list[dict[str, Any]]:
    """Every schedule with its department, who gets it, and when it next goes out."""
    zone = zone or ZoneInfo("UTC")
    rows = conn.execute(
        select(schedules_t, departments_t.c.name.label("department"))
        .join(departments_t, departments_t.c.id == schedules_t.c.department_id)
        .order_by(departments_t.c.name)
    ).all()
    now = datetime.now(UTC)
    return [
        {
            "id": int(r.id),
            "department": r.department,
            "department_id": int(r.department_id),
            "model": r.model,
            "weekday": WEEKDAYS[r.weekday],
            "hour": r.hour,
            "recipients": list(r.recipients or []),
            "sends_to": _recipients(conn, r),
            "enabled": bool(r.enabled),
            "last_sent_at": as_utc(r.last_sent_at),
            "next_at": (_latest_slot(r.weekday, r.hour, now, zone) + timedelta(days=7))
            .astimezone(UTC)
            .isoformat(),
        }
        for r in rows
    ]


def _recipients(conn: Connection, row: Any) -> list[str]:
    if row.recipients:
        return list(row.recipients)
    found = conn.execute(
        select(users_t.c.email)
        .where(users_t.c.department_id == row.department_id, users_t.c.disabled_at.is_(None))
        .order_by(users_t.c.email)
    ).scalars()
    return list(found)


def _latest_slot(weekday: int, hour: int, now: datetime, zone: ZoneInfo) -> datetime:
    """The latest moment at or before ``now`` that is ``weekday`` at ``hour`` in the zone."""
    local = now.astimezone(zone)
    day = local.date() - timedelta(days=(local.weekday() - weekday) % 7)
    slot = datetime.combine(day, time(hour), zone)
    if slot > local:
        slot = datetime.combine(day - timedelta(days=7), time(hour), zone)
    return slot


def scan_due(conn: Connection, zone: ZoneInfo, now: datetime | None = None) -> int:
    """Queue this week's report for every schedule whose moment has passed (and came after
    the schedule was made: a new schedule sends no backlog). Returns how many were queued."""
    now = now or datetime.now(UTC)
    queued = 0
    for row in conn.execute(select(schedules_t).where(schedules_t.c.enabled.is_(True))).all():
        slot = _latest_slot(row.weekday, row.hour, now, zone)
        created = as_utc(row.created_at)
        if created is not None and slot < created:
            continue
        key = f"{REPORT_JOB}:{row.id}:{slot.astimezone(UTC).isoformat()}"
        payload = {"schedule_id": int(row.id), "slot": slot.isoformat()}
        if jobs.enqueue(conn, REPORT_JOB, payload, key=key, run_at=slot) is not None:
            queued += 1
    return queued


def run_email(
    engine: Engine, events: EventStore, settings: Settings, job: jobs.ClaimedJob, sender: Sender
) -> tuple[str, dict[str, Any]]:
    """The ``report.email`` job: the department's report over the week before its moment,
    as an HTML e-mail with the PDF attached, to each recipient not yet sent to."""
    payload = dict(job.payload)
    slot = datetime.fromisoformat(payload["slot"]).astimezone(settings.zone)
    with engine.connect() as conn:
        row = conn.execute(
            select(schedules_t, departments_t.c.name.label("department"))
            .join(departments_t, departments_t.c.id == schedules_t.c.department_id)
            .where(schedules_t.c.id == payload["schedule_id"])
        ).first()
        if row is None:
            return "skipped: the schedule no longer exists", payload
        recipients = _recipients(conn, row)
        if not recipients:
            return f"skipped: {row.department} has no users and the schedule no address", payload
        last = slot.date() - timedelta(days=1)
        request = ReportRequest(model=row.model, first=last - timedelta(days=6), last=last,
                                department=row.department)  # fmt: skip
        data = gather(conn, events, request, zone=settings.zone, store=moves_store(events))
    html = render_html(data)
    pdf = render_pdf(html)
    sent: list[str] = list(payload.get("sent", []))
    for address in recipients:
        if address in sent:
            continue
        sender(settings, _message(settings, address, data, html, pdf, last))
        sent.append(address)
        payload["sent"] = sent
        with engine.begin() as conn:
            jobs.save_payload(conn, job.id, payload)
    with engine.begin() as conn:
        conn.execute(
            update(schedules_t)
            .where(schedules_t.c.id == row.id)
            .values(last_sent_at=datetime.now(UTC))
        )
    return f"sent to {len(sent)}", payload


def _message(
    settings: Settings, to: str, data: dict[str, Any], html: str, pdf: bytes, last: date
) -> EmailMessage:
    overview, gaps = data["overview"], data["gaps"]["stages"]
    lines = [
        f"{data['title']}, {data['from']} to {data['to']}",
        "",
        f"NPS {_figure(data['nps'].get('nps'))} from {data['nps']['responses']} answers.",
    ]
    if overview["lifecycle"]:
        rate = overview["lifecycle"]["conversion_rate"]
        lines.append(f"Conversion {_figure(None if rate is None else rate * 100)} %.")
    if gaps:
        worst = ", ".join(f"{s['name']} (priority {_figure(s['priority'])})" for s in gaps[:3])
        lines.append(f"Stages to look at first: {worst}.")
    mine = data["followups"]["departments"]
    overdue = mine[0]["overdue"] if mine else 0
    lines += [f"Follow-ups of {data['department']} overdue: {overdue}.", "",
              "The whole report is attached as a PDF."]  # fmt: skip
    message = compose(settings, to=to, subject=f"{data['title']}, week to {last.isoformat()}",
                      text="\n".join(lines), html=html)  # fmt: skip
    name = f"cxloop-report-{data['model']}-{last.isoformat()}.pdf"
    message.add_attachment(pdf, maintype="application", subtype="pdf", filename=name)
    return message


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
