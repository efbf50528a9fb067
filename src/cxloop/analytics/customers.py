"""What analytics need to know of customers beside their events: a trait or saved segment
to break down by, and a name and e-mail for the customer lists.

The app database answers for the DuckDB and PostgreSQL event stores. A Parquet lake carries
its own copy of the customers (``customers.parquet``), so Spark answers from the lake and
needs no app database at all; the event store says so by offering ``customers``. Saved
segments live in the app database only, so a breakdown by one needs it whatever the store.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import msgspec
from sqlalchemy import Engine, Table, select

from cxloop.analytics.funnel_spec import Breakdown, SpecProblem, SpecRejected
from cxloop.analytics.sql import EngineUnsupported
from cxloop.customers.service import saved_members
from cxloop.events.base import EventStore
from cxloop.store.models import Customer, Segment, SegmentMember

customers_t = cast(Table, Customer.__table__)
segments_t = cast(Table, Segment.__table__)
members_t = cast(Table, SegmentMember.__table__)
NEEDS_APP_DATABASE = "a breakdown by saved segment needs the app database"
Contact = tuple[str | None, str | None]  # name, e-mail


class CustomerFacts(Protocol):
    def traits_of(self, customers: list[int], trait: str) -> dict[int, str | None]:
        """Each customer's trait as text (JSON text when it is not a string)."""
        ...

    def has_trait(self, trait: str) -> bool:
        """Some customer has the trait (a null value included)."""
        ...

    def contacts(self, customers: list[int]) -> dict[int, Contact]: ...


class AppCustomers:
    """Customers as the app database keeps them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def traits_of(self, customers: list[int], trait: str) -> dict[int, str | None]:
        found: dict[int, str | None] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(customers):
                for row in conn.execute(
                    select(customers_t.c.id, customers_t.c.traits).where(
                        customers_t.c.id.in_(chunk)
                    )
                ):
                    value = (row.traits or {}).get(trait)
                    found[row.id] = None if value is None else trait_text(value)
        return found

    def has_trait(self, trait: str) -> bool:
        with self.engine.connect() as conn:
            return any(
                trait in (row.traits or {})
                for row in conn.execute(
                    select(customers_t.c.traits).where(customers_t.c.traits.is_not(None))
                )
            )

    def contacts(self, customers: list[int]) -> dict[int, Contact]:
        found: dict[int, Contact] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(customers):
                for row in conn.execute(
                    select(customers_t.c.id, customers_t.c.name, customers_t.c.email).where(
                        customers_t.c.id.in_(chunk)
                    )
                ):
                    found[row.id] = (row.name, row.email)
        return found


def customers_for(events: EventStore, engine: Engine | None) -> CustomerFacts:
    """The event store's own customers when it has them (a lake), else the app database's."""
    own = getattr(events, "customers", None)
    if own is not None:
        return cast(CustomerFacts, own)
    if engine is None:
        raise EngineUnsupported(f"the {events.backend} event store needs the app database")
    return AppCustomers(engine)


def group_labels(
    breakdown: Breakdown, ids: list[int], facts: CustomerFacts, engine: Engine | None
) -> dict[int, str | None]:
    """Each customer's group for a breakdown by trait or by saved segment: the segment's
    members are labelled ``in NAME``, everyone else ``not in NAME``, so a report shows the
    segment against the rest."""
    if breakdown.segment is None:
        assert breakdown.trait is not None
        return facts.traits_of(ids, breakdown.trait)
    name = breakdown.segment
    if engine is None:
        raise EngineUnsupported(NEEDS_APP_DATABASE)
    members: set[int] = set()
    listed = saved_members(name)
    with engine.connect() as conn:
        for chunk in _chunks(ids):
            members.update(conn.scalars(listed.where(members_t.c.customer_id.in_(chunk))))
    inside, outside = f"in {name}", f"not in {name}"
    return {c: inside if c in members else outside for c in ids}


def check_customer_breakdown(
    breakdown: Breakdown | None, facts: CustomerFacts, engine: Engine | None
) -> None:
    """Refuse a breakdown by a trait no customer has or by a segment nobody saved, naming
    the field, rather than show one group of blanks."""
    if breakdown is None or breakdown.property is not None:
        return
    if breakdown.segment is not None:
        _require_segment(engine, breakdown.segment)
        return
    assert breakdown.trait is not None
    if not facts.has_trait(breakdown.trait):
        raise SpecRejected(
            [
                SpecProblem(
                    "breakdown_trait_missing",
                    "breakdown.trait",
                    f"no customer has the trait {breakdown.trait!r}",
                )
            ]
        )


def _require_segment(engine: Engine | None, name: str) -> None:
    if engine is None:
        raise EngineUnsupported(NEEDS_APP_DATABASE)
    with engine.connect() as conn:
        found = conn.scalar(select(segments_t.c.id).where(segments_t.c.name == name))
    if found is None:
        raise SpecRejected(
            [
                SpecProblem(
                    "breakdown_segment_missing",
                    "breakdown.segment",
                    f"no saved segment is named {name!r}",
                )
            ]
        )


def trait_text(value: Any) -> str:
    """A trait's value as breakdowns show it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]
