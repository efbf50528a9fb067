"""Reading customers and events for people: search, profiles, timelines, stats, merges."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Table, func, or_, select

from cxloop.customers.schemas import (
    CustomerDetail,
    CustomerOut,
    CustomerPage,
    DayCount,
    EventOut,
    EventPage,
    Identity,
    MergeOut,
    RejectedOut,
    RejectedPage,
    Stats,
)
from cxloop.domain.traits import TYPED_FIELDS
from cxloop.domain.values import as_utc
from cxloop.events.base import EventQuery, EventStore
from cxloop.ingest.identity import EMAIL, USER
from cxloop.store.models import (
    Customer,
    CustomerIdentity,
    CustomerMerge,
    LifecycleState,
    RejectedMessage,
)

customers_t = cast(Table, Customer.__table__)
identities_t = cast(Table, CustomerIdentity.__table__)
merges_t = cast(Table, CustomerMerge.__table__)
rejected_t = cast(Table, RejectedMessage.__table__)
states_t = cast(Table, LifecycleState.__table__)

FILTER_FIELDS = tuple(f for f in TYPED_FIELDS if f not in ("name", "email"))
PROFILE_FIELDS = (*FILTER_FIELDS, "name", "email")  # the typed columns; other names are traits
SORTS = {
    "id": customers_t.c.id,
    "-id": customers_t.c.id.desc(),
    "last_seen": customers_t.c.last_seen,
    "-last_seen": customers_t.c.last_seen.desc(),
    "first_seen": customers_t.c.first_seen,
    "-first_seen": customers_t.c.first_seen.desc(),
}
MAX_LIMIT = 1000
MAX_SEARCH = 200  # characters: longer than any name, e-mail or id


class NotFound(LookupError):
    pass


def _customer(row: Any, user_id: str | None) -> CustomerOut:
    data = {c: getattr(row, c) for c in CustomerOut.model_fields if c != "user_id"}
    for key in ("first_seen", "last_seen", "created_at"):
        data[key] = as_utc(data[key])
    data["traits"] = data["traits"] or {}
    return CustomerOut(**data, user_id=user_id)


def user_ids(conn: Connection, customer_ids: list[int]) -> dict[int, str]:
    """The first userId of each customer (the label lists show)."""
    if not customer_ids:
        return {}
    rows = conn.execute(
        select(identities_t.c.customer_id, identities_t.c.value)
        .where(identities_t.c.kind == USER, identities_t.c.customer_id.in_(customer_ids))
        .order_by(identities_t.c.id)
    )
    found: dict[int, str] = {}
    for customer_id, value in rows:
        found.setdefault(customer_id, value)
    return found


SAVED_SEGMENT = "segment"  # where segment=NAME: the members of a saved segment


def saved_members(name: str) -> Any:
    """The members of the saved segment ``name``, as a subquery. An unknown name matches
    nobody here; the web app refuses it first, naming the field (``web.segments``)."""
    from cxloop.store.models import Segment, SegmentMember

    segments, members = Segment.__table__, SegmentMember.__table__
    return (
        select(members.c.customer_id)
        .join(segments, segments.c.id == members.c.segment_id)
        .where(segments.c.name == name)
    )


def check_field(conn: Connection, name: str, field: str) -> None:
    """Refuse a name that is neither a profile field nor a trait any customer has: a
    misspelt ``chanel=ads`` would match nobody and look like an empty report."""
    if name in PROFILE_FIELDS:
        return
    has_it = customers_t.c.traits[name].as_string().is_not(None)
    if conn.execute(select(customers_t.c.id).where(has_it).limit(1)).first() is None:
        raise ValueError(
            f"{field}: no customer has a trait {name!r}, nor is it a profile field "
            f"({', '.join(PROFILE_FIELDS)})"
        )


def segment_conditions(where: Mapping[str, str]) -> list[ColumnElement[bool]]:
    """A segment as SQL: each NAME=VALUE is a profile field (gender, city, channel …),
    ``segment=NAME`` a saved segment's members, or for any other name a free-form trait;
    every condition must hold."""
    conditions: list[ColumnElement[bool]] = [customers_t.c.merged_into_id.is_(None)]
    for name, value in where.items():
        if name == SAVED_SEGMENT:
            conditions.append(customers_t.c.id.in_(saved_members(value)))
        elif name in FILTER_FIELDS:
            if name == "birth_year":
                try:
                    conditions.append(customers_t.c[name] == int(value))
                except ValueError:
                    raise ValueError(f"{name}: {value!r} is not a year") from None
            else:
                conditions.append(customers_t.c[name] == value)
        elif name in ("name", "email"):
            conditions.append(customers_t.c[name] == value)
        else:
            conditions.append(customers_t.c.traits[name].as_string() == value)
    return conditions


def list_customers(
    conn: Connection,
    *,
    search: str | None = None,
    filters: Mapping[str, str] | None = None,
    traits: Mapping[str, str] | None = None,
    at_stage: tuple[int, str] | None = None,
    sort: str = "-last_seen",
    limit: int = 50,
    offset: int = 0,
) -> CustomerPage:
    """Customers matching every filter; ``search`` looks in name, e-mail and identities;
    ``at_stage`` (a model's id and a stage key) keeps those standing in that stage now
    (the lifecycle state's index on model and stage finds them)."""
    if sort not in SORTS:
        raise ValueError(f"sort: must be one of {', '.join(SORTS)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset: must not be negative")
    if search is not None and len(search) > MAX_SEARCH:
        raise ValueError(f"search: at most {MAX_SEARCH} characters")
    where = _list_conditions(search, filters, traits)
    if at_stage is not None:
        model_id, stage = at_stage
        standing = select(states_t.c.customer_id).where(
            states_t.c.model_id == model_id, states_t.c.stage == stage
        )
        where.append(customers_t.c.id.in_(standing))
    total = conn.execute(select(func.count()).select_from(customers_t).where(*where)).scalar_one()
    rows = conn.execute(
        select(customers_t)
        .where(*where)
        .order_by(SORTS[sort], customers_t.c.id)
        .limit(limit)
        .offset(offset)
    ).all()
    users = user_ids(conn, [r.id for r in rows])
    return CustomerPage(
        items=[_customer(r, users.get(r.id)) for r in rows], total=total, limit=limit, offset=offset
    )


def resolve_customer_id(conn: Connection, ref: str | int) -> int:
    """A customer by id, userId, anonymousId or e-mail; merged ids lead to the survivor."""
    text = str(ref).strip()
    customer_id: int | None = None
    if text.isdigit():
        customer_id = conn.execute(
            select(customers_t.c.id).where(customers_t.c.id == int(text))
        ).scalar_one_or_none()
    if customer_id is None:
        customer_id = conn.execute(
            select(identities_t.c.customer_id)
            .where(identities_t.c.value == text)
            .order_by(identities_t.c.kind.desc())
            .limit(1)
        ).scalar_one_or_none()
    if customer_id is None and "@" in text:
        # E-mail identities are stored lower-cased.
        customer_id = conn.execute(
            select(identities_t.c.customer_id)
            .where(identities_t.c.kind == EMAIL, identities_t.c.value == text.lower())
            .limit(1)
        ).scalar_one_or_none()
    if customer_id is None:
        raise NotFound(f"customer: no customer {text!r}")
    for _ in range(100):
        merged = conn.execute(
            select(customers_t.c.merged_into_id).where(customers_t.c.id == customer_id)
        ).scalar_one_or_none()
        if merged is None:
            break
        customer_id = merged
    return customer_id


def get_customer(
    conn: Connection, events: EventStore, ref: str | int, *, timeline: int = 50
) -> CustomerDetail:
    customer_id = resolve_customer_id(conn, ref)
    row = conn.execute(select(customers_t).where(customers_t.c.id == customer_id)).one()
    identities = conn.execute(
        select(identities_t.c.kind, identities_t.c.value)
        .where(identities_t.c.customer_id == customer_id)
        .order_by(identities_t.c.id)
    ).all()
    merges = conn.execute(
        select(merges_t).where(merges_t.c.into_customer_id == customer_id).order_by(merges_t.c.id)
    ).all()
    query = EventQuery(customer_ids=(customer_id,), limit=timeline)
    user_id = next((v for k, v in identities if k == USER), None)
    base = _customer(row, user_id)
    return CustomerDetail(
        **base.model_dump(),
        identities=[Identity(kind=k, value=v) for k, v in identities],
        merged_from=[_merge(m) for m in merges],
        event_count=events.count(EventQuery(customer_ids=(customer_id,))),
        timeline=[EventOut(**e) for e in events.query(query)],
    )


def _merge(row: Any) -> MergeOut:
    return MergeOut(
        id=row.id,
        from_customer_id=row.from_customer_id,
        into_customer_id=row.into_customer_id,
        reason=row.reason,
        message_id=row.message_id,
        merged_at=as_utc(row.merged_at) or datetime.now(UTC),
        events_moved=row.events_moved,
        identities=list((row.details or {}).get("identities", [])),
    )


def list_events(
    conn: Connection,
    events: EventStore,
    *,
    customer: str | None = None,
    event: str | None = None,
    type: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> EventPage:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError("offset: must not be negative")
    if start and end and start >= end:
        raise ValueError("from: must be before to")
    ids = (resolve_customer_id(conn, customer),) if customer else None
    query = EventQuery(
        customer_ids=ids, event=event, type=type, start=start, end=end, limit=limit, offset=offset
    )
    return EventPage(
        items=[EventOut(**e) for e in events.query(query)],
        total=events.count(query),
        limit=limit,
        offset=offset,
    )


def stats(
    conn: Connection,
    events: EventStore,
    *,
    timezone: str,
    days: int = 90,
    listener_backlog: tuple[int, int] = (0, 0),
) -> Stats:
    """Totals; ``listener_backlog`` is the kept batches waiting and set aside."""
    live = customers_t.c.merged_into_id.is_(None)
    customers = conn.execute(select(func.count()).select_from(customers_t).where(live)).scalar_one()
    identified = conn.execute(
        select(func.count(func.distinct(identities_t.c.customer_id))).where(
            identities_t.c.kind == USER
        )
    ).scalar_one()
    rejected = conn.execute(select(func.count()).select_from(rejected_t)).scalar_one()
    merges = conn.execute(select(func.count()).select_from(merges_t)).scalar_one()
    return Stats(
        customers=customers,
        identified_customers=identified,
        anonymous_customers=customers - identified,
        events=events.count(),
        rejected_messages=rejected,
        merges=merges,
        listener_backlog=listener_backlog[0],
        listener_set_aside=listener_backlog[1],
        events_per_day=[
            DayCount(day=d, events=n) for d, n in events.events_per_day(timezone, days)
        ],
    )


def list_rejected(conn: Connection, *, limit: int = 100, offset: int = 0) -> RejectedPage:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIMIT}")
    total = conn.execute(select(func.count()).select_from(rejected_t)).scalar_one()
    rows = conn.execute(
        select(rejected_t).order_by(rejected_t.c.id.desc()).limit(limit).offset(offset)
    ).all()
    items = [
        RejectedOut(**{**row._asdict(), "received_at": as_utc(row.received_at)}) for row in rows
    ]
    return RejectedPage(items=items, total=total, limit=limit, offset=offset)


def _list_conditions(
    search: str | None, filters: Mapping[str, str] | None, traits: Mapping[str, str] | None
) -> list[ColumnElement[bool]]:
    """The conditions of ``list_customers``' filters and search."""
    where: list[ColumnElement[bool]] = [customers_t.c.merged_into_id.is_(None)]
    for field, value in (filters or {}).items():
        if field not in FILTER_FIELDS:
            raise ValueError(f"{field}: not a filterable field ({', '.join(FILTER_FIELDS)})")
        if field == "birth_year":
            try:
                where.append(customers_t.c[field] == int(value))
            except ValueError:
                raise ValueError(f"{field}: {value!r} is not a year") from None
        else:
            where.append(customers_t.c[field] == value)
    for key, value in (traits or {}).items():
        where.append(customers_t.c.traits[key].as_string() == value)
    if search:
        literal = search.strip().lower().replace("\\", "\\\\")
        pattern = "%" + literal.replace("%", "\\%").replace("_", "\\_") + "%"
        owners = select(identities_t.c.customer_id).where(identities_t.c.value == search.strip())
        where.append(
            or_(
                func.lower(customers_t.c.name).like(pattern, escape="\\"),
                func.lower(customers_t.c.email).like(pattern, escape="\\"),
                customers_t.c.id.in_(owners),
            )
        )
    return where


def customer_labels(conn: Connection, customer_ids: list[int]) -> dict[int, str]:
    """What a list shows for each customer: the name, else the e-mail, else the userId,
    else ``#id``; one query for a page of ids."""
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(customers_t.c.id, customers_t.c.name, customers_t.c.email).where(
            customers_t.c.id.in_(ids)
        )
    ).all()
    users = user_ids(conn, ids)
    found = {int(r.id): r.name or r.email or users.get(int(r.id)) for r in rows}
    return {i: found.get(i) or f"#{i}" for i in ids}


def field_values(conn: Connection, field: str, *, limit: int = 200) -> list[str]:
    """The distinct values of a profile field (most customers first), for pick lists;
    at most ``limit`` of them."""
    if field not in FILTER_FIELDS:
        raise ValueError(f"{field}: not a filterable field ({', '.join(FILTER_FIELDS)})")
    column = customers_t.c[field]
    rows = conn.execute(
        select(column, func.count().label("n"))
        .where(customers_t.c.merged_into_id.is_(None), column.is_not(None))
        .group_by(column)
        .order_by(func.count().desc(), column)
        .limit(limit)
    ).all()
    return [str(r[0]) for r in rows]
