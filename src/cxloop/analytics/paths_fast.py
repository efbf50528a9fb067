"""The paths rule compiled (numba), over events sorted by customer and time.

Per customer: the first anchor event inside the date range, then the names of the next
(or previous) events, up to the depth, consecutive repeats counted once when asked, and the
end marker when the history ends first. Each path comes back as one row of name codes, so
counting paths is one ``np.unique`` over rows instead of a Python loop over every event.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

Ints = npt.NDArray[np.int64]
UNUSED = -1  # past the end of a shorter path
END = -2  # the path ends before the depth: $exit after, $start before


@njit(cache=True, nogil=True)
def customer_paths(
    offsets: Ints,
    at: Ints,
    names: Ints,
    anchors: npt.NDArray[np.bool_],
    depth: int,
    after: bool,
    collapse: bool,
    low: int,
    high: int,
) -> Ints:
    """One row per customer with an anchor in [low, high): the name codes of their path."""
    out = np.full((len(offsets) - 1, depth), UNUSED, dtype=np.int64)
    rows = 0
    for c in range(len(offsets) - 1):
        first, last = offsets[c], offsets[c + 1]
        found = -1
        for i in range(first, last):
            if anchors[i] and low <= at[i] < high:
                found = i
                break
        if found < 0:
            continue
        taken = 0
        previous = names[found]
        j = found + 1 if after else found - 1
        while taken < depth and first <= j < last:
            name = names[j]
            if not (collapse and name == previous):
                out[rows, taken] = name
                taken += 1
            previous = name
            j = j + 1 if after else j - 1
        if taken < depth:
            out[rows, taken] = END
        rows += 1
    return out[:rows]
