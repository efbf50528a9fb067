"""REST API for saved segments, and the check every request gets: a ``where`` naming a
saved segment (``segment=NAME``, or a page's ``segment=segment&value=NAME``) must name
one that exists, or the answer is a 404 naming the field instead of an empty report; any
other name in a ``where`` must be a profile field or a trait some customer has (a 422)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from cxloop import segments
from cxloop.customers.service import SAVED_SEGMENT, check_field
from cxloop.domain.segments import SegmentIn
from cxloop.web.auth import Analyst, Caller
from cxloop.web.errors import refuse_nul
from cxloop.web.exports import csv_download
from cxloop.web.state import state_of, written

router = APIRouter(prefix="/api/v1", tags=["segments"], dependencies=[Depends(refuse_nul)])


def _named(request: Request) -> list[tuple[str, str]]:
    """(field, segment name) of each saved segment the request's filters name."""
    q = request.query_params
    found = [
        ("where", item.split("=", 1)[1])
        for item in q.getlist("where")
        if item.split("=", 1)[0].strip() == SAVED_SEGMENT and "=" in item
    ]
    if q.get("segment") == SAVED_SEGMENT and q.get("value"):
        found.append(("value", q.get("value", "")))
    return found


def _fields(request: Request) -> list[str]:
    """The customer fields and traits the request's ``where`` filters name."""
    names = (item.split("=", 1)[0].strip() for item in request.query_params.getlist("where"))
    return [name for name in names if name and name != SAVED_SEGMENT]


async def known_filters(request: Request) -> None:
    if not request.url.path.startswith("/api/"):
        return  # pages show their filters' problems themselves
    named, fields = _named(request), _fields(request)
    if not named and not fields:
        return
    state = getattr(request.app.state, "cxloop", None)
    if state is None:
        return
    with state_of(request).project.engine.connect() as conn:
        for field, name in named:
            segments.check_named(conn, {SAVED_SEGMENT: name}, field)
        for name in fields:
            check_field(conn, name, "where")


Name = Annotated[str, Query(min_length=1, max_length=120)]


@router.get("/segments")
def list_segments(state: Caller) -> list[dict[str, Any]]:
    """The saved segments with their rules, member counts and when they were computed."""
    with state.project.engine.connect() as conn:
        return segments.list_segments(conn)


@router.post("/segments", status_code=201)
async def create_segment(state: Analyst, body: SegmentIn) -> dict[str, Any]:
    """Save a segment: its rules are checked against the data (a trait no customer has is
    refused) and its members computed at once."""
    events = state.project.events
    return await written(state, lambda conn: segments.save_segment(conn, events, body))


@router.get("/segments/{name}")
def get_segment(state: Caller, name: str) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return segments.get_segment(conn, name)


@router.put("/segments/{name}")
async def replace_segment(state: Analyst, name: str, body: SegmentIn) -> dict[str, Any]:
    """Change a segment's name, description or rules; its members are computed again."""
    events = state.project.events
    return await written(
        state, lambda conn: segments.save_segment(conn, events, body, replace=name)
    )


@router.delete("/segments/{name}", status_code=204)
async def delete_segment(state: Analyst, name: str) -> None:
    await written(state, lambda conn: segments.delete_segment(conn, name))


@router.post("/segments/{name}/refresh")
async def refresh_segment(state: Analyst, name: str) -> dict[str, Any]:
    """Compute the members again from today's data."""
    events = state.project.events
    return await written(state, lambda conn: segments.refresh_segment(conn, events, name))


@router.get("/segments/{name}/customers")
def segment_customers(
    state: Caller,
    name: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> dict[str, Any]:
    with state.project.engine.connect() as conn:
        return segments.member_page(conn, name, limit=limit, offset=offset)


@router.get("/segments/{name}/export.csv", responses={200: {"content": {"text/csv": {}}}})
def export_segment(state: Caller, name: str) -> StreamingResponse:
    """The members as CSV (profile fields, userId, traits as JSON) for marketing tools."""
    filename = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "segment"
    # An unknown segment is a 404: the first page, read before the answer starts, looks it up.
    return csv_download(
        state.project.engine, lambda conn: segments.export_csv(conn, name), f"{filename}.csv"
    )
