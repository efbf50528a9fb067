"""What the analytics pages need beside the API's queries: the event names to offer in a
form, and the customers of a segment.

The specs have no segment (a segment is a profile field of customers, not an event
property), so the pages pass the segment's customers to ``run_funnel`` and
``funnel_customers`` as ``among``; without a segment they are exactly the API's calls.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, select

from cxloop.analytics.customers import customers_t
from cxloop.analytics.sql import KINDS, NAME, Query, query_for
from cxloop.customers.service import segment_conditions
from cxloop.events.base import EventStore
from cxloop.events.sequences import NOT_A_TOUCHPOINT, UNNAMED

Ints = npt.NDArray[np.int64]
MAX_NAMES = 500


def event_names(events: EventStore, limit: int = MAX_NAMES) -> list[str]:
    """The ``limit`` most frequent touchpoint names (track events and named pages), in
    alphabetical order: a store may hold any number of distinct names, a form offers a
    bounded list."""
    index = getattr(events, "sequences", None)
    seqs = index() if index is not None else None
    if seqs is not None:
        counts = np.bincount(seqs.code, minlength=len(seqs.codes) + 2)
        counts[[NOT_A_TOUCHPOINT, UNNAMED]] = 0
        labels = seqs.labels
        top = np.argsort(-counts, kind="stable")[:limit]
        return sorted(str(labels[c]) for c in top.tolist() if counts[c] > 0 and labels[c])
    q, sql = query_for(events)
    text = (
        f"SELECT {NAME} AS n, count(*) AS c FROM events WHERE {KINDS} AND {NAME} IS NOT NULL "
        f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}"
    )
    rows = sql(*Query(q.dialect).build(text)).to_pylist()
    return sorted(str(row["n"]) for row in rows)


def segment_customers(engine: Engine, where: Mapping[str, str]) -> Ints | None:
    """The ids of the customers in a segment (profile fields or traits, as the other
    reports read ``where``); ``None`` for no segment, everyone."""
    if not where:
        return None
    with engine.connect() as conn:
        ids = conn.execute(select(customers_t.c.id).where(*segment_conditions(where))).scalars()
        return np.fromiter(ids, dtype=np.int64)
