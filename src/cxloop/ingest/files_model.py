"""The vocabulary of file imports: options, canonical schemas, chunks and rejects.

Kept apart from the reading code so that the sniffing, planning and SQL modules can share
these types without importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

ImportKind = Literal["customers", "events"]
ImportFormat = Literal["delimited", "jsonl", "parquet"]

CUSTOMER_FIELDS: tuple[str, ...] = (
    "user_id",
    "email",
    "name",
    "gender",
    "birth_year",
    "age_band",
    "education",
    "city",
    "region",
    "country",
    "profession",
    "relationship_status",
    "income_band",
    "channel",
    "created_at",
)
EVENT_FIELDS: tuple[str, ...] = (
    "user_id",
    "anonymous_id",
    "event",
    "timestamp",
    "message_id",
    "channel",
)
# Free-form values go into one JSON object per row; these prefixes address its keys.
BAG_COLUMN: dict[ImportKind, str] = {"events": "properties", "customers": "traits"}
SEGMENT_TYPES: frozenset[str] = frozenset({"identify", "track", "page", "screen", "group", "alias"})

_TS = pa.timestamp("us", tz="UTC")

EVENTS_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("channel", pa.string()),
        pa.field("properties", pa.string(), nullable=False),
    ]
)

CUSTOMERS_SCHEMA: pa.Schema = pa.schema(
    [
        *(
            pa.field(name, pa.int32() if name == "birth_year" else pa.string())
            for name in CUSTOMER_FIELDS
            if name != "created_at"
        ),
        pa.field("created_at", _TS),
        pa.field("traits", pa.string(), nullable=False),
    ]
)


def fields_for(kind: ImportKind) -> tuple[str, ...]:
    return EVENT_FIELDS if kind == "events" else CUSTOMER_FIELDS


def schema_for(kind: ImportKind) -> pa.Schema:
    return EVENTS_SCHEMA if kind == "events" else CUSTOMERS_SCHEMA


class ImportInputError(ValueError):
    """Bad options or an unusable file, found before any row was read.

    ``field`` names what to fix (an option, a target field or ``file``) so a command line
    or a web form can point at it; ``reason`` is a sentence for a person.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ImportOptions:
    """What the user said about a file; everything here is checked by ``open_import``."""

    kind: ImportKind
    mapping: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, str] = field(default_factory=dict)
    delimiter: str | None = None
    encoding: str | None = None  # of text files; None reads UTF-8 (or UTF-16 by its BOM)
    date_format: str | None = None
    timezone: str = "UTC"
    chunk_rows: int = 100_000


@dataclass
class Reject:
    """One source row that was not imported, with enough context to fix and retry it."""

    row: int
    field: str
    reason: str
    raw: dict[str, Any]


@dataclass
class TableChunk:
    """Canonical rows ready for storage, plus the rows of the same stretch that failed."""

    table: pa.Table
    rejects: list[Reject]
    rows_read: int


@dataclass
class MessageChunk:
    """Segment-spec messages passed through as decoded, for the message pipeline to check."""

    messages: list[dict[str, Any]]
    rows: list[int]
    rejects: list[Reject]
    rows_read: int
