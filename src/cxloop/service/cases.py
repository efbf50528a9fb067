"""Support cases: a customer's request for help, from opening to its outcome.

A case remembers the lifecycle stage the customer stood in when it was opened and the
department that owns that stage, so that support outcomes can be read per stage and a
bad one routed to the right team. Cases come from the API and the CLI, and from a
tracking event (``Support Ticket Opened``) sent by a help desk, idempotent on its
messageId.
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from typing import Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, Table, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cxloop.customers.service import resolve_customer_id
from cxloop.domain.scores import Nps
from cxloop.domain.values import iso_utc, utc, utc_within
from cxloop.feedback.triggers import on_case_resolved
from cxloop.lifecycle.service import NotFound, department_id, installed_with_ids, stage_at
from cxloop.service.followups import for_negative_case
from cxloop.store import activity
from cxloop.store.models import (
    Department,
    LifecycleModelRow,
    LifecycleState,
    StageTransition,
    SupportCase,
    Survey,
    SurveyResponse,
)

cases_t = cast(Table, SupportCase.__table__)
departments_t = cast(Table, Department.__table__)
states_t = cast(Table, LifecycleState.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
transitions_t = cast(Table, StageTransition.__table__)
responses_t = cast(Table, SurveyResponse.__table__)
surveys_t = cast(Table, Survey.__table__)

CASE_EVENTS = ("Support Ticket Opened", "Support Case Opened", "Case Opened")
RESOLVED_EVENTS = ("Support Ticket Resolved", "Support Case Resolved", "Case Resolved")
STATUSES = ("open", "in_progress", "resolved")
Outcome = Literal["positive", "negative"]


class CaseIn(BaseModel):
    """A new case. ``customer`` is an id, userId, anonymousId or e-mail; the stage and
    department default to where the customer stands (in ``model``, else the first model
    the customer is in)."""

    model_config = ConfigDict(extra="forbid")

    customer: str = Field(max_length=320)
    subject: str = Field(max_length=200)
    channel: str | None = Field(default=None, max_length=40, description="email, phone, chat…")
    category: str | None = Field(default=None, max_length=80)
    model: str | None = Field(default=None, max_length=63, description="lifecycle model")
    department: str | None = Field(default=None, max_length=120)
    opened_at: datetime | None = None


class CaseUpdate(BaseModel):
    """Assign, answer or resolve a case; ``outcome`` (positive or negative) resolves it."""

    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(default=None, max_length=200)
    unassign: bool = Field(default=False, description="give the case back: nobody has it")
    responded: bool = Field(default=False, description="record the first response now")
    outcome: str | None = Field(default=None, description="positive or negative: resolves")
    note: str | None = Field(default=None, max_length=5000)


def open_case(
    conn: Connection,
    new: CaseIn,
    *,
    source: str = "api",
    message_id: str | None = None,
    customer_id: int | None = None,
    external_id: str | None = None,
    chain: list[int] | None = None,
) -> dict[str, Any]:
    """Open a case (once per ``message_id``); ``chain`` names the rules whose action
    opened it, so that rules reacting to new cases cannot loop."""
    subject = new.subject.strip()
    if not subject:
        raise ValueError("subject: give the case a subject")
    who = customer_id if customer_id is not None else resolve_customer_id(conn, new.customer)
    opened = utc_within(new.opened_at, "opened_at") or datetime.now(UTC)
    if opened > datetime.now(UTC):
        raise ValueError("opened_at: a case cannot be opened in the future")
    model, stage, owner = stage_at(conn, who, new.model, opened)
    owner_id = department_id(conn, new.department or owner)
    row = {
        "customer_id": who,
        "subject": subject,
        "channel": _clean(new.channel),
        "category": _clean(new.category),
        "stage_model": model,
        "stage": stage,
        "department_id": owner_id,
        "status": "open",
        "source": source,
        "message_id": message_id,
        "external_id": external_id,
        "opened_at": opened,
    }
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    found = conn.execute(
        dialect.insert(cases_t)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(cases_t.c.id)
    ).first()
    if found is None:  # the same event again
        existing = conn.execute(
            select(cases_t.c.id).where(cases_t.c.message_id == message_id)
        ).scalar_one()
        return get_case(conn, int(existing))
    case = get_case(conn, int(found.id))
    activity.record(
        conn, "case.opened", customer_id=who, ref_id=case["id"], at=opened, data=case, chain=chain
    )
    return case


def update_case(
    conn: Connection, case_id: int, change: CaseUpdate, *, now: datetime | None = None
) -> dict[str, Any]:
    """Apply a change; resolving queues the surveys that follow a resolved case."""
    case = get_case(conn, case_id)
    now = now or datetime.now(UTC)
    values: dict[str, Any] = {}
    if change.assignee is not None:
        values["assignee"] = _clean(change.assignee)
        if values["assignee"] is None:  # it would read as taken while nobody has it
            raise ValueError("assignee: give the name or e-mail of who takes the case")
        if case["status"] == "open":
            values["status"] = "in_progress"
    if change.unassign:
        if change.assignee is not None:
            raise ValueError("unassign: give an assignee or unassign, not both")
        if change.outcome is not None:
            raise ValueError("unassign: a case resolved keeps who had it; resolve it alone")
        if case["status"] == "resolved":
            raise ValueError(f"unassign: case {case_id} is resolved; who had it stays on record")
        if case["assignee"] is None:
            raise ValueError(f"unassign: nobody has case {case_id}")
        values["assignee"] = None
        # Taken without an answer yet: back in the queue, as if never taken. Answered, it
        # stays in progress, waiting for the next one to take it.
        if case["first_response_at"] is None and not change.responded:
            values["status"] = "open"
    if change.responded and case["first_response_at"] is None:
        values["first_response_at"] = now
        if case["status"] == "open":
            values["status"] = "in_progress"
    if change.note is not None:
        values["resolution_note"] = change.note.strip() or None
    if change.outcome is not None:
        if change.outcome not in ("positive", "negative"):
            raise ValueError(f"outcome: must be positive or negative, not {change.outcome!r}")
        if case["status"] == "resolved":
            raise ValueError(f"outcome: case {case_id} is resolved already")
        values.update(status="resolved", outcome=change.outcome, resolved_at=now)
        if case["first_response_at"] is None:
            values.setdefault("first_response_at", now)
    if not values:
        raise ValueError("case: give an assignee, unassign, responded, an outcome or a note")
    conn.execute(update(cases_t).where(cases_t.c.id == case_id).values(**values))
    updated = get_case(conn, case_id)
    if change.outcome is not None:
        activity.record(
            conn,
            "case.resolved",
            customer_id=updated["customer_id"],
            ref_id=case_id,
            at=now,
            data=updated,
        )
        on_case_resolved(conn, updated)
        if change.outcome == "negative":
            for_negative_case(conn, updated)
    return updated


def get_case(conn: Connection, case_id: int) -> dict[str, Any]:
    found = list_cases(conn, case_id=case_id)
    if not found:
        raise NotFound("case", f"no case with id {case_id}")
    return found[0]


def list_cases(
    conn: Connection,
    *,
    case_id: int | None = None,
    customer_id: int | None = None,
    department: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    if status is not None and status not in STATUSES:
        raise ValueError(f"status: must be one of {', '.join(STATUSES)}, not {status!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit: must be between 1 and 1000 (and offset at least 0)")
    query = (
        select(cases_t, departments_t.c.name.label("department"))
        .select_from(cases_t.outerjoin(departments_t))
        .order_by(cases_t.c.opened_at.desc(), cases_t.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if case_id is not None:
        query = query.where(cases_t.c.id == case_id)
    if customer_id is not None:
        query = query.where(cases_t.c.customer_id == customer_id)
    if department is not None:
        query = query.where(departments_t.c.name == department)
    if status is not None:
        query = query.where(cases_t.c.status == status)
    return [_shown(row) for row in conn.execute(query).mappings()]


def _shown(row: Any) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "customer_id": int(row["customer_id"]),
        "subject": row["subject"],
        "channel": row["channel"],
        "category": row["category"],
        "stage": f"{row['stage_model']}:{row['stage']}" if row["stage_model"] else None,
        "department": row["department"],
        "status": row["status"],
        "assignee": row["assignee"],
        "outcome": row["outcome"],
        "resolution_note": row["resolution_note"],
        "source": row["source"],
        "opened_at": iso_utc(row["opened_at"]),
        "first_response_at": iso_utc(row["first_response_at"]),
        "resolved_at": iso_utc(row["resolved_at"]),
        "timeline": f"/api/v1/customers/{row['customer_id']}/timeline",
    }


def _clean(text: str | None) -> str | None:
    return (text or "").strip() or None


# -- from tracking events ------------------------------------------------------------------


def on_events(engine: Engine, rows: pa.Table) -> int:
    """Open and resolve cases from a help desk's tracking events in a stored batch (the
    ingestion listener): ``Support Ticket Opened`` (properties subject, channel,
    category, case_id) and ``Support Ticket Resolved`` (case_id, resolution positive or
    negative). Replays change nothing: an opening is keyed by its messageId and case_id."""
    names = pa.array(CASE_EVENTS + RESOLVED_EVENTS, pa.string())
    if rows.num_rows == 0:
        return 0
    hits = rows.filter(pc.is_in(rows["event"], value_set=names))
    if hits.num_rows == 0:
        return 0
    columns = ["customer_id", "timestamp", "message_id", "event", "properties"]
    found = sorted(
        hits.select(columns).to_pylist(), key=lambda r: (r["timestamp"], r["message_id"])
    )
    changed = 0
    with engine.begin() as conn:
        for row in found:
            if row["customer_id"] is None:
                continue
            props = _properties(row["properties"])
            external = _text(props.get("case_id") or props.get("ticket_id"), 200)
            moment = min(utc(row["timestamp"]), datetime.now(UTC))
            if row["event"] in RESOLVED_EVENTS:
                changed += _resolve_from_event(conn, external, props, moment)
                continue
            if external is not None and _by_external(conn, external) is not None:
                continue
            topic = props.get("subject") or props.get("title") or props.get("topic")
            new = CaseIn(
                customer=str(row["customer_id"]),
                subject=str(topic or "Support ticket")[:200],
                channel=_text(props.get("channel"), 40),
                category=_text(props.get("category") or props.get("topic"), 80),
                opened_at=moment,
            )
            open_case(
                conn,
                new,
                source="event",
                message_id=row["message_id"],
                customer_id=int(row["customer_id"]),
                external_id=external,
            )
            changed += 1
    return changed


def _by_external(conn: Connection, external: str) -> int | None:
    found = conn.execute(select(cases_t.c.id).where(cases_t.c.external_id == external)).first()
    return None if found is None else int(found.id)


def _resolve_from_event(
    conn: Connection, external: str | None, props: dict[str, Any], moment: datetime
) -> int:
    case_id = None if external is None else _by_external(conn, external)
    if case_id is None:
        return 0
    if get_case(conn, case_id)["status"] == "resolved":
        return 0
    said = str(props.get("resolution") or props.get("outcome") or "positive").lower()
    outcome = "negative" if said in ("negative", "unresolved", "failed") else "positive"
    update_case(conn, case_id, CaseUpdate(outcome=outcome), now=moment)
    return 1


def _properties(raw: str | None) -> dict[str, Any]:
    try:
        found = json.loads(raw or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _text(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]


# -- metrics ---------------------------------------------------------------------------------


def case_metrics(
    conn: Connection, *, start: datetime | None = None, end: datetime | None = None
) -> dict[str, Any]:
    """Cases per stage with their times to first response and to resolution (medians, in
    hours) and positive-resolution rate; and the NPS and churn of customers after a case
    against customers without one. Churned: the customer's last move in a model is an exit."""
    query = select(
        cases_t.c.customer_id,
        cases_t.c.stage_model,
        cases_t.c.stage,
        cases_t.c.status,
        cases_t.c.outcome,
        cases_t.c.opened_at,
        cases_t.c.first_response_at,
        cases_t.c.resolved_at,
    )
    if start is not None:
        query = query.where(cases_t.c.opened_at >= start)
    if end is not None:
        query = query.where(cases_t.c.opened_at < end)
    groups: dict[str | None, list[Any]] = {}
    first_case: dict[int, datetime] = {}
    for row in conn.execute(query):
        key = f"{row.stage_model}:{row.stage}" if row.stage_model else None
        groups.setdefault(key, []).append(row)
        opened = utc(row.opened_at)
        if row.customer_id not in first_case or opened < first_case[row.customer_id]:
            first_case[int(row.customer_id)] = opened
    all_rows = [r for rows in groups.values() for r in rows]
    out: dict[str, Any] = _case_figures(all_rows)
    out["stages"] = [
        {"stage": key, **_case_figures(rows)}
        for key, rows in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
    ]
    placed = {tuple(key.split(":", 1)) for key in groups if key}
    out["after_case"], out["without_case"] = _nps_and_churn(conn, first_case, placed)
    return out


