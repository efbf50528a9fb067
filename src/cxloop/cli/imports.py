"""`cxloop import customers|events FILE`: CSV, TSV, whitespace-separated, JSONL, Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cxloop.cli.context import (
    RemoteServer,
    handle_errors,
    load_settings,
    local_project,
    remote_server,
)
from cxloop.cli.output import Format, err_console, key_values
from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses_import import import_responses, parse_mapping
from cxloop.ingest.files_model import CUSTOMER_FIELDS, EVENT_FIELDS, ImportKind, ImportOptions
from cxloop.ingest.importer import (
    ImportSummary,
    ImportTarget,
    LocalTarget,
    StoreOutcome,
    arrow_bytes,
    run_import,
)
from cxloop.project import open_database
from cxloop.settings import Settings
from cxloop.store.database import make_sessionmaker, session_scope
from cxloop.store.models import ImportRun

app = typer.Typer(
    help="Import customers or events from CSV, JSONL or Parquet, or survey responses from "
    "CSV. Re-importing a file changes nothing; rejected rows go to FILE.rejects.csv with "
    "the reason.",
    no_args_is_help=True,
)

MapOpt = Annotated[
    list[str] | None,
    typer.Option("--map", "-m", help="COLUMN=FIELD (repeatable); unmapped columns are kept"),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="FIELD=VALUE for every row, e.g. --set 'event=Order Completed'"),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option(help="Column delimiter (default: sniffed); 'tab', 'whitespace' or one character"),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        help="Text encoding of the file, e.g. cp1252, latin-1 or utf-16 (default: UTF-8, "
        "or UTF-16 when the file starts with its byte-order mark)"
    ),
]
DateOpt = Annotated[
    str | None, typer.Option("--date-format", help="strptime format, e.g. %Y%m%d or %d/%m/%Y")
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
FileArg = Annotated[Path, typer.Argument(help="The file to import", show_default=False)]


class RemoteTarget:
    """Store through the project's running server."""

    def __init__(self, remote: RemoteServer) -> None:
        self.remote = remote

    def _arrow(self, path: str, table: pa.Table, source: str) -> Any:
        return self.remote.request(
            "POST",
            path,
            params={"source": source},
            content=arrow_bytes(table),
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        )

    def events(self, table: pa.Table, source: str) -> StoreOutcome:
        result = self._arrow("/api/v1/import/events", table, source)
        return StoreOutcome(imported=result["stored"], unchanged=result["duplicates"])

    def customers(self, table: pa.Table, source: str) -> StoreOutcome:
        result = self._arrow("/api/v1/import/customers", table, source)
        return StoreOutcome(
            imported=result["created"], updated=result["updated"], unchanged=result["unchanged"]
        )

    def messages(self, messages: list[dict[str, Any]], source: str) -> StoreOutcome:
        result = self.remote.request(
            "POST", "/api/v1/import/messages", json={"messages": messages, "source": source}
        )
        return StoreOutcome(
            imported=result["stored"],
            unchanged=result["duplicates"],
            rejected=[(r["index"], r["field"], r["reason"]) for r in result["rejected"]],
        )


def _delimiter(value: str | None) -> str | None:
    if value is None:
        return None
    return {"tab": "\t", "\\t": "\t", "space": "whitespace"}.get(value, value)


def _run(
    kind: ImportKind,
    path: Path,
    mapping: list[str] | None,
    constants: list[str] | None,
    delimiter: str | None,
    encoding: str | None,
    date_format: str | None,
    fmt: Format,
) -> None:
    settings = load_settings()
    options = ImportOptions(
        kind=kind,
        mapping=parse_pairs(mapping, "--map"),
        constants=parse_pairs(constants, "--set"),
        delimiter=_delimiter(delimiter),
        encoding=encoding,
        date_format=date_format,
        timezone=settings.timezone,
    )
    started = datetime.now(UTC)
    with remote_server(settings) as remote:
        if remote is not None:
            err_console.print(f"sending to the running server at {remote.info.url}")
            summary = _with_progress(path, options, RemoteTarget(remote))
        else:
            with local_project(settings) as project:
                summary = _with_progress(path, options, LocalTarget(project.pipeline))
    _record(settings, summary, started)
    data = summary.as_dict()
    shown = {k: v for k, v in data.items() if k != "notes"} if fmt is Format.table else data
    key_values(shown, fmt, title=f"import {kind}")
    for note in summary.notes:
        err_console.print(f"note: {note}", highlight=False)
    if summary.rejects_file and fmt is Format.table:
        err_console.print(
            f"{summary.rejected:,} rejected rows with reasons: {summary.rejects_file}"
        )


