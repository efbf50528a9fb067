"""`cxloop customers|events|rejected|stats`: the REST API's reads, on the command line.

``--format json`` prints exactly the API's JSON. With a server running on the project the
request goes to it; otherwise the project is opened here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel

from cxloop.cli.context import (
    handle_errors,
    load_settings,
    local_project,
    remote_server,
)
from cxloop.cli.output import Format, emit, fields_of, key_values
from cxloop.customers import service
from cxloop.customers.schemas import (
    CustomerOut,
    CustomerPage,
    EventOut,
    EventPage,
    RejectedOut,
    RejectedPage,
    Stats,
)
from cxloop.domain.values import parse_pairs
from cxloop.lifecycle.schemas import CustomerWithStages, with_stages
from cxloop.project import Project

customers_app = typer.Typer(help="Search and show customer profiles.", no_args_is_help=True)
events_app = typer.Typer(help="Query the event stream.", no_args_is_help=True)
rejected_app = typer.Typer(help="Messages refused by ingestion or import.", no_args_is_help=True)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
M = TypeVar("M", bound=BaseModel)


def _run(model: type[M], path: str, params: dict[str, Any], local: Callable[[Project], M]) -> M:
    """Ask the running server, or open the project here when none runs."""
    settings = load_settings()
    with remote_server(settings) as remote:
        if remote is not None:
            clean = {k: v for k, v in params.items() if v is not None}
            return model.model_validate(remote.request("GET", path, params=clean))
    with local_project(settings) as project:
        return local(project)


def _date(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a date (use YYYY-MM-DD or ISO 8601)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@customers_app.command("list")
@handle_errors
def customers_list(
    search: Annotated[str | None, typer.Option(help="Name, e-mail, userId or anonymousId")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", help=f"FIELD=VALUE, FIELD one of {', '.join(service.FILTER_FIELDS)}"
        ),
    ] = None,
    trait: Annotated[list[str] | None, typer.Option(help="Free trait NAME=VALUE")] = None,
    sort: Annotated[str, typer.Option(help=", ".join(service.SORTS))] = "-last_seen",
    limit: Annotated[int, typer.Option(min=1, max=service.MAX_LIMIT)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    fmt: FormatOpt = Format.table,
) -> None:
    """List customers (newest activity first)."""
    filters = parse_pairs(where, "--where")
    for field in filters:
        if field not in service.FILTER_FIELDS:
            raise ValueError(f"--where: {field!r} is not one of {', '.join(service.FILTER_FIELDS)}")
    traits = parse_pairs(trait, "--trait")
    params: dict[str, Any] = {
        **filters,
        "search": search,
        "sort": sort,
        "limit": limit,
        "offset": offset,
        "trait": [f"{k}={v}" for k, v in traits.items()] or None,
    }

    def local(project: Project) -> CustomerPage:
        with project.engine.connect() as conn:
            return service.list_customers(
                conn,
                search=search,
                filters=filters,
                traits=traits,
                sort=sort,
                limit=limit,
                offset=offset,
            )

    page = _run(CustomerPage, "/api/v1/customers", params, local)
    rows = [c.model_dump(mode="json") for c in page.items]
    emit(
        page,
        fmt,
        rows=rows,
        title=f"customers {offset + 1}-{offset + len(rows)} of {page.total}",
        columns=(
            "id",
            "user_id",
            "name",
            "email",
            "gender",
            "country",
            "channel",
            "first_seen",
            "last_seen",
        )
        if fmt is Format.table
        else None,
        fields=fields_of(CustomerOut),
    )


@customers_app.command("show")
@handle_errors
def customers_show(
    ref: Annotated[str, typer.Argument(help="Id, userId, anonymousId or e-mail")],
    timeline: Annotated[int, typer.Option(min=0, max=500, help="How many recent events")] = 20,
    fmt: FormatOpt = Format.table,
) -> None:
    """One customer with identities, merges and recent timeline."""

    def local(project: Project) -> CustomerWithStages:
        with project.engine.connect() as conn:
            found = service.get_customer(conn, project.events, ref, timeline=timeline)
            return with_stages(conn, found)

    detail = _run(CustomerWithStages, f"/api/v1/customers/{ref}", {"timeline": timeline}, local)
    if fmt is not Format.table:
        emit(detail, fmt)
        return
    profile = detail.model_dump(
        mode="json", exclude={"timeline", "identities", "merged_from", "stages"}
    )
    profile["identities"] = ", ".join(f"{i.kind}:{i.value}" for i in detail.identities)
    profile["merged_from"] = ", ".join(str(m.from_customer_id) for m in detail.merged_from)
    key_values(profile, fmt, title=f"customer {detail.id}")
    rows = [e.model_dump(mode="json") for e in detail.timeline]
    emit(
        rows,
        fmt,
        rows=rows,
        columns=("timestamp", "type", "event", "name", "channel", "properties"),
        title="timeline (newest first)",
    )
    if detail.stages:
        stage_rows = [
            {
                "model": s.model,
                "stage": s.stage_name or "(not in the lifecycle)",
                "since": s.entered_at.isoformat() if s.entered_at else "",
                "cycle": s.cycle,
                "moves": " → ".join(h["to_stage"] or f"exit ({h['reason']})" for h in s.history),
            }
            for s in detail.stages
        ]
        emit(stage_rows, fmt, rows=stage_rows, title="lifecycle stages")


@customers_app.command("merge")
@handle_errors
def customers_merge(
    into: Annotated[str, typer.Argument(help="The customer that stays")],
    from_: Annotated[str, typer.Argument(metavar="FROM", help="The customer folded into it")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Merge FROM into INTO: identities, traits and events move; the merge is recorded."""
    settings = load_settings()
    with remote_server(settings) as remote:
        if remote is not None:
            result = remote.request(
                "POST", f"/api/v1/customers/{into}/merge", json={"from_customer": from_}
            )
            key_values(result, fmt, title="merge")
            return
    from cxloop.ingest.pipeline import merge_customers

    with local_project(settings) as project:
        with project.engine.begin() as conn:
            survivor = service.resolve_customer_id(conn, into)
            loser = service.resolve_customer_id(conn, from_)
            if survivor == loser:
                raise ValueError("FROM: is the same customer as INTO")
            merge_customers(
                conn, loser, survivor, reason="manual", message_id=None, now=datetime.now(UTC)
            )
        project.pipeline.recover()
        with project.engine.connect() as conn:
            detail = service.get_customer(conn, project.events, survivor, timeline=0)
    merge = detail.merged_from[-1]
    key_values(merge.model_dump(mode="json"), fmt, title="merge")


