"""`cxloop import customers|events FILE` (filled in below)."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Import customers or events from CSV, JSONL or Parquet.", no_args_is_help=True
)
