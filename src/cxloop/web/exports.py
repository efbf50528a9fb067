"""Downloads: customer lists as CSV and the events of a period as Parquet, for analysts
(the whole-project export is a command, `cxloop export project`, since it holds the
database's secrets)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import Connection, Engine
from starlette.background import BackgroundTask

from cxloop import exports
from cxloop.feedback.responses import days_window
from cxloop.web.auth import Analyst
from cxloop.web.errors import refuse_nul
from cxloop.web.reports import FromParam, ToParam

router = APIRouter(prefix="/api/v1/export", tags=["export"], dependencies=[Depends(refuse_nul)])


@router.get("/customers.csv", responses={200: {"content": {"text/csv": {}}}})
def customers_csv(
    state: Analyst,
    segment: Annotated[str | None, Query(max_length=120, description="A saved segment")] = None,
) -> StreamingResponse:
    """Every customer (or a saved segment's members): id, name, e-mail, profile fields."""
    name = f"cxloop-customers{'-' + segment if segment else ''}.csv".replace(" ", "-")
    return csv_download(
        state.project.engine, lambda conn: exports.customers_csv(conn, segment=segment), name
    )


def csv_download(
    engine: Engine, pages_of: Callable[[Connection], Iterator[str]], filename: str
) -> StreamingResponse:
    """A CSV streamed page by page from one open connection, closed when the stream ends.

    The first page is read before the answer starts, so what the pages refuse (an unknown
    segment) is an error response rather than a download cut short."""
    conn = engine.connect()
    pages = pages_of(conn)
    try:
        first = next(pages)
    except Exception:
        conn.close()
        raise

    def rest() -> Iterator[str]:
        try:
            yield first
            yield from pages
        finally:
            conn.close()

    return StreamingResponse(
        rest(),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/events.parquet", responses={200: {"content": {"application/vnd.apache.parquet": {}}}})
def events_parquet(state: Analyst, start: FromParam = None, end: ToParam = None) -> FileResponse:
    """The events of the days ``from`` to ``to`` (the project's time zone, both included) as
    one Parquet file with every column."""
    project = state.project
    first, last = days_window(start, end, project.settings.zone)
    handle, name = tempfile.mkstemp(suffix=".parquet", prefix="cxloop-events-")
    os.close(handle)
    path = Path(name)
    exports.events_parquet(project.events, path, start=first, end=last)
    return FileResponse(
        path,
        media_type="application/vnd.apache.parquet",
        filename="cxloop-events.parquet",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )
