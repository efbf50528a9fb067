"""The writer behind the tracking API: acknowledged messages are applied, whatever happens."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cxloop.domain.messages import Message, from_dict, normalise
from cxloop.events.base import EventQuery
from cxloop.ingest.log import IngestLog, LogRecord
from cxloop.ingest.pipeline import IngestPipeline, IngestResult, Rejected
from cxloop.ingest.writer import GroupCommitWriter
from cxloop.project import Project
from cxloop.store.models import RejectedMessage


class RefusingPipeline(IngestPipeline):
    """The real pipeline, except that the stores refuse one message id, as a store would
    refuse a value it cannot hold (fault injection: no such message can be built through
    the validated API, which is the point of the API's checks)."""

    def ingest(
        self, messages: Sequence[Message], rejects: Sequence[Rejected] = (), *, source: str
    ) -> IngestResult:
        if any(m.message_id == "refused" for m in messages):
            raise ValueError("the store refused this value")
        return super().ingest(messages, rejects, source=source)


def message(mid: str) -> Message:
    item: dict[str, Any] = {"type": "track", "messageId": mid, "userId": "u", "event": "E"}
    return normalise(from_dict(item), received_at=datetime.now(UTC))


def test_a_message_the_stores_refuse_is_kept_aside_and_the_rest_applied(
    project: Project, tmp_path: Path
) -> None:
    pipeline = RefusingPipeline(project.engine, project.events)
    writer = GroupCommitWriter(pipeline, IngestLog(tmp_path / "log"), max_messages=1000)

    async def send() -> None:
        await asyncio.gather(
            writer.ingest(LogRecord("web", [message("a"), message("refused")], [])),
            writer.ingest(LogRecord("web", [message("b")], [])),
        )
        assert await writer.settled(timeout=60)

    try:
        asyncio.run(send())
    finally:
        writer.close()
    stored = {e["message_id"] for e in project.events.query(EventQuery(limit=10))}
    assert stored == {"a", "b"}
    with project.engine.connect() as conn:
        kept = conn.execute(
            select(
                RejectedMessage.message_id,
                RejectedMessage.field,
                RejectedMessage.reason,
                RejectedMessage.payload,
            )
        ).all()
    assert [(k.message_id, k.field) for k in kept] == [("refused", "message")]
    assert "the store refused this value" in kept[0].reason
    assert '"message_id":"refused"' in kept[0].payload
    assert IngestLog(tmp_path / "log").applied == writer.log.applied > 0


def test_acknowledged_records_are_replayed_when_the_writer_starts(
    project: Project, tmp_path: Path
) -> None:
    """What a killed server had logged but not applied is applied before anything else."""
    ingest_log = IngestLog(tmp_path / "log")
    from cxloop.ingest.log import LogRecord

    ingest_log.append([LogRecord("web", [message("x"), message("y")], [])])
    ingest_log.close()
    writer = GroupCommitWriter(project.pipeline, IngestLog(tmp_path / "log"))
    try:
        stored = {e["message_id"] for e in project.events.query(EventQuery(limit=10))}
        assert stored == {"x", "y"}
        assert writer.log.applied == 1
    finally:
        writer.close()
