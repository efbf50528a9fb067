"""Checking a Tracking API request: the answer, and the record that must be durable first."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cxloop.ingest.intake import Checked, check
from tests.test_tracking_api import msg

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMIT = 32 * 1024


def checked_body(body: bytes, implied: str | None = None) -> Checked:
    return check(
        body, source="tests", received_at=RECEIVED, implied=implied, max_message_bytes=LIMIT
    )


def test_a_batch_keeps_its_valid_messages_and_reports_each_refused_one() -> None:
    messages: list[dict[str, Any]] = [
        msg("track", f"t-{i}", i, userId=f"u-{i}", event="Order Completed") for i in range(3)
    ]
    messages.append(msg("identify", "id-1", userId="u-1", traits={"birthday": "soon"}))
    messages.append({"type": "track", "userId": "u-1"})  # no event
    body = json.dumps({"batch": messages, "context": {"locale": "de"}}).encode()
    checked = checked_body(body)
    answer = json.loads(checked.answer)
    assert checked.status == 200
    assert answer["accepted"] == 4
    assert answer["rejected"] == [{"index": 4, "field": "event", "reason": "is required for track"}]
    assert answer["warnings"][0]["field"] == "traits.birthday"
    assert checked.record is not None
    assert checked.record.source == "tests"
    assert [m.message_id for m in checked.record.messages] == ["t-0", "t-1", "t-2", "id-1"]
    assert all(m.received_at == RECEIVED for m in checked.record.messages)
    assert json.loads(checked.record.messages[0].context or "{}") == {"locale": "de"}
    assert [r.error.index for r in checked.record.rejects] == [4]


def test_a_malformed_batch_is_refused_whole_and_leaves_nothing_to_log() -> None:
    checked = checked_body(b'{"batch": [')
    assert checked.status == 400
    assert json.loads(checked.answer)["error"]["code"] == "invalid_json"
    assert checked.record is None


def test_a_refused_single_message_is_kept_as_a_reject() -> None:
    checked = checked_body(b'{"userId": "u-9"}', implied="track")
    assert checked.status == 400
    error = json.loads(checked.answer)["error"]
    assert (error["code"], error["field"]) == ("invalid_message", "event")
    assert checked.record is not None
    assert checked.record.messages == []
    assert [r.payload for r in checked.record.rejects] == ['{"userId": "u-9"}']


def test_a_single_message_takes_the_type_of_its_endpoint() -> None:
    checked = checked_body(b'{"messageId": "p-1", "anonymousId": "a-1", "name": "Home"}', "page")
    assert (checked.status, json.loads(checked.answer)) == (200, {"success": True, "warnings": []})
    assert checked.record is not None
    assert [(m.type, m.name) for m in checked.record.messages] == [("page", "Home")]


def test_invalid_utf8_in_a_raw_object_is_one_refused_message() -> None:
    good = json.dumps(msg("track", "ok-1", userId="u-1", event="A")).encode()
    bad = b'{"type": "track", "userId": "u-2", "event": "B", "properties": {"a": "\xff"}}'
    checked = checked_body(b'{"batch": [' + good + b", " + bad + b"]}")
    assert checked.status == 200
    answer = json.loads(checked.answer)
    assert answer["accepted"] == 1
    assert answer["rejected"] == [
        {"index": 1, "field": "properties", "reason": "is not valid UTF-8"}
    ]
    single = checked_body(b'{"userId": "u-2", "event": "B", "context": {"a": "\xff"}}', "track")
    assert (single.status, json.loads(single.answer)["error"]["field"]) == (400, "context")
