"""The compiled paths rule gives the plain reading of the rule on random histories."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from cxloop.analytics.paths import EXIT, START, PathsSpec, count_paths

NAMES = ["A", "B", "C", None]  # None: a page without a name


def reference(
    histories: list[list[tuple[int, str | None, bool]]], spec: PathsSpec, low: int, high: int
) -> Counter[tuple[str | None, ...]]:
    """The rule as docs/analytics.md states it, one customer at a time."""
    paths: Counter[tuple[str | None, ...]] = Counter()
    for history in histories:
        found = next(
            (i for i, (at, _, hit) in enumerate(history) if hit and low <= at < high), None
        )
        if found is None:
            continue
        names = [name for _, name, _ in history]
        side = names[found + 1 :] if spec.direction == "after" else names[:found][::-1]
        if spec.collapse_repeats:
            sequence = [names[found], *side]
            side = [n for i, n in enumerate(sequence) if i == 0 or n != sequence[i - 1]][1:]
        taken = tuple(side[: spec.depth])
        if len(taken) < spec.depth:
            taken = (*taken, EXIT if spec.direction == "after" else START)
        paths[taken] += 1
    return paths


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[list[tuple[int, str | None, bool]]], PathsSpec, int, int]:
    histories = []
    for _ in range(draw(st.integers(0, 6))):
        times = sorted(draw(st.lists(st.integers(0, 20), max_size=12)))
        events = []
        for at in times:
            name = draw(st.sampled_from(NAMES))
            events.append((at, name, name == "A" and draw(st.booleans())))
        histories.append(events)
    spec = PathsSpec.model_validate(
        {
            "event": {"event": "A"},
            "direction": draw(st.sampled_from(["after", "before"])),
            "depth": draw(st.integers(1, 5)),
            "collapse_repeats": draw(st.booleans()),
        }
    )
    low = draw(st.sampled_from([0, 5]))
    high = draw(st.sampled_from([21, 10]))
    return histories, spec, low, high


@settings(max_examples=300, deadline=None)
@given(case=cases())
def test_the_compiled_paths_agree_with_the_reference(
    case: tuple[list[list[tuple[int, str | None, bool]]], PathsSpec, int, int],
) -> None:
    histories, spec, low, high = case
    rows = pa.table(
        {
            "customer_id": pa.array(
                [c for c, history in enumerate(histories) for _ in history], pa.int64()
            ),
            "at": pa.array([at for history in histories for at, _, _ in history], pa.int64()),
            "name": pa.array([n for history in histories for _, n, _ in history], pa.string()),
            "anchor": pa.array([a for history in histories for _, _, a in history], pa.bool_()),
        }
    )
    micros = 1_000_000
    start = datetime.fromtimestamp(low, UTC)
    end = datetime.fromtimestamp(high, UTC)
    scaled = rows.set_column(1, "at", pa.array([at * micros for at in rows["at"].to_pylist()]))
    assert count_paths(spec, scaled, start, end) == reference(histories, spec, low, high)


def test_paths_over_many_distinct_names_are_counted_row_by_row() -> None:
    import numpy as np

    from cxloop.analytics.paths import _count_rows

    found = np.array([[5, 7, -2], [5, 7, -2], [99_999, -2, -1], [5, 7, -2]], dtype=np.int64)
    for names in (100_000, 10**7):  # packed into integers, and too many names to pack
        rows, counts = _count_rows(found, names)
        assert sorted(zip(map(tuple, rows.tolist()), counts.tolist(), strict=True)) == [
            ((5, 7, -2), 3),
            ((99_999, -2, -1), 1),
        ]
