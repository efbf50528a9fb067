"""Segment Tracking API messages: decoding, validation and normalisation.

Decoding is done per message (not per batch) so that one bad message in a batch is reported
with its index and field while the others are stored. msgspec validates types while it
decodes, which keeps ingestion fast.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cxloop.domain.values import as_utc

MESSAGE_TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_NAME_LENGTH = 200
MAX_ID_LENGTH = 200
# Timestamps further than this from the receive time are refused as client bugs.
MAX_FUTURE = timedelta(days=2)
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)

Id = str | int


class WireMessage(msgspec.Struct, kw_only=True, rename={"write_key": "writeKey"}):
    """One message as a client sends it; every field optional so that rules name the field."""

    type: str | None = None
    messageId: Id | None = None
    userId: Id | None = None
    anonymousId: Id | None = None
    previousId: Id | None = None
    groupId: Id | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    # Kept as raw JSON: they are stored as sent, so building Python objects for them
    # (and encoding them again) would be wasted work on the hot path.
    properties: msgspec.Raw = msgspec.Raw()
    traits: dict[str, Any] | None = None
    context: msgspec.Raw = msgspec.Raw()
    integrations: msgspec.Raw = msgspec.Raw()
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    channel: str | None = None
    write_key: str | None = None


class WireBatch(msgspec.Struct, kw_only=True, rename={"write_key": "writeKey"}):
    """A /v1/batch body; messages stay raw so each is decoded (and refused) on its own."""

    batch: list[msgspec.Raw]
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: datetime | None = None
    write_key: str | None = None


class BatchEnvelope(msgspec.Struct, kw_only=True, rename={"write_key": "writeKey"}):
    """Only the write key of a body, read before anything else is trusted."""

    write_key: str | None = None


class Message(msgspec.Struct, kw_only=True, array_like=True, gc=False):
    """A valid, normalised message ready for identity resolution and storage.

    A msgspec Struct: cheaper to build than a dataclass on the hot path, and it goes to the
    ingestion log as a compact msgpack array.
    """

    type: str
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    event: str | None
    name: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    channel: str | None
    properties: str | None  # JSON object text, None when empty
    traits: dict[str, Any]
    context: str | None  # JSON object text
    integrations: str | None  # JSON object text
    group_id: str | None
    previous_id: str | None


@dataclass(frozen=True, slots=True)
class MessageError:
    """Why one message was refused: the field at fault and a sentence for people."""

    index: int
    field: str
    reason: str
    message_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class Rejected:
    """A refused message with the raw text kept for inspection."""

    error: MessageError
    payload: str


class InvalidMessage(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_PATH = re.compile(r"at `\$\.?([^`]*)`")
_MISSING = re.compile(r"Object missing required field `([^`]*)`")
_message_decoder = msgspec.json.Decoder(WireMessage)
_batch_decoder = msgspec.json.Decoder(WireBatch)
_envelope_decoder = msgspec.json.Decoder(BatchEnvelope)


def decode_error(exc: msgspec.DecodeError) -> InvalidMessage:
    """Turn msgspec's message into (field, reason) as our errors name them."""
    text = str(exc)
    match = _PATH.search(text)
    field = match.group(1) if match and match.group(1) else "body"
    reason = _PATH.sub("", text).strip().rstrip("-").strip()
    missing = _MISSING.search(reason)
    if missing:
        field = missing.group(1) if field == "body" else f"{field}.{missing.group(1)}"
        reason = "is required"
    if reason.startswith("Expected `object`") and field == "body":
        reason = "must be a JSON object"
    if "Invalid RFC3339" in reason or "datetime" in reason:
        reason = "must be an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z"
    return InvalidMessage(field or "body", reason)


def decode_message(raw: bytes) -> WireMessage:
    try:
        return _message_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from exc


def decode_batch(raw: bytes) -> WireBatch:
    try:
        return _batch_decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise decode_error(exc) from exc


def write_key_of(raw: bytes) -> str | None:
    try:
        return _envelope_decoder.decode(raw).write_key
    except msgspec.DecodeError:
        return None


_NUL_REASON = "must not contain the NUL character (\\u0000)"
# A JSON escape \u0000 (an odd number of backslashes before "u0000"), not the text "\\u0000".
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _no_nul(text: str | None, field: str) -> str | None:
    """PostgreSQL cannot store NUL in text or JSON; refuse it here, for every backend alike,
    rather than accept a message that one store could never keep."""
    if text is not None and "\x00" in text:
        raise InvalidMessage(field, _NUL_REASON)
    return text


def _as_id(value: Id | None, field: str) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    _no_nul(text, field)
    if len(text) > MAX_ID_LENGTH:
        raise InvalidMessage(field, f"longer than {MAX_ID_LENGTH} characters")
    return text


def _in_utc(value: datetime | None, field: str) -> datetime | None:
    try:
        return as_utc(value)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidMessage(field, "is outside the calendar in UTC") from None


