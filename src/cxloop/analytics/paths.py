"""Paths: what customers do right after (or before) a chosen event, and where they leave.

For each customer, the first occurrence of the anchor event (in the date range) and the
next (or previous) events up to ``depth``: the most common paths with the share of
customers on each, and per depth the most common events. A path shorter than the depth
ends in ``$exit`` (the customer did nothing more), or, looking back, begins at ``$start``
(nothing came before).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from cxloop.analytics.funnel_spec import FunnelStep, SpecProblem, check_dates, date_range, refuse
from cxloop.analytics.sql import KINDS, NAME, matches, query_for
from cxloop.events.base import EventStore

EXIT = "$exit"
START = "$start"


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
    anchor = matches(q, spec.event.event, spec.event.filters)
    entry = matches(q, spec.event.event, spec.event.filters)
    text = (
        f"SELECT customer_id, {q.dialect.epoch_us} AS at, {NAME} AS name, {anchor} AS anchor "
        f"FROM events WHERE {KINDS} AND customer_id IN "
        f"(SELECT customer_id FROM events WHERE {entry}) "
        'ORDER BY customer_id, "timestamp", message_id'
    )
    rows = sql(text, q.params).to_pydict()
    start, end = date_range(spec.date_from, spec.date_to, zone)
    low = None if start is None else int(start.timestamp() * 1_000_000)
    high = None if end is None else int(end.timestamp() * 1_000_000)
    paths: Counter[tuple[str, ...]] = Counter()
    for names, times, anchors in _histories(rows):
        found = next(
            (
                i
                for i, hit in enumerate(anchors)
                if hit and (low is None or times[i] >= low) and (high is None or times[i] < high)
            ),
            None,
        )
        if found is None:
            continue
        side = names[found + 1 :] if spec.direction == "after" else names[:found][::-1]
        if spec.collapse_repeats:
            side = _collapsed([names[found], *side])[1:]
        taken = tuple(side[: spec.depth])
        if len(taken) < spec.depth:
            taken = (*taken, EXIT if spec.direction == "after" else START)
        paths[taken] += 1
    customers = sum(paths.values())
    ranked = sorted(paths.items(), key=lambda item: (-item[1], item[0]))
    steps = []
    for depth in range(spec.depth):
        at_depth: Counter[str] = Counter()
        for path, count in paths.items():
            if depth < len(path):
                at_depth[path[depth]] += count
        steps.append(
            {
                "depth": depth + 1,
                "events": [
                    {"event": name, "customers": n, "share": _share(n, customers)}
                    for name, n in sorted(at_depth.items(), key=lambda i: (-i[1], i[0]))[
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


def _histories(rows: dict[str, list[Any]]) -> list[tuple[list[str], list[int], list[bool]]]:
    out: list[tuple[list[str], list[int], list[bool]]] = []
    current = None
    for customer, name, at, hit in zip(
        rows["customer_id"], rows["name"], rows["at"], rows["anchor"], strict=True
    ):
        if customer != current:
            out.append(([], [], []))
            current = customer
        names, times, anchors = out[-1]
        names.append(name)
        times.append(at)
        anchors.append(bool(hit))
    return out


def _collapsed(names: list[str]) -> list[str]:
    """Consecutive repeats of one event as one step."""
    return [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
