"""`cxloop funnel`, `trends`, `retention` and `paths`: where customers drop off, who comes
back, and what they do next.

Runs in the project's server when one is running, in this process otherwise; both give the
same JSON as ``POST /api/v1/analytics/funnel``. With ``--engine spark`` the query runs on
Spark over the project's Parquet lake (``cxloop export parquet``) instead, and needs
neither the server nor the project's stores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError

from cxloop.analytics.funnel import funnel_customers, run_funnel
from cxloop.analytics.funnel_spec import FunnelSpec, parse_window
from cxloop.analytics.lake import LakeError, export_parquet
from cxloop.analytics.paths import PathsSpec, run_paths
from cxloop.analytics.periods import RetentionSpec, TrendsSpec, run_retention, run_trends
from cxloop.analytics.sql import EngineUnsupported
from cxloop.cli.context import (
    CliError,
    call_project,
    handle_errors,
    load_settings,
    remote_server,
    validation_line,
)
from cxloop.cli.output import Format, duration, emit, err_console, key_values, percent
from cxloop.events.base import EventStore
from cxloop.project import Project

ENGINES = ("duckdb", "postgres", "spark")
BREAKDOWN_HELP = "An event property NAME, trait:NAME, or segment:NAME (members against the rest)"
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
BreakdownOpt = Annotated[str | None, typer.Option("--breakdown", help=BREAKDOWN_HELP)]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="duckdb, postgres or spark (default: the event store's; spark reads the lake)",
    ),
]
LakeOpt = Annotated[
    Path | None,
    typer.Option("--lake", help="With --engine spark: the Parquet lake (default: CXLOOP_LAKE_DIR)"),
]
# A runner as the engines call it: the event store (or lake), the app database, the zone.
Runner = Callable[[EventStore, Any, ZoneInfo], dict[str, Any]]


def _run(engine: str | None, lake: Path | None, path: str, body: dict[str, Any],
         runner: Runner) -> dict[str, Any]:  # fmt: skip
    """Run a query where ``--engine`` says: Spark over the lake, or the project's event
    store (through its server when one is running)."""
    if engine is not None and engine not in ENGINES:
        raise CliError(f"--engine: use one of {', '.join(ENGINES)}", 2)
    settings = load_settings()
    if engine == "spark":
        from cxloop.events.spark_lake import SPARK_ERRORS, LakeUnavailable, SparkLake, spark_error

        try:
            store = SparkLake(lake or settings.effective_lake_dir, master=settings.spark_master)
        except LakeUnavailable as exc:
            raise CliError(f"--engine spark: {exc}", 2) from exc
        try:
            # The lake answers the runners' SQL; it is read-only, no full event store.
            return runner(cast(EventStore, store), None, settings.zone)
        except SPARK_ERRORS as exc:  # an unreadable file, a lost executor
            raise CliError(f"--engine spark: {spark_error(exc)}", 1) from exc
        finally:
            store.close()
    if lake is not None:
        raise CliError("--lake: only with --engine spark", 2)
    backend = "postgres" if settings.effective_events_url.startswith("postgres") else "duckdb"
    if engine is not None and engine != backend:
        raise CliError(
            f"--engine {engine}: this project's events are in {backend} (use {backend}, "
            "or spark over a lake written by cxloop export parquet)",
            2,
        )

    def local(project: Project) -> Any:
        try:
            return runner(project.events, project.engine, project.settings.zone)
        except EngineUnsupported as exc:
            raise CliError(str(exc), 2) from exc

    result: dict[str, Any] = call_project("POST", path, local, body=body)
    return result


@handle_errors
def funnel(
    steps: Annotated[
        str | None, typer.Option("--steps", help="Event names in order, comma-separated")
    ] = None,
    window: Annotated[
        str | None, typer.Option("--window", help="Conversion window: 45s, 30m, 12h, 7d, 2w")
    ] = None,
    order: Annotated[str, typer.Option("--order", help="ordered, strict or unordered")] = "ordered",
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="EVENT or EVENT:FROM:TO (steps from 0); repeatable"),
    ] = None,
    breakdown: Annotated[
        str | None,
        typer.Option("--breakdown", help=BREAKDOWN_HELP),
    ] = None,
    attribution: Annotated[
        str,
        typer.Option("--attribution", help="first_touch, last_touch or step:K"),
    ] = "first_touch",
    date_from: Annotated[
        str | None, typer.Option("--from", help="YYYY-MM-DD[THH:MM:SS], project time zone")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="YYYY-MM-DD[THH:MM:SS], included")
    ] = None,
    engine: EngineOpt = None,
    lake: LakeOpt = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="A funnel spec as JSON (as the API takes)")
    ] = None,
    customers_at: Annotated[
        int | None,
        typer.Option("--customers-at", help="List the customers at step K instead (from 0)"),
    ] = None,
    outcome: Annotated[
        str,
        typer.Option("--outcome", help="With --customers-at: dropped (after step K) or reached"),
    ] = "dropped",
    limit: Annotated[int, typer.Option("--limit", help="With --customers-at: how many")] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Customers per step of a funnel, conversion, drop-off and time to convert."""
    spec = _spec(spec_file, steps, window, order, exclude, breakdown, attribution, date_from,
                 date_to)  # fmt: skip
    body = spec.model_dump(mode="json", exclude_none=True)
    if customers_at is not None:
        _list_customers(spec, customers_at, outcome, limit, fmt, engine, lake)
        return
    data = _run(engine, lake, "/api/v1/analytics/funnel", body,
                lambda events, db, zone: run_funnel(spec, events, db, zone))  # fmt: skip
    for warning in data.get("warnings", []):
        err_console.print(f"[yellow]warning:[/yellow] {warning['message']}")
    if fmt is Format.json:
        emit(data, fmt)
        return
    rows = [
        {"breakdown": group.get("value", ""), "step": n, **step}
        for group in data.get("breakdown") or [{"steps": data["steps"]}]
        for n, step in enumerate(group["steps"])
    ]
    if fmt is Format.csv:
        emit(data, fmt, rows=rows, columns=[*(["breakdown"] if "breakdown" in data else []),
                                            "step", *data["steps"][0].keys()])  # fmt: skip
        return
    # The table keeps to what people scan; JSON and CSV carry exact figures.
    table = [
        {
            "breakdown": row["breakdown"],
            "step": row["step"],
            "event": row["name"],
            "customers": row["count"],
            "of step 0": percent(row["conversion_rate"]),
            "drop-off": percent(row["drop_off_rate"]),
            "avg time": duration(row["avg_time_to_convert_s"]),
            "median time": duration(row["median_time_to_convert_s"]),
        }
        for row in rows
    ]
    columns = [*(["breakdown"] if "breakdown" in data else []), *list(table[0])[1:]]
    emit(data, fmt, rows=table, columns=columns, title="funnel")


