"""Turning validated messages into event-store rows (one Arrow table per batch)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa

from cxloop.domain.messages import Message
from cxloop.events.base import EVENTS_ARROW_SCHEMA

_encode = msgspec.json.Encoder().encode
_TYPES = {f.name: f.type for f in EVENTS_ARROW_SCHEMA}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _json(values: list[dict[str, Any]]) -> pa.Array:
    """One JSON text per row (null for an empty object), UTF-8 straight from the encoder."""
    return pa.array([_encode(v) if v else None for v in values], pa.binary()).cast(pa.string())


def _timestamps(values: Iterable[datetime | None], arrow_type: pa.DataType) -> pa.Array:
    """Aware date-times as microseconds since the epoch, exact, then viewed as timestamps.

    Arrow converts an aware datetime with a call to its ``utcoffset`` per value, which costs
    two to three times this integer arithmetic; and a request's receive time (often its
    sentAt too) is one object repeated, converted once here.
    """
    micros: list[int | None] = []
    last: object = object()
    value: int | None = None
    for moment in values:
        if moment is not last:
            last = moment
            value = None if moment is None else (moment - _EPOCH) // _MICROSECOND
        micros.append(value)
    return pa.array(micros, pa.int64()).view(arrow_type)


def messages_table(
    messages: Sequence[Message], customer_ids: Sequence[int], source: str
) -> pa.Table:
    """Columns built as Python lists once, then one Arrow table: cheaper than row dicts.

    Timestamps are aware datetimes, exact to the microsecond (``_timestamps``).
    """
    ts = _TYPES["timestamp"]
    columns: dict[str, pa.Array] = {
        "message_id": pa.array([m.message_id for m in messages], pa.string()),
        "type": pa.array([m.type for m in messages], pa.string()),
        "event": pa.array([m.event for m in messages], pa.string()),
        "name": pa.array([m.name for m in messages], pa.string()),
        "customer_id": pa.array(customer_ids, pa.int64()),
        "user_id": pa.array([m.user_id for m in messages], pa.string()),
        "anonymous_id": pa.array([m.anonymous_id for m in messages], pa.string()),
        "timestamp": _timestamps((m.timestamp for m in messages), ts),
        "original_timestamp": _timestamps((m.original_timestamp for m in messages), ts),
        "sent_at": _timestamps((m.sent_at for m in messages), ts),
        "received_at": _timestamps((m.received_at for m in messages), ts),
        "channel": pa.array([m.channel for m in messages], pa.string()),
        "source": pa.array([source] * len(messages), pa.string()),
        "properties": pa.array([m.properties for m in messages], pa.string()),
        "traits": _json([m.traits for m in messages]),
        "context": pa.array([m.context for m in messages], pa.string()),
        "integrations": pa.array([m.integrations for m in messages], pa.string()),
        "group_id": pa.array([m.group_id for m in messages], pa.string()),
        "previous_id": pa.array([m.previous_id for m in messages], pa.string()),
    }
    return pa.Table.from_arrays(
        [columns[f.name] for f in EVENTS_ARROW_SCHEMA], schema=EVENTS_ARROW_SCHEMA
    )
