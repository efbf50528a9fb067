"""Saved segments: rules checked when saved, members computed and kept, CSV export.

Members are computed when a segment is saved and whenever it is refreshed (``cxloop
segments refresh`` or the API), and kept in
``segment_members``; a report filters by a segment with ``where segment=NAME``, one
indexed subquery (``customers.service.segment_conditions``). ``refreshed_at`` says how
fresh the members are.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from defusedcsv import csv  # the csv module, with formula-like cells escaped
from sqlalchemy import Connection, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cxloop.analytics.sql import query_for
from cxloop.customers.service import (
    FILTER_FIELDS,
    PROFILE_FIELDS,
    SAVED_SEGMENT,
    check_field,
    customers_t,
)
from cxloop.domain.segments import (
    EventRule,
    Rule,
    ScoreRule,
    SegmentDefinition,
    SegmentIn,
    StageRule,
    TraitRule,
)
from cxloop.domain.values import iso_utc
from cxloop.events.base import EventStore
from cxloop.feedback.responses import responses_t
from cxloop.feedback.surveys import surveys_t
from cxloop.lifecycle.report import transitions_t
from cxloop.lifecycle.service import NotFound, get_model, states_t
from cxloop.store.models import Segment, SegmentAddition, SegmentMember

segments_t = cast(Table, Segment.__table__)
members_t = cast(Table, SegmentMember.__table__)
additions_t = cast(Table, SegmentAddition.__table__)
EXPORT_FIELDS = ("id", "name", "email", *FILTER_FIELDS)
_INSERT_BATCH = 5000


class _Customers:
    """The live customers' profile fields and traits, read once per evaluation."""

    def __init__(self, conn: Connection) -> None:
        c = customers_t.c
        rows = conn.execute(
            select(c.id, c.traits, *[c[f] for f in PROFILE_FIELDS]).where(
                c.merged_into_id.is_(None)
            )
        ).all()
        self.ids = {int(r.id) for r in rows}
        self.rows = rows

    def value(self, row: Any, field: str) -> Any:
        if field in PROFILE_FIELDS:
            return getattr(row, field)
        return (row.traits or {}).get(field)


def compare(have: Any, op: str, want: Any) -> bool:
    if op == "exists":
        return have is not None
    if op == "missing":
        return have is None
    if have is None:
        return op in ("not_equals", "not_in")
    if op in ("gt", "gte", "lt", "lte"):
        try:
            number = float(have)
        except (TypeError, ValueError):
            return False
        limit = float(want)
        return {"gt": number > limit, "gte": number >= limit, "lt": number < limit,
                "lte": number <= limit}[op]  # fmt: skip
    text = str(have)
    if op == "equals":
        return text == str(want)
    if op == "not_equals":
        return text != str(want)
    if op == "in":
        return text in {str(v) for v in want}
    if op == "not_in":
        return text not in {str(v) for v in want}
    return str(want).lower() in text.lower()  # contains


def _trait(people: _Customers, rule: TraitRule, where: str) -> set[int]:
    if rule.field not in PROFILE_FIELDS and not any(
        rule.field in (row.traits or {}) for row in people.rows
    ):
        raise ValueError(
            f"{where}.field: no customer has a trait {rule.field!r} (nor is it a profile field)"
        )
    return {
        int(row.id)
        for row in people.rows
        if compare(people.value(row, rule.field), rule.op, rule.value)
    }


def _stage(conn: Connection, rule: StageRule, where: str) -> set[int]:
    try:
        model_id, model, _version = get_model(conn, rule.model)
    except NotFound:
        raise ValueError(f"{where}.model: no lifecycle model {rule.model!r}") from None
    keys = [s.key for s in model.stages]
    if rule.stage not in keys:
        raise ValueError(f"{where}.stage: {rule.stage!r} is not a stage of {rule.model}")
    if rule.ever:
        t = transitions_t.c
        query = select(t.customer_id).where(t.model_id == model_id, t.to_stage == rule.stage)
    else:
        s = states_t.c
        query = select(s.customer_id).where(s.model_id == model_id, s.stage == rule.stage)
    return {int(c) for c in conn.execute(query.distinct()).scalars()}


def _event(events: EventStore, people: _Customers, rule: EventRule) -> set[int]:
    q, sql = query_for(events)
    clauses = ["type = 'track'", f"event = {q.param(rule.event)}", "customer_id IS NOT NULL"]
    if rule.within_days is not None:
        since = datetime.now(UTC) - timedelta(days=rule.within_days)
        clauses.append(f'"timestamp" >= {q.param(since)}')
    text = (
        f"SELECT customer_id FROM events WHERE {' AND '.join(clauses)} GROUP BY customer_id "
        f"HAVING count(*) >= {q.param(rule.min_count)}"
    )
    did = {int(c) for c in sql(*q.build(text)).column("customer_id").to_pylist()}
    return did & people.ids if rule.done else people.ids - did


