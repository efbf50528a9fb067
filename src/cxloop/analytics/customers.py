"""What analytics need to know of customers beside their events: a trait to break down by,
and a name and e-mail for the customer lists.

The app database answers for the DuckDB and PostgreSQL event stores. A Parquet lake carries
its own copy of the customers (``customers.parquet``), so Spark answers from the lake and
needs no app database at all; the event store says so by offering ``customers``.
"""

from __future__ import annotations

from typing import Any, Protocol, cast

import msgspec
from sqlalchemy import Engine, Table, select

from cxloop.analytics.sql import EngineUnsupported
from cxloop.events.base import EventStore
from cxloop.store.models import Customer

customers_t = cast(Table, Customer.__table__)
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


def trait_text(value: Any) -> str:
    """A trait's value as breakdowns show it: text as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[start : start + size] for start in range(0, len(ids), size)]