def _list_customers(
    spec: FunnelSpec,
    step: int,
    outcome: str,
    limit: int,
    fmt: Format,
    engine: str | None,
    lake: Path | None,
) -> None:
    if outcome not in ("dropped", "reached"):
        raise CliError("--outcome: use dropped or reached", 2)
    body = {"spec": spec.model_dump(mode="json", exclude_none=True), "step": step,
            "outcome": outcome, "limit": limit}  # fmt: skip

    def runner(events: EventStore, db: Any, zone: ZoneInfo) -> dict[str, Any]:
        return funnel_customers(spec, events, db, zone, step=step, outcome=outcome, limit=limit)

    data = _run(engine, lake, "/api/v1/analytics/funnel/customers", body, runner)
    what = "dropped off after" if outcome == "dropped" else "reached"
    emit(data, fmt, rows=data["customers"], columns=["id", "name", "email"],
         title=f"{data['total']} customers {what} step {step}")  # fmt: skip


def _attribution(text: str) -> tuple[str, int | None]:
    """``first_touch``, ``last_touch`` or ``step:K`` as (attribution, step)."""
    if text in ("first_touch", "last_touch"):
        return text, None
    kind, colon, number = text.partition(":")
    if kind == "step" and colon and number.isdigit():
        return "step", int(number)
    raise CliError(f"--attribution: give first_touch, last_touch or step:K, not {text!r}", 2)


