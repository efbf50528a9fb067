"""Score benchmarks: industries' and competitors' published scores, to read ours against.

cxloop ships none (invented figures would mislead); each benchmark a user adds or imports
names its source. A report read against one says how far our score is from it and
whether the gap is within our margin of error.

CSV format for ``cxloop benchmarks import``: a header ``measure,scope,name,value,source``
and optionally ``as_of`` (YYYY-MM-DD); ``measure`` is nps, enps, csat or ces, ``scope``
industry or competitor. A row for an existing (measure, scope, name) replaces it.
"""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, Table, delete, insert, select

from cxloop.lifecycle.service import NotFound
from cxloop.store.models import ScoreBenchmark

benchmarks_t = cast(Table, ScoreBenchmark.__table__)
RANGES = {"nps": (-100.0, 100.0), "enps": (-100.0, 100.0), "csat": (0.0, 100.0),
          "ces": (1.0, 7.0)}  # fmt: skip
COLUMNS = ("measure", "scope", "name", "value", "source", "as_of")


class BenchmarkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    measure: str
    scope: str = Field(description="industry or competitor")
    name: str = Field(min_length=1, max_length=200)
    value: float
    source: str = Field(min_length=1, max_length=2000, description="where the figure is from")
    as_of: date | None = None

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        if value not in RANGES:
            raise ValueError(f"must be one of {', '.join(RANGES)}")
        return value

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        if value not in ("industry", "competitor"):
            raise ValueError("must be industry or competitor")
        return value

    def checked(self) -> BenchmarkIn:
        low, high = RANGES[self.measure]
        if not low <= self.value <= high:
            raise ValueError(f"value: a {self.measure} lies from {low:g} to {high:g}")
        return self


def save_benchmark(conn: Connection, benchmark: BenchmarkIn) -> dict[str, Any]:
    """Add a benchmark, or replace the one of the same measure, scope and name."""
    b = benchmark.checked()
    key = (benchmarks_t.c.measure == b.measure, benchmarks_t.c.scope == b.scope,
           benchmarks_t.c.name == b.name)  # fmt: skip
    conn.execute(delete(benchmarks_t).where(*key))
    conn.execute(insert(benchmarks_t).values(**b.model_dump(), created_at=datetime.now(UTC)))
    return next(x for x in list_benchmarks(conn, b.measure) if x["name"] == b.name
                and x["scope"] == b.scope)  # fmt: skip


def list_benchmarks(conn: Connection, measure: str | None = None) -> list[dict[str, Any]]:
    query = select(benchmarks_t).order_by(benchmarks_t.c.measure, benchmarks_t.c.scope,
                                          benchmarks_t.c.name)  # fmt: skip
    if measure is not None:
        query = query.where(benchmarks_t.c.measure == measure)
    return [
        {"id": int(r["id"]), "measure": r["measure"], "scope": r["scope"], "name": r["name"],
         "value": r["value"], "source": r["source"],
         "as_of": r["as_of"].isoformat() if r["as_of"] else None}
        for r in conn.execute(query).mappings()
    ]  # fmt: skip


def import_benchmarks(conn: Connection, path: Path, encoding: str | None = None) -> dict[str, Any]:
    """Every valid row saved; the others reported by line and reason."""
    from cxloop.ingest.files_text import decoded, open_csv_text  # loads pyarrow: when used

    try:
        handle, text = open_csv_text(path, encoding)
    except OSError as exc:
        raise ValueError(f"FILE: cannot read {path}: {exc.strerror}") from None
    saved, rejects = 0, []
    with handle:
        reader = csv.DictReader(decoded(handle, path, text))
        missing = [c for c in COLUMNS[:5] if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"FILE: no column {missing[0]!r} (give {', '.join(COLUMNS)})")
        for row in reader:
            fields = {k: (row.get(k) or "").strip() for k in COLUMNS if (row.get(k) or "").strip()}
            try:
                save_benchmark(conn, BenchmarkIn.model_validate(fields))
                saved += 1
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "row"
                rejects.append({"line": reader.line_num, "reason": f"{field}: {first['msg']}"})
            except ValueError as exc:
                rejects.append({"line": reader.line_num, "reason": str(exc)})
    return {"saved": saved, "rejected": len(rejects), "rejects": rejects}


def against(
    conn: Connection, benchmark_id: int, report: dict[str, Any], measure: str
) -> dict[str, Any]:
    """A report's score read against a benchmark of the same measure."""
    query = select(benchmarks_t).where(benchmarks_t.c.id == benchmark_id)
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound("benchmark", f"no benchmark with id {benchmark_id}")
    if row["measure"] != measure:
        raise ValueError(f"benchmark: it is a {row['measure']} benchmark, not {measure}")
    ours, margin = report.get(measure), report.get("margin_of_error")
    gap = None if ours is None else round(ours - row["value"], 2)
    return {
        "id": int(row["id"]), "name": row["name"], "scope": row["scope"],
        "value": row["value"], "source": row["source"], "difference": gap,
        "within_margin": None if gap is None or margin is None else abs(gap) <= margin,
    }  # fmt: skip
