"""`cxloop export customers|events|project` and `cxloop import project`.

A customer list reads only the app database, so it works beside a running server. The
events and the whole project read the event store, which the server of an embedded
project holds: stop it first (or download the same files from the server's
``/api/v1/export/…`` endpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TextColumn

from cxloop import exports
from cxloop.cli.context import (
    CliError,
    day_option,
    handle_errors,
    load_settings,
    local_project,
    read_database,
    remote_server,
)
from cxloop.cli.output import Format, console, key_values
from cxloop.feedback.responses import days_window

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


def _no_server(what: str) -> None:
    settings = load_settings()
    with remote_server(settings) as remote:
        if remote is not None:
            raise CliError(
                f"{what} reads the event store, which the server at {remote.info.url} holds; "
                "stop it first, or download from its /api/v1/export endpoints",
                1,
            )


def customers_command(
    out: Annotated[Path, typer.Option("--out", help="The CSV file to write")],
    segment: Annotated[str | None, typer.Option("--segment", help="A saved segment only")] = None,
) -> None:
    """Every customer (or a segment's members) as CSV: id, name, e-mail, profile fields."""
    chunks = read_database(lambda conn: list(exports.customers_csv(conn, segment=segment)))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(chunks), encoding="utf-8")
    rows = sum(chunk.count("\n") for chunk in chunks) - 1
    console.print(f"{rows:,} customers written to {out}")


def events_command(
    out: Annotated[Path, typer.Option("--out", help="The Parquet file to write")],
    from_: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")] = None,
) -> None:
    """The events of a period (days in the project's time zone, both included) as one
    Parquet file with every column."""
    _no_server("exporting events")
    if out.suffix.lower() != ".parquet":
        raise CliError(f"--out: {out.name!r} must end in .parquet (events are written as Parquet)")
    settings = load_settings()
    first, last = day_option(from_, "--from"), day_option(to, "--to")
    start, end = days_window(first, last, settings.zone)
    with local_project(settings) as project:
        n = exports.events_parquet(project.events, out, start=start, end=end)
    console.print(f"{n:,} events written to {out}")


def project_command(
    directory: Annotated[Path, typer.Argument(help="A new folder for the export")],
    fmt: FormatOpt = Format.table,
) -> None:
    """The whole project: every table as JSON Lines and the events as Parquet, to load
    into an empty project with `cxloop import project`. It holds password hashes and
    webhook secrets: keep it as safe as the database."""
    _no_server("exporting the project")
    settings = load_settings()
    with local_project(settings) as project, _progress("exporting") as step:
        done = exports.export_project(project.engine, project.events, directory, progress=step)
    key_values({"directory": done["directory"], **done["counts"]}, fmt, title="project exported")


def import_project_command(
    directory: Annotated[Path, typer.Argument(help="A folder made by cxloop export project")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Load a project export into this project, which must be empty (a new CXLOOP_HOME
    or database): the same customers, events, models, answers, rules and history."""
    _no_server("importing a project")
    settings = load_settings()
    with local_project(settings) as project, _progress("importing") as step:
        done = exports.import_project(project.engine, project.events, directory, progress=step)
    with local_project(settings):
        pass  # opening again copies the stage moves to the event store's mirror
    key_values({"directory": done["directory"], **done["counts"]}, fmt, title="project imported")


class _progress:
    """One line per table as it is written or read."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.bar = Progress(TextColumn("{task.description}"), console=console, transient=True)

    def __enter__(self) -> exports.Progress:
        self.bar.start()
        task = self.bar.add_task(self.verb)

        def step(name: str, n: int) -> None:
            self.bar.update(task, description=f"{self.verb} {name}: {n:,} rows")

        return step

    def __exit__(self, *_exc: object) -> None:
        self.bar.stop()


def register_export(export_app: typer.Typer) -> None:
    export_app.command("customers")(handle_errors(customers_command))
    export_app.command("events")(handle_errors(events_command))
    export_app.command("project")(handle_errors(project_command))


def register_import(import_app: typer.Typer) -> None:
    import_app.command("project")(handle_errors(import_project_command))
