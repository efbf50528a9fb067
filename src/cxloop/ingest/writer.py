"""Group commit: one thread owns all writes; concurrent requests share one commit.

A commit (fsync) per HTTP request would cap ingestion at a few hundred requests a second;
collecting whatever arrived while the previous commit ran and committing it together gives
the same durability ("acknowledged = stored") at a fraction of the cost. Other writes
(imports, merges) run on the same thread, so the process stays the single writer.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cxloop.domain.messages import Message, MessageError
from cxloop.ingest.pipeline import IngestPipeline, IngestResult, Rejected

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Ingest:
    messages: Sequence[Message]
    rejects: Sequence[Rejected]
    source: str
    done: Callable[[IngestResult | BaseException], None]


@dataclass
class _Call:
    fn: Callable[[], Any]
    done: Callable[[Any], None]


@dataclass
class WriterStats:
    commits: int = 0
    messages: int = 0
    largest_group: int = 0
    failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)


_STOP = object()


class GroupCommitWriter:
    def __init__(self, pipeline: IngestPipeline, *, max_messages: int = 20_000) -> None:
        self.pipeline = pipeline
        self.max_messages = max_messages
        self.stats = WriterStats()
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cxloop-writer", daemon=True)
        self._thread.start()

    # -- submitting (from the event loop) -------------------------------------------------

    async def ingest(
        self, messages: Sequence[Message], rejects: Sequence[Rejected], source: str
    ) -> IngestResult:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._queue.put(_Ingest(messages, rejects, source, _resolver(loop, future)))
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the writer thread, between group commits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Call(fn, _resolver(loop, future)))
        return await future

    def close(self, timeout: float = 30.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- the writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        pending: object | None = None
        while True:
            item = pending if pending is not None else self._queue.get()
            pending = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                _settle(item.done, item.fn)
                continue
            assert isinstance(item, _Ingest)
            group = [item]
            count = len(item.messages)
            while count < self.max_messages:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(nxt, _Ingest):
                    pending = nxt
                    break
                group.append(nxt)
                count += len(nxt.messages)
            self._commit(group)

    def _commit(self, group: list[_Ingest]) -> None:
        by_source: dict[str, list[_Ingest]] = {}
        for item in group:
            by_source.setdefault(item.source, []).append(item)
        for source, items in by_source.items():
            messages = [m for it in items for m in it.messages]
            rejects = [r for it in items for r in it.rejects]
            try:
                result = self.pipeline.ingest(messages, rejects, source=source)
            except Exception as exc:  # each waiting request gets the failure as a 503
                log.exception("group commit of %d messages failed", len(messages))
                self.stats.failures += 1
                for it in items:
                    it.done(exc)
                continue
            self.stats.commits += 1
            self.stats.messages += len(messages)
            self.stats.largest_group = max(self.stats.largest_group, len(items))
            for it in items:
                it.done(_share(result, it))


def _share(result: IngestResult, item: _Ingest) -> IngestResult:
    """The part of a group's result that belongs to one request (warnings by message id)."""
    warnings: list[MessageError] = []
    if result.warnings:
        ids = {m.message_id for m in item.messages}
        warnings = [w for w in result.warnings if w.message_id in ids]
    return IngestResult(
        accepted=len(item.messages),
        rejected=[r.error for r in item.rejects],
        warnings=warnings,
    )


def _settle(done: Callable[[Any], None], fn: Callable[[], Any]) -> None:
    try:
        value = fn()
    except BaseException as exc:
        done(exc)
        return
    done(value)


def _resolver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]
) -> Callable[[Any], None]:
    def resolve(value: Any) -> None:
        def apply() -> None:
            if future.done():
                return
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)

        loop.call_soon_threadsafe(apply)

    return resolve
