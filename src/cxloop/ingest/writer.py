"""Acknowledge after the log's fsync, apply in large batches behind it.

Two threads own all writes of a server:

* the **logger** takes every request that arrived while its previous fsync ran, appends them
  to the ingestion log as one write and one fsync, and only then answers them — so a 200
  means the messages are on disk, at the cost of one fsync per group, not per request;
* the **applier** takes whatever the logger has acknowledged (thousands of messages at a
  time) and runs the pipeline on it: identity resolution, profiles, the columnar append.
  Other writes (imports, merges) run on this thread too, so the process stays the single
  writer of the stores.

Reads wait until the applier has caught up with every acknowledged message (``settled``),
so a client that got a 200 and then asks the API sees its events. If the applier falls far
behind, the logger holds acknowledgements back until it catches up (bounded memory).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cxloop.ingest.log import IngestLog, LogRecord
from cxloop.ingest.pipeline import IngestPipeline, IngestResult

log = logging.getLogger(__name__)
T = TypeVar("T")
_RETRY_S = 1.0
_ISOLATE_AFTER = 3


@dataclass
class _Ingest:
    record: LogRecord
    done: Callable[[IngestResult | BaseException], None]


@dataclass
class _Logged:
    seq: int
    record: LogRecord


@dataclass
class _Call:
    fn: Callable[[], Any]
    done: Callable[[Any], None]


_STOP = object()


class GroupCommitWriter:
    def __init__(
        self,
        pipeline: IngestPipeline,
        ingest_log: IngestLog,
        *,
        max_messages: int = 20_000,
        max_backlog: int = 200_000,
    ) -> None:
        self.pipeline = pipeline
        self.log = ingest_log
        self.max_messages = max_messages
        self.max_backlog = max_backlog
        self._incoming: queue.Queue[object] = queue.Queue()
        self._to_apply: queue.Queue[object] = queue.Queue()
        self._progress = threading.Condition()
        self._logged_seq = ingest_log.last_seq
        self._applied_seq = ingest_log.applied
        self._backlog = 0
        self._waiters: list[tuple[int, Callable[[Any], None]]] = []
        self.recover()
        self._logger = threading.Thread(target=self._run_logger, name="cxloop-log", daemon=True)
        self._applier = threading.Thread(target=self._run_applier, name="cxloop-apply", daemon=True)
        self._logger.start()
        self._applier.start()

    # -- called from the event loop ---------------------------------------------------------------

    async def ingest(self, record: LogRecord) -> IngestResult:
        """Durably log one checked request's record; returns once it is on disk."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._incoming.put(_Ingest(record, _resolver(loop, future)))
        return await future

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the applier thread, after everything acknowledged so far."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()  # the caller's (who acts, for the audit log)
        self._to_apply.put(_Call(lambda: context.run(fn), _resolver(loop, future)))
        return await future

    async def settled(self, timeout: float = 30.0) -> bool:
        """Wait until every message acknowledged before this call is applied."""
        target = self._logged_seq
        if self._applied_seq >= target:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._progress:
            if self._applied_seq >= target:
                return True
            self._waiters.append((target, _resolver(loop, future)))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            log.warning("reads went ahead while %d messages wait to be applied", self._backlog)
            return False
        return True

    def close(self, timeout: float = 60.0) -> None:
        self._incoming.put(_STOP)
        self._logger.join(timeout)
        self._to_apply.put(_STOP)
        self._applier.join(timeout)
        self.log.close()

    # -- start-up ---------------------------------------------------------------------------------

    def recover(self) -> int:
        """Apply what a previous run acknowledged but did not apply; returns the messages."""
        batch: list[tuple[int, LogRecord]] = []
        count = 0
        total = 0
        for seq, record in self.log.pending():
            batch.append((seq, record))
            count += len(record.messages) + len(record.rejects)
            if count >= self.max_messages:
                total += self._apply_with_retry(batch)
                batch, count = [], 0
        if batch:
            total += self._apply_with_retry(batch)
        if total:
            log.info("replayed %d acknowledged messages from the ingestion log", total)
        return total

    # -- the logger thread ------------------------------------------------------------------------

    def _run_logger(self) -> None:
        while True:
            first = self._incoming.get()
            if first is _STOP:
                return
            group = [first]
            while True:
                try:
                    nxt = self._incoming.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._log_group(group)  # type: ignore[arg-type]
                    return
                group.append(nxt)
            self._log_group(group)  # type: ignore[arg-type]

    def _log_group(self, group: list[_Ingest]) -> None:
        size = sum(len(g.record.messages) + len(g.record.rejects) for g in group)
        with self._progress:
            while self._backlog > self.max_backlog:
                self._progress.wait(1.0)
        try:
            last = self.log.append([g.record for g in group])
        except Exception as exc:  # disk full, I/O error: nothing acknowledged, clients retry
            log.exception("could not write the ingestion log")
            for g in group:
                g.done(exc)
            return
        with self._progress:
            self._logged_seq = last
            self._backlog += size
        first_seq = last - len(group) + 1
        for offset, g in enumerate(group):
            self._to_apply.put(_Logged(first_seq + offset, g.record))
        for g in group:
            g.done(
                IngestResult(
                    accepted=len(g.record.messages), rejected=[r.error for r in g.record.rejects]
                )
            )

    # -- the applier thread -----------------------------------------------------------------------

    def _run_applier(self) -> None:
        pending: object | None = None
        while True:
            item = pending if pending is not None else self._to_apply.get()
            pending = None
            if item is _STOP:
                return
            if isinstance(item, _Call):
                _settle(item.done, item.fn)
                continue
            assert isinstance(item, _Logged)
            batch = [(item.seq, item.record)]
            count = len(item.record.messages)
            while count < self.max_messages:
                try:
                    nxt = self._to_apply.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(nxt, _Logged):
                    pending = nxt
                    break
                batch.append((nxt.seq, nxt.record))
                count += len(nxt.record.messages)
            self._apply_with_retry(batch)

    def _apply_with_retry(self, batch: list[tuple[int, LogRecord]]) -> int:
        """Apply until it works: the messages are acknowledged, so giving up would lose them.

        While a store is down, retry for as long as it takes. If the stores are up and the
        batch still fails, some message in it is one they refuse: apply the batch message by
        message and keep the refused ones in rejected_messages, so one bad message cannot
        stall ingestion.
        """
        failures = 0
        while True:
            try:
                applied = self._apply(batch)
                break
            except Exception:
                failures += 1
                log.exception("applying %d logged records failed", len(batch))
                if failures >= _ISOLATE_AFTER and self.pipeline.healthy():
                    applied = self._apply_one_by_one(batch)
                    break
                time.sleep(_RETRY_S)
        last = batch[-1][0]
        self.log.mark_applied(last)
        size = sum(len(r.messages) + len(r.rejects) for _, r in batch)
        with self._progress:
            self._applied_seq = max(self._applied_seq, last)
            self._backlog = max(0, self._backlog - size)
            ready = [w for w in self._waiters if w[0] <= self._applied_seq]
            self._waiters = [w for w in self._waiters if w[0] > self._applied_seq]
            self._progress.notify_all()
        for _, resolve in ready:
            resolve(True)
        return applied

    def _apply_one_by_one(self, batch: list[tuple[int, LogRecord]]) -> int:
        applied = 0
        for _, record in batch:
            # Past this point nothing may raise: an exception would end the applier thread,
            # and every later write and read would wait for it forever.
            try:
                self.pipeline.ingest([], record.rejects, source=record.source)
            except Exception:
                log.exception("%d refused messages could not be kept", len(record.rejects))
            for message in record.messages:
                try:
                    self.pipeline.ingest([message], source=record.source)
                    applied += 1
                except Exception as exc:
                    log.error("message %s cannot be stored: %s", message.message_id, exc)
                    try:
                        self.pipeline.quarantine([message], [], source=record.source, why=str(exc))
                    except Exception:
                        log.exception("message %s is lost", message.message_id)
        return applied

    def _apply(self, batch: list[tuple[int, LogRecord]]) -> int:
        by_source: dict[str, list[LogRecord]] = {}
        for _, record in batch:
            by_source.setdefault(record.source, []).append(record)
        total = 0
        for source, records in by_source.items():
            messages = [m for r in records for m in r.messages]
            rejects = [x for r in records for x in r.rejects]
            self.pipeline.ingest(messages, rejects, source=source)
            total += len(messages)
        return total


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
