"""The compiled funnel rules give the reference kernel's answers on random histories."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cxloop.analytics.funnel_fast import best_attempts
from cxloop.analytics.funnel_kernel import Event, best_attempt

STEPS = 4


@st.composite
def cases(draw: st.DrawFn) -> dict[str, object]:
    rows = []
    for customer in range(draw(st.integers(1, 6))):
        times = sorted(
            draw(st.lists(st.integers(0, 40), min_size=1, max_size=14))
        )  # small range: ties happen, and are routed to the reference
        for at in times:
            mask = draw(st.sampled_from([0, 1, 2, 4, 8, 3, 6, 1, 2]))
            excluded = draw(st.sampled_from([0, 0, 0, 1, 2]))
            rows.append((customer, at, mask, excluded))
    order = draw(st.sampled_from(["ordered", "strict"]))
    ranges = draw(st.sampled_from([[], [(0, 3)], [(1, 2)], [(0, 1), (2, 3)]]))
    return {
        "rows": rows,
        "order": order,
        "window": draw(st.sampled_from([5, 10, 40])),
        "ranges": ranges,
        "low": draw(st.sampled_from([-(2**62), 3])),
        "high": draw(st.sampled_from([2**62, 30])),
    }


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_compiled_rules_agree_with_the_reference(case: dict[str, object]) -> None:
    rows = case["rows"]
    assert isinstance(rows, list)
    customer = np.array([r[0] for r in rows], dtype=np.int64)
    at = np.array([r[1] for r in rows], dtype=np.int64)
    steps = np.array([r[2] for r in rows], dtype=np.int64)
    excl = np.array([r[3] for r in rows], dtype=np.int64)
    order, window = str(case["order"]), int(case["window"])  # type: ignore[call-overload]
    ranges = list(case["ranges"])  # type: ignore[call-overload]
    low, high = int(case["low"]), int(case["high"])  # type: ignore[call-overload]
    offsets = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1], True])
    reached, picked, tied = best_attempts(
        offsets, at, steps, excl, STEPS, window, order == "strict",
        low, high, np.array(ranges, dtype=np.int64).reshape(len(ranges), 2),
    )  # fmt: skip
    for n, who in enumerate(customer[offsets[:-1]].tolist()):
        mine = np.flatnonzero(customer == who)
        stepping = at[mine][steps[mine] != 0]
        # Step events at equal times are left to the reference, and only they.
        assert tied[n] == bool(len(stepping) != len(np.unique(stepping)))
        if tied[n]:
            assert reached[n] == 0
            continue
        history = [
            Event(
                int(at[i]),
                frozenset(k for k in range(STEPS) if steps[i] >> k & 1),
                frozenset(k for k in range(2) if excl[i] >> k & 1),
            )
            for i in mine
        ]
        expected = best_attempt(history, STEPS, window, order, ranges, (low, high))
        assert reached[n] == (expected.reached if expected else 0)
        if expected:
            got = [int(at[j]) for j in picked[n] if j >= 0]
            assert got == list(expected.times)
