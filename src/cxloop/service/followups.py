"""Closing the loop: every unhappy or stuck customer becomes someone's task.

A detractor's answer, a case that ended badly, or a customer stalled in a stage past its
target creates a follow-up for the department that owns the stage, due within that
department's SLA. Each cause creates exactly one follow-up (``source_key`` is unique), so
scans can run as often as they like. Scans read detractors from a cursor (each answer is
looked at once) and stalled customers from the lifecycle state.
"""

from __future__ import annotations

import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cxloop.customers.service import resolve_customer_id
from cxloop.domain.lifecycle import LifecycleModel
from cxloop.domain.values import iso_utc, utc
from cxloop.lifecycle.service import (
    NotFound,
    department_id,
    installed_models,
    installed_with_ids,
    stage_at,
)
from cxloop.store import activity, jobs
from cxloop.store.models import (
    CustomerIdentity,
    Department,
    FollowUp,
    LifecycleModelRow,
    LifecycleState,
    Survey,
    SurveyResponse,
)

followups_t = cast(Table, FollowUp.__table__)
departments_t = cast(Table, Department.__table__)
responses_t = cast(Table, SurveyResponse.__table__)
surveys_t = cast(Table, Survey.__table__)
identities_t = cast(Table, CustomerIdentity.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
states_t = cast(Table, LifecycleState.__table__)
STALLED_HORIZON_DAYS = 30
STATUSES = ("open", "in_progress", "done")
REASONS = ("detractor", "negative_case", "stalled", "churn_risk", "manual", "automation")
DEFAULT_SLA_HOURS = 48
_RESPONSES_CURSOR = "followups:responses"


class FollowUpIn(BaseModel):
    """A follow-up someone asks for by hand."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(max_length=320)
    summary: str = Field(max_length=2000)
    department: str | None = Field(default=None, max_length=120)
    assignee: str | None = Field(default=None, max_length=200)


class FollowUpUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = Field(default=None, description="open, in_progress or done")
    assignee: str | None = Field(default=None, max_length=200)
    unassign: bool = Field(default=False, description="give it back: nobody has it")
    note: str | None = Field(default=None, max_length=5000, description="the resolution note")


def _create(
    conn: Connection,
    *,
    customer_id: int,
    reason: str,
    source_key: str,
    summary: str,
    department_id: int | None,
    since: datetime,
    stage: tuple[str | None, str | None] = (None, None),
    response_id: int | None = None,
    case_id: int | None = None,
    assignee: str | None = None,
    chain: list[int] | None = None,
) -> int | None:
    """Insert one follow-up per cause; None when this cause has one already."""
    now = datetime.now(UTC)
    hours = DEFAULT_SLA_HOURS
    if department_id is not None:
        hours = int(
            conn.execute(
                select(departments_t.c.followup_sla_hours).where(
                    departments_t.c.id == department_id
                )
            ).scalar_one()
        )
    row = {
        "customer_id": customer_id,
        "department_id": department_id,
        "reason": reason,
        "source_key": source_key,
        "response_id": response_id,
        "case_id": case_id,
        "stage_model": stage[0],
        "stage": stage[1],
        "summary": summary[:2000],
        "status": "open",
        "assignee": assignee,
        "due_at": utc(since) + timedelta(hours=hours),
        "created_at": min(utc(since), now),  # the loop opened when its cause happened
        "updated_at": now,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    found = conn.execute(
        dialect.insert(followups_t)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["source_key"])
        .returning(followups_t.c.id)
    ).first()
    if found is None:
        return None
    activity.record(
        conn,
        "followup.created",
        customer_id=customer_id,
        ref_id=int(found.id),
        at=min(utc(since), now),
        data={k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
        | {"id": int(found.id)},
        chain=chain,
    )
    return int(found.id)


def create_followup(conn: Connection, new: FollowUpIn) -> dict[str, Any]:
    summary = new.summary.strip()
    if not summary:
        raise ValueError("summary: say what needs doing")
    customer_id = resolve_customer_id(conn, new.customer)
    new_id = _create(
        conn,
        customer_id=customer_id,
        reason="manual",
        source_key=f"manual:{uuid.uuid4()}",
        summary=summary,
        department_id=department_id(conn, new.department),
        since=datetime.now(UTC),
        assignee=_clean(new.assignee),
    )
    assert new_id is not None
    return get_followup(conn, new_id)


def for_automation(
    conn: Connection,
    *,
    customer_id: int,
    source_key: str,
    summary: str,
    department: str | None,
    chain: list[int],
) -> int | None:
    """The follow-up a rule's action asks for: one per run and action (``source_key``),
    so a retried action never opens a second one. None when it exists already."""
    text = summary.strip()
    if not text:
        raise ValueError("summary: say what needs doing")
    return _create(
        conn,
        customer_id=customer_id,
        reason="automation",
        source_key=source_key,
        summary=text,
        department_id=department_id(conn, department),
        since=datetime.now(UTC),
        chain=chain,
    )


def for_churn_risk(
    conn: Connection,
    *,
    customer_id: int,
    model_key: str,
    stage: str,
    owner: str | None,
    since: datetime,
    summary: str,
) -> int | None:
    """One follow-up per customer and stay the churn model flags: asking again while the
    customer stands in the same stage adds nothing to the inbox."""
    return _create(
        conn,
        customer_id=customer_id,
        reason="churn_risk",
        source_key=f"churn_risk:{model_key}:{customer_id}:{utc(since).isoformat()}",
        summary=summary,
        department_id=department_id(conn, owner) if owner else None,
        since=datetime.now(UTC),
        stage=(model_key, stage),
    )


def for_negative_case(conn: Connection, case: dict[str, Any]) -> int | None:
    model, _, stage = (case["stage"] or "").partition(":")
    return _create(
        conn,
        customer_id=int(case["customer_id"]),
        reason="negative_case",
        source_key=f"case:{case['id']}",
        summary=f"Case {case['id']} ended badly: {case['subject']}",
        department_id=department_id(conn, case["department"]),
        since=datetime.fromisoformat(case["resolved_at"]),
        stage=(model or None, stage or None),
        case_id=int(case["id"]),
    )


def scan(conn: Connection, *, now: datetime | None = None, batch: int = 5000) -> dict[str, int]:
    """Create the follow-ups now called for: detractors answered since the last scan,
    and customers stalled in a stage past its target."""
    return {
        "detractors": scan_detractors(conn, batch=batch),
        "stalled": scan_stalled(conn, now=now),
    }


def scan_detractors(conn: Connection, *, batch: int = 5000) -> int:
    """One follow-up per customer NPS answer of 0 to 6 (given by a known customer), owned
    by the department that owns the answer's stage (else the customer's current one).
    SQL picks the detractors out of the answers after the cursor, up to the newest answer
    when the scan began, and the cursor then moves to that answer."""
    created = 0
    installed: list[tuple[int, LifecycleModel]] | None = None
    owners: dict[tuple[str | None, str | None], str] = {}
    departments: dict[str | None, int | None] = {None: None}
    top = conn.execute(select(func.max(responses_t.c.id))).scalar_one()
    while True:
        position = jobs.read_cursor(conn, _RESPONSES_CURSOR)
        if top is None or position >= top:
            return created
        rows = conn.execute(
            select(
                responses_t.c.id,
                responses_t.c.customer_id,
                responses_t.c.score,
                responses_t.c.comment,
                responses_t.c.stage_model,
                responses_t.c.stage,
                responses_t.c.touchpoint,
                responses_t.c.submitted_at,
            )
            .select_from(responses_t.join(surveys_t))
            .where(
                responses_t.c.id > position,
                responses_t.c.id <= top,
                surveys_t.c.kind == "nps",
                surveys_t.c.audience == "customers",
                responses_t.c.customer_id.is_not(None),
                responses_t.c.score <= 6,
            )
            .order_by(responses_t.c.id)
            .limit(batch)
        ).all()
        if rows and installed is None:
            installed = installed_with_ids(conn)
            owners = {(m.key, st.key): st.owner for _, m in installed for st in m.stages}
        for r in rows:
            stage = (r.stage_model, r.stage)
            if r.stage_model is None:
                found = stage_at(conn, int(r.customer_id), None, utc(r.submitted_at), installed)
                stage = found[0], found[1]
            owner = owners.get(stage) if stage[0] else None
            if owner not in departments:
                departments[owner] = department_id(conn, owner)
            where = f" at {r.touchpoint}" if r.touchpoint else ""
            said = f": “{r.comment[:300]}”" if r.comment else ""
            created += (
                _create(
                    conn,
                    customer_id=int(r.customer_id),
                    reason="detractor",
                    source_key=f"response:{r.id}",
                    summary=f"Detractor (NPS {r.score}){where}{said}",
                    department_id=departments[owner],
                    since=r.submitted_at,
                    stage=stage,
                    response_id=int(r.id),
                )
                is not None
            )
        done = len(rows) < batch
        jobs.save_cursor(conn, _RESPONSES_CURSOR, int(top if done else rows[-1].id))
        if done:
            return created


def scan_stalled(conn: Connection, *, now: datetime | None = None) -> int:
    """One follow-up per customer and stay in a stage past its target time, for customers
    someone can reach (a known userId or e-mail) whose stay went past its target in the
    last ``STALLED_HORIZON_DAYS``: older stalls are history, not a task."""
    now = now or datetime.now(UTC)
    created = 0
    reachable = (
        select(identities_t.c.customer_id)
        .where(identities_t.c.kind.in_(("user_id", "email")))
        .scalar_subquery()
    )
    for model in installed_models(conn):
        model_id = conn.execute(
            select(models_t.c.id).where(models_t.c.key == model.key)
        ).scalar_one()
        for item in model.stages:
            if item.target_days is None:
                continue
            target = timedelta(days=item.target_days)
            rows = conn.execute(
                select(states_t.c.customer_id, states_t.c.entered_at).where(
                    states_t.c.model_id == model_id,
                    states_t.c.stage == item.key,
                    states_t.c.entered_at < now - target,
                    states_t.c.entered_at >= now - target - timedelta(days=STALLED_HORIZON_DAYS),
                    states_t.c.customer_id.in_(reachable),
                )
            ).all()
            owner_id = department_id(conn, item.owner) if item.owner else None
            for row in rows:
                entered = utc(row.entered_at)
                days = round((now - entered).total_seconds() / 86400, 1)
                created += (
                    _create(
                        conn,
                        customer_id=int(row.customer_id),
                        reason="stalled",
                        source_key=f"stalled:{model.key}:{row.customer_id}:{entered.isoformat()}",
                        summary=f"Stalled in {item.name} for {days} days "
                        f"(target {item.target_days})",
                        department_id=owner_id,
                        since=entered + target,
                        stage=(model.key, item.key),
                    )
                    is not None
                )
    return created


def update_followup(
    conn: Connection, followup_id: int, change: FollowUpUpdate, *, now: datetime | None = None
) -> dict[str, Any]:
    current = get_followup(conn, followup_id)
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {"updated_at": now}
    if change.assignee is not None:
        values["assignee"] = _clean(change.assignee)
        if values["assignee"] is None:  # giving it back has its checks: unassign
            raise ValueError(
                "assignee: give the name or e-mail of who takes it (unassign gives it back)"
            )
    if change.unassign:
        if change.assignee is not None:
            raise ValueError("unassign: give an assignee or unassign, not both")
        if current["status"] == "done" or change.status == "done":
            raise ValueError(
                f"unassign: follow-up {followup_id} is done; who closed it stays on record"
            )
        if current["assignee"] is None:
            raise ValueError(f"unassign: nobody has follow-up {followup_id}")
        values["assignee"] = None
    if change.note is not None:
        values["resolution_note"] = change.note.strip() or None
    if change.status is not None:
        if change.status not in STATUSES:
            raise ValueError(f"status: must be one of {', '.join(STATUSES)}, not {change.status!r}")
        values["status"] = change.status
        if change.status == "done":
            if not (values.get("resolution_note") or current["resolution_note"]):
                raise ValueError("note: say what was done before closing the follow-up")
            values["closed_at"] = now if current["status"] != "done" else current["closed_at"]
        else:
            values["closed_at"] = None
    if len(values) == 1:
        raise ValueError("followup: give a status, an assignee, unassign or a note")
    if isinstance(values.get("closed_at"), str):
        values["closed_at"] = datetime.fromisoformat(values["closed_at"])
    conn.execute(update(followups_t).where(followups_t.c.id == followup_id).values(**values))
    return get_followup(conn, followup_id)


def get_followup(conn: Connection, followup_id: int) -> dict[str, Any]:
    found = list_followups(conn, followup_id=followup_id)
    if not found:
        raise NotFound("followup", f"no follow-up with id {followup_id}")
    return found[0]


def list_followups(
    conn: Connection,
    *,
    followup_id: int | None = None,
    department: str | None = None,
    status: str | None = None,
    reason: str | None = None,
    customer_id: int | None = None,
    overdue: bool = False,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Follow-ups, the most urgent (earliest due) first."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}, not {status!r}")
    if reason is not None and reason not in REASONS:
        raise ValueError(f"reason: must be one of {', '.join(REASONS)}, not {reason!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit: must be between 1 and 1000 (and offset at least 0)")
    now = now or datetime.now(UTC)
    query = (
        select(followups_t, departments_t.c.name.label("department"))
        .select_from(followups_t.outerjoin(departments_t))
        .order_by(followups_t.c.due_at, followups_t.c.id)
        .limit(limit)
        .offset(offset)
    )
    if followup_id is not None:
        query = query.where(followups_t.c.id == followup_id)
    if department is not None:
        department_id(conn, department)
        query = query.where(departments_t.c.name == department)
    if status is not None:
        query = query.where(followups_t.c.status == status)
    if reason is not None:
        query = query.where(followups_t.c.reason == reason)
    if customer_id is not None:
        query = query.where(followups_t.c.customer_id == customer_id)
    if overdue:
        query = query.where(followups_t.c.status != "done", followups_t.c.due_at < now)
    return [_shown(row, now) for row in conn.execute(query).mappings()]


def _shown(row: Any, now: datetime) -> dict[str, Any]:
    due = utc(row["due_at"])
    return {
        "id": int(row["id"]),
        "customer_id": int(row["customer_id"]),
        "department": row["department"],
        "reason": row["reason"],
        "summary": row["summary"],
        "stage": f"{row['stage_model']}:{row['stage']}" if row["stage_model"] else None,
        "status": row["status"],
        "assignee": row["assignee"],
        "resolution_note": row["resolution_note"],
        "due_at": due.isoformat(),
        "overdue": row["status"] != "done" and due < now,
        "response_id": row["response_id"],
        "case_id": row["case_id"],
        "created_at": iso_utc(row["created_at"]),
        "closed_at": iso_utc(row["closed_at"]),
        "timeline": f"/api/v1/customers/{row['customer_id']}/timeline",
    }


def followup_metrics(conn: Connection, *, now: datetime | None = None) -> dict[str, Any]:
    """Share of detractors followed up (their follow-up is done), median hours to close,
    overdue count; overall and per department."""
    now = now or datetime.now(UTC)
    detractors = conn.execute(
        select(func.count())
        .select_from(responses_t.join(surveys_t))
        .where(
            surveys_t.c.kind == "nps",
            surveys_t.c.audience == "customers",
            responses_t.c.customer_id.is_not(None),
            responses_t.c.score <= 6,
        )
    ).scalar_one()
    rows = conn.execute(
        select(
            followups_t.c.reason,
            followups_t.c.status,
            followups_t.c.due_at,
            followups_t.c.created_at,
            followups_t.c.closed_at,
            departments_t.c.name.label("department"),
        ).select_from(followups_t.outerjoin(departments_t))
    ).all()
    closed_detractors = sum(1 for r in rows if r.reason == "detractor" and r.status == "done")
    out: dict[str, Any] = {
        "detractors": int(detractors),
        "detractors_followed_up": closed_detractors,
        "detractors_followed_up_share": round(100 * closed_detractors / detractors, 1)
        if detractors
        else None,
        **_figures(list(rows), now),
    }
    by_department: dict[str | None, list[Any]] = {}
    for r in rows:
        by_department.setdefault(r.department, []).append(r)
    out["departments"] = [
        {"department": name, **_figures(items, now)}
        for name, items in sorted(by_department.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    ]
    return out


def _figures(rows: list[Any], now: datetime) -> dict[str, Any]:
    spans = [
        (utc(r.closed_at) - utc(r.created_at)).total_seconds() / 3600
        for r in rows
        if r.status == "done" and r.closed_at is not None
    ]
    return {
        "followups": len(rows),
        "open": sum(1 for r in rows if r.status == "open"),
        "in_progress": sum(1 for r in rows if r.status == "in_progress"),
        "done": sum(1 for r in rows if r.status == "done"),
        "overdue": sum(1 for r in rows if r.status != "done" and utc(r.due_at) < now),
        "median_hours_to_close": round(statistics.median(spans), 2) if spans else None,
    }


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None


def detractors_by_department(conn: Connection) -> dict[str | None, dict[str, Any]]:
    """Per department: its detractor follow-ups, how many are done, and that share in
    percent; ``followup_metrics`` gives the share only over all departments."""
    rows = conn.execute(
        select(
            departments_t.c.name.label("department"),
            func.count().label("detractors"),
            func.count().filter(followups_t.c.status == "done").label("done"),
        )
        .select_from(followups_t.outerjoin(departments_t))
        .where(followups_t.c.reason == "detractor")
        .group_by(departments_t.c.name)
    ).all()
    return {
        r.department: {
            "detractors": int(r.detractors),
            "detractors_followed_up": int(r.done or 0),
            "detractors_followed_up_share": round(100 * int(r.done or 0) / int(r.detractors), 1)
            if r.detractors
            else None,
        }
        for r in rows
    }


def followups_page(
    conn: Connection,
    *,
    statuses: tuple[str, ...] = STATUSES,
    department: str | None = None,
    overdue: bool = False,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """``list_followups`` for an inbox: any set of statuses (open and in progress, say),
    earliest due first, one page and the count of all that match."""
    unknown = [x for x in statuses if x not in STATUSES]
    if unknown or not statuses:
        raise ValueError(f"status: must be among {', '.join(STATUSES)}, not {unknown or 'none'}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit: must be between 1 and 1000 (and offset at least 0)")
    now = now or datetime.now(UTC)
    where: list[Any] = [followups_t.c.status.in_(statuses)]
    if department is not None:
        department_id(conn, department)
        where.append(departments_t.c.name == department)
    if overdue:
        where += [followups_t.c.status != "done", followups_t.c.due_at < now]
    joined = followups_t.outerjoin(departments_t)
    total = conn.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
    query = (
        select(followups_t, departments_t.c.name.label("department"))
        .select_from(joined)
        .where(*where)
        .order_by(followups_t.c.due_at, followups_t.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [_shown(row, now) for row in conn.execute(query).mappings()], int(total)
