"""Paths: what customers do right after (or before) a chosen event, and where they leave.

For each customer, the first occurrence of the anchor event (in the date range) and the
next (or previous) events up to ``depth``: the most common paths with the share of
customers on each, and per depth the most common events. A path shorter than the depth
ends in ``$exit`` (the customer did nothing more), or, looking back, begins at ``$start``
(nothing came before).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from cxloop.analytics.funnel_spec import FunnelStep, SpecProblem, check_dates, date_range, refuse
from cxloop.analytics.indexed import path_rows, sequences_for
from cxloop.analytics.sql import KINDS, NAME, matches, query_for, time_bounds
from cxloop.events.base import EventStore

EXIT = "$exit"
START = "$start"
_LOWEST, _HIGHEST = -(2**62), 2**62  # no date bound


class PathsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event: FunnelStep
    direction: Literal["after", "before"] = "after"
    depth: Annotated[int, Field(ge=1, le=5)] = 3
    limit: Annotated[int, Field(ge=1, le=200)] = 20
    collapse_repeats: bool = True
    date_from: str | None = None
    date_to: str | None = None

    def problems(self) -> list[SpecProblem]:
        return check_dates(self.date_from, self.date_to)


def run_paths(spec: PathsSpec, events: EventStore, zone: ZoneInfo) -> dict[str, Any]:
    """``{"customers", "paths": [{"path", "customers", "share"}], "steps": [{"depth",
    "events": [{"event", "customers", "share"}]}]}``."""
    refuse(spec.problems())
    q, sql = query_for(events)
    start, end = date_range(spec.date_from, spec.date_to, zone)
    anchor = matches(q, spec.event.event, spec.event.filters)
    in_range = "".join(f" AND {bound}" for bound in time_bounds(q, start, end))
    # Only one side of each customer's first anchor in the range can be on a path.
    side = ">=" if spec.direction == "after" else "<="
    text = (
        f"SELECT customer_id, message_id, {q.epoch_us()} AS at, {NAME} AS name, "
        f'{anchor} AS anchor FROM events JOIN (SELECT customer_id, min("timestamp") AS '
        f"first_at FROM events WHERE {anchor}{in_range} GROUP BY customer_id) anchors "
        f'USING (customer_id) WHERE {KINDS} AND "timestamp" {side} anchors.first_at'
    )
    frame = getattr(events, "frame", None)
    sequences = sequences_for(events, [spec.event.filters], by_property=False)
    if sequences is not None:  # names and times suffice: the index has them in order
        paths = _counted(spec, *path_rows(sequences, spec.event.event), start, end)
    elif frame is not None:  # Spark: the paths are found in the executors
        from cxloop.analytics.spark_kernels import spark_paths

        paths = spark_paths(spec, frame(*q.build(text)), start, end)
    else:
        rows = sql(*q.build(text + ' ORDER BY customer_id, "at", message_id'))
        paths = count_paths(spec, rows, start, end)
    customers = sum(paths.values())
    ranked = sorted(paths.items(), key=lambda item: (-item[1], _sortable(item[0])))
    steps = []
    for depth in range(spec.depth):
        at_depth: Counter[str | None] = Counter()
        for path, count in paths.items():
            if depth < len(path):
                at_depth[path[depth]] += count
        steps.append(
            {
                "depth": depth + 1,
                "events": [
                    {"event": name, "customers": n, "share": _share(n, customers)}
                    for name, n in sorted(at_depth.items(), key=lambda i: (-i[1], i[0] or ""))[
                        : spec.limit
                    ]
                ],
            }
        )
    anchor_name = spec.event.event
    return {
        "event": anchor_name,
        "direction": spec.direction,
        "customers": customers,
        "paths": [
            {
                "path": [anchor_name, *path]
                if spec.direction == "after"
                else [*path[::-1], anchor_name],
                "customers": n,
                "share": _share(n, customers),
            }
            for path, n in ranked[: spec.limit]
        ],
        "steps": steps,
    }


def count_paths(
    spec: PathsSpec, rows: pa.Table, start: datetime | None, end: datetime | None
) -> Counter[tuple[str | None, ...]]:
    """Customers per path in rows sorted by customer and time, the paths found by the
    compiled rule (``paths_fast``)."""
    customer = np.asarray(rows.column("customer_id").to_numpy(), dtype=np.int64)
    at = np.asarray(rows.column("at").to_numpy(), dtype=np.int64)
    anchors = np.asarray(pc.fill_null(rows.column("anchor"), False).to_numpy(), dtype=np.bool_)
    encoded = pc.dictionary_encode(rows.column("name")).combine_chunks()
    labels: list[str | None] = [*encoded.dictionary.to_pylist(), None]  # the last: no name
    codes = np.asarray(pc.fill_null(encoded.indices, len(labels) - 1).to_numpy(), dtype=np.int64)
    return _counted(spec, customer, at, codes, anchors, labels, start, end)


def _counted(
    spec: PathsSpec,
    customer: npt.NDArray[np.int64],
    at: npt.NDArray[np.int64],
    codes: npt.NDArray[np.int64],
    anchors: npt.NDArray[np.bool_],
    labels: list[str | None],
    start: datetime | None,
    end: datetime | None,
) -> Counter[tuple[str | None, ...]]:
    """Customers per path, from events by customer and time, their names as codes into
    ``labels``."""
    # Loaded here, not at import: numba would slow every command's start.
    from cxloop.analytics.paths_fast import END, customer_paths

    paths: Counter[tuple[str | None, ...]] = Counter()
    if not len(customer):
        return paths
    offsets = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1], True])
    found = customer_paths(
        offsets, at, codes, anchors, spec.depth, spec.direction == "after",
        spec.collapse_repeats,
        _LOWEST if start is None else int(start.timestamp() * 1_000_000),
        _HIGHEST if end is None else int(end.timestamp() * 1_000_000),
    )  # fmt: skip
    marker = EXIT if spec.direction == "after" else START
    if not len(found):
        return paths
    unique, counts = _count_rows(found, len(labels))
    for row, n in zip(unique.tolist(), counts.tolist(), strict=True):
        path = tuple(marker if code == END else labels[code] for code in row if code != -1)
        paths[path] = n
    return paths


def _count_rows(found: npt.NDArray[np.int64], names: int) -> tuple[npt.NDArray[np.int64], ...]:
    """The distinct rows of name codes and how often each occurs. Each row packs into one
    integer when the codes allow (a 1-D ``np.unique`` costs a tenth of a row-wise one)."""
    base = names + 2  # the codes run from -2 (the end) to names - 1
    if base ** found.shape[1] >= 2**62:
        return tuple(np.unique(found, axis=0, return_counts=True))
    weights = base ** np.arange(found.shape[1], dtype=np.int64)
    keys, counts = np.unique((found + 2) @ weights, return_counts=True)
    rows = (keys[:, None] // weights) % base - 2
    return rows, counts


def _sortable(path: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple(name or "" for name in path)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
