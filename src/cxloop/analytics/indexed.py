"""Funnel and path rows read from the event store's sequence index instead of a query.

The index holds names and times already in (customer, time) order, so what a query would
scan, flag and sort is a few array operations. It answers only what names and times
decide: steps, exclusions and anchors without property filters, and no breakdown by an
event property (a trait breakdown is fine: traits come from the customers).
"""

from __future__ import annotations

from collections.abc import Sequence

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
