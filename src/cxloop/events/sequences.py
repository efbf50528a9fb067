"""The sequence index: every event's customer, time and name code, kept sorted by customer
and time in memory by the process that owns the event store.

A funnel's or a path's cost is getting the rows in (customer, time) order, not the rules
that read them: the store sorts every query's rows afresh, while the index is sorted once
and then kept up to date. New events are merged in as they arrive (the store's rows only
ever grow at the end, so the rows past the last one read are the new ones); moving events
between customers, which merging identities does, rebuilds it. Queries that need more
than names and times (property filters and breakdowns) still go to the store.

Codes: 0 for events that are not touchpoints (identify, group, alias), 1 for a page or
screen without a name, 2 and up for each name in the order first seen; they never change
while the index lives.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Ints = npt.NDArray[np.int64]
NOT_A_TOUCHPOINT, UNNAMED = 0, 1
MAX_EVENTS = 50_000_000  # beyond this (about 1.2 GB of arrays) queries go to the store

_ROWS = (
    'SELECT rowid AS r, customer_id, epoch_us("timestamp") AS at, '
    "type IN ('track', 'page', 'screen') AS touch, "
    "CASE WHEN type = 'track' THEN event ELSE name END AS name FROM events"
)
_ORDER = ' ORDER BY customer_id, "at", message_id'


@dataclass(frozen=True)
class Sequences:
    """One state of the index. ``offsets[k]:offsets[k+1]`` are the rows of the k-th
    customer."""

    customer: Ints
    at: Ints
    code: Ints
    offsets: Ints
    codes: dict[str, int]  # a name's code
    last_row: int  # the store's last row read
    # What queries derive from the rows alone (local dates in a zone), kept with them.
    cache: dict[tuple[str, str], Ints] = field(default_factory=dict)

    def code_of(self, name: str) -> int | None:
        return self.codes.get(name)

    @property
    def labels(self) -> list[str | None]:
        """Each code's name (``None`` for codes 0 and 1)."""
        out: list[str | None] = [None] * (len(self.codes) + 2)
        for name, code in self.codes.items():
            out[code] = name
        return out


class SequenceIndex:
    """The index of one event store; ``current`` brings it up to the store's state."""

    def __init__(self, sql: Callable[..., pa.Table]) -> None:
        self._sql = sql
        self._lock = threading.Lock()
        self._state: Sequences | None = None
        self._seen: tuple[int, int] = (-1, -1)  # the store's (appends, moves) it holds

    def current(self, appends: int, moves: int) -> Sequences | None:
        """The index as of the store's ``appends`` and ``moves`` counters (taken before
        the call, so a write while it runs is picked up by the next), or ``None`` when the
        store holds more than ``MAX_EVENTS`` events."""
        with self._lock:
            state = self._state
            seen_appends, seen_moves = self._seen
            # A caller whose counters are older than the index's gets the newer index.
            if state is not None and appends <= seen_appends and moves <= seen_moves:
                return state
            merged = None
            if state is not None and seen_moves == moves:
                new = self._sql(_ROWS + " WHERE rowid > ?" + _ORDER, [state.last_row])
                merged = _merged(state, new)
                # Row ids are DuckDB's, not ours: should the store ever renumber rows, the
                # count tells, and the index is read afresh (an append between the two
                # queries costs the same, never a wrong answer).
                held = len(merged.customer) if merged is not None else -1
                if merged is not None and (held != self._count() or held > MAX_EVENTS):
                    merged = None
            if merged is None:
                stored = self._count()
                if stored > MAX_EVENTS:
                    self._state, self._seen = None, (-1, -1)
                    return None
                codes = dict(state.codes) if state is not None else {}
                merged = _built(self._sql(_ROWS + _ORDER), codes)
            self._state = merged
            self._seen = (max(appends, seen_appends), max(moves, seen_moves))
            return merged

    def _count(self) -> int:
        return int(self._sql("SELECT count(*) AS n FROM events").column("n")[0].as_py())


def _encoded(rows: pa.Table, codes: dict[str, int]) -> Ints:
    """The rows' name codes, new names given the next codes (``codes`` grows)."""
    encoded = pc.dictionary_encode(rows.column("name")).combine_chunks()
    names = encoded.dictionary.to_pylist()
    for name in names:
        if name not in codes:
            codes[name] = len(codes) + 2
    by_index = np.array([codes[n] for n in names] + [UNNAMED], dtype=np.int64)
    index = pc.fill_null(encoded.indices, len(names)).to_numpy(zero_copy_only=False)
    out = by_index[np.asarray(index, dtype=np.int64)]
    touch = np.asarray(rows.column("touch").to_numpy(zero_copy_only=False), dtype=np.bool_)
    out[~touch] = NOT_A_TOUCHPOINT
    return out


def _ints(rows: pa.Table, name: str) -> Ints:
    return np.asarray(rows.column(name).to_numpy(), dtype=np.int64)


def _sequences(
    customer: Ints, at: Ints, code: Ints, codes: dict[str, int], last_row: int
) -> Sequences:
    starts = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]][: len(customer)])
    offsets = np.r_[starts, len(customer)].astype(np.int64)
    return Sequences(customer, at, code, offsets, codes, last_row)


def _built(rows: pa.Table, codes: dict[str, int]) -> Sequences:
    read = _ints(rows, "r")
    code = _encoded(rows, codes)
    last = int(read.max()) if len(read) else -1
    return _sequences(_ints(rows, "customer_id"), _ints(rows, "at"), code, codes, last)


def _merged(state: Sequences, new: pa.Table) -> Sequences | None:
    """The state with the new rows (sorted by customer, time and message id) in place, or
    ``None`` when it is cheaper, or needed, to read every row again: a new event at the
    very time of one already held for its customer needs the message ids to order the
    two, which the index does not keep."""
    if new.num_rows == 0:
        return state
    if new.num_rows > max(100_000, len(state.customer) // 4):
        return None
    from cxloop.events.sequences_fast import places

    customer, at = _ints(new, "customer_id"), _ints(new, "at")
    place = places(state.customer, state.at, customer, at)
    if place is None:
        return None
    codes = dict(state.codes)
    code = _encoded(new, codes)
    return _sequences(
        np.insert(state.customer, place, customer),
        np.insert(state.at, place, at),
        np.insert(state.code, place, code),
        codes,
        max(state.last_row, int(_ints(new, "r").max())),
    )
