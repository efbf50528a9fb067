"""Turning validated messages into event-store rows (one Arrow table per batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pyarrow as pa

from cxloop.domain.messages import Message
from cxloop.events.base import EVENTS_ARROW_SCHEMA

_encode = msgspec.json.Encoder().encode
_TYPES = {f.name: f.type for f in EVENTS_ARROW_SCHEMA}


def _json(values: list[dict[str, Any]]) -> pa.Array:
    """One JSON text per row (null for an empty object), UTF-8 straight from the encoder."""
    return pa.array([_encode(v) if v else None for v in values], pa.binary()).cast(pa.string())


def messages_table(
    messages: Sequence[Message], customer_ids: Sequence[int], source: str
) -> pa.Table:
    """Columns built as Python lists once, then one Arrow table: cheaper than row dicts.

    Timestamps are aware UTC datetimes, converted by Arrow itself (exact to the microsecond).
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
        "timestamp": pa.array([m.timestamp for m in messages], ts),
        "original_timestamp": pa.array([m.original_timestamp for m in messages], ts),
        "sent_at": pa.array([m.sent_at for m in messages], ts),
        "received_at": pa.array([m.received_at for m in messages], ts),
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
