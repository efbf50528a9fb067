"""SQL pieces both backends share: the WHERE clause of an event query, with parameters."""

from __future__ import annotations

from typing import Any

from cxloop.events.base import EventQuery


def where_clause(query: EventQuery | None, placeholder: str) -> tuple[str, list[Any]]:
    """Build a parameterised WHERE; ``placeholder`` is the driver's (``?`` or ``%s``)."""
    if query is None:
        return "", []
    parts: list[str] = []
    params: list[Any] = []
    if query.customer_ids is not None:
        if not query.customer_ids:
            return " WHERE false", []
        parts.append(f"customer_id IN ({', '.join([placeholder] * len(query.customer_ids))})")
        params.extend(query.customer_ids)
    if query.event is not None:
        parts.append(f"event = {placeholder}")
        params.append(query.event)
    if query.type is not None:
        parts.append(f"type = {placeholder}")
        params.append(query.type)
    if query.start is not None:
        parts.append(f"timestamp >= {placeholder}")
        params.append(query.start)
    if query.end is not None:
        parts.append(f"timestamp < {placeholder}")
        params.append(query.end)
    return (" WHERE " + " AND ".join(parts)) if parts else "", params