def _score(conn: Connection, rule: ScoreRule) -> set[int]:
    r, s = responses_t.c, surveys_t.c
    rows = conn.execute(
        select(r.customer_id, r.score)
        .join(surveys_t, s.id == r.survey_id)
        .where(
            s.kind == rule.measure,
            s.audience == "customers",
            r.customer_id.is_not(None),
            r.score.is_not(None),
        )
        .order_by(r.customer_id, r.submitted_at, r.id)
    ).all()
    latest = {int(row.customer_id): float(row.score) for row in rows}  # the last one stays
    return {c for c, score in latest.items() if compare(score, rule.op, rule.value)}


def evaluate(conn: Connection, events: EventStore, definition: SegmentDefinition) -> set[int]:
    """The ids of the live customers matching the definition; a rule naming a trait no
    customer has, or a model or stage that does not exist, is an error naming the rule."""
    people = _Customers(conn)
    found: set[int] | None = None
    for index, rule in enumerate(definition.rules):
        hits = _rule(conn, events, people, rule, f"rules[{index}]")
        if found is None:
            found = hits
        elif definition.match == "all":
            found &= hits
        else:
            found |= hits
    return (found or set()) & people.ids


def _rule(
    conn: Connection, events: EventStore, people: _Customers, rule: Rule, where: str
) -> set[int]:
    if isinstance(rule, TraitRule):
        return _trait(people, rule, where)
    if isinstance(rule, StageRule):
        return _stage(conn, rule, where)
    if isinstance(rule, EventRule):
        return _event(events, people, rule)
    return _score(conn, rule)


def _shown(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "name": row.name,
        "description": row.description,
        "match": row.definition["match"],
        "rules": row.definition["rules"],
        "members": int(row.members),
        "refreshed_at": iso_utc(row.refreshed_at),
        "created_at": iso_utc(row.created_at),
        "updated_at": iso_utc(row.updated_at),
    }


def _row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(segments_t).where(segments_t.c.name == name)).first()
    if row is None:
        raise NotFound("segment", f"no saved segment {name!r}")
    return row


def check_named(conn: Connection, where: dict[str, str], field: str = "where") -> None:
    """Refuse a filter naming a saved segment that does not exist (it would match nobody
    and look like an empty report)."""
    if SAVED_SEGMENT in where:
        name = where[SAVED_SEGMENT]
        if conn.execute(select(segments_t.c.id).where(segments_t.c.name == name)).first() is None:
            raise NotFound(field, f"no saved segment {name!r}")


def check_where(conn: Connection, where: dict[str, str], field: str = "where") -> None:
    """Refuse a segment filter that matches nobody because of a name rather than a value:
    a saved segment that does not exist, or an unknown field or trait."""
    check_named(conn, where, field)
    for name in where:
        if name != SAVED_SEGMENT:
            check_field(conn, name, field)


def get_segment(conn: Connection, name: str) -> dict[str, Any]:
    return _shown(_row(conn, name))


def any_saved(conn: Connection) -> bool:
    """Whether any segment is saved (the worker's scans ask this every few seconds)."""
    return conn.execute(select(segments_t.c.id).limit(1)).first() is not None


def list_segments(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(segments_t).order_by(segments_t.c.name)).all()
    return [_shown(r) for r in rows]


def _store_members(conn: Connection, segment_id: int, ids: set[int]) -> None:
    """Replace the members: those the rules find, and those added by hand or by a rule's
    action (kept until the segment is deleted)."""
    added = conn.execute(
        select(additions_t.c.customer_id).where(additions_t.c.segment_id == segment_id)
    ).scalars()
    ids = ids | {int(c) for c in added}
    conn.execute(delete(members_t).where(members_t.c.segment_id == segment_id))
    ordered = sorted(ids)
    for start in range(0, len(ordered), _INSERT_BATCH):
        chunk = ordered[start : start + _INSERT_BATCH]
        conn.execute(
            insert(members_t), [{"segment_id": segment_id, "customer_id": c} for c in chunk]
        )
    now = datetime.now(UTC)
    conn.execute(
        update(segments_t)
        .where(segments_t.c.id == segment_id)
        .values(members=len(ids), refreshed_at=now, updated_at=now)
    )


