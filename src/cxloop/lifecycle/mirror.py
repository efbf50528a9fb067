"""A copy of the stage history in the columnar event store, for fast reports.

The app database keeps ``stage_transitions`` (the record people read a customer's history
from). Reports scan every move of a model, which a row store does slowly, so when the event
store is DuckDB it holds a copy (``stage_moves``) that the engine writes right after each
commit to the app database. A crash between the two leaves the copy behind; opening the
project compares the number of moves per model and copies whatever disagrees again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, cast

import numpy as np
import pyarrow as pa
from sqlalchemy import Engine, Table, func, select

from cxloop.domain.lifecycle import Transition
from cxloop.domain.values import as_utc
from cxloop.events.base import STAGE_MOVES_SCHEMA, EventStore
from cxloop.store.models import LifecycleModelRow, StageTransition

log = logging.getLogger(__name__)
transitions_t = cast(Table, StageTransition.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
_COPY_ROWS = 200_000


class MovesStore(Protocol):
    def write_stage_moves(
        self, model_id: int, clear: Sequence[int] | None, moves: pa.Table
    ) -> None: ...

    def stage_move_counts(self) -> dict[int, int]: ...

    def sql(
        self, query: str, params: Sequence[Any] | dict[str, Any] = (), **tables: pa.Table
    ) -> pa.Table: ...


def moves_store(events: EventStore) -> MovesStore | None:
    """The event store, when it keeps the copy (DuckDB)."""
    return cast(MovesStore, events) if hasattr(events, "write_stage_moves") else None


class StageMirror:
    def __init__(self, engine: Engine, events: EventStore) -> None:
        self.engine = engine
        self.store = moves_store(events)

    def write(
        self,
        model_id: int,
        clear: Sequence[int] | None,
        moves: Sequence[tuple[int, int, Transition]],
    ) -> None:
        if self.store is not None:
            self._copy(model_id, clear, _table(model_id, moves))

    def write_table(self, model_id: int, clear: Sequence[int] | None, moves: pa.Table) -> None:
        """``write`` for moves already in columns (``columnar.MOVE_COLUMNS``)."""
        if self.store is None:
            return
        table = pa.table(
            {
                "model_id": pa.array(np.full(moves.num_rows, model_id), pa.int64()),
                **{name: moves.column(name) for name in STAGE_MOVES_SCHEMA.names[1:]},
            }
        ).cast(STAGE_MOVES_SCHEMA)
        self._copy(model_id, clear, table)

    def _copy(self, model_id: int, clear: Sequence[int] | None, table: pa.Table) -> None:
        assert self.store is not None
        try:
            self.store.write_stage_moves(model_id, clear, table)
        except Exception:
            # The app database has the truth; the next project open copies it again.
            log.exception("could not copy stage moves to the event store")

    def resync(self) -> int:
        """Copy again every model whose number of moves differs; returns how many."""
        if self.store is None:
            return 0
        with self.engine.connect() as conn:
            expected: dict[int, int] = dict(
                conn.execute(
                    select(transitions_t.c.model_id, func.count()).group_by(
                        transitions_t.c.model_id
                    )
                ).all()
            )
            models = {row[0] for row in conn.execute(select(models_t.c.id))}
        stored = self.store.stage_move_counts()
        redo = [m for m in models if expected.get(m, 0) != stored.get(m, 0)]
        for gone in set(stored) - models:
            self.store.write_stage_moves(gone, None, STAGE_MOVES_SCHEMA.empty_table())
        for model_id in redo:
            log.info("copying the stage history of model %d to the event store", model_id)
            self.store.write_stage_moves(model_id, None, STAGE_MOVES_SCHEMA.empty_table())
            with self.engine.connect() as conn:
                result = conn.execution_options(yield_per=_COPY_ROWS).execute(
                    select(
                        transitions_t.c.customer_id,
                        transitions_t.c.seq,
                        transitions_t.c.cycle,
                        transitions_t.c.kind,
                        transitions_t.c.to_stage,
                        transitions_t.c.at,
                        transitions_t.c.reason,
                        transitions_t.c.skipped,
                    ).where(transitions_t.c.model_id == model_id)
                )
                for part in result.partitions():
                    columns = list(zip(*part, strict=True))
                    self.store.write_stage_moves(model_id, [], _columns_table(model_id, columns))
        return len(redo)


def _table(model_id: int, moves: Sequence[tuple[int, int, Transition]]) -> pa.Table:
    columns: list[tuple[Any, ...]] = [
        tuple(c for c, _, _ in moves),
        tuple(s for _, s, _ in moves),
        tuple(t.cycle for _, _, t in moves),
        tuple(t.kind for _, _, t in moves),
        tuple(t.to_stage for _, _, t in moves),
        tuple(t.at for _, _, t in moves),
        tuple(t.reason for _, _, t in moves),
        tuple(t.skipped for _, _, t in moves),
    ]
    return _columns_table(model_id, columns)


def _columns_table(model_id: int, columns: list[tuple[Any, ...]]) -> pa.Table:
    """customer, seq, cycle, kind, to_stage, at, reason, skipped, as parallel columns."""
    customer, seq, cycle, kind, to_stage, at, reason, skipped = columns
    return pa.table(
        {
            "model_id": pa.array([model_id] * len(customer), pa.int64()),
            "customer_id": pa.array(customer, pa.int64()),
            "seq": pa.array(seq, pa.int32()),
            "cycle": pa.array(cycle, pa.int32()),
            "kind": pa.array(kind, pa.string()),
            "to_stage": pa.array(to_stage, pa.string()),
            "at": pa.array([as_utc(v) for v in at], pa.timestamp("us", tz="UTC")),
            "reason": pa.array(reason, pa.string()),
            "skipped": pa.array([list(v or []) for v in skipped], pa.list_(pa.string())),
        },
        schema=STAGE_MOVES_SCHEMA,
    )
