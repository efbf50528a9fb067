"""The stage engine: keeps every customer's stage history current as events arrive.

Incremental and from-scratch runs share one fold (``cxloop.domain.lifecycle``). A batch is
folded forward from each customer's saved state when all of the customer's new events come
after what was folded before; otherwise (an older event arrived late, a message was
replayed, two customers merged) the customer is folded again from all of their stored
events. Both paths therefore write the same history a rebuild would.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, Table, and_, delete, select

from cxloop.domain.lifecycle import (
    LifecycleModel,
    StageState,
    Touch,
    Transition,
    advance,
    could_change_history,
    sweep,
)
from cxloop.domain.values import as_utc
from cxloop.events.base import TOUCH_SCHEMA, EventStore, utc_datetimes
from cxloop.lifecycle.columnar import (
    MOVE_COLUMNS,
    STATE_COLUMNS,
    fold_columns,
    watching_customers,
)
from cxloop.lifecycle.mirror import StageMirror
from cxloop.lifecycle.writer import HistoryWriter, store_part
from cxloop.store.bulk import bulk_insert
from cxloop.store.models import LifecycleModelRow, LifecycleState, StageTransition

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_IN_CHUNK = 500
_WRITE_CUSTOMERS = 20_000
_FOLD_ROWS = 2_000_000
_CACHE_LIMIT = 500_000

states_t = cast(Table, LifecycleState.__table__)
transitions_t = cast(Table, StageTransition.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)


@dataclass(frozen=True)
class InstalledModel:
    id: int
    model: LifecycleModel


@dataclass
class EngineResult:
    customers: int = 0
    transitions: int = 0
    refolded: int = 0


@dataclass
class _Pending:
    """States and transitions of one model waiting to be written."""

    states: dict[int, StageState] = field(default_factory=dict)
    next_seq: dict[int, int] = field(default_factory=dict)
    transitions: list[tuple[int, int, Transition]] = field(default_factory=list)  # customer, seq
    replaced: set[int] = field(default_factory=set)  # customers whose history is rewritten


class StageEngine:
    """One per process that writes the stores; every public call is serialised."""

    def __init__(self, engine: Engine, events: EventStore) -> None:
        self.engine = engine
        self.events = events
        self._lock = threading.RLock()
        self._models: list[InstalledModel] | None = None
        # The saved states, as written (this process is the only writer): most batches
        # then need no read of the app database. Entries change only after a commit.
        self._cache: dict[int, dict[int, tuple[StageState, int]]] = {}
        self.mirror = StageMirror(engine, events)

    # -- models ------------------------------------------------------------------------------

    def models(self) -> list[InstalledModel]:
        with self._lock:
            if self._models is None:
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        select(models_t.c.id, models_t.c.definition).order_by(models_t.c.id)
                    ).all()
                self._models = [
                    InstalledModel(row.id, LifecycleModel.model_validate(row.definition))
                    for row in rows
                ]
            return self._models

    def forget_models(self) -> None:
        """Installed models changed: read them again on the next batch."""
        with self._lock:
            self._models = None
            self._cache.clear()

    # -- incremental -------------------------------------------------------------------------

    def on_batch(self, rows: pa.Table, merges: Sequence[tuple[int, int]] = ()) -> EngineResult:
        """Fold a stored batch (TOUCH_COLUMNS, any order) and the merges it caused."""
        with self._lock:
            installed = self.models()
            if not installed or (rows.num_rows == 0 and not merges):
                return EngineResult()
            losers = {loser for loser, _ in merges}
            touches = _touches(rows, installed)
            refold = {survivor for _, survivor in merges}
            result = EngineResult(customers=len(touches))
            for item in installed:
                pending = _Pending()
                saved = self._load_states(item.id, [c for c in touches if c not in refold])
                for customer, items in touches.items():
                    if customer in refold:
                        continue
                    found = saved.get(customer)
                    state, next_seq = (_copy(found[0]), found[1]) if found else (StageState(), 0)
                    if state.last_order is not None and not state.accepts(items[0]):
                        late = [t for t in items if not state.accepts(t)]
                        if any(could_change_history(item.model, state, t) for t in late):
                            refold.add(customer)
                            continue
                        items = [t for t in items if state.accepts(t)]
                    moves = advance(item.model, state, items)
                    _stage(pending, customer, state, next_seq, moves)
                result.transitions += self._write(item.id, pending, losers)
            if refold - losers:
                result.refolded = len(refold - losers)
                result.transitions += self._refold(installed, sorted(refold - losers))
            return result

    def sweep(self, as_of: datetime | None = None) -> int:
        """Inactivity exits now due for customers who have been silent (no event since)."""
        as_of = as_of or datetime.now(UTC)
        written = 0
        with self._lock:
            for item in self.models():
                after = item.model.inactive_after
                if after is None:
                    continue
                pending = _Pending()
                with self.engine.connect() as conn:
                    rows = conn.execute(
                        select(states_t).where(
                            states_t.c.model_id == item.id,
                            states_t.c.stage.is_not(None),
                            states_t.c.last_activity <= as_of - after,
                        )
                    ).all()
                for row in rows:
                    state = _state_of(row)
                    moves = sweep(item.model, state, as_of)
                    _stage(pending, row.customer_id, state, row.next_seq, moves)
                written += self._write(item.id, pending, set())
        return written

    # -- from scratch ----------------------------------------------------------------------

    def rebuild(
        self,
        model_keys: Sequence[str] | None = None,
        *,
        as_of: datetime | None = None,
        on_progress: Callable[[int], None] = lambda rows: None,
    ) -> EngineResult:
        """Forget the stage histories of these models and fold every customer again.

        A large history is stored by a second process (``writer``) while this one reads
        and folds the next customers: the app database takes rows slowly.
        """
        as_of = as_of or datetime.now(UTC)
        with self._lock:
            installed = self.models()
            chosen = [m for m in installed if model_keys is None or m.model.key in model_keys]
            if not chosen:
                return EngineResult()
            with self.engine.begin() as conn:
                if len(chosen) == len(installed):
                    # Every model: SQLite empties a table without a WHERE in one step.
                    conn.execute(delete(transitions_t))
                    conn.execute(delete(states_t))
                for item in chosen:
                    conn.execute(delete(transitions_t).where(transitions_t.c.model_id == item.id))
                    conn.execute(delete(states_t).where(states_t.c.model_id == item.id))
                    self._cache.pop(item.id, None)
            for item in chosen:
                self.mirror.write(item.id, None, [])
            result = EngineResult()
            batches = self.events.customer_events(None, batch_rows=_FOLD_ROWS // 4)
            writer: HistoryWriter | None = None
            try:
                for rows in _whole_customers(batches, on_progress):
                    result.customers += len(pc.unique(rows.column("customer_id")))
                    if writer is None and rows.num_rows >= _FOLD_ROWS // 2:
                        writer = HistoryWriter(self.engine.url.render_as_string(False))
                    for item in chosen:
                        result.transitions += self._fold_from_scratch(item, rows, as_of, writer)
                if writer is not None:
                    result.transitions += writer.finish()
            finally:
                if writer is not None:
                    writer.close()
            return result

    # -- internals ---------------------------------------------------------------------------

    def _refold(self, installed: list[InstalledModel], customers: list[int]) -> int:
        found: dict[int, list[Touch]] = {c: [] for c in customers}
        batches = self.events.customer_events(customers)
        for part in _customers_in_chunks(batches, installed, lambda n: None):
            found.update(part)
        return self._fold_all(installed, found, None, replace=True)

    def _fold_all(
        self,
        installed: list[InstalledModel],
        customers: dict[int, list[Touch]],
        as_of: datetime | None,
        *,
        replace: bool,
    ) -> int:
        written = 0
        for item in installed:
            pending = _Pending()
            for customer, items in customers.items():
                state = StageState()
                moves = advance(item.model, state, items)
                if as_of is not None:
                    moves += sweep(item.model, state, as_of)
                if items or moves:
                    _stage(pending, customer, state, 0, moves)
                if replace:
                    pending.replaced.add(customer)
            # A customer left without events (all moved elsewhere) keeps no state either.
            empty = {c for c, items in customers.items() if not items} if replace else set()
            written += self._write(item.id, pending, empty)
        return written

    def _fold_from_scratch(
        self, item: InstalledModel, rows: pa.Table, as_of: datetime, writer: HistoryWriter | None
    ) -> int:
        """Fold whole customers as columns (those whose traits feed a rule one touch at a
        time) and store them, or hand them to ``writer``; returns the moves stored here."""
        written = 0
        watching = watching_customers(item.model, rows)
        if len(watching):
            chosen = pc.is_in(rows.column("customer_id"), watching)
            customers = _touches(rows.filter(chosen), [item])
            written += self._fold_all([item], customers, as_of, replace=False)
            rows = rows.filter(pc.invert(chosen))
        if not rows.num_rows:
            return written
        folded = fold_columns(item.model, rows, as_of)
        if writer is not None:
            writer.send(item.id, folded.states, folded.moves)
        else:
            written += store_part(self.engine, item.id, folded.states, folded.moves)
        self.mirror.write_table(item.id, [], folded.moves)
        return written

    def _load_states(
        self, model_id: int, customers: Sequence[int]
    ) -> dict[int, tuple[StageState, int]]:
        cache = self._cache.setdefault(model_id, {})
        found = {c: cache[c] for c in customers if c in cache}
        missing = [c for c in customers if c not in cache]
        if not missing:
            return found
        with self.engine.connect() as conn:
            for start in range(0, len(missing), _IN_CHUNK):
                chunk = missing[start : start + _IN_CHUNK]
                for row in conn.execute(
                    select(states_t).where(
                        states_t.c.model_id == model_id, states_t.c.customer_id.in_(chunk)
                    )
                ):
                    found[row.customer_id] = (_state_of(row), row.next_seq)
        return found

    def _write(self, model_id: int, pending: _Pending, losers: set[int]) -> int:
        """One transaction: rewritten histories cleared, new moves added, states replaced."""
        gone = sorted(losers | pending.replaced)
        if not pending.states and not gone and not pending.transitions:
            return 0
        with self.engine.begin() as conn:
            _delete_customers(conn, transitions_t, model_id, gone)
            _delete_customers(conn, states_t, model_id, sorted(losers - set(pending.states)))
            bulk_insert(
                conn,
                states_t,
                _STATE_COLUMNS,
                [
                    _state_row(model_id, customer, state, pending.next_seq[customer])
                    for customer, state in pending.states.items()
                ],
                replace_on=("model_id", "customer_id"),
            )
            bulk_insert(
                conn,
                transitions_t,
                _TRANSITION_COLUMNS,
                [_transition_row(model_id, c, seq, t) for c, seq, t in pending.transitions],
            )
        self.mirror.write(model_id, gone, pending.transitions)
        cache = self._cache.setdefault(model_id, {})
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        for loser in losers:
            cache.pop(loser, None)
        for customer, state in pending.states.items():
            cache[customer] = (state, pending.next_seq[customer])
        return len(pending.transitions)


def _delete_customers(
    conn: Connection, table: Table, model_id: int, customers: Sequence[int]
) -> None:
    for start in range(0, len(customers), _IN_CHUNK):
        conn.execute(
            delete(table).where(
                and_(
                    table.c.model_id == model_id,
                    table.c.customer_id.in_(customers[start : start + _IN_CHUNK]),
                )
            )
        )


def _stage(
    pending: _Pending, customer: int, state: StageState, next_seq: int, moves: list[Transition]
) -> None:
    for move in moves:
        pending.transitions.append((customer, next_seq, move))
        next_seq += 1
    pending.states[customer] = state
    pending.next_seq[customer] = next_seq


def _touches(rows: pa.Table, installed: Sequence[InstalledModel]) -> dict[int, list[Touch]]:
    """The batch's events per customer, each list in (timestamp, message id) order."""
    found: dict[int, list[Touch]] = {}
    for customer, touch in _iter_touches(rows, _property_readers(installed), _watches(installed)):
        found.setdefault(customer, []).append(touch)
    for items in found.values():
        items.sort(key=lambda t: t.order)
    return found


