"""The JSON shapes of customers and events, shared by the REST API and `--format json`."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field


class Identity(BaseModel):
    kind: str = Field(description="user_id, anonymous_id or email")
    value: str


class CustomerOut(BaseModel):
    id: int
    name: str | None = None
    email: str | None = None
    gender: str | None = None
    birth_year: int | None = None
    age_band: str | None = None
    education: str | None = None
    city: str | None = None
    region: str | None = None
    country: str | None = None
    profession: str | None = None
    relationship_status: str | None = None
    income_band: str | None = None
    channel: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    created_at: datetime
    user_id: str | None = Field(default=None, description="The first userId of the customer")


class EventOut(BaseModel):
    message_id: str
    type: str
    event: str | None = None
    name: str | None = None
    customer_id: int
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp: datetime
    received_at: datetime
    channel: str | None = None
    source: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class MergeOut(BaseModel):
    id: int
    from_customer_id: int
    into_customer_id: int
    reason: str
    message_id: str | None = None
    merged_at: datetime
    events_moved: bool
    identities: list[str] = Field(default_factory=list)


class CustomerDetail(CustomerOut):
    identities: list[Identity]
    merged_from: list[MergeOut] = Field(default_factory=list)
    event_count: int
    timeline: list[EventOut] = Field(description="The newest events, newest first")


class CustomerPage(BaseModel):
    items: list[CustomerOut]
    total: int
    limit: int
    offset: int


class EventPage(BaseModel):
    items: list[EventOut]
    total: int
    limit: int
    offset: int


class DayCount(BaseModel):
    day: date
    events: int


class Stats(BaseModel):
    customers: int = Field(description="Customers, merged ones not counted")
    identified_customers: int
    anonymous_customers: int
    events: int
    rejected_messages: int
    merges: int
    listener_backlog: int = Field(
        default=0,
        description="Stored batches a listener (stages, cases, survey triggers, rules, "
        "webhooks) failed on and will be handed again; above 0 for long, see the server log",
    )
    listener_set_aside: int = Field(
        default=0,
        description="Kept batches a listener kept failing on while it took later ones; "
        "set aside in CXLOOP_HOME/listener-backlog/NAME/set-aside (see the server log)",
    )
    events_per_day: list[DayCount]


class RejectedOut(BaseModel):
    id: int
    received_at: datetime
    source: str
    batch_index: int | None = None
    message_id: str | None = None
    field: str
    reason: str
    payload: str


class RejectedPage(BaseModel):
    items: list[RejectedOut]
    total: int
    limit: int
    offset: int