@events_app.command("list")
@handle_errors
def events_list(
    customer: Annotated[str | None, typer.Option(help="Id, userId, anonymousId or e-mail")] = None,
    event: Annotated[str | None, typer.Option(help="Event name")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="track, identify, page, …")] = None,
    start: Annotated[str | None, typer.Option("--from", help="From (inclusive), ISO date")] = None,
    end: Annotated[str | None, typer.Option("--to", help="To (exclusive), ISO date")] = None,
    limit: Annotated[int, typer.Option(min=1, max=service.MAX_LIMIT)] = 100,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    fmt: FormatOpt = Format.table,
) -> None:
    """Events, newest first."""
    if type_ is not None and type_ not in ("track", "identify", "page", "screen", "group", "alias"):
        raise ValueError(f"--type: {type_!r} is not a message type")
    start_at, end_at = _date(start, "--from"), _date(end, "--to")
    params = {
        "customer": customer,
        "event": event,
        "type": type_,
        "limit": limit,
        "offset": offset,
        "from": start_at.isoformat() if start_at else None,
        "to": end_at.isoformat() if end_at else None,
    }

    def local(project: Project) -> EventPage:
        with project.engine.connect() as conn:
            return service.list_events(
                conn,
                project.events,
                customer=customer,
                event=event,
                type=type_,
                start=start_at,
                end=end_at,
                limit=limit,
                offset=offset,
            )

    page = _run(EventPage, "/api/v1/events", params, local)
    rows = [e.model_dump(mode="json") for e in page.items]
    emit(
        page,
        fmt,
        rows=rows,
        title=f"events ({page.total} match)",
        columns=("timestamp", "customer_id", "type", "event", "name", "channel", "properties")
        if fmt is Format.table
        else None,
        fields=fields_of(EventOut),
    )


@handle_errors
def stats(
    days: Annotated[int, typer.Option(min=1, max=3660, help="Days of events per day")] = 30,
    fmt: FormatOpt = Format.table,
) -> None:
    """Customers, events and events per day."""
    settings = load_settings()

    def local(project: Project) -> Stats:
        with project.engine.connect() as conn:
            return service.stats(
                conn,
                project.events,
                timezone=settings.timezone,
                days=days,
                listener_backlog=project.pipeline.backlog.counts(),
            )

    result = _run(Stats, "/api/v1/stats", {"days": days}, local)
    if fmt is Format.json:
        emit(result, fmt)
        return
    totals = result.model_dump(mode="json", exclude={"events_per_day"})
    if fmt is Format.csv:
        emit(totals, fmt, rows=[totals])
        return
    key_values(totals, fmt, title="cxloop stats")
    rows = [d.model_dump(mode="json") for d in result.events_per_day]
    emit(rows, fmt, rows=rows, columns=("day", "events"), title=f"events per day (last {days})")


@rejected_app.command("list")
@handle_errors
def rejected_list(
    limit: Annotated[int, typer.Option(min=1, max=service.MAX_LIMIT)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    fmt: FormatOpt = Format.table,
) -> None:
    """Refused messages, newest first, with the field and reason."""

    def local(project: Project) -> RejectedPage:
        with project.engine.connect() as conn:
            return service.list_rejected(conn, limit=limit, offset=offset)

    page = _run(
        RejectedPage, "/api/v1/rejected-messages", {"limit": limit, "offset": offset}, local
    )
    rows = [r.model_dump(mode="json") for r in page.items]
    emit(
        page,
        fmt,
        rows=rows,
        title=f"rejected messages ({page.total})",
        columns=("id", "received_at", "source", "batch_index", "field", "reason")
        if fmt is Format.table
        else None,
        fields=fields_of(RejectedOut),
    )
