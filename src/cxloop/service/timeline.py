"""A customer's whole story in one ordered list, and the notes any department adds to it.

Events live in the event store, everything else in the app database; each source is
read newest first up to the page size before ``before``, and the pages are merged, so a
page costs the same however long the customer's history is. The next page starts
``before`` the oldest item shown.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Table, insert, select

from cxloop.customers.service import resolve_customer_id
from cxloop.domain.values import utc
from cxloop.events import EventQuery, EventStore
from cxloop.lifecycle.service import department_id
from cxloop.store.models import (
    CustomerNote,
    Department,
    FollowUp,
    LifecycleModelRow,
    StageTransition,
    SupportCase,
    Survey,
    SurveyResponse,
)

notes_t = cast(Table, CustomerNote.__table__)
departments_t = cast(Table, Department.__table__)
transitions_t = cast(Table, StageTransition.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
responses_t = cast(Table, SurveyResponse.__table__)
surveys_t = cast(Table, Survey.__table__)
cases_t = cast(Table, SupportCase.__table__)
followups_t = cast(Table, FollowUp.__table__)
MAX_NOTE = 10_000
KINDS = ("event", "stage", "response", "case", "followup", "note")


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    body: str = Field(description="the note, as plain text")
    author: str = Field(max_length=200)
    department: str | None = Field(default=None, max_length=120)


def add_note(conn: Connection, customer: str | int, note: NoteIn) -> dict[str, Any]:
    """Store a note as the text it is (pages escape it when they show it)."""
    customer_id = resolve_customer_id(conn, customer)
    body = note.body.strip()
    if not body:
        raise ValueError("body: the note is empty")
    if len(body) > MAX_NOTE:
        raise ValueError(f"body: at most {MAX_NOTE} characters, not {len(body)}")
    author = note.author.strip()
    if not author:
        raise ValueError("author: say who writes the note")
    row = {
        "customer_id": customer_id,
        "author": author,
        "body": body,
        "department_id": department_id(conn, note.department),
        "created_at": (now := datetime.now(UTC)),
    }
    new_id = conn.execute(insert(notes_t).values(**row).returning(notes_t.c.id)).scalar_one()
    return {
        "id": int(new_id),
        "customer_id": customer_id,
        "author": author,
        "body": body,
        "department": note.department,
        "created_at": now.isoformat(),
    }


def timeline(
    conn: Connection,
    events: EventStore,
    customer: str | int,
    *,
    before: datetime | None = None,
    limit: int = 50,
    kinds: tuple[str, ...] = KINDS,
) -> dict[str, Any]:
    """``{"customer_id", "items": [{"at", "kind", "title", "details"...}], "next_before"}``,
    newest first."""
    if not 1 <= limit <= 500:
        raise ValueError("limit: must be between 1 and 500")
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"kinds: unknown {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    customer_id = resolve_customer_id(conn, customer)
    before = utc(before) if before else None
    sources = {
        "event": _events,
        "stage": _stages,
        "response": _responses,
        "case": _cases,
        "followup": _followups,
        "note": _notes,
    }
    pages = [sources[k](conn, events, customer_id, before, limit) for k in kinds]
    items = list(heapq.merge(*pages, key=lambda item: item["at"], reverse=True))[:limit]
    for item in items:
        item["at"] = item["at"].isoformat()
    return {
        "customer_id": customer_id,
        "items": items,
        "next_before": items[-1]["at"] if len(items) == limit else None,
    }


def _page(conn: Connection, query: Any, column: Any, before: datetime | None, limit: int) -> Any:
    if before is not None:
        query = query.where(column < before)
    return conn.execute(query.order_by(column.desc()).limit(limit)).all()


def _events(
    conn: Connection, events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    found = events.query(EventQuery(customer_ids=(customer_id,), end=before, limit=limit))
    out = []
    for e in found:
        at = utc(e["timestamp"])
        if before is not None and at >= before:
            continue
        title = e.get("event") or e.get("name") or e["type"]
        out.append(
            {
                "at": at,
                "kind": "event",
                "title": title,
                "type": e["type"],
                "message_id": e["message_id"],
                "properties": e.get("properties") or {},
            }
        )
    return out


def _stages(
    conn: Connection, _events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(transitions_t, models_t.c.key.label("model"))
        .select_from(transitions_t.join(models_t))
        .where(transitions_t.c.customer_id == customer_id)
    )
    out = []
    for t in _page(conn, query, transitions_t.c.at, before, limit):
        move = f"{t.from_stage or '—'} → {t.to_stage or 'exit'}"
        out.append(
            {
                "at": utc(t.at),
                "kind": "stage",
                "title": f"{t.model}: {move}",
                "model": t.model,
                "move": t.kind,
                "from_stage": t.from_stage,
                "to_stage": t.to_stage,
                "reason": t.reason,
            }
        )
    return out


def _responses(
    conn: Connection, _events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(responses_t, surveys_t.c.name.label("survey"), surveys_t.c.kind.label("survey_kind"))
        .select_from(responses_t.join(surveys_t))
        .where(responses_t.c.customer_id == customer_id)
    )
    out = []
    for r in _page(conn, query, responses_t.c.submitted_at, before, limit):
        answer = r.choice if r.score is None else f"{r.survey_kind.upper()} {r.score}"
        out.append(
            {
                "at": utc(r.submitted_at),
                "kind": "response",
                "title": f"{r.survey}: {answer}",
                "response_id": int(r.id),
                "score": r.score,
                "choice": r.choice,
                "comment": r.comment,
                "sentiment": r.sentiment,
                "touchpoint": r.touchpoint,
            }
        )
    return out


def _cases(
    conn: Connection, _events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(cases_t, departments_t.c.name.label("department"))
        .select_from(cases_t.outerjoin(departments_t))
        .where(cases_t.c.customer_id == customer_id)
    )
    out = []
    for c in _page(conn, query, cases_t.c.opened_at, before, limit):
        state = c.status if c.outcome is None else f"resolved ({c.outcome})"
        out.append(
            {
                "at": utc(c.opened_at),
                "kind": "case",
                "title": f"Case: {c.subject}",
                "case_id": int(c.id),
                "status": state,
                "department": c.department,
                "assignee": c.assignee,
                "resolution_note": c.resolution_note,
            }
        )
    return out


def _followups(
    conn: Connection, _events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(followups_t, departments_t.c.name.label("department"))
        .select_from(followups_t.outerjoin(departments_t))
        .where(followups_t.c.customer_id == customer_id)
    )
    out = []
    for f in _page(conn, query, followups_t.c.created_at, before, limit):
        out.append(
            {
                "at": utc(f.created_at),
                "kind": "followup",
                "title": f.summary,
                "followup_id": int(f.id),
                "reason": f.reason,
                "status": f.status,
                "department": f.department,
                "assignee": f.assignee,
                "due_at": utc(f.due_at).isoformat(),
                "resolution_note": f.resolution_note,
            }
        )
    return out


def _notes(
    conn: Connection, _events: EventStore, customer_id: int, before: datetime | None, limit: int
) -> list[dict[str, Any]]:
    query = (
        select(notes_t, departments_t.c.name.label("department"))
        .select_from(notes_t.outerjoin(departments_t))
        .where(notes_t.c.customer_id == customer_id)
    )
    return [
        {
            "at": utc(n.created_at),
            "kind": "note",
            "title": n.body[:120],
            "note_id": int(n.id),
            "body": n.body,
            "author": n.author,
            "department": n.department,
        }
        for n in _page(conn, query, notes_t.c.created_at, before, limit)
    ]


def customer_scores(
    conn: Connection, customer: str | int, *, limit: int = 500
) -> list[dict[str, Any]]:
    """Per survey the customer answered: its latest score (or choice) and when, how many
    answers, and their mean score; read from the customer's newest ``limit`` answers, so a
    profile costs the same for a customer who answers every week."""
    customer_id = resolve_customer_id(conn, customer)
    rows = conn.execute(
        select(
            responses_t.c.survey_id,
            responses_t.c.score,
            responses_t.c.choice,
            responses_t.c.submitted_at,
            surveys_t.c.name.label("survey"),
            surveys_t.c.kind.label("kind"),
        )
        .select_from(responses_t.join(surveys_t))
        .where(responses_t.c.customer_id == customer_id)
        .order_by(responses_t.c.submitted_at.desc(), responses_t.c.id.desc())
        .limit(limit)
    ).all()
    found: dict[int, dict[str, Any]] = {}
    scores: dict[int, list[int]] = {}
    for r in rows:
        key = int(r.survey_id)
        if key not in found:
            found[key] = {
                "survey_id": key,
                "survey": r.survey,
                "kind": r.kind,
                "latest_score": r.score,
                "latest_choice": r.choice,
                "latest_at": utc(r.submitted_at).isoformat(),
                "answers": 0,
                "mean_score": None,
            }
        found[key]["answers"] += 1
        if r.score is not None:
            scores.setdefault(key, []).append(int(r.score))
    for key, values in scores.items():
        found[key]["mean_score"] = round(sum(values) / len(values), 1)
    return sorted(found.values(), key=lambda s: (str(s["kind"]), str(s["survey"])))
