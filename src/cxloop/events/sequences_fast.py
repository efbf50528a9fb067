"""Where new events go in the sequence index, compiled (numba): loaded only when the
index takes in new events, as numba slows every command's start."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

Ints = npt.NDArray[np.int64]


def places(customer: Ints, at: Ints, new_customer: Ints, new_at: Ints) -> Ints | None:
    """For each new row, the index before which ``np.insert`` puts it so the rows stay
    sorted by customer and time; ``None`` when a new row's time equals one of its
    customer's held rows."""
    out = np.empty(len(new_customer), dtype=np.int64)
    return out if _places(customer, at, new_customer, new_at, out) else None


@njit(cache=True, nogil=True)
def _places(customer: Ints, at: Ints, new_customer: Ints, new_at: Ints, out: Ints) -> bool:
    for i in range(len(new_customer)):
        lo = np.searchsorted(customer, new_customer[i], side="left")
        hi = np.searchsorted(customer, new_customer[i], side="right")
        k = lo + np.searchsorted(at[lo:hi], new_at[i], side="left")
        if k < hi and at[k] == new_at[i]:
            return False
        out[i] = k
    return True
