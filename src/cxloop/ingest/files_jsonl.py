"""Newline-delimited JSON: Segment messages pass through; flat records become a table.

A file is one or the other, decided by its first object: a ``type`` of identify, track,
page, screen, group or alias means Segment messages (checked later by the message
pipeline, like messages from an SDK); anything else is a flat record per line, mapped
like a CSV row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import msgspec
import pyarrow as pa

from cxloop.ingest.files_model import SEGMENT_TYPES, MessageChunk, Reject

JsonlMode = Literal["messages", "records"]
LINE_COLUMN = "__cx_line"
_SAMPLE_LINES = 1_000
_RAW_LIMIT = 2_000  # characters of an unreadable line kept in its reject

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class JsonlShape:
    mode: JsonlMode
    columns: tuple[str, ...]  # keys seen in the sample, first-seen order (records only)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Numbered non-blank lines; numbering counts blank lines so rejects point at the file."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            stripped = line.strip()
            if stripped:
                yield number, stripped.removeprefix(b"\xef\xbb\xbf")


def _parse(number: int, line: bytes) -> dict[str, Any] | Reject:
    text = line.decode("utf-8", errors="replace")
    try:
        value = _decode(line)
    except msgspec.DecodeError as error:
        return Reject(number, "line", f"not valid JSON: {error}", {"line": text[:_RAW_LIMIT]})
    if not isinstance(value, dict):
        kind = type(value).__name__
        return Reject(number, "line", f"a JSON {kind}, not an object", {"line": text[:_RAW_LIMIT]})
    return value


def sample_shape(path: Path) -> JsonlShape:
    """Looks at the first objects only; keys appearing later still reach properties."""
    columns: dict[str, None] = {}
    mode: JsonlMode | None = None
    for index, (number, line) in enumerate(_lines(path)):
        if index >= _SAMPLE_LINES:
            break
        parsed = _parse(number, line)
        if isinstance(parsed, Reject):
            continue
        if mode is None:
            mode = "messages" if parsed.get("type") in SEGMENT_TYPES else "records"
        columns.update(dict.fromkeys(parsed))
    return JsonlShape(mode or "messages", tuple(columns) if mode == "records" else ())


def message_chunks(path: Path, chunk_rows: int) -> Iterator[MessageChunk]:
    chunk = MessageChunk([], [], [], 0)
    for number, line in _lines(path):
        chunk.rows_read += 1
        parsed = _parse(number, line)
        if isinstance(parsed, Reject):
            chunk.rejects.append(parsed)
        elif parsed.get("type") not in SEGMENT_TYPES:
            allowed = ", ".join(sorted(SEGMENT_TYPES))
            reason = f"'type' is {parsed.get('type')!r}; a message needs one of {allowed}"
            chunk.rejects.append(Reject(number, "type", reason, parsed))
        else:
            chunk.messages.append(parsed)
            chunk.rows.append(number)
        if chunk.rows_read >= chunk_rows:
            yield chunk
            chunk = MessageChunk([], [], [], 0)
    if chunk.rows_read:
        yield chunk


@dataclass
class _Column:
    values: list[str | None] = field(default_factory=list)
    has_string: bool = False  # any JSON string value: then the column is read as text


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return _encode(value).decode()


@dataclass
class RecordsTable:
    table: pa.Table  # one string column per key, plus LINE_COLUMN
    json_columns: tuple[str, ...]  # columns holding only non-string JSON (numbers, objects…)
    rejects: list[Reject]
    rows_read: int


def records_table(path: Path) -> RecordsTable:
    """Flat records as text columns; numbers and nested values keep their JSON form."""
    columns: dict[str, _Column] = {}
    line_numbers: list[int] = []
    rejects: list[Reject] = []
    rows_read = 0
    for number, line in _lines(path):
        rows_read += 1
        parsed = _parse(number, line)
        if isinstance(parsed, Reject):
            rejects.append(parsed)
            continue
        index = len(line_numbers)
        line_numbers.append(number)
        for key, value in parsed.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = _Column([None] * index)
            column.values.append(_as_text(value))
            column.has_string = column.has_string or isinstance(value, str)
        for column in columns.values():
            if len(column.values) <= index:
                column.values.append(None)
    arrays = {key: pa.array(c.values, pa.string()) for key, c in columns.items()}
    arrays[LINE_COLUMN] = pa.array(line_numbers, pa.int64())
    json_columns = tuple(
        key
        for key, c in columns.items()
        if not c.has_string and any(v is not None for v in c.values)
    )
    return RecordsTable(pa.table(arrays), json_columns, rejects, rows_read)
