"""A second process that stores rebuilt stage histories in the app database.

SQLite takes a row in about 4 µs of one core, and Python's driver binds each row under the
interpreter lock: for a rebuild of millions of moves that is most of the time, and a writer
thread would fight the fold for the lock. A process has a lock of its own, so on two cores
the app database is written while the next customers are read and folded. Parts travel as
Arrow IPC streams over a pipe; the process writes one part at a time, each in its own
transaction, and answers with the number of moves it stored or the error it met.
"""

from __future__ import annotations

import multiprocessing
import traceback
from multiprocessing.connection import Connection
from typing import Any, cast

import pyarrow as pa
from sqlalchemy import Engine, Table

from cxloop.store.bulk import driver_rows, insert_driver_rows
from cxloop.store.database import make_engine
from cxloop.store.models import LifecycleState, StageTransition

states_t = cast(Table, LifecycleState.__table__)
transitions_t = cast(Table, StageTransition.__table__)


class HistoryWriterError(RuntimeError):
    """The writer process could not store a part (its traceback is the message)."""


class HistoryWriter:
    """Sends parts to the writer process; at most one part is in flight."""

    def __init__(self, database_url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, database_url), name="cxloop-history-writer", daemon=True
        )
        self._process.start()
        child.close()
        self._in_flight = False
        self.written = 0

    def send(self, model_id: int, states: pa.Table, moves: pa.Table) -> None:
        """Queue a part (``columnar.STATE_COLUMNS`` and ``MOVE_COLUMNS``) once the
        previous one is stored."""
        self._collect()
        self._pipe.send(model_id)
        self._pipe.send_bytes(_ipc(states))
        self._pipe.send_bytes(_ipc(moves))
        self._in_flight = True

    def finish(self) -> int:
        """Wait for the last part; returns the moves stored in all."""
        self._collect()
        self._pipe.send(None)
        self._process.join(60)
        return self.written

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        self._pipe.close()

    def _collect(self) -> None:
        if not self._in_flight:
            return
        try:
            status, value = self._pipe.recv()
        except EOFError:
            raise HistoryWriterError(
                f"the history writer stopped (exit code {self._process.exitcode})"
            ) from None
        self._in_flight = False
        if status != "ok":
            raise HistoryWriterError(value)
        self.written += int(value)


def store_part(engine: Engine, model_id: int, states: pa.Table, moves: pa.Table) -> int:
    """Add folded customers' end states and moves (``columnar`` columns) in one transaction;
    returns the moves stored."""
    dialect = engine.dialect
    state_rows = driver_rows(dialect, states_t, states, {"model_id": model_id, "traits": {}})
    move_rows = driver_rows(dialect, transitions_t, moves, {"model_id": model_id})
    with engine.begin() as conn:
        insert_driver_rows(conn, states_t, state_rows)
        insert_driver_rows(conn, transitions_t, move_rows)
    return int(moves.num_rows)


def _ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    return sink.getvalue()


def _serve(pipe: Connection, database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        while True:
            model_id: Any = pipe.recv()
            if model_id is None:
                return
            states = pa.ipc.open_stream(pipe.recv_bytes()).read_all()
            moves = pa.ipc.open_stream(pipe.recv_bytes()).read_all()
            try:
                store_part(engine, model_id, states, moves)
            except Exception:
                pipe.send(("error", traceback.format_exc()))
                return
            pipe.send(("ok", moves.num_rows))
    finally:
        engine.dispose()
        pipe.close()
