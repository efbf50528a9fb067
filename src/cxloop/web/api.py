"""REST API under /api/v1: customers, events, stats, rejected messages, keys, imports.

Read endpoints are plain functions, so FastAPI runs them in its thread pool and a slow
query never blocks ingestion on the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from cxloop.customers import service
from cxloop.customers.schemas import (
    CustomerPage,
    EventPage,
    MergeOut,
    RejectedPage,
    Stats,
)
from cxloop.domain.messages import MessageError
from cxloop.domain.values import MAX_INT, as_utc, parse_pairs, utc_within
from cxloop.ingest.files_model import CUSTOMERS_SCHEMA, EVENTS_SCHEMA
from cxloop.ingest.importer import decode_messages
from cxloop.ingest.pipeline import IngestResult, merge_customers
from cxloop.lifecycle.schemas import CustomerWithStages, with_stages
from cxloop.store.database import session_scope
from cxloop.store.keys import KeyInfo, create_key, list_keys, revoke_key
from cxloop.web.auth import Admin, Analyst, Caller
from cxloop.web.errors import NUL_REASON, ApiError, refuse_nul

router = APIRouter(prefix="/api/v1", tags=["api"], dependencies=[Depends(refuse_nul)])
# Past MAX_INT no row can be reached and the database drivers refuse the number.
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]


@router.get("/customers", response_model=CustomerPage)
def customers(
    state: Caller,
    search: Annotated[
        str | None, Query(max_length=service.MAX_SEARCH, description="Name, e-mail or id")
    ] = None,
    gender: str | None = None,
    age_band: str | None = None,
    birth_year: Annotated[int | None, Query(ge=1, le=9999)] = None,
    education: str | None = None,
    city: str | None = None,
    region: str | None = None,
    country: str | None = None,
    profession: str | None = None,
    relationship_status: str | None = None,
    income_band: str | None = None,
    channel: str | None = None,
    trait: Annotated[list[str] | None, Query(description="Free trait filter NAME=VALUE")] = None,
    sort: Literal["id", "-id", "last_seen", "-last_seen", "first_seen", "-first_seen"] = (
        "-last_seen"
    ),
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 50,
    offset: Offset = 0,
) -> CustomerPage:
    """Customers (merged ones hidden), filtered by demographics and traits."""
    values = dict(locals())
    filters = {f: str(values[f]) for f in service.FILTER_FIELDS if values.get(f) is not None}
    traits = parse_pairs(trait, "trait")
    with state.project.engine.connect() as conn:
        return service.list_customers(
            conn,
            search=search,
            filters=filters,
            traits=traits,
            sort=sort,
            limit=limit,
            offset=offset,
        )


@router.get("/customers/{ref}", response_model=CustomerWithStages)
def customer(
    state: Caller, ref: str, timeline: Annotated[int, Query(ge=0, le=500)] = 50
) -> CustomerWithStages:
    """One customer by id, userId, anonymousId or e-mail: identities, timeline, stages."""
    with state.project.engine.connect() as conn:
        detail = service.get_customer(conn, state.project.events, ref, timeline=timeline)
        return with_stages(conn, detail)


@router.get("/customers/{ref}/events", response_model=EventPage)
def customer_events(
    state: Caller,
    ref: str,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 100,
    offset: Offset = 0,
) -> EventPage:
    """The customer's timeline, newest first, all merged identities together."""
    with state.project.engine.connect() as conn:
        return service.list_events(
            conn, state.project.events, customer=ref, limit=limit, offset=offset
        )


class MergeIn(BaseModel):
    from_customer: str = Field(
        description="Id, userId, anonymousId or e-mail of the customer to fold into this one"
    )


@router.post("/customers/{ref}/merge", response_model=MergeOut)
async def merge(state: Analyst, ref: str, body: MergeIn) -> MergeOut:
    """Merge another customer into this one: identities, traits and events move."""
    project = state.project

    def run() -> MergeOut:
        with project.engine.begin() as conn:
            survivor = service.resolve_customer_id(conn, ref)
            loser = service.resolve_customer_id(conn, body.from_customer)
            if loser == survivor:
                raise ValueError("from_customer: is the same customer")
            merge_id, _moved = merge_customers(
                conn, loser, survivor, reason="manual", message_id=None, now=datetime.now(UTC)
            )
        project.pipeline.forget_customer(loser)
        project.pipeline.recover()
        with project.engine.connect() as conn:
            detail = service.get_customer(conn, project.events, survivor, timeline=0)
        return next(m for m in detail.merged_from if m.id == merge_id)

    return await state.writer.call(run)


@router.get("/events", response_model=EventPage)
def events(
    state: Caller,
    customer: Annotated[str | None, Query(description="Id, userId, anonymousId or e-mail")] = None,
    event: Annotated[str | None, Query(max_length=200)] = None,
    type: Literal["track", "identify", "page", "screen", "group", "alias"] | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 100,
    offset: Offset = 0,
) -> EventPage:
    """Events, newest first, by customer, name, type and time range ([from, to))."""
    with state.project.engine.connect() as conn:
        return service.list_events(
            conn,
            state.project.events,
            customer=customer,
            event=event,
            type=type,
            start=utc_within(start, "from"),
            end=utc_within(end, "to"),
            limit=limit,
            offset=offset,
        )


@router.get("/stats", response_model=Stats)
def stats(state: Caller, days: Annotated[int, Query(ge=1, le=3660)] = 90) -> Stats:
    """Totals, and events per day (project time zone) over the last ``days`` days."""
    project = state.project
    with project.engine.connect() as conn:
        return service.stats(
            conn,
            project.events,
            timezone=project.settings.timezone,
            days=days,
            listener_backlog=project.pipeline.backlog.counts(),
        )