def _spec(
    spec_file: Path | None,
    steps: str | None,
    window: str | None,
    order: str,
    exclude: list[str] | None,
    breakdown: str | None,
    attribution: str,
    date_from: str | None,
    date_to: str | None,
) -> FunnelSpec:
    try:
        if spec_file is not None:
            if steps:
                raise CliError("give --steps or --spec, not both", 2)
            return FunnelSpec.model_validate(json.loads(spec_file.read_text(encoding="utf-8")))
        if not steps:
            raise CliError(
                "--steps: name the funnel's events, e.g. --steps 'Signed Up,Order Completed'", 2
            )
        raw: dict[str, Any] = {
            "steps": [{"event": name.strip()} for name in steps.split(",") if name.strip()],
            "order": order,
            "date_from": date_from,
            "date_to": date_to,
        }
        if window is not None:
            try:
                raw["window_seconds"] = parse_window(window)
            except ValueError as exc:
                raise CliError(f"--window: {exc}", 2) from exc
        raw["exclusions"] = [_exclusion(text) for text in exclude or []]
        how, step = _attribution(attribution)
        if breakdown:
            target = _breakdown_arg(breakdown) or {}
            raw["breakdown"] = {**target, "attribution": how, "step": step}
        elif attribution != "first_touch":
            raise CliError("--attribution: only with --breakdown (it says who a value is)", 2)
        return FunnelSpec.model_validate(raw)
    except ValidationError as exc:
        raise CliError(validation_line(exc), 2) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"--spec: {exc}", 2) from exc


def _exclusion(text: str) -> dict[str, Any]:
    parts = text.rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return {"event": parts[0], "from_step": int(parts[1]), "to_step": int(parts[2])}
    return {"event": text}


def _step(text: str | None) -> dict[str, Any] | None:
    return {"event": text} if text else None


