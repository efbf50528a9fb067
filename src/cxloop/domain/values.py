"""Small value rules shared by the API, the CLI and the pipeline."""

from __future__ import annotations

from datetime import UTC, datetime

# The largest integer the stores hold (SQLite's INTEGER, PostgreSQL's and DuckDB's BIGINT).
# The drivers refuse to send a larger one, so ids, offsets and counts past it are refused
# where a request brings them, as invalid input rather than as a crash in the query.
MAX_INT = 2**63 - 1


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
        found[key.strip()] = value
    return found
