"""Small value rules shared by the API, the CLI and the pipeline."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

# The largest integer the stores hold (SQLite's INTEGER, PostgreSQL's and DuckDB's BIGINT).
# The drivers refuse to send a larger one, so ids, offsets and counts past it are refused
# where a request brings them, as invalid input rather than as a crash in the query.
MAX_INT = 2**63 - 1

# The days and instants a request may name: wide enough for any real data, and far enough
# inside the calendar (years 1 to 9999) that moving them by a time zone, a day or a month
# never falls off it.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9998, 12, 31)


def check_day(day: date | None, field: str) -> date | None:
    """``day``, if it lies from FIRST_DAY to LAST_DAY; else a ValueError naming ``field``."""
    if day is not None and not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"{field}: must be a day from {FIRST_DAY} to {LAST_DAY}")
    return day


def utc_within(value: datetime | None, field: str) -> datetime | None:
    """``as_utc(value)``, if it falls on a day from FIRST_DAY to LAST_DAY; else a
    ValueError naming ``field`` (far-off offsets cannot even be moved to UTC)."""
    if value is None:
        return None
    try:
        found = utc(value)
    except OverflowError:
        found = None
    if found is None or not FIRST_DAY <= found.date() <= LAST_DAY:
        raise ValueError(f"{field}: must be a time from {FIRST_DAY} to {LAST_DAY}")
    return found


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime; naive ones (SQLite hands them back so) are taken as UTC."""
    if value is None or value.tzinfo is UTC:
        return value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc(value: datetime) -> datetime:
    """``as_utc`` for a value that is never missing."""
    found = as_utc(value)
    assert found is not None
    return found


def iso_utc(value: datetime | None) -> str | None:
    """``as_utc`` as ISO 8601 text, as the API shows times."""
    found = as_utc(value)
    return None if found is None else found.isoformat()


def parse_pairs(items: list[str] | None, option: str) -> dict[str, str]:
    """NAME=VALUE options (--map, --set, --where, trait filters) as a dict, checked."""
    found: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{option}: {item!r} is not NAME=VALUE")
        key, value = item.split("=", 1)
        if not key.strip():
            raise ValueError(f"{option}: {item!r} has an empty name")
        if key.strip() in found:
            # Silently keeping the last of two would answer a question nobody asked.
            raise ValueError(f"{option}: {key.strip()!r} is given twice")
        found[key.strip()] = value
    return found


_INNER_FIELD = re.compile(r"^([A-Za-z_][\w.]*): ")
_SKIPPED_LOC = ("query", "path", "body")


def explain_error(loc: Sequence[Any], message: str) -> tuple[str, str]:
    """(field, reason) of one pydantic error, readable: the ``Value error, `` prefix
    dropped, the tag pydantic adds after a list index of a tagged union removed
    (``actions.0.email.text`` → ``actions.0.text``), and a reason that starts with a field
    of its own (a model's check: ``event: needed``) joined to the path."""
    parts = [str(p) for p in loc if p not in _SKIPPED_LOC]
    kept = [
        p for i, p in enumerate(parts) if not (i and parts[i - 1].isdigit() and not p.isdigit())
    ]
    where = ".".join(kept)
    reason = message.removeprefix("Value error, ")
    inner = _INNER_FIELD.match(reason)
    if inner is not None:
        where = f"{where}.{inner.group(1)}" if where else inner.group(1)
        reason = reason[inner.end() :]
    return where, reason


def bounded_key(key: str, limit: int = 200) -> str:
    """``key`` fitted into a column of ``limit`` characters without two keys becoming one:
    a key made of ids (a messageId may be 200 characters alone) can outgrow its column,
    which PostgreSQL refuses and cutting it short would make keys collide. A longer key
    keeps its start, for reading, and ends in the SHA-256 of the whole."""
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: limit - len(digest) - 1]}#{digest}"