def _breakdown_arg(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    kind, _, name = text.partition(":")
    if kind in ("trait", "segment") and name:
        return {kind: name}
    return {"property": text}


def _validated(model: Any, raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise CliError(validation_line(exc, "spec"), 2) from exc


@handle_errors
def trends(
    event: Annotated[
        str | None, typer.Option("--event", help="An event name (every event when missing)")
    ] = None,
    interval: Annotated[str, typer.Option("--interval", help="day, week or month")] = "day",
    breakdown: BreakdownOpt = None,
    date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD, included")] = None,
    engine: EngineOpt = None,
    lake: LakeOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Events and unique customers per day, week or month."""
    raw = {"event": _step(event), "interval": interval, "breakdown": _breakdown_arg(breakdown),
           "date_from": date_from, "date_to": date_to}  # fmt: skip
    spec = _validated(TrendsSpec, raw)

    body = spec.model_dump(mode="json", exclude_none=True)
    data = _run(engine, lake, "/api/v1/analytics/trends", body,
                lambda events, db, zone: run_trends(spec, events, db, zone))  # fmt: skip
    groups = data.get("breakdown") or [{"value": "", "series": data["series"]}]
    rows = [{"breakdown": g["value"], **point} for g in groups for point in g["series"]]
    columns = [*(["breakdown"] if "breakdown" in data else []), "date", "events", "customers"]
    emit(data, fmt, rows=rows, columns=columns, title="trends")


@handle_errors
def retention(
    start_event: Annotated[
        str | None, typer.Option("--start", help="Cohort event (first event of any kind if none)")
    ] = None,
    return_event: Annotated[
        str | None, typer.Option("--return", help="Return event (any event if none)")
    ] = None,
    period: Annotated[str, typer.Option("--period", help="day, week or month")] = "week",
    periods: Annotated[int, typer.Option("--periods", help="How many periods (1-60)")] = 8,
    returning: Annotated[
        str, typer.Option("--returning", help="on (in that period) or on_or_after")
    ] = "on",
    breakdown: BreakdownOpt = None,
    date_from: Annotated[str | None, typer.Option("--from", help="First cohort day")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="Last cohort day, included")] = None,
    engine: EngineOpt = None,
    lake: LakeOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cohorts by their first start event, and who came back in each following period."""
    raw = {"start_event": _step(start_event), "return_event": _step(return_event),
           "period": period, "periods": periods, "returning": returning,
           "breakdown": _breakdown_arg(breakdown), "date_from": date_from,
           "date_to": date_to}  # fmt: skip
    spec = _validated(RetentionSpec, raw)

    body = spec.model_dump(mode="json", exclude_none=True)
    data = _run(engine, lake, "/api/v1/analytics/retention", body,
                lambda events, db, zone: run_retention(spec, events, db, zone))  # fmt: skip
    groups = data.get("breakdown") or [{"value": "", "cohorts": data["cohorts"]}]
    rows = []
    for group in groups:
        for cohort in group["cohorts"]:
            size = cohort["size"]
            row: dict[str, Any] = {"breakdown": group["value"], "cohort": cohort["start"],
                                   "size": size}  # fmt: skip
            for k, value in enumerate(cohort["values"][1:], start=1):
                row[f"{period} {k}"] = value if fmt is not Format.table else percent(value / size)
            rows.append(row)
    columns = [
        *(["breakdown"] if "breakdown" in data else []),
        "cohort",
        "size",
        *(f"{period} {k}" for k in range(1, periods)),
    ]
    emit(data, fmt, rows=rows, columns=columns, title=f"retention ({returning})")


@handle_errors
def paths(
    event: Annotated[str, typer.Argument(help="The event paths start (or end) at")],
    direction: Annotated[str, typer.Option("--direction", help="after or before")] = "after",
    depth: Annotated[int, typer.Option("--depth", help="Events per path (1-5)")] = 3,
    limit: Annotated[int, typer.Option("--limit", help="How many paths")] = 20,
    keep_repeats: Annotated[
        bool, typer.Option("--keep-repeats", help="Count repeated events as separate steps")
    ] = False,
    date_from: Annotated[str | None, typer.Option("--from", help="YYYY-MM-DD")] = None,
    date_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD, included")] = None,
    engine: EngineOpt = None,
    lake: LakeOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """The most common paths after (or before) an event; $exit marks where customers left."""
    raw = {"event": {"event": event}, "direction": direction, "depth": depth, "limit": limit,
           "collapse_repeats": not keep_repeats, "date_from": date_from,
           "date_to": date_to}  # fmt: skip
    spec = _validated(PathsSpec, raw)

    body = spec.model_dump(mode="json", exclude_none=True)
    data = _run(engine, lake, "/api/v1/analytics/paths", body,
                lambda events, db, zone: run_paths(spec, events, zone))  # fmt: skip
    rows = [
        {
            "path": " → ".join(p["path"]),
            "customers": p["customers"],
            "share": p["share"] if fmt is not Format.table else percent(p["share"]),
        }
        for p in data["paths"]
    ]
    emit(data, fmt, rows=rows, columns=["path", "customers", "share"],
         title=f"paths {direction} {event} ({data['customers']} customers)")  # fmt: skip


export_app = typer.Typer(help="Write the data out for other engines.", no_args_is_help=True)


@export_app.command("parquet")
@handle_errors
def export_parquet_command(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where the lake goes (default: CXLOOP_LAKE_DIR, .cxloop/lake)"),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace a directory that holds files")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Write the events and customers as a Parquet lake, which `--engine spark` reads.

    Events are partitioned by month. With `cxloop serve` running, the server writes it (to
    CXLOOP_LAKE_DIR only)."""
    settings = load_settings()
    target = (directory or settings.effective_lake_dir).expanduser().resolve()
    if target != settings.effective_lake_dir:
        with remote_server(settings) as remote:
            if remote is not None:
                raise CliError(
                    f"DIR: a running server writes the lake only to CXLOOP_LAKE_DIR "
                    f"({settings.effective_lake_dir}); leave out DIR or stop cxloop serve",
                    2,
                )

    def local(project: Project) -> Any:
        try:
            return export_parquet(project.events, project.engine, target, overwrite=overwrite)
        except LakeError as exc:
            raise CliError(str(exc), 2) from exc

    result = call_project("POST", "/api/v1/export/parquet", local, body={"overwrite": overwrite})
    key_values(result, fmt, title="Parquet lake written")
