"""The filters every insight takes, as SQL: a half-open window of time, and a segment."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from cxloop.customers.service import customers_t, segment_conditions


def in_window(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    """Conditions keeping ``column`` within ``[start, end)``; none for an open side."""
    kept = []
    if start is not None:
        kept.append(column >= start)
    if end is not None:
        kept.append(column < end)
    return kept


def segment_members(where: Mapping[str, str]) -> Any:
    """The ids of the segment's customers, as a subquery."""
    return select(customers_t.c.id).where(*segment_conditions(where))
