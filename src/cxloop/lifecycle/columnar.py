"""The stage fold over columns: whole customers' histories at once, for rebuilds.

``cxloop.domain.lifecycle.advance`` folds one touch after another in Python, which is what
an arriving batch needs but costs about 16 µs a touch: minutes for a rebuild of ten million
events. A customer's history is a simple function of three facts per event, though: the
furthest stage whose entry rule it meets, whether it meets an exit rule, and how long the
customer was silent before it. The rules are checked once per distinct kind of touch
(with ``entry_target`` and ``exit_reason``, the very checks ``advance`` makes), and the
sequence rules become array operations:

* a *spell* starts at a customer's first event, after an event that met an exit rule, and
  at an event that ends a silence of at least the inactivity limit; every spell starts
  outside the lifecycle, so spells are independent of each other;
* within a spell the stage is the running maximum of the stages reached (forward-only
  models) or the last stage reached (models that allow moving back).

Identify calls that set a trait some rule watches make a customer's rules depend on what
came before, so the caller folds those customers with ``advance``
(``watching_customers``). The property test holds this fold to ``advance`` on random
histories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cxloop.domain.lifecycle import (
    INACTIVE_REASON,
    LifecycleModel,
    RuleIndex,
    Touch,
    entry_target,
    exit_reason,
    rule_index,
)

_decode = msgspec.json.Decoder(dict[str, Any]).decode
_NO_TIME = datetime(1970, 1, 1, tzinfo=UTC)  # rules never read a touch's time
_US = timedelta(microseconds=1)
# Not an Arrow array at import: pyarrow imports pandas for its first one, a third of a second
# that every command importing this module would pay.
_KINDS = ("enter", "progress", "back", "exit")
_ENTER, _PROGRESS, _BACK, _EXIT = range(4)
_SEP = "\x1f"  # between type and name: JSON and event names keep control characters out

Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class FoldedColumns:
    """The moves (in ``MOVE_COLUMNS``) and end states (in ``STATE_COLUMNS``) of the
    customers folded, as the engine stores them."""

    moves: pa.Table
    states: pa.Table


MOVE_COLUMNS = (
    "customer_id",
    "seq",
    "cycle",
    "kind",
    "from_stage",
    "to_stage",
    "at",
    "message_id",
    "event",
    "reason",
    "skipped",
)
STATE_COLUMNS = (
    "customer_id",
    "cycle",
    "stage",
    "entered_at",
    "last_activity",
    "last_ts",
    "last_message_id",
    "swept_at",
    "next_seq",
    "inactive_exits",
)


def touch_names(rows: pa.Table) -> pa.ChunkedArray:
    """The name a rule matches: the event of a track call, the name of a page or screen."""
    return pc.if_else(
        pc.equal(rows.column("type"), "track"), rows.column("event"), rows.column("name")
    )


def watching_customers(model: LifecycleModel, rows: pa.Table) -> pa.Array:
    """Customers with an identify call that sets a trait some rule of ``model`` reads."""
    watched = model.trait_names
    if not watched:
        return pa.array([], pa.int64())
    identify = rows.filter(pc.equal(rows.column("type"), "identify"))
    traits = identify.column("traits").combine_chunks().dictionary_encode()
    hits = [
        bool(text) and not watched.isdisjoint(_decode(text))
        for text in traits.dictionary.to_pylist()
    ]
    if not any(hits):
        return pa.array([], pa.int64())
    mask = pc.take(pa.array(hits), traits.indices)
    return pc.unique(identify.column("customer_id").filter(pc.fill_null(mask, False)))


def fold_columns(model: LifecycleModel, rows: pa.Table, as_of: datetime | None) -> FoldedColumns:
    """Fold whole customers from scratch (``rows`` in TOUCH_COLUMNS, ordered by customer,
    timestamp and message id, every event of each customer, none from
    ``watching_customers``), then sweep inactivity exits due by ``as_of``."""
    rows = rows.combine_chunks()
    index = rule_index(model)
    names = touch_names(rows)
    target, exit_code, reasons = _classify(index, rows, names)
    customer = rows.column("customer_id").to_numpy()
    ts = pc.cast(rows.column("timestamp").cast(pa.timestamp("us", tz="UTC")), pa.int64())
    at = ts.to_numpy()
    n = len(customer)
    inactive = None if index.inactive_after is None else index.inactive_after // _US
    positions = np.arange(n, dtype=np.int64)

    first = np.ones(n, dtype=bool)
    first[1:] = customer[1:] != customer[:-1]
    last = np.ones(n, dtype=bool)
    last[:-1] = first[1:]
    met_exit = exit_code >= 0
    gap = np.zeros(n, dtype=bool)
    if inactive is not None:
        gap[1:] = at[1:] - at[:-1] >= inactive
        gap &= ~first
    after_exit = np.zeros(n, dtype=bool)
    after_exit[1:] = met_exit[:-1]
    spell_start = first | gap | after_exit

    # The stage after each event's entry rules (before its exit rules); -1: outside.
    if model.backward == "forward_only":
        spell = np.cumsum(spell_start, dtype=np.int64) - 1
        width = len(model.stages) + 1
        current = np.maximum.accumulate(spell * width + target + 1) - spell * width - 1
    else:
        reached = np.maximum.accumulate(np.where((target >= 0) | spell_start, positions, 0))
        current = target[reached]
    before = np.empty(n, dtype=np.int64)
    before[0] = -1
    before[1:] = current[:-1]
    before[spell_start] = -1
    moved = (
        current != before
        if model.backward == "forward_only"
        else (target >= 0) & (target != before)
    )
    exited = met_exit & (current >= 0)
    standing = np.where(exited, -1, current)  # the stage once the event is folded
    silent_exit = np.zeros(n, dtype=bool)
    silent_exit[1:] = gap[1:] & (standing[:-1] >= 0)

    customer_start = np.maximum.accumulate(np.where(first, positions, 0))
    entered = moved & (before < 0)
    entries = np.cumsum(entered, dtype=np.int64)
    cycle = entries - entries[customer_start] + entered[customer_start]

    ends = np.flatnonzero(last)
    swept = np.zeros(len(ends), dtype=bool)
    if inactive is not None and as_of is not None:
        due = at[ends] + inactive
        swept = (standing[ends] >= 0) & (_micros(as_of) >= due)

    # Moves come from four places, in this order around an event: an inactivity exit found
    # by it (before it), the move it makes, the exit it meets; then the final sweep.
    silent = np.flatnonzero(silent_exit)
    moving = np.flatnonzero(moved)
    leaving = np.flatnonzero(exited)
    sweeping = ends[swept]
    pieces = [silent, moving, leaving, sweeping]
    event_of = np.concatenate(pieces)
    place = np.concatenate([np.full(len(p), i) for i, p in enumerate(pieces)])
    order = np.lexsort((place, event_of))
    event_of = event_of[order]

    def column(values: list[Ints]) -> Ints:
        return np.concatenate(values)[order]

    from_stage = column(
        [
            standing[silent - 1],
            before[moving],
            current[leaving],
            standing[sweeping],
        ]
    )
    to_stage = column(
        [np.full(len(silent), -1), target[moving], np.full(len(leaving) + len(sweeping), -1)]
    )
    kind = column(
        [
            np.full(len(silent), _EXIT),
            np.where(
                before[moving] < 0,
                _ENTER,
                np.where(target[moving] > before[moving], _PROGRESS, _BACK),
            ),
            np.full(len(leaving), _EXIT),
            np.full(len(sweeping), _EXIT),
        ]
    )
    due_offset = inactive or 0
    move_at = column(
        [
            at[silent - 1] + due_offset,
            at[moving],
            at[leaving],
            at[sweeping] + due_offset,
        ]
    )
    move_cycle = column([cycle[silent - 1], cycle[moving], cycle[leaving], cycle[sweeping]])
    with_event = column(
        [
            np.zeros(len(silent), dtype=bool),
            np.ones(len(moving), dtype=bool),
            np.ones(len(leaving), dtype=bool),
            np.zeros(len(sweeping), dtype=bool),
        ]
    )
    reason = column(
        [
            np.full(len(silent), len(reasons)),
            np.full(len(moving), -1),
            exit_code[leaving],
            np.full(len(sweeping), len(reasons)),
        ]
    )
    move_customer = customer[event_of]
    new_customer = np.ones(len(event_of), dtype=bool)
    new_customer[1:] = move_customer[1:] != move_customer[:-1]
    move_positions = np.arange(len(event_of), dtype=np.int64)
    seq = move_positions - np.maximum.accumulate(np.where(new_customer, move_positions, 0))

    stage_keys = pa.array([s.key for s in model.stages])
    event_rows = pa.array(event_of, mask=~with_event)
    moves = pa.table(
        {
            "customer_id": pa.array(move_customer, pa.int64()),
            "seq": pa.array(seq, pa.int32()),
            "cycle": pa.array(move_cycle, pa.int32()),
            "kind": pa.array(_KINDS).take(pa.array(kind)),
            "from_stage": _take_optional(stage_keys, from_stage),
            "to_stage": _take_optional(stage_keys, to_stage),
            "at": pa.array(move_at, pa.timestamp("us", tz="UTC")),
            "message_id": rows.column("message_id").take(event_rows),
            "event": names.take(event_rows),
            "reason": _take_optional(pa.array([*reasons, INACTIVE_REASON]), reason),
            "skipped": _skipped(model, kind, from_stage, to_stage),
        }
    )

    group = np.cumsum(first, dtype=np.int64) - 1
    counts = np.bincount(group[event_of], minlength=len(ends))
    silences = np.bincount(group[silent], minlength=len(ends)) + swept
    final = np.where(swept, -1, standing[ends])
    last_move = np.maximum.accumulate(np.where(moved, positions, 0))[ends]
    states = pa.table(
        {
            "customer_id": pa.array(customer[ends], pa.int64()),
            "cycle": pa.array(cycle[ends], pa.int32()),
            "stage": _take_optional(stage_keys, final),
            "entered_at": pa.array(at[last_move], pa.timestamp("us", tz="UTC"), mask=final < 0),
            "last_activity": pa.array(at[ends], pa.timestamp("us", tz="UTC")),
            "last_ts": pa.array(at[ends], pa.timestamp("us", tz="UTC")),
            "last_message_id": rows.column("message_id").take(pa.array(ends)),
            "swept_at": pa.array(at[ends] + due_offset, pa.timestamp("us", tz="UTC"), mask=~swept),
            "next_seq": pa.array(counts, pa.int32()),
            "inactive_exits": pa.array(silences, pa.int32()),
        }
    )
    return FoldedColumns(moves=moves, states=states)


def _classify(
    index: RuleIndex, rows: pa.Table, names: pa.ChunkedArray | pa.Array
) -> tuple[Ints, Ints, list[str]]:
    """Per event: the furthest stage its entry rules reach and the exit rule it meets (an
    index into the returned reasons), -1 for none. Rules are checked once per (type,
    name), or once per distinct properties where a rule reads them."""
    n = rows.num_rows
    target = np.full(n, -1, dtype=np.int64)
    exit_code = np.full(n, -1, dtype=np.int64)
    reasons: list[str] = []
    reason_ids: dict[str, int] = {}

    def reason_id(text: str | None) -> int:
        if text is None:
            return -1
        if text not in reason_ids:
            reason_ids[text] = len(reasons)
            reasons.append(text)
        return reason_ids[text]

    keys = pc.binary_join_element_wise(rows.column("type"), names, _SEP)
    encoded = pc.dictionary_encode(keys).combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    for code, key in enumerate(encoded.dictionary.to_pylist()):
        kind, name = key.split(_SEP, 1)
        entries = index.entries.get((kind, name), ())
        exits = index.exits.get((kind, name), ())
        if not entries and not exits:
            continue
        where = np.flatnonzero(codes == code)
        reads = any(rule.where for _, rule in entries) or any(
            rule.where or exit_rule.reason_property for exit_rule, rule in exits
        )
        if not reads:
            touch = Touch(_NO_TIME, "", kind, name, {}, {})
            found = entry_target(index, touch, {})
            target[where] = -1 if found is None else found
            exit_code[where] = reason_id(exit_reason(index, touch, {}))
            continue
        texts = pc.dictionary_encode(rows.column("properties").take(pa.array(where)))
        texts = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        distinct_target = np.empty(len(texts.dictionary) + 1, dtype=np.int64)
        distinct_exit = np.empty(len(texts.dictionary) + 1, dtype=np.int64)
        for i, text in enumerate([*texts.dictionary.to_pylist(), None]):
            touch = Touch(_NO_TIME, "", kind, name, _decode(text) if text else {}, {})
            found = entry_target(index, touch, {})
            distinct_target[i] = -1 if found is None else found
            distinct_exit[i] = reason_id(exit_reason(index, touch, {}))
        which = pc.fill_null(texts.indices, len(texts.dictionary)).to_numpy(zero_copy_only=False)
        target[where] = distinct_target[which]
        exit_code[where] = distinct_exit[which]
    return target, exit_code, reasons


def _take_optional(values: pa.Array, picks: Ints) -> pa.Array:
    """``values[picks]``, null where a pick is -1."""
    return values.take(pa.array(np.maximum(picks, 0), mask=picks < 0))


def _skipped(model: LifecycleModel, kind: Ints, from_stage: Ints, to_stage: Ints) -> pa.Array:
    """The stages a move jumped over: before the target on entry, between on progress."""
    keys = [s.key for s in model.stages]
    width = len(keys)
    lists: list[list[str]] = [[] for _ in range((width + 1) * width)]
    for start in range(-1, width):
        for end in range(width):
            lists[(start + 1) * width + end] = keys[start + 1 : end]
    forward = (kind == _ENTER) | (kind == _PROGRESS)
    pick = np.where(forward, (from_stage + 1) * width + to_stage, 0)
    return pa.array(lists, pa.list_(pa.string())).take(pa.array(pick))


def _micros(value: datetime) -> int:
    return (value - _NO_TIME) // _US