def corrected_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: receivedAt - (sentAt - timestamp).

    A device whose clock is wrong by an hour sends both its timestamp and its sentAt an hour
    off; the difference between them is right, and the server's receive time anchors it.
    """
    if timestamp is None:
        return received_at
    if sent_at is None:
        return timestamp
    return received_at - (sent_at - timestamp)


class _ChannelOnly(msgspec.Struct):
    channel: Any = None


_channel_decoder = msgspec.json.Decoder(_ChannelOnly)
_encode = msgspec.json.Encoder().encode
_log_encode = msgspec.msgpack.Encoder().encode


def _channel_in(text: str | None) -> str | None:
    # Most objects name no channel: a substring test spares decoding them again.
    if not text or '"channel"' not in text:
        return None
    value = _channel_decoder.decode(text).channel
    return value.strip()[:80] if isinstance(value, str) and value.strip() else None


def channel_of(msg: WireMessage, properties: str | None, context: str | None) -> str | None:
    """The business channel: properties.channel, then context.channel, then the top level."""
    found = _channel_in(properties) or _channel_in(context)
    if found:
        return found
    return msg.channel.strip()[:80] if msg.channel and msg.channel.strip() else None


def _object_text(raw: msgspec.Raw, field: str) -> str | None:
    """The raw JSON of an object field as text (None when absent, null or empty)."""
    if not raw:
        return None
    try:
        text = bytes(raw).decode()
    except UnicodeDecodeError:  # msgspec checks strings it decodes, not a raw object's bytes
        raise InvalidMessage(field, "is not valid UTF-8") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidMessage(field, _NUL_REASON)
    head = text.lstrip()[:1]
    if head == "n" and text.strip() == "null":
        return None
    if head != "{":
        raise InvalidMessage(field, "must be a JSON object")
    return None if len(text) < 8 and text.replace(" ", "") == "{}" else text


def _merged(raw: msgspec.Raw, outer: dict[str, Any] | None, field: str) -> str | None:
    """A message's object field with a batch-level one under it (the message's keys win)."""
    own = _object_text(raw, field)
    if not outer:
        return own
    inner = msgspec.json.decode(own) if own else {}
    return _encode({**outer, **inner}).decode()


def from_dict(item: dict[str, Any]) -> WireMessage:
    """A message given as Python data (imports, the demo), checked like one sent as JSON."""
    return decode_message(_encode(item))


def normalise(
    msg: WireMessage,
    *,
    received_at: datetime,
    implied_type: str | None = None,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    batch_sent_at: datetime | None = None,
) -> Message:
    """Check the Segment rules for one message and return it normalised (UTC, merged context)."""
    kind = implied_type or (msg.type.strip().lower() if msg.type else None)
    if kind is None:
        raise InvalidMessage("type", f"is required (one of {', '.join(MESSAGE_TYPES)})")
    if kind not in MESSAGE_TYPES:
        raise InvalidMessage("type", f"{msg.type!r} is not one of {', '.join(MESSAGE_TYPES)}")
    user_id = _as_id(msg.userId, "userId")
    anonymous_id = _as_id(msg.anonymousId, "anonymousId")
    previous_id = _as_id(msg.previousId, "previousId")
    group_id = _as_id(msg.groupId, "groupId")
    message_id = _as_id(msg.messageId, "messageId") or f"cx-{uuid.uuid4()}"
    if kind == "alias":
        if previous_id is None:
            raise InvalidMessage("previousId", "is required for alias")
        if user_id is None:
            raise InvalidMessage("userId", "is required for alias")
    elif user_id is None and anonymous_id is None:
        raise InvalidMessage("userId", "userId or anonymousId is required")
    event = msg.event.strip() if msg.event else None
    if kind == "track":
        if not event:
            raise InvalidMessage("event", "is required for track")
        if len(event) > MAX_NAME_LENGTH:
            raise InvalidMessage("event", f"longer than {MAX_NAME_LENGTH} characters")
    if kind == "group" and group_id is None:
        raise InvalidMessage("groupId", "is required for group")
    _no_nul(event, "event")
    name = _no_nul(msg.name.strip()[:MAX_NAME_LENGTH] if msg.name else None, "name")
    _no_nul(msg.channel, "channel")
    if msg.traits and _NUL_ESCAPE.search(_encode(msg.traits).decode()):
        raise InvalidMessage("traits", _NUL_REASON)
    if msg.traits:
        try:
            _log_encode(msg.traits)  # the ingestion log keeps traits as msgpack
        except OverflowError:
            raise InvalidMessage("traits", "holds a whole number beyond 64 bits") from None
    original = _in_utc(msg.timestamp or msg.originalTimestamp, "timestamp")
    sent_at = _in_utc(msg.sentAt, "sentAt") or _in_utc(batch_sent_at, "sentAt")
    try:
        timestamp = corrected_timestamp(original, sent_at, received_at)
    except OverflowError:
        # Corrected past year 1 or 9999: as out of range as the checks below refuse.
        past = original is not None and sent_at is not None and sent_at > original
        reason = "is before 1970" if past else "is more than 2 days in the future"
        raise InvalidMessage("timestamp", reason) from None
    if timestamp > received_at + MAX_FUTURE:
        raise InvalidMessage("timestamp", "is more than 2 days in the future")
    if timestamp < EARLIEST:
        raise InvalidMessage("timestamp", "is before 1970")
    properties = _object_text(msg.properties, "properties")
    context = _merged(msg.context, batch_context, "context")
    return Message(
        type=kind,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=event if kind == "track" else None,
        name=name if kind in ("page", "screen") else (name or None),
        timestamp=timestamp,
        original_timestamp=original,
        sent_at=sent_at,
        received_at=received_at,
        channel=channel_of(msg, properties, context),
        properties=properties,
        traits=msg.traits or {},
        context=context,
        integrations=_merged(msg.integrations, batch_integrations, "integrations"),
        group_id=group_id,
        previous_id=previous_id,
    )
