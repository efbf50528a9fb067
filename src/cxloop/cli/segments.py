"""`cxloop segments`: saved rule-based segments, their members, CSV export.

Saving and refreshing read the event store, so they run in the project's server when one
is running; listing, showing and exporting read only the app database.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic_core import to_jsonable_python

from cxloop import segments
from cxloop.cli.context import call_project, handle_errors, load_settings, read_mapping
from cxloop.cli.output import Format, emit, err_console, key_values
from cxloop.domain.segments import SegmentIn
from cxloop.project import Project, open_database

app = typer.Typer(help="Saved segments: rules, members, CSV export.", no_args_is_help=True)
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
NameArg = Annotated[str, typer.Argument(help="The segment's name")]


def _read(path: Path, name: str, description: str | None) -> SegmentIn:
    """A segment file (JSON or YAML: ``match`` and ``rules``), with its name given here."""
    data = {**read_mapping(path, "match and rules"), "name": name}
    if description is not None:
        data["description"] = description
    return SegmentIn.model_validate(data)


def _show(data: dict[str, Any], fmt: Format) -> None:
    shown = {**data, "rules": json.dumps(data["rules"], ensure_ascii=False)}
    key_values(shown if fmt is Format.table else data, fmt, title=f"segment {data['name']}")


def _save(name: str, path: Path, description: str | None, replace: str | None, fmt: Format) -> None:
    new = _read(path, name, description)

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return segments.save_segment(conn, project.events, new, replace=replace)

    body = json.loads(new.model_dump_json())
    if replace is None:
        data = call_project("POST", "/api/v1/segments", local, body=body)
    else:
        data = call_project("PUT", f"/api/v1/segments/{replace}", local, body=body)
    _show(data, fmt)


@app.command("create")
@handle_errors
def create(
    name: NameArg,
    path: Annotated[Path, typer.Option("--file", help="The rules: JSON or YAML")],
    description: Annotated[str | None, typer.Option("--description")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Save a segment and compute its members (rules on a missing trait are refused)."""
    _save(name, path, description, None, fmt)


@app.command("update")
@handle_errors
def update(
    name: NameArg,
    path: Annotated[Path, typer.Option("--file", help="The new rules: JSON or YAML")],
    new_name: Annotated[str | None, typer.Option("--name", help="A new name")] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Change a segment's rules (and name); its members are computed again."""
    _save(new_name or name, path, description, name, fmt)


@app.command("refresh")
@handle_errors
def refresh(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Compute a segment's members again from today's data."""

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return segments.refresh_segment(conn, project.events, name)

    _show(call_project("POST", f"/api/v1/segments/{name}/refresh", local), fmt)


def _database() -> Any:
    return open_database(load_settings())


@app.command("list")
@handle_errors
def list_segments(fmt: FormatOpt = Format.table) -> None:
    """The saved segments, their member counts and when they were computed."""
    engine = _database()
    with engine.connect() as conn:
        found = to_jsonable_python(segments.list_segments(conn))
    columns = ("name", "members", "match", "refreshed_at", "description")
    emit(found, fmt, rows=found, columns=columns, title="segments")


@app.command("show")
@handle_errors
def show(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """One segment: its rules, member count and when it was computed."""
    with _database().connect() as conn:
        _show(to_jsonable_python(segments.get_segment(conn, name)), fmt)


@app.command("delete")
@handle_errors
def delete(name: NameArg) -> None:
    """Delete a segment (refused while a rule still names it)."""
    with _database().begin() as conn:
        segments.delete_segment(conn, name)
    err_console.print(f"deleted segment {name}", highlight=False)


@app.command("export")
@handle_errors
def export(
    name: NameArg,
    out: Annotated[Path | None, typer.Option("--out", help="The CSV file (default stdout)")] = None,
) -> None:
    """The members as CSV (profile fields, userId, traits as JSON) for marketing tools."""
    with _database().connect() as conn:
        chunks = segments.export_csv(conn, name)
        if out is None:
            for chunk in chunks:
                sys.stdout.write(chunk)
            return
        with out.open("w", encoding="utf-8", newline="") as handle:
            for chunk in chunks:
                handle.write(chunk)
        found = segments.get_segment(conn, name)
    err_console.print(f"wrote {found['members']:,} customers to {out}", highlight=False)
