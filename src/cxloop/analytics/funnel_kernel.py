"""One customer's funnel: the sequence rules, on a customer's events in time order.

SQL finds which steps and exclusions each event matches; what an *attempt* is, which one
counts and when a customer drops out are sequence rules, kept here in plain code:

* every event that matches step 0 (and starts inside the date range) starts an attempt;
* **ordered**: each next step is the earliest unused event matching it, no earlier than the
  previous step (a step may share its timestamp) and at most the window after the start;
  one event serves one step of an attempt; events of equal time are tried in every order
  that could matter, so the most generous reading wins;
* **strict**: the steps must follow one another with no other event of the customer
  strictly between their times (an event at the very time of a step is not between);
* **unordered**: the most steps that distinct events within the window after the start can
  cover, whatever their order ("completed N steps");
* an exclusion event strictly between step *a* and step *b* of an attempt (one at the very
  time of either step does not count, as in PostHog; up to the end of the window when *b*
  is not reached; for unordered funnels, whose exclusions cover the whole funnel, strictly
  between the attempt's first and last events) discards the attempt; a customer with
  attempts but no clean one leaves the funnel altogether;
* the customer's result is the attempt that got furthest, the earliest among equals, and
  its step times give the times to convert.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One event of a customer: its time (µs), the steps and exclusions it matches (by
    index), and its breakdown value."""

    at: int
    steps: frozenset[int]
    exclusions: frozenset[int] = frozenset()
    value: str | None = None


@dataclass(frozen=True)
class Attempt:
    events: tuple[int, ...]  # the indices of the events that took steps 0, 1, …
    times: tuple[int, ...]

    @property
    def reached(self) -> int:
        return len(self.events)


def best_attempt(
    events: Sequence[Event],
    steps: int,
    window_us: int,
    order: str,
    exclusions: Sequence[tuple[int, int]] = (),
    starts: tuple[int | None, int | None] = (None, None),
) -> Attempt | None:
    """The attempt that counts for this customer, or None when they are not in the funnel
    (no attempt starts in ``starts``, or every attempt met an exclusion)."""
    lowest, highest = starts
    best: Attempt | None = None
    candidates = (
        [i for i, e in enumerate(events) if e.steps]
        if order == "unordered"
        else [i for i, e in enumerate(events) if 0 in e.steps]
    )
    for start in candidates:
        at = events[start].at
        if (lowest is not None and at < lowest) or (highest is not None and at >= highest):
            continue
        if order == "unordered":
            attempt = _unordered(events, start, steps, window_us)
        elif order == "strict":
            attempt = _strict(events, start, steps, window_us)
        else:
            attempt = _ordered(events, start, steps, window_us)
        if _excluded(events, attempt, exclusions, window_us, order == "unordered"):
            continue
        if best is None or attempt.reached > best.reached:
            best = attempt
        if best.reached == steps:
            break
    return best


def _ordered(events: Sequence[Event], start: int, steps: int, window_us: int) -> Attempt:
    limit = events[start].at + window_us

    def candidates(step: int, now: int, used: frozenset[int]) -> list[int]:
        """The earliest unused events of the step in the window, from the previous one's
        time on."""
        found = [
            j
            for j, e in enumerate(events)
            if j not in used and now <= e.at <= limit and step in e.steps
        ]
        earliest = min((events[j].at for j in found), default=None)
        return [j for j in found if events[j].at == earliest]

    return _longest(events, start, steps, candidates)


def _strict(events: Sequence[Event], start: int, steps: int, window_us: int) -> Attempt:
    """Each next step at the previous step's time or at the very next time the customer did
    anything: an event strictly between two steps' times breaks the attempt, one at the
    same time as a step does not (so the order of equal times never matters)."""
    limit = events[start].at + window_us

    def candidates(step: int, now: int, used: frozenset[int]) -> list[int]:
        nxt = min((e.at for e in events if e.at > now), default=None)
        times = (now,) if nxt is None or nxt > limit else (now, nxt)
        return [
            j for j, e in enumerate(events) if j not in used and e.at in times and step in e.steps
        ]

    return _longest(events, start, steps, candidates)


def _longest(
    events: Sequence[Event],
    start: int,
    steps: int,
    candidates: Callable[[int, int, frozenset[int]], list[int]],
) -> Attempt:
    """The attempt from ``start`` that reaches furthest, trying every candidate event for
    each next step (candidates differ only where events share a time)."""

    def extend(step: int, now: int, used: frozenset[int]) -> list[int]:
        if step == steps:
            return []
        longest: list[int] = []
        for j in candidates(step, now, used):
            taken = [j, *extend(step + 1, events[j].at, used | {j})]
            if len(taken) > len(longest):
                longest = taken
            if len(longest) == steps - step:
                break
        return longest

    chosen = [start, *extend(1, events[start].at, frozenset({start}))]
    return Attempt(tuple(chosen), tuple(events[j].at for j in chosen))


def _unordered(events: Sequence[Event], start: int, steps: int, window_us: int) -> Attempt:
    """The start event takes one of its steps; the other steps are matched to distinct
    events of the window (Kuhn's bipartite matching: steps are few)."""
    first = events[start]
    limit = first.at + window_us
    window = [j for j, e in enumerate(events) if j != start and first.at <= e.at <= limit]
    best: list[int] = [start]
    for own in sorted(first.steps):
        taken = _matching([s for s in range(steps) if s != own], events, window)
        if len(taken) + 1 > len(best):
            best = [start, *taken]
    chosen = sorted(best, key=lambda j: (events[j].at, j))
    return Attempt(tuple(chosen), tuple(events[j].at for j in chosen))


def _matching(steps: list[int], events: Sequence[Event], window: list[int]) -> list[int]:
    """The events of a largest matching of ``steps`` to distinct events of ``window``."""
    step_of: dict[int, int] = {}  # event -> step

    def place(step: int, seen: set[int]) -> bool:
        for j in window:
            if step in events[j].steps and j not in seen:
                seen.add(j)
                if j not in step_of or place(step_of[j], seen):
                    step_of[j] = step
                    return True
        return False

    for step in steps:
        place(step, set())
    return list(step_of)


def _excluded(
    events: Sequence[Event],
    attempt: Attempt,
    exclusions: Sequence[tuple[int, int]],
    window_us: int,
    unordered: bool = False,
) -> bool:
    """An exclusion event strictly inside its range of the attempt. Unordered attempts
    (whose exclusions cover the whole funnel) span from their first to their last event,
    as in PostHog; the others run on to the end of the window when step *b* is missing."""
    if not exclusions:
        return False
    if unordered:
        first, last = attempt.times[0], attempt.times[-1]
        return any(e.exclusions and first < e.at < last for e in events)
    end_of_window = attempt.times[0] + window_us
    for n, (first, last) in enumerate(exclusions):
        if attempt.reached <= first:
            continue
        begin = attempt.times[first]
        if attempt.reached > last:  # strictly between the two steps' times
            hit = any(n in e.exclusions and begin < e.at < attempt.times[last] for e in events)
        else:  # after step a, up to the end of the window
            hit = any(n in e.exclusions and begin < e.at <= end_of_window for e in events)
        if hit:
            return True
    return False
