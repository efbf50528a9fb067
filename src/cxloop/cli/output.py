"""Printing data as a table, JSON (the API's JSON) or CSV; errors to stderr."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


_MAX_PIPED_WIDTH = 10_000  # a cell longer than this still folds, even when piped


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def as_jsonable(data: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any]) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [as_jsonable(x) if isinstance(x, BaseModel) else x for x in data]
    return data


def emit(
    data: BaseModel | Sequence[BaseModel] | dict[str, Any] | list[Any],
    fmt: Format,
    *,
    rows: list[dict[str, Any]] | None = None,
    columns: Sequence[str] | None = None,
    fields: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    """Print ``data``; ``rows``/``columns`` say what the table and CSV show.

    ``fields`` are the names a row has, in order: without ``columns`` they head the table
    and the CSV even when there are no rows, so an empty answer is still a CSV with its
    header (any other name a row has follows them)."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(as_jsonable(data), indent=2, ensure_ascii=False) + "\n")
        return
    if rows is None:
        payload = as_jsonable(data)
        rows = payload if isinstance(payload, list) else [payload]
    columns = list(columns) if columns else _names(rows, fields)
    if fmt is Format.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
        return
    if not columns:  # nothing to show and no names for it: a table would be a blank line
        console.print(f"{title}: none" if title else "none", highlight=False)
        return
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(c)) for c in columns])
    print_table(table)


def _names(rows: Sequence[dict[str, Any]], fields: Sequence[str] | None) -> list[str]:
    names = dict.fromkeys(fields or ())
    for row in rows:
        names.update(dict.fromkeys(row))
    return list(names)


def fields_of(model: type[BaseModel]) -> tuple[str, ...]:
    """The names a model's JSON has, for ``emit(fields=...)``."""
    return (*model.model_fields, *model.model_computed_fields)


def key_values(data: dict[str, Any], fmt: Format, title: str | None = None) -> None:
    """A single record as a two-column table (or JSON / CSV of one row)."""
    if fmt is not Format.table:
        emit(data, fmt, rows=[data])
        return
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, _cell(value))
    print_table(table)


def print_table(table: Table) -> None:
    """On a terminal the table fits the window. Piped into a file or another program there
    is no window, and folding cells at Rich's 80 columns would split every record over
    several lines: there the table gets the width its longest cells need (unless COLUMNS
    asks for a width)."""
    if console.is_terminal or os.environ.get("COLUMNS"):
        console.print(table)
        return
    wide = console.options.update_width(_MAX_PIPED_WIDTH)
    natural = Measurement.get(console, wide, table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width


def percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def duration(seconds: float | None) -> str:
    """Seconds as people read them in a table: minutes, hours or days."""
    if seconds is None:
        return ""
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