def _case_figures(rows: list[Any]) -> dict[str, Any]:
    def hours(later: str) -> float | None:
        spans = [
            (utc(getattr(r, later)) - utc(r.opened_at)).total_seconds() / 3600
            for r in rows
            if getattr(r, later) is not None
        ]
        return round(statistics.median(spans), 2) if spans else None

    resolved = [r for r in rows if r.status == "resolved"]
    positive = sum(1 for r in resolved if r.outcome == "positive")
    return {
        "cases": len(rows),
        "open": sum(1 for r in rows if r.status != "resolved"),
        "resolved": len(resolved),
        "positive_resolution_rate": round(100 * positive / len(resolved), 1) if resolved else None,
        "median_hours_to_first_response": hours("first_response_at"),
        "median_hours_to_resolution": hours("resolved_at"),
    }


def _nps_and_churn(
    conn: Connection, first_case: dict[int, datetime], placed: set[tuple[str, ...]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """NPS of answers given after the customer's first case vs by customers with no case;
    churn share among customers with a case vs those without. To compare like with like,
    both sides are customers who reached a stage where cases are opened, and churn is an
    exit as the last move in those stages' models (all models when no case has a stage)."""
    after, without = [0, 0, 0], [0, 0, 0]
    answers = conn.execute(
        select(responses_t.c.customer_id, responses_t.c.score, responses_t.c.submitted_at)
        .select_from(responses_t.join(surveys_t))
        .where(
            surveys_t.c.kind == "nps",
            surveys_t.c.audience == "customers",
            responses_t.c.customer_id.is_not(None),
            responses_t.c.score.is_not(None),
        )
    )
    for row in answers:
        opened = first_case.get(int(row.customer_id))
        if opened is None:
            bucket = without
        elif utc(row.submitted_at) >= opened:
            bucket = after
        else:
            continue  # answered before their first case: neither side
        bucket[0 if row.score >= 9 else 1 if row.score >= 7 else 2] += 1
    ids = dict(conn.execute(select(models_t.c.key, models_t.c.id)).all())
    pairs = [(ids[m], stage) for m, stage in placed if m in ids]
    in_models = transitions_t.c.model_id.in_({model_id for model_id, _ in pairs})
    last_kind = select(
        transitions_t.c.customer_id,
        transitions_t.c.kind,
        func.row_number()
        .over(
            partition_by=(transitions_t.c.model_id, transitions_t.c.customer_id),
            order_by=(transitions_t.c.at.desc(), transitions_t.c.seq.desc()),
        )
        .label("n"),
    )
    if pairs:
        last_kind = last_kind.where(in_models)
    churned: set[int] = set()
    known: set[int] = set()
    lasts = last_kind.subquery()
    for last in conn.execute(select(lasts.c.customer_id, lasts.c.kind).where(lasts.c.n == 1)):
        known.add(int(last.customer_id))
        if last.kind == "exit":
            churned.add(int(last.customer_id))
    if pairs:
        reached = or_(
            *((transitions_t.c.model_id == m) & (transitions_t.c.to_stage == st) for m, st in pairs)
        )
        known = {
            int(r[0])
            for r in conn.execute(select(transitions_t.c.customer_id).where(reached).distinct())
        }
    with_case = known & set(first_case)
    no_case = known - set(first_case)

    def side(counts: list[int], people: set[int]) -> dict[str, Any]:
        nps = Nps(*counts)
        return {
            "nps": None if nps.score is None else round(nps.score, 1),
            "responses": nps.responses,
            "margin_of_error": None
            if nps.margin_of_error is None
            else round(nps.margin_of_error, 1),
            "customers": len(people),
            "churn_rate": round(100 * len(people & churned) / len(people), 1) if people else None,
        }

    return side(after, with_case), side(without, no_case)


def restage(conn: Connection, *, model: str | None = None) -> int:
    """Give cases opened before any lifecycle model placed their customer the stage the
    (re)built stage histories now say, and its owner; their negative-case follow-ups
    follow. Run after installing a model over existing events."""
    from cxloop.service.followups import followups_t

    rows = conn.execute(
        select(cases_t.c.id, cases_t.c.customer_id, cases_t.c.opened_at).where(
            cases_t.c.stage_model.is_(None)
        )
    ).all()
    placed = 0
    installed = installed_with_ids(conn)
    for row in rows:
        found, stage, owner = stage_at(
            conn, int(row.customer_id), model, utc(row.opened_at), installed
        )
        if found is None:
            continue
        owner_id = department_id(conn, owner) if owner else None
        conn.execute(
            update(cases_t)
            .where(cases_t.c.id == row.id)
            .values(stage_model=found, stage=stage, department_id=owner_id)
        )
        conn.execute(
            update(followups_t)
            .where(followups_t.c.case_id == row.id, followups_t.c.department_id.is_(None))
            .values(stage_model=found, stage=stage, department_id=owner_id)
        )
        placed += 1
    return placed


def case_figures_by_department(conn: Connection) -> dict[str, Any]:
    """The figures ``case_metrics`` gives overall and per stage, overall and per
    department (``departments``, cases without one last), for an inbox that is worked per
    department. One pass over the cases; the NPS and churn comparison is left out."""
    rows = conn.execute(
        select(
            cases_t.c.status,
            cases_t.c.outcome,
            cases_t.c.opened_at,
            cases_t.c.first_response_at,
            cases_t.c.resolved_at,
            departments_t.c.name.label("department"),
        ).select_from(cases_t.outerjoin(departments_t))
    ).all()
    groups: dict[str | None, list[Any]] = {}
    for row in rows:
        groups.setdefault(row.department, []).append(row)
    return {
        **_case_figures(list(rows)),
        "departments": [
            {"department": name, **_case_figures(items)}
            for name, items in sorted(groups.items(), key=lambda kv: (kv[0] is None, str(kv[0])))
        ],
    }


def cases_page(
    conn: Connection,
    *,
    statuses: tuple[str, ...] = STATUSES,
    department: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """``list_cases`` for an inbox: any set of statuses (open and in progress, say),
    newest first, one page and the count of all that match."""
    unknown = [x for x in statuses if x not in STATUSES]
    if unknown or not statuses:
        raise ValueError(f"status: must be among {', '.join(STATUSES)}, not {unknown or 'none'}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise ValueError("limit: must be between 1 and 1000 (and offset at least 0)")
    where: list[Any] = [cases_t.c.status.in_(statuses)]
    if department is not None:
        department_id(conn, department)
        where.append(departments_t.c.name == department)
    joined = cases_t.outerjoin(departments_t)
    total = conn.execute(select(func.count()).select_from(joined).where(*where)).scalar_one()
    query = (
        select(cases_t, departments_t.c.name.label("department"))
        .select_from(joined)
        .where(*where)
        .order_by(cases_t.c.opened_at.desc(), cases_t.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_shown(row) for row in conn.execute(query).mappings()], int(total)


def open_cases_by_stage(
    conn: Connection, model_key: str, *, where: dict[str, str] | None = None
) -> dict[str, int]:
    """How many cases not yet resolved each stage of a model has (the stage the customer
    stood in when the case was opened), for a lifecycle page that shows where support
    work piles up: one grouped count, never the cases themselves. ``where`` keeps the
    cases of customers in a segment, as the reports' segments do."""
    from cxloop.customers.service import customers_t, segment_conditions

    query = (
        select(cases_t.c.stage, func.count())
        .where(
            cases_t.c.stage_model == model_key,
            cases_t.c.stage.is_not(None),
            cases_t.c.status != "resolved",
        )
        .group_by(cases_t.c.stage)
    )
    if where:
        members = select(customers_t.c.id).where(*segment_conditions(where))
        query = query.where(cases_t.c.customer_id.in_(members))
    return {str(stage): int(n) for stage, n in conn.execute(query).all()}
