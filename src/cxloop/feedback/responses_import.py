"""``cxloop import responses``: survey answers from a CSV file.

Each row is checked as an answer given through the API would be; rows that fail are
reported with their line and reason (and written to FILE.rejects.csv) while the others
are stored. A row's content and occurrence make its key, so importing a file again
stores nothing twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import Connection, select

from cxloop.feedback.responses import ResponseIn, record_response, responses_t
from cxloop.feedback.surveys import get_survey

FIELDS = ("score", "choice", "comment", "submitted_at", "touchpoint", "customer", "department")
SHOWN_REJECTS = 20


def parse_mapping(items: list[str] | None) -> dict[str, str]:
    """``FIELD=COLUMN`` pairs, comma-separated and/or repeated."""
    mapping: dict[str, str] = {}
    for item in items or []:
        for pair in item.split(","):
            field, sep, column = pair.partition("=")
            field, column = field.strip(), column.strip()
            if not sep or not field or not column:
                raise ValueError(f"--map: {pair!r} is not FIELD=COLUMN")
            if field not in FIELDS:
                raise ValueError(f"--map: {field!r} is not one of {', '.join(FIELDS)}")
            mapping[field] = column
    if "score" not in mapping and "choice" not in mapping:
        raise ValueError("--map: map score (or choice) to a column")
    return mapping


def import_responses(
    conn: Connection,
    survey_id: int,
    path: Path,
    mapping: dict[str, str],
    *,
    date_format: str | None = None,
    zone: ZoneInfo = ZoneInfo("UTC"),
    encoding: str | None = None,
) -> dict[str, Any]:
    """``{"rows", "imported", "unchanged", "rejected", "rejects": [{"line", "reason"}]}``."""
    from cxloop.ingest.files_text import decoded, open_csv_text  # loads pyarrow: when used

    survey = get_survey(conn, survey_id)
    try:
        handle, text = open_csv_text(path, encoding)
    except OSError as exc:
        raise ValueError(f"FILE: cannot read {path}: {exc.strerror}") from None
    with handle:
        reader = csv.DictReader(decoded(handle, path, text))
        columns = list(reader.fieldnames or [])
        missing = [c for c in mapping.values() if c not in columns]
        if missing:
            raise ValueError(f"--map: no column {missing[0]!r} in {path.name} "
                             f"(columns: {', '.join(columns)})")  # fmt: skip
        seen: Counter[str] = Counter()
        stored = _imported_keys(conn, survey_id)  # read once, not a query per row
        counts = {"rows": 0, "imported": 0, "unchanged": 0, "rejected": 0}
        rejects: list[dict[str, Any]] = []
        for row in reader:
            counts["rows"] += 1
            line = reader.line_num
            content = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
            seen[content] += 1
            key = f"{content[:64]}#{seen[content]}"
            try:
                answer = _answer(row, mapping, date_format, zone)
                if key in stored:
                    counts["unchanged"] += 1
                    continue
                record_response(conn, survey_id, answer, source="import", import_key=key,
                                survey=survey)  # fmt: skip
                counts["imported"] += 1
            except (ValueError, LookupError) as exc:
                counts["rejected"] += 1
                rejects.append({"line": line, "reason": _reason(exc), "row": row})
    rejects_file = None
    if rejects:
        rejects_file = path.with_name(path.name + ".rejects.csv")
        _write_rejects(rejects_file, columns, rejects)
    return {
        **counts,
        "rejects_file": str(rejects_file) if rejects_file else None,
        "rejects": [{"line": r["line"], "reason": r["reason"]} for r in rejects[:SHOWN_REJECTS]],
    }


def _answer(
    row: dict[str, str], mapping: dict[str, str], date_format: str | None, zone: ZoneInfo
) -> ResponseIn:
    values = {f: (row.get(c) or "").strip() for f, c in mapping.items()}
    fields: dict[str, Any] = {k: v for k, v in values.items() if v}
    if "score" in mapping:
        if not values["score"]:
            raise ValueError("score: the row has no score")
        try:
            fields["score"] = float(values["score"])
        except ValueError:
            raise ValueError(f"score: {values['score']!r} is not a number") from None
    if fields.get("submitted_at"):
        fields["submitted_at"] = _moment(fields["submitted_at"], date_format, zone)
    try:
        return ResponseIn(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _moment(text: str, date_format: str | None, zone: ZoneInfo) -> datetime:
    """A time in the file's format, read in the project's zone when it names none."""
    try:
        moment = (
            datetime.strptime(text, date_format) if date_format else datetime.fromisoformat(text)
        )
    except ValueError:
        expected = date_format or "ISO 8601 (give --date-format otherwise)"
        raise ValueError(f"submitted_at: {text!r} does not match {expected}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def _imported_keys(conn: Connection, survey_id: int) -> set[str]:
    """The keys of the survey's rows imported before."""
    query = select(responses_t.c.import_key).where(
        responses_t.c.survey_id == survey_id, responses_t.c.import_key.is_not(None)
    )
    return set(conn.execute(query).scalars())


def _reason(exc: Exception) -> str:
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)


def _write_rejects(path: Path, columns: list[str], rejects: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["line", "reason", *columns])
        for r in rejects:
            writer.writerow([r["line"], r["reason"], *(r["row"].get(c, "") for c in columns)])
