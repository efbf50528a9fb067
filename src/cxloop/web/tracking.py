"""Segment-compatible Tracking API: /v1/track, identify, page, screen, group, alias, batch.

The hot path avoids FastAPI's body validation: bodies are read as bytes and decoded with
msgspec, one message at a time, so that a bad message costs only its own rejection.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import msgspec
from fastapi import APIRouter, Request, Response

from cxloop.domain.messages import (
    InvalidMessage,
    Message,
    MessageError,
    decode_batch,
    decode_message,
    normalise,
    write_key_of,
)
from cxloop.domain.traits import split_traits
from cxloop.ingest.pipeline import Rejected
from cxloop.web.state import ServerState, basic_user, state_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tracking"])
_encode = msgspec.json.Encoder().encode

_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Segment-spec message (see the Segment Tracking API).",
    "properties": {
        "type": {"type": "string"},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"},
        "previousId": {"type": "string"},
        "groupId": {"type": "string"},
    },
}
_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _MESSAGE_SCHEMA},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (accepted messages are durable); refused ones are listed."},
    400: {"description": "Malformed JSON or an invalid message (field and reason given)."},
    401: {"description": "Missing or invalid write key."},
    413: {"description": "Message over 32 KB or batch over 500 KB."},
    503: {"description": "Storage unavailable; retry."},
}


def _json(body: dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(
        _encode(body), status_code=status, media_type="application/json", headers=headers or None
    )


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return _json({"success": False, "error": error}, status)


async def _read_body(request: Request, limit: int) -> bytes | Response:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, "too_large", f"body is larger than {limit // 1024} KB")
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        try:
            body = _inflate(body, encoding, limit)
        except (OSError, zlib.error, EOFError):
            return _error(400, "bad_encoding", f"body is not valid {encoding}")
    if len(body) > limit:
        return _error(413, "too_large", f"body is larger than {limit // 1024} KB")
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding == "gzip":
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as fh:
            return fh.read(limit + 1)
    return zlib.decompressobj().decompress(body, limit + 1)


def _authenticate(request: Request, body: bytes, state: ServerState) -> str | Response:
    key = basic_user(request.headers.get("authorization")) or write_key_of(body)
    if not key:
        return _error(401, "unauthorized", "a write key is required (HTTP basic user)")
    source = state.check_key(key, "write")
    if source is None:
        return _error(401, "unauthorized", "the write key is not valid")
    return source


async def _store(
    state: ServerState, messages: list[Message], rejects: list[Rejected], source: str
) -> Response | list[MessageError]:
    """Log the request durably; the refused messages come back for the answer."""
    try:
        result = await state.writer.ingest(messages, rejects, source)
    except Exception:
        log.exception("ingestion failed")
        return _error(503, "unavailable", "storage is unavailable; retry later")
    return result.rejected


def _warnings(messages: list[Message], indices: list[int]) -> list[dict[str, Any]]:
    """Typed traits that were kept as free traits, named by the message's own position."""
    found: list[dict[str, Any]] = []
    for message, index in zip(messages, indices, strict=True):
        if message.type == "identify" and message.traits:
            for field, reason in split_traits(message.traits)[2]:
                found.append({"index": index, "field": field, "reason": reason})
    return found


def _single(implied: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def handle(request: Request) -> Response:
        received_at = datetime.now(UTC)
        state = state_of(request)
        body = await _read_body(request, state.project.settings.max_message_bytes)
        if isinstance(body, Response):
            return body
        source = _authenticate(request, body, state)
        if isinstance(source, Response):
            return source
        try:
            message = normalise(decode_message(body), received_at=received_at, implied_type=implied)
        except InvalidMessage as exc:
            reject = Rejected(MessageError(0, exc.field, exc.reason), body.decode(errors="replace"))
            await _store(state, [], [reject], source)
            return _error(400, "invalid_message", f"{exc.field}: {exc.reason}", exc.field)
        stored = await _store(state, [message], [], source)
        if isinstance(stored, Response):
            return stored
        return _json({"success": True, "warnings": _warnings([message], [0])})

    handle.__name__ = f"track_{implied}"
    handle.__doc__ = f"Record one `{implied}` message (Segment spec)."
    return handle


async def batch(request: Request) -> Response:
    """Record many messages; valid ones are stored, each invalid one is reported."""
    received_at = datetime.now(UTC)
    state = state_of(request)
    settings = state.project.settings
    body = await _read_body(request, settings.max_batch_bytes)
    if isinstance(body, Response):
        return body
    source = _authenticate(request, body, state)
    if isinstance(source, Response):
        return source
    try:
        wire = decode_batch(body)
    except InvalidMessage as exc:
        return _error(400, "invalid_json", f"{exc.field}: {exc.reason}", exc.field)
    messages: list[Message] = []
    indices: list[int] = []
    rejects: list[Rejected] = []
    limit = settings.max_message_bytes
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
    stored = await _store(state, messages, rejects, source)
    if isinstance(stored, Response):
        return stored
    return _json(
        {
            "success": True,
            "accepted": len(messages),
            "rejected": [r.as_dict() for r in stored],
            "warnings": _warnings(messages, indices),
        }
    )


for _kind in ("track", "identify", "page", "screen", "group", "alias"):
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        responses=_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _MESSAGE_SCHEMA}},
            }
        },
    )
for _path in ("/batch", "/import"):
    router.add_api_route(
        _path,
        batch,
        methods=["POST"],
        responses=_RESPONSES,
        name=f"batch{_path.replace('/', '_')}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _BATCH_SCHEMA}},
            }
        },
    )
