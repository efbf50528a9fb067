"""Checking one Tracking API request: from its body to the answer and the record to log.

This is the CPU-heavy part of ingestion (decoding, the Segment rules, normalisation, the
trait warnings). It needs nothing from HTTP or the stores: the web layer reads the body and
the write key, the writer makes the record durable, and the answer is sent only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from cxloop.domain.messages import (
    InvalidMessage,
    Message,
    MessageError,
    Rejected,
    decode_batch,
    decode_message,
    normalise,
)
from cxloop.domain.traits import split_traits
from cxloop.ingest.log import LogRecord


@dataclass
class Checked:
    """The answer (JSON) to send once ``record``, if there is one, is durable."""

    status: int
    answer: bytes
    record: LogRecord | None = None


_encode = msgspec.json.Encoder().encode


def error_answer(status: int, code: str, message: str, field: str | None = None) -> Checked:
    """cxloop's error object, with ``code`` and ``message`` also at the top, where Segment's
    libraries read them: their logs then say why a batch was refused."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return Checked(
        status, _encode({"success": False, "code": code, "message": message, "error": error})
    )


def check(
    body: bytes, *, source: str, received_at: datetime, implied: str | None, max_message_bytes: int
) -> Checked:
    """Decode and check every message of a request; bad ones become rejects, never errors.

    ``implied`` is the type of a single-message endpoint (None for a batch).
    """
    if implied is not None:
        return _check_single(body, source, received_at, implied)
    try:
        wire = decode_batch(body)
    except InvalidMessage as exc:
        return error_answer(400, "invalid_json", f"{exc.field}: {exc.reason}", exc.field)
    messages: list[Message] = []
    indices: list[int] = []
    rejects: list[Rejected] = []
    limit = max_message_bytes
    for index, raw in enumerate(wire.batch):
        try:
            if len(raw) > limit:
                raise InvalidMessage("body", f"message is larger than {limit // 1024} KB")
            message = normalise(
                decode_message(raw),
                received_at=received_at,
                batch_context=wire.context,
                batch_integrations=wire.integrations,
                batch_sent_at=wire.sentAt,
            )
        except InvalidMessage as exc:
            text = bytes(raw).decode(errors="replace")
            rejects.append(Rejected(MessageError(index, exc.field, exc.reason), text))
            continue
        messages.append(message)
        indices.append(index)
    answer = {
        "success": True,
        "accepted": len(messages),
        "rejected": [r.error.as_dict() for r in rejects],
        "warnings": _warnings(messages, indices),
    }
    return Checked(200, _encode(answer), LogRecord(source, messages, rejects))


def _check_single(body: bytes, source: str, received_at: datetime, implied: str) -> Checked:
    try:
        message = normalise(decode_message(body), received_at=received_at, implied_type=implied)
    except InvalidMessage as exc:
        reject = Rejected(MessageError(0, exc.field, exc.reason), body.decode(errors="replace"))
        refused = error_answer(400, "invalid_message", f"{exc.field}: {exc.reason}", exc.field)
        refused.record = LogRecord(source, [], [reject])
        return refused
    answer = {"success": True, "warnings": _warnings([message], [0])}
    return Checked(200, _encode(answer), LogRecord(source, [message], []))


def _warnings(messages: list[Message], indices: list[int]) -> list[dict[str, Any]]:
    """Typed traits that were kept as free traits, named by the message's own position."""
    found: list[dict[str, Any]] = []
    for message, index in zip(messages, indices, strict=True):
        if message.type == "identify" and message.traits:
            for field, reason in split_traits(message.traits)[2]:
                found.append({"index": index, "field": field, "reason": reason})
    return found
