"""Write the event store and the app database at the same time, commit in a safe order.

Both sides spend most of a large batch inside their database engine with the interpreter
lock released (DuckDB's insert, SQLite's statement steps), so running them side by side
nearly hides the shorter one. The event store commits only after the app database did: a
failure on the app side rolls the events back, so events never point at customers that
were not created. (A failure of the event store after the app side committed leaves only
customers without those events; the batch is retried as a whole.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import pyarrow as pa

from cxloop.events.base import AppendResult, EventStore

T = TypeVar("T")


class AppDatabaseFailed(Exception):
    """Raised inside the event store's commit gate: the app database side did not commit."""


class OverlappedAppend:
    """One background thread that appends to the event store while the caller writes SQL."""

    def __init__(self, events: EventStore) -> None:
        self.events = events
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxloop-append")

    def run(self, table: pa.Table, write_sql: Callable[[], T]) -> tuple[AppendResult, T]:
        """Append ``table`` while ``write_sql`` runs (it must commit its own transaction)."""
        if table.num_rows == 0:
            return AppendResult(0, 0), write_sql()
        committed = threading.Event()
        failed = False

        def gate() -> None:
            committed.wait()
            if failed:
                raise AppDatabaseFailed()

        future: Future[AppendResult] = self._executor.submit(
            self.events.append, table, before_commit=gate
        )
        try:
            value = write_sql()
        except BaseException:
            failed = True
            committed.set()
            future.exception()  # wait for the rollback; the SQL error is the one to report
            raise
        committed.set()
        return future.result(), value

    def close(self) -> None:
        self._executor.shutdown(wait=True)