def _whole_customers(
    batches: Iterable[pa.RecordBatch], on_progress: Callable[[int], None]
) -> Iterator[pa.Table]:
    """Tables of about ``_FOLD_ROWS`` events from batches ordered by customer, each holding
    every event of its customers."""
    held: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        on_progress(batch.num_rows)
        held.append(batch)
        size += batch.num_rows
        if size < _FOLD_ROWS:
            continue
        table = pa.Table.from_batches(held)
        customer = table.column("customer_id").to_numpy()
        cut = int(np.searchsorted(customer, customer[-1], side="left"))
        if cut == 0:
            continue  # one customer so far: keep reading
        yield table.slice(0, cut)
        held = table.slice(cut).to_batches()
        size = table.num_rows - cut
    if size:
        yield pa.Table.from_batches(held, schema=TOUCH_SCHEMA)


def _customers_in_chunks(
    batches: Iterable[pa.RecordBatch],
    installed: Sequence[InstalledModel],
    on_progress: Callable[[int], None],
) -> Iterator[dict[int, list[Touch]]]:
    """Whole customers from batches ordered by customer (one may span two batches)."""
    readers, watches = _property_readers(installed), _watches(installed)
    carry: dict[int, list[Touch]] = {}
    for batch in batches:
        table = pa.Table.from_batches([batch])
        on_progress(table.num_rows)
        for customer, touch in _iter_touches(table, readers, watches):
            if customer not in carry and len(carry) >= _WRITE_CUSTOMERS:
                yield carry
                carry = {}
            carry.setdefault(customer, []).append(touch)
    if carry:
        yield carry