def save_segment(
    conn: Connection, events: EventStore, new: SegmentIn, *, replace: str | None = None
) -> dict[str, Any]:
    """Create a segment (or, with ``replace``, change the one of that name), compute its
    members and return it. The rules are checked against the data before anything is
    stored: a rule on a trait no customer has is refused, not saved as an empty group."""
    name = new.name.strip()
    if not name:
        raise ValueError("name: give the segment a name")
    definition = new.definition()
    ids = evaluate(conn, events, definition)
    now = datetime.now(UTC)
    values = {
        "name": name,
        "description": (new.description or "").strip() or None,
        "definition": json.loads(definition.model_dump_json()),
        "updated_at": now,
    }
    clash = conn.execute(select(segments_t.c.id).where(segments_t.c.name == name)).scalar()
    if replace is None:
        if clash is not None:
            raise ValueError(f"name: a segment named {name!r} exists already")
        segment_id = int(
            conn.execute(
                insert(segments_t).values(**values, members=0, created_at=now)
                .returning(segments_t.c.id)
            ).scalar_one()
        )  # fmt: skip
    else:
        segment_id = int(_row(conn, replace).id)
        if clash is not None and clash != segment_id:
            raise ValueError(f"name: a segment named {name!r} exists already")
        conn.execute(update(segments_t).where(segments_t.c.id == segment_id).values(**values))
    _store_members(conn, segment_id, ids)
    return get_segment(conn, name)


def refresh_segment(conn: Connection, events: EventStore, name: str) -> dict[str, Any]:
    row = _row(conn, name)
    definition = SegmentDefinition.model_validate(row.definition)
    _store_members(conn, int(row.id), evaluate(conn, events, definition))
    return get_segment(conn, name)


def refresh_all(conn: Connection, events: EventStore) -> int:
    """Refresh every segment; one whose rules no longer hold (a trait gone) keeps its
    last members. Returns how many were refreshed."""
    done = 0
    for row in conn.execute(select(segments_t.c.name)).all():
        try:
            refresh_segment(conn, events, row.name)
            done += 1
        except ValueError:
            continue
    return done


def add_member(conn: Connection, name: str, customer_id: int, source: str) -> bool:
    """Put a customer into a segment and keep them there across refreshes (a rule's
    "add to segment"). False when they were in it already."""
    row = _row(conn, name)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    now = datetime.now(UTC)
    conn.execute(
        dialect.insert(additions_t)
        .values(segment_id=row.id, customer_id=customer_id, added_at=now, source=source[:200])
        .on_conflict_do_nothing()
    )
    fresh = conn.execute(
        dialect.insert(members_t)
        .values(segment_id=row.id, customer_id=customer_id)
        .on_conflict_do_nothing()
    ).rowcount
    if fresh:
        conn.execute(
            update(segments_t)
            .where(segments_t.c.id == row.id)
            .values(members=segments_t.c.members + 1, updated_at=now)
        )
    return bool(fresh)


def delete_segment(conn: Connection, name: str) -> None:
    """Refused while a rule still names the segment (``automations.usage``, imported here
    when needed: the rules import this module)."""
    from cxloop.automations.usage import refuse_if_used

    row = _row(conn, name)
    refuse_if_used(conn, "segment", name)
    conn.execute(delete(members_t).where(members_t.c.segment_id == row.id))
    conn.execute(delete(segments_t).where(segments_t.c.id == row.id))


def member_page(conn: Connection, name: str, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    row = _row(conn, name)
    c = customers_t.c
    query = (
        select(c.id, c.name, c.email, c.country, c.channel)
        .join(members_t, members_t.c.customer_id == c.id)
        .where(members_t.c.segment_id == row.id)
        .order_by(c.id)
    )
    items = [dict(r._mapping) for r in conn.execute(query.limit(limit).offset(offset))]
    total = conn.execute(
        select(func.count()).select_from(members_t).where(members_t.c.segment_id == row.id)
    ).scalar_one()
    return {"segment": name, "total": int(total), "items": items}


def export_csv(conn: Connection, name: str, batch: int = 5000) -> Iterator[str]:
    """The segment's customers as CSV, a batch of rows at a time: the profile fields,
    the userId, and the traits as JSON, for marketing tools to import."""
    from cxloop.store.models import CustomerIdentity

    identities = cast(Table, CustomerIdentity.__table__)
    row = _row(conn, name)
    c = customers_t.c
    user_id = (
        select(func.min(identities.c.value))
        .where(identities.c.customer_id == c.id, identities.c.kind == "user_id")
        .scalar_subquery()
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*EXPORT_FIELDS, "user_id", "traits"])
    yield out.getvalue()
    last = 0
    while True:
        rows = conn.execute(
            select(*[c[f] for f in EXPORT_FIELDS], user_id.label("user_id"), c.traits)
            .join(members_t, members_t.c.customer_id == c.id)
            .where(members_t.c.segment_id == row.id, c.id > last)
            .order_by(c.id)
            .limit(batch)
        ).all()
        if not rows:
            return
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for r in rows:
            writer.writerow(
                [*("" if r._mapping[f] is None else r._mapping[f] for f in EXPORT_FIELDS),
                 r.user_id or "", json.dumps(r.traits or {}, ensure_ascii=False)]
            )  # fmt: skip
        last = int(rows[-1].id)
        yield out.getvalue()