def _with_progress(path: Path, options: ImportOptions, target: ImportTarget) -> ImportSummary:
    with Progress(
        SpinnerColumn(),
        TextColumn("importing {task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as progress:
        task = progress.add_task("import", total=None, name=path.name)
        return run_import(
            path,
            options,
            target,
            on_start=lambda total: progress.update(task, total=total),
            on_progress=lambda rows: progress.advance(task, rows),
        )


def _record(settings: Settings, summary: ImportSummary, started: datetime) -> None:
    engine = open_database(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            session.add(
                ImportRun(
                    kind=summary.kind,
                    path=str(Path(summary.path).resolve()),
                    started_at=started,
                    finished_at=datetime.now(UTC),
                    rows_read=summary.rows_read,
                    imported=summary.imported,
                    updated=summary.updated,
                    rejected=summary.rejected,
                )
            )
    finally:
        engine.dispose()


@app.command("customers")
@handle_errors
def customers(
    path: FileArg,
    mapping: MapOpt = None,
    constants: SetOpt = None,
    delimiter: DelimiterOpt = None,
    encoding: EncodingOpt = None,
    date_format: DateOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    _run("customers", path, mapping, constants, delimiter, encoding, date_format, fmt)


@app.command("events")
@handle_errors
def events(
    path: FileArg,
    mapping: MapOpt = None,
    constants: SetOpt = None,
    delimiter: DelimiterOpt = None,
    encoding: EncodingOpt = None,
    date_format: DateOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    _run("events", path, mapping, constants, delimiter, encoding, date_format, fmt)


customers.__doc__ = (
    "Create or update customer profiles (by user_id, else e-mail).\n\n"
    f"Fields for --map: {', '.join(CUSTOMER_FIELDS)}; unmapped columns become traits."
)
events.__doc__ = (
    "Import events; JSONL of Segment messages also imports identify/alias histories.\n\n"
    f"Fields for --map: {', '.join(EVENT_FIELDS)}, properties.NAME; unmapped columns "
    "become properties."
)


@app.command("responses")
@handle_errors
def responses(
    path: Annotated[Path, typer.Argument(help="CSV file of survey answers", show_default=False)],
    survey: Annotated[int, typer.Option("--survey", help="The survey the answers are for")],
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            "-m",
            help="FIELD=COLUMN pairs, comma-separated: score, choice, comment, submitted_at, "
            "touchpoint, customer, department",
        ),
    ] = None,
    date_format: Annotated[
        str | None, typer.Option(help="strptime format of submitted_at, e.g. '%d/%m/%Y %H:%M'")
    ] = None,
    encoding: EncodingOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Import survey answers; rows that fail a check go to FILE.rejects.csv.

    Rejected rows are reported by line and reason, the others stored. Importing a file
    again adds nothing."""
    settings = load_settings()
    fields = parse_mapping(mapping)
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            summary = import_responses(
                conn,
                survey,
                path,
                fields,
                date_format=date_format,
                zone=settings.zone,
                encoding=encoding,
            )
    finally:
        engine.dispose()
    shown = {k: v for k, v in summary.items() if k != "rejects"}
    key_values(summary if fmt is not Format.table else shown, fmt, title="import responses")
    if fmt is Format.table and summary["rejects"]:
        for reject in summary["rejects"][:5]:
            err_console.print(f"line {reject['line']}: {reject['reason']}", highlight=False)
        err_console.print(f"{summary['rejected']:,} rejected rows with reasons: "
                          f"{summary['rejects_file']}")  # fmt: skip
