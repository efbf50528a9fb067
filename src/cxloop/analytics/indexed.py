"""Funnel and path rows read from the event store's sequence index instead of a query.

The index holds names and times already in (customer, time) order, so what a query would
scan, flag and sort is a few array operations. It answers only what names and times
decide: steps, exclusions and anchors without property filters, and no breakdown by an
event property (a trait breakdown is fine: traits come from the customers).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cxloop.analytics.funnel_spec import FunnelSpec, PropertyFilter
from cxloop.events.base import EventStore
from cxloop.events.sequences import NOT_A_TOUCHPOINT, Ints, Sequences


def sequences_for(
    events: EventStore, conditions: Sequence[Sequence[PropertyFilter]], by_property: bool
) -> Sequences | None:
    """The store's index when it keeps one and it can answer: no condition filters on
    properties and nothing is broken down by one."""
    index = getattr(events, "sequences", None)
    if index is None or by_property or any(conditions):
        return None
    found: Sequences | None = index()
    return found


def funnel_rows(spec: FunnelSpec, seqs: Sequences) -> pa.Table:
    """The rows ``_rows_query`` would return, in the same order, as the same columns."""
    # Loaded here, not at import: numba would slow every command's start.
    from cxloop.analytics.funnel_fast import indexed_rows

    keep, steps, exclusions = indexed_rows(
        seqs.offsets, seqs.at, seqs.code,
        _flags(seqs, [s.event for s in spec.steps]),
        _flags(seqs, [x.event for x in spec.exclusions]),
        spec.order == "strict",
    )  # fmt: skip
    return pa.table(
        {
            "customer_id": seqs.customer[keep],
            "at": seqs.at[keep],
            "steps": steps,
            "exclusions": exclusions,
            "value": pa.nulls(len(keep), pa.string()),
        }
    )


def _flags(seqs: Sequences, names: list[str]) -> Ints:
    """By name code: bit *n* set for the event named ``names[n]``."""
    by_code = np.zeros(len(seqs.codes) + 2, dtype=np.int64)
    for n, name in enumerate(names):
        code = seqs.code_of(name)
        if code is not None:
            by_code[code] |= 1 << n
    by_code[NOT_A_TOUCHPOINT] = 0
    return by_code


PathRows = tuple[Ints, Ints, Ints, npt.NDArray[np.bool_], list[str | None]]


def path_rows(seqs: Sequences, anchor: str) -> PathRows:
    """The touchpoints by customer and time: customers, times, name codes (into the
    labels returned), and which rows are the anchor event."""
    keep = np.flatnonzero(seqs.code != NOT_A_TOUCHPOINT)
    code = seqs.code[keep]
    wanted = seqs.code_of(anchor)
    anchors = code == (-1 if wanted is None else wanted)
    return seqs.customer[keep], seqs.at[keep], code, anchors, seqs.labels


_DAY_US, _HOUR_US = 86_400_000_000, 3_600_000_000
_DENSE_DAYS = 20_000  # about 55 years


def local_days(seqs: Sequences, zone: ZoneInfo) -> Ints:
    """Each row's wall-clock date in the zone, as days since 1970-01-01 (kept with the
    index: the same for every query in that zone)."""
    cached = seqs.cache.get(("days", zone.key))
    if cached is not None:
        return cached
    days = _local_days(seqs.at, zone)
    seqs.cache[("days", zone.key)] = days
    return days


def _local_days(at: Ints, zone: ZoneInfo) -> Ints:
    """An offset per UTC day from the zone's rules; within the few days the offset
    changes, per hour, and within the hour it changes, per event."""
    if not len(at) or zone.key == "UTC":
        return at // _DAY_US

    def offset_us(micros: int) -> int:
        moment = datetime.fromtimestamp(micros / 1_000_000, tz=zone)
        delta = moment.utcoffset()
        return int(delta.total_seconds() * 1_000_000) if delta is not None else 0

    utc_day = at // _DAY_US
    low = int(utc_day.min())
    span = int(utc_day.max()) - low + 1
    # Every day of the span, unless a stray date far off makes it long: then the days held.
    days = np.arange(low, low + span) if span <= _DENSE_DAYS else np.unique(utc_day)
    begins = np.array([offset_us(int(d) * _DAY_US) for d in days], dtype=np.int64)
    ends = np.array([offset_us((int(d) + 1) * _DAY_US - 1) for d in days], dtype=np.int64)
    offsets = begins[np.searchsorted(days, utc_day)]
    for d in days[begins != ends].tolist():
        in_day = np.flatnonzero(utc_day == d)
        hours = at[in_day] // _HOUR_US
        for hour in np.unique(hours).tolist():
            rows = in_day[hours == hour]
            early, late = offset_us(hour * _HOUR_US), offset_us((hour + 1) * _HOUR_US - 1)
            if early == late:
                offsets[rows] = early
            else:
                offsets[rows] = [offset_us(int(t)) for t in at[rows]]
    return (at + offsets) // _DAY_US


def by_code(seqs: Sequences, name: str | None) -> npt.NDArray[np.bool_]:
    """By name code: the event is ``name`` (any touchpoint when ``None``)."""
    out = np.zeros(len(seqs.codes) + 2, dtype=np.bool_)
    if name is None:
        out[NOT_A_TOUCHPOINT + 1 :] = True
    elif (code := seqs.code_of(name)) is not None:
        out[code] = True
    return out
