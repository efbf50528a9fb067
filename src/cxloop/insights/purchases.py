"""Purchase behaviour: who buys how often, how much, where, and what a customer is worth.

Purchases are track events of one name (``Order Completed`` by default, the Segment
e-commerce name) whose amount is a property (``revenue``). From them:

* a summary: buyers, purchases, revenue, average order value, purchases per buyer, the
  share who bought again, the median days between purchases;
* distributions of purchases per buyer (1 … 10+), of spend per buyer and of order values;
* the channel mix (the purchase's ``channel`` property, else the event's channel);
* RFM: each buyer scored 1-5 on recency, frequency and monetary value by quintile, and
  named by the usual segments (champions, loyal, at risk, lost …);
* customer lifetime value, historic (spend so far) and a transparent yearly projection;
* repeat-purchase curves per cohort of first-purchase month: the share of the cohort who
  had bought again by each month after the first.

Everything is computed from one read of the purchases (numpy over Arrow columns), on
every event store the analytics SQL runs on.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from cxloop.analytics.sql import query_for
from cxloop.events.base import EventStore

EVENT = "Order Completed"
AMOUNT = "revenue"
MONTHS = 12  # repeat curves: months after the first purchase
MAX_COHORTS = 24
FREQUENCY_CAP = 10  # the last frequency bucket is "10 or more"
DAY_S = 86_400.0
# The fields of each RFM segment, in order (also a CSV's header when there are none).
RFM_SEGMENT_FIELDS = ("segment", "buyers", "share", "recency_days", "purchases", "spend",
                      "revenue_share")  # fmt: skip
# RFM segments by recency score and the mean of the frequency and monetary scores; the
# first rule that matches names the customer (a common reading of the 5x5 grid).
RFM_SEGMENTS: tuple[tuple[str, tuple[int, int], tuple[float, float]], ...] = (
    ("champions", (5, 5), (4.5, 5)),
    ("loyal", (3, 5), (3.5, 5)),
    ("potential loyalists", (4, 5), (2, 3.5)),
    ("new", (5, 5), (1, 2)),
    ("promising", (4, 4), (1, 2)),
    ("can't lose them", (1, 2), (4.5, 5)),
    ("at risk", (1, 2), (3, 4.5)),
    ("need attention", (3, 3), (2, 3.5)),
    ("about to sleep", (3, 3), (1, 2)),
    ("hibernating", (2, 2), (1, 3)),
    ("lost", (1, 1), (1, 3)),
)
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def _purchases(
    events: EventStore,
    event: str,
    amount: str,
    start: datetime | None,
    end: datetime | None,
) -> tuple[Ints, Floats, Floats, list[str | None]]:
    """(customer, epoch seconds, amount, channel) of every purchase, by customer and time."""
    q, sql = query_for(events)
    clauses = [
        "type = 'track'",
        f"event = {q.param(event)}",
        "customer_id IS NOT NULL",
    ]
    if start is not None:
        clauses.append(f'"timestamp" >= {q.param(start)}')
    if end is not None:
        clauses.append(f'"timestamp" < {q.param(end)}')
    text = (
        f"SELECT customer_id, {q.epoch_us()} AS at_us, {q.number(amount)} AS amount, "
        f"coalesce({q.text('channel')}, channel) AS channel FROM events "
        f"WHERE {' AND '.join(clauses)} ORDER BY customer_id, at_us"
    )
    table = sql(*q.build(text))
    customers = np.asarray(table.column("customer_id").to_numpy(zero_copy_only=False), np.int64)
    at_us = table.column("at_us").to_numpy(zero_copy_only=False)
    seconds = np.asarray(at_us, dtype=np.float64) / 1e6
    amounts = np.asarray(
        table.column("amount").to_numpy(zero_copy_only=False), dtype=np.float64
    )  # NULL (no amount) becomes NaN
    return customers, seconds, amounts, table.column("channel").to_pylist()


def _quintile_scores(values: Floats, high_is_good: bool = True) -> Ints:
    """1-5 by rank (ties share the lower rank's score), 5 the best fifth."""
    order = values if high_is_good else -values
    ranks = np.searchsorted(np.sort(order), order, side="left")  # customers strictly below
    return np.minimum(5, 1 + (5 * ranks) // max(len(values), 1)).astype(np.int64)


def _segment(recency: int, fm: float) -> str:
    for name, (r_low, r_high), (fm_low, fm_high) in RFM_SEGMENTS:
        if r_low <= recency <= r_high and fm_low <= fm <= fm_high:
            return name
    return "others"


def _histogram(values: Floats, bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins up to the 99th percentile, and one bin for the rest above it."""
    if values.size == 0:
        return []
    top = float(np.percentile(values, 99))
    low = float(values.min())
    if top <= low:
        return [{"from": low, "to": low, "customers": int(values.size)}]
    counts, edges = np.histogram(values[values <= top], bins=bins, range=(low, top))
    out = [
        {"from": round(float(a), 2), "to": round(float(b), 2), "count": int(c)}
        for a, b, c in zip(edges[:-1], edges[1:], counts, strict=True)
    ]
    above = int((values > top).sum())
    if above:
        out.append({"from": round(top, 2), "to": round(float(values.max()), 2), "count": above})
    return out


def _month_index(seconds: Floats) -> Ints:
    """Months since 1970 of each moment (UTC), as year * 12 + month."""
    months = np.asarray(seconds * 1e6, dtype="datetime64[us]").astype("datetime64[M]")
    return np.asarray(months.astype(np.int64), dtype=np.int64)


def purchase_behaviour(
    events: EventStore,
    *,
    event: str = EVENT,
    amount: str = AMOUNT,
    start: datetime | None = None,
    end: datetime | None = None,
    among: set[int] | None = None,
    months: int = MONTHS,
) -> dict[str, Any]:
    """The purchases of the window (of the ``among`` customers, if given) as summary,
    distributions, channel mix, RFM segments, lifetime value and repeat curves."""
    if not event.strip():
        raise ValueError("event: name the purchase event")
    if not 1 <= months <= 60:
        raise ValueError("months: must be between 1 and 60")
    customers, seconds, amounts, channels = _purchases(events, event, amount, start, end)
    if among is not None:
        keep = np.isin(customers, np.fromiter(among, np.int64, len(among)))
        customers, seconds, amounts = customers[keep], seconds[keep], amounts[keep]
        channels = [c for c, k in zip(channels, keep.tolist(), strict=True) if k]
    answer: dict[str, Any] = {
        "event": event,
        "amount": amount,
        "from": start,
        "to": end,
        "purchases": int(customers.size),
        "without_amount": int(np.isnan(amounts).sum()),
    }
    if customers.size == 0:
        answer["note"] = f"no {event!r} events in this window"
        return answer
    spend_each = np.nan_to_num(amounts, nan=0.0)
    ids, first_index, counts = np.unique(customers, return_index=True, return_counts=True)
    last_index = first_index + counts - 1
    spend = np.add.reduceat(spend_each, first_index)
    first_s, last_s = seconds[first_index], seconds[last_index]
    as_of = (end.timestamp() if end is not None else float(seconds.max())) + 0.0
    recency_days = (as_of - last_s) / DAY_S
    # days between a customer's consecutive purchases
    same = customers[1:] == customers[:-1]
    gaps = (seconds[1:] - seconds[:-1])[same] / DAY_S
    later_day = np.zeros(ids.size, dtype=bool)  # bought again on a later day than the first
    first_day = np.floor(first_s / DAY_S)
    days = np.floor(seconds / DAY_S)
    owner = np.repeat(np.arange(ids.size), counts)
    np.logical_or.at(later_day, owner, days > first_day[owner])

    revenue = float(spend_each.sum())
    priced = amounts[~np.isnan(amounts)]
    answer.update(
        {
            "buyers": int(ids.size),
            "revenue": round(revenue, 2),
            "average_order_value": round(float(priced.mean()), 2) if priced.size else None,
            "purchases_per_buyer": round(float(counts.mean()), 3),
            "repeat_rate": float(later_day.mean()),
            "median_days_between": round(float(np.median(gaps)), 1) if gaps.size else None,
            "as_of": datetime.fromtimestamp(as_of, UTC),
            "frequency": _frequency(counts),
            "spend": _histogram(spend),
            "order_values": _histogram(priced),
            "channels": _channels(channels, spend_each),
            "rfm": _rfm(recency_days, counts, spend, revenue),
            "lifetime_value": _lifetime_value(first_s, last_s, counts, spend, as_of, priced),
            "repeat_curves": _repeat_curves(customers, seconds, first_index, counts, months),
        }
    )
    return answer


def _frequency(counts: Ints) -> list[dict[str, Any]]:
    """Buyers by their number of purchases: 1, 2, … and the last bucket "10+"."""
    out = []
    for k in range(1, FREQUENCY_CAP + 1):
        hits = counts >= k if k == FREQUENCY_CAP else counts == k
        label = f"{k}+" if k == FREQUENCY_CAP else str(k)
        out.append({"purchases": label, "buyers": int(hits.sum())})
    return out


def _channels(channels: list[str | None], spend_each: Floats) -> list[dict[str, Any]]:
    purchases: Counter[str] = Counter()
    revenue: Counter[str] = Counter()
    for channel, value in zip(channels, spend_each.tolist(), strict=True):
        name = channel or "unknown"
        purchases[name] += 1
        revenue[name] += value
    total = sum(purchases.values())
    return [
        {"channel": name, "purchases": n, "share": n / total, "revenue": round(revenue[name], 2)}
        for name, n in purchases.most_common()
    ]


def _rfm(recency_days: Floats, counts: Ints, spend: Floats, revenue: float) -> dict[str, Any]:
    r = _quintile_scores(recency_days, high_is_good=False)
    f = _quintile_scores(counts.astype(np.float64))
    m = _quintile_scores(spend)
    names = [_segment(int(a), (int(b) + int(c)) / 2) for a, b, c in zip(r, f, m, strict=True)]
    segments = []
    for name in [s[0] for s in RFM_SEGMENTS] + ["others"]:
        members = np.array([n == name for n in names])
        if not members.any():
            continue
        segments.append(
            {
                "segment": name,
                "buyers": int(members.sum()),
                "share": float(members.mean()),
                "recency_days": round(float(np.median(recency_days[members])), 1),
                "purchases": round(float(counts[members].mean()), 2),
                "spend": round(float(spend[members].mean()), 2),
                "revenue_share": float(spend[members].sum() / revenue) if revenue else None,
            }
        )
    return {
        "scores": "1-5 by quintile: recency (fewer days since the last purchase is better), "
        "frequency (purchases) and monetary (spend); segments by recency and the mean of "
        "frequency and monetary",
        "segments": segments,
    }


def _lifetime_value(
    first_s: Floats, last_s: Floats, counts: Ints, spend: Floats, as_of: float, priced: Floats
) -> dict[str, Any]:
    """Historic value, and a projection: average order value * purchases a year per
    buyer * expected years as a buyer (1 / the yearly churn: of buyers who started more
    than a year ago, the share who made no purchase in the last year)."""
    year = 365.0 * DAY_S
    out: dict[str, Any] = {
        "historic_mean": round(float(spend.mean()), 2),
        "historic_median": round(float(np.median(spend)), 2),
        "projected": None,
        "formula": "average order value * purchases per buyer per year * (1 / yearly churn rate)",
        "note": None,
    }
    veterans = first_s <= as_of - year
    if veterans.sum() < 30 or priced.size == 0:
        out["note"] = "fewer than 30 buyers with a year of history: no projection"
        return out
    churned = float((last_s[veterans] <= as_of - year).mean())
    span_years = np.maximum((as_of - first_s) / year, 1 / 12)
    per_year = float(np.mean(counts / span_years))
    aov = float(priced.mean())
    out.update(
        {
            "average_order_value": round(aov, 2),
            "purchases_per_year": round(per_year, 3),
            "yearly_churn": churned,
            "expected_years": round(1 / churned, 2) if churned > 0 else None,
            "projected": round(aov * per_year / churned, 2) if churned > 0 else None,
        }
    )
    if churned == 0:
        out["note"] = "no buyer with a year of history has stopped: no projection"
    return out


def _repeat_curves(
    customers: Ints, seconds: Floats, first_index: Ints, counts: Ints, months: int
) -> list[dict[str, Any]]:
    """Per cohort of first-purchase month, the share who had bought again on a later day
    by each month after the first (0 = the first month itself)."""
    month = _month_index(seconds)
    days = np.floor(seconds / DAY_S)
    first_month = month[first_index]
    repeat_month = np.full(first_index.size, np.iinfo(np.int64).max)
    for i, (start, n) in enumerate(zip(first_index.tolist(), counts.tolist(), strict=True)):
        later = np.nonzero(days[start : start + n] > days[start])[0]
        if later.size:
            repeat_month[i] = month[start + later[0]] - first_month[i]
    observed_until = int(month.max())
    curves = []
    for cohort in np.unique(first_month)[-MAX_COHORTS:]:
        members = first_month == cohort
        seen = min(months, observed_until - int(cohort))
        label = str(np.datetime64(int(cohort), "M"))
        curves.append(
            {
                "cohort": label,
                "buyers": int(members.sum()),
                "repeat_by_month": [
                    float((repeat_month[members] <= k).mean()) for k in range(seen + 1)
                ],
            }
        )
    return curves