def _iter_touches(
    rows: pa.Table, readers: set[tuple[str, str]], traits_wanted: bool
) -> Iterator[tuple[int, Touch]]:
    """``readers`` names the (type, name) whose properties some rule reads: the only
    properties worth decoding."""
    columns = {
        name: rows.column(name).to_pylist()
        for name in ("customer_id", "message_id", "type", "event", "name")
    }
    columns["timestamp"] = utc_datetimes(rows.column("timestamp"))
    properties = rows.column("properties").to_pylist()
    traits = rows.column("traits").to_pylist()
    empty: dict[str, Any] = {}
    for i, customer in enumerate(columns["customer_id"]):
        kind = columns["type"][i]
        name = columns["event"][i] if kind == "track" else columns["name"][i]
        text = properties[i]
        wanted = (kind, name) in readers
        touch = Touch(
            timestamp=columns["timestamp"][i],
            message_id=columns["message_id"][i],
            type=kind,
            event=name,
            properties=_decode(text) if text and wanted else empty,
            traits=_decode(traits[i])
            if traits_wanted and kind == "identify" and traits[i]
            else empty,
        )
        yield customer, touch


def _property_readers(installed: Sequence[InstalledModel]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for item in installed:
        rules = [r for s in item.model.stages for r in s.enter] + [
            e for e in item.model.exits if e.inactive_days is None
        ]
        for rule in rules:
            reads = bool(rule.where) or bool(getattr(rule, "reason_property", None))
            if reads and rule.event:
                found.add(("track", rule.event))
            if reads and rule.page:
                found.add(("page", rule.page))
                found.add(("screen", rule.page))
    return found


def _watches(installed: Sequence[InstalledModel]) -> bool:
    return any(item.model.trait_names for item in installed)


def _state_of(row: Any) -> StageState:
    last_ts = as_utc(row.last_ts)
    return StageState(
        cycle=row.cycle,
        stage=row.stage,
        entered_at=as_utc(row.entered_at),
        last_activity=as_utc(row.last_activity),
        last_order=(last_ts, row.last_message_id) if last_ts is not None else None,
        swept_at=as_utc(row.swept_at),
        traits=dict(row.traits or {}),
        inactive_exits=row.inactive_exits,
    )


_STATE_COLUMNS = ("model_id", *STATE_COLUMNS, "traits")
_TRANSITION_COLUMNS = ("model_id", *MOVE_COLUMNS)


def _state_row(model_id: int, customer: int, state: StageState, next_seq: int) -> tuple[Any, ...]:
    last = state.last_order
    return (
        model_id,
        customer,
        state.cycle,
        state.stage,
        state.entered_at,
        state.last_activity,
        last[0] if last else None,
        last[1] if last else None,
        state.swept_at,
        next_seq,
        state.inactive_exits,
        state.traits,
    )


def _transition_row(model_id: int, customer: int, seq: int, move: Transition) -> tuple[Any, ...]:
    return (
        model_id,
        customer,
        seq,
        move.cycle,
        move.kind,
        move.from_stage,
        move.to_stage,
        move.at,
        move.message_id,
        move.event,
        move.reason,
        list(move.skipped),
    )


def _copy(state: StageState) -> StageState:
    """A state to fold forward; the cached one stays as committed until the write succeeds."""
    return dataclasses.replace(state, traits=dict(state.traits))