@router.get("/rejected-messages", response_model=RejectedPage)
def rejected(
    state: Caller,
    limit: Annotated[int, Query(ge=1, le=service.MAX_LIMIT)] = 100,
    offset: Offset = 0,
) -> RejectedPage:
    """Messages refused by ingestion or import, newest first, with the reason."""
    with state.project.engine.connect() as conn:
        return service.list_rejected(conn, limit=limit, offset=offset)


class KeyOut(BaseModel):
    id: int
    kind: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None


class KeyCreated(KeyOut):
    key: str = Field(description="The key itself; shown only this once")


class KeyIn(BaseModel):
    kind: Literal["write", "secret"]
    name: str = Field(min_length=1, max_length=120)


def _key(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "kind": info.kind,
        "name": info.name,
        "prefix": info.prefix,
        "created_at": as_utc(info.created_at),
        "revoked_at": as_utc(info.revoked_at),
        "last_used_at": as_utc(info.last_used_at),
    }


@router.get("/keys", response_model=list[KeyOut])
def keys(state: Admin, include_revoked: bool = False) -> list[KeyOut]:
    with session_scope(state.project.sessions) as session:
        return [KeyOut(**_key(k)) for k in list_keys(session, include_revoked=include_revoked)]


@router.post("/keys", response_model=KeyCreated, status_code=201)
def new_key(state: Admin, body: KeyIn) -> KeyCreated:
    with session_scope(state.project.sessions) as session:
        plain, info = create_key(session, body.kind, body.name)
    return KeyCreated(**_key(info), key=plain)


@router.delete("/keys/{key_id}", response_model=KeyOut)
def delete_key(state: Admin, key_id: Annotated[int, Path(ge=1, le=MAX_INT)]) -> KeyOut:
    try:
        with session_scope(state.project.sessions) as session:
            info = revoke_key(session, key_id)
    except LookupError as exc:
        raise ApiError(404, "not_found", str(exc), field="key_id") from exc
    state.keys.entries.clear()
    return KeyOut(**_key(info))


class ImportSummary(BaseModel):
    accepted: int
    stored: int
    duplicates: int
    customers_created: int
    merges: int
    rejected: list[dict[str, Any]]


def _summary(result: IngestResult) -> ImportSummary:
    return ImportSummary(
        accepted=result.accepted,
        stored=result.stored,
        duplicates=result.duplicates,
        customers_created=result.customers_created,
        merges=result.merges,
        rejected=[r.as_dict() for r in result.rejected],
    )


class MessagesIn(BaseModel):
    messages: list[dict[str, Any]]
    source: str = Field(default="import", max_length=120)


@router.post("/import/messages", response_model=ImportSummary)
async def import_messages(state: Analyst, body: MessagesIn) -> ImportSummary:
    """Bulk Segment messages (no batch size limit), as `cxloop import` sends them."""
    messages, rejected = decode_messages(body.messages, datetime.now(UTC))
    project = state.project
    result = await state.writer.call(lambda: project.pipeline.ingest(messages, source=body.source))
    result.rejected = [MessageError(i, f, r) for i, f, r in rejected]
    return _summary(result)


class CustomersSummary(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int


async def _arrow_body(request: Request, wanted: pa.Schema) -> pa.Table:
    body = await request.body()
    try:
        table = pa.ipc.open_stream(body).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ApiError(400, "invalid_body", f"body: not an Arrow IPC stream ({exc})") from exc
    return _conform(table, wanted)


def _conform(table: pa.Table, wanted: pa.Schema) -> pa.Table:
    """The table in the columns and types `cxloop import` sends: the pipeline takes them
    as given, so a stream from any other client is checked here, one column at a time."""
    columns: list[pa.ChunkedArray] = []
    for fld in wanted:
        found = table.schema.get_all_field_indices(fld.name)
        if len(found) != 1:
            problem = "the column is missing" if not found else "the column is given twice"
            raise ApiError(422, "invalid_body", f"{fld.name}: {problem}", field=fld.name)
        column = table.column(found[0])
        if not fld.nullable and column.null_count:
            raise ApiError(
                422,
                "invalid_body",
                f"{fld.name}: must not be empty ({column.null_count} rows are)",
                field=fld.name,
            )
        try:
            column = column.cast(fld.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ApiError(
                422,
                "invalid_body",
                f"{fld.name}: must be {fld.type}, not {column.type} ({exc})",
                field=fld.name,
            ) from exc
        if pa.types.is_string(fld.type) and pc.any(pc.match_substring(column, "\x00")).as_py():
            raise ApiError(422, "invalid_body", f"{fld.name}: {NUL_REASON}", field=fld.name)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=wanted)


_ARROW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/vnd.apache.arrow.stream": {
                "schema": {"type": "string", "format": "binary"}
            }
        },
    }
}


@router.post("/import/customers", response_model=CustomersSummary, openapi_extra=_ARROW_BODY)
async def import_customers(
    state: Analyst, request: Request, source: str = "import"
) -> CustomersSummary:
    """Customer rows (the import's canonical columns) as an Arrow IPC stream."""
    table = await _arrow_body(request, CUSTOMERS_SCHEMA)
    project = state.project
    result = await state.writer.call(
        lambda: project.pipeline.upsert_customers(table, source=source)
    )
    return CustomersSummary(
        rows=result.rows,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
    )


@router.post("/import/events", response_model=ImportSummary, openapi_extra=_ARROW_BODY)
async def import_events(state: Analyst, request: Request, source: str = "import") -> ImportSummary:
    """Bulk track events as an Arrow IPC stream, as `cxloop import events` sends them."""
    table = await _arrow_body(request, EVENTS_SCHEMA)
    project = state.project
    result = await state.writer.call(lambda: project.pipeline.ingest_table(table, source=source))
    return _summary(result)
