"""Retention counted from the sequence index, compiled (numba): one pass over each
customer's events in time order gives their first start event and the periods after it in
which they came back, as a bit mask, the one row per customer that retention's SQL gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]


def cohort_masks(
    offsets: Ints, at: Ints, code: Ints, period: Ints, starts: Bools, returns: Bools,
    periods: int,
) -> tuple[Bools, Ints, Ints, Ints]:  # fmt: skip
    """Per customer: whether they have a start event (``starts[code]``), its time, its
    period, and bit *k* set when a return event (``returns[code]``) fell *k* periods
    after it (1 <= k < ``periods``)."""
    n = len(offsets) - 1
    started = np.zeros(n, dtype=np.bool_)
    first_at = np.zeros(n, dtype=np.int64)
    cohort = np.zeros(n, dtype=np.int64)
    back = np.zeros(n, dtype=np.int64)
    _cohort_masks(offsets, at, code, period, starts, returns, periods,
                  started, first_at, cohort, back)  # fmt: skip
    return started, first_at, cohort, back


@njit(cache=True, nogil=True)
def _cohort_masks(
    offsets: Any, at: Any, code: Any, period: Any, starts: Any, returns: Any, periods: int,
    started: Any, first_at: Any, cohort: Any, back: Any,
) -> None:  # fmt: skip
    for c in range(len(offsets) - 1):
        first, end = offsets[c], offsets[c + 1]
        for j in range(first, end):
            if starts[code[j]]:
                started[c] = True
                first_at[c] = at[j]
                cohort[c] = period[j]
                break
        if not started[c]:
            continue
        mask = 0
        for j in range(first, end):
            if returns[code[j]]:
                k = period[j] - cohort[c]
                if 1 <= k < periods:
                    mask |= np.int64(1) << k
        back[c] = mask
