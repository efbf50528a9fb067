"""Turning validated messages into event-store rows (one Arrow table per batch)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import pyarrow as pa

from cxloop.domain.messages import Message
from cxloop.events.base import EVENTS_ARROW_SCHEMA

_encode = msgspec.json.Encoder().encode


def _json(value: dict[str, Any]) -> str | None:
    return _encode(value).decode() if value else None


def _micros(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.timestamp() * 1_000_000)


def messages_table(
    messages: Sequence[Message], customer_ids: Sequence[int], source: str
) -> pa.Table:
    """Columns built as Python lists once, then one Arrow table: cheaper than row dicts."""
    return pa.table(
        {
            "message_id": [m.message_id for m in messages],
            "type": [m.type for m in messages],
            "event": [m.event for m in messages],
            "name": [m.name for m in messages],
            "customer_id": pa.array(customer_ids, pa.int64()),
            "user_id": [m.user_id for m in messages],
            "anonymous_id": [m.anonymous_id for m in messages],
            "timestamp": pa.array([_micros(m.timestamp) for m in messages], pa.int64()),
            "original_timestamp": pa.array(
                [_micros(m.original_timestamp) for m in messages], pa.int64()
            ),
            "sent_at": pa.array([_micros(m.sent_at) for m in messages], pa.int64()),
            "received_at": pa.array([_micros(m.received_at) for m in messages], pa.int64()),
            "channel": [m.channel for m in messages],
            "source": [source] * len(messages),
            "properties": [_json(m.properties) for m in messages],
            "traits": [_json(m.traits) for m in messages],
            "context": [_json(m.context) for m in messages],
            "integrations": [_json(m.integrations) for m in messages],
            "group_id": [m.group_id for m in messages],
            "previous_id": [m.previous_id for m in messages],
        }
    ).cast(EVENTS_ARROW_SCHEMA)
