"""The ingestion log: what is acknowledged survives a crash, a torn write is cut off."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from cxloop.domain.messages import MessageError, from_dict, normalise
from cxloop.ingest.log import IngestLog, LogRecord
from cxloop.ingest.pipeline import Rejected

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def record(*ids: str, source: str = "web") -> LogRecord:
    messages = [
        normalise(
            from_dict({"type": "track", "messageId": i, "userId": "u", "event": "E",
                       "properties": {"n": 1}}),
            received_at=NOW,
        )
        for i in ids
    ]  # fmt: skip
    return LogRecord(source, messages, [Rejected(MessageError(9, "event", "bad"), "{}")])


def pending_ids(log_dir: Path) -> list[str]:
    ingest_log = IngestLog(log_dir)
    try:
        return [m.message_id for _, r in ingest_log.pending() for m in r.messages]
    finally:
        ingest_log.close()


def test_records_round_trip_and_survive_reopening(tmp_path: Path) -> None:
    ingest_log = IngestLog(tmp_path)
    assert ingest_log.append([record("a", "b"), record("c")]) == 2
    assert ingest_log.append([record("d")]) == 3
    ingest_log.close()
    reopened = IngestLog(tmp_path)
    assert reopened.last_seq == 3
    (seq, first), *_ = list(reopened.pending())
    assert seq == 1
    assert [m.message_id for m in first.messages] == ["a", "b"]
    assert first.messages[0].properties == '{"n":1}'
    assert first.messages[0].timestamp == NOW
    assert first.rejects[0].error.field == "event"
    reopened.close()
    assert pending_ids(tmp_path) == ["a", "b", "c", "d"]


def test_applied_records_are_not_replayed(tmp_path: Path) -> None:
    ingest_log = IngestLog(tmp_path)
    ingest_log.append([record("a"), record("b"), record("c")])
    ingest_log.mark_applied(2)
    ingest_log.close()
    assert pending_ids(tmp_path) == ["c"]
    assert IngestLog(tmp_path).applied == 2


def test_a_torn_last_record_is_cut_off_and_writing_goes_on(tmp_path: Path) -> None:
    ingest_log = IngestLog(tmp_path)
    ingest_log.append([record("a")])
    ingest_log.append([record("b")])
    ingest_log.close()
    segment = next(tmp_path.glob("*.log"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # the crash hit in the middle of the second write
    reopened = IngestLog(tmp_path)
    assert reopened.last_seq == 1
    assert reopened.append([record("c")]) == 2
    reopened.close()
    assert pending_ids(tmp_path) == ["a", "c"]


def test_wholly_applied_segments_are_deleted(tmp_path: Path) -> None:
    ingest_log = IngestLog(tmp_path, segment_bytes=1)  # a new segment for every write
    for name in "abcd":
        ingest_log.append([record(name)])
    assert len(list(tmp_path.glob("*.log"))) == 4
    ingest_log.mark_applied(3)
    remaining = sorted(p.name for p in tmp_path.glob("*.log"))
    assert remaining == ["00000000000000000004.log"]
    ingest_log.close()
    assert pending_ids(tmp_path) == ["d"]
