"""Purchase behaviour: on the real CDNOW purchases every figure, the repeat-purchase
curves of each cohort included, matches a computation straight from the file; channels,
segments and bad input through the API on every backend."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cxloop.insights.purchases import RFM_SEGMENT_FIELDS
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import CDNOW_MAP, cx, cx_json
from tests.test_closing_loop import get
from tests.test_distribution import quiet_api, send, track

__all__ = ["quiet_api"]  # the fixture, shared


def _cdnow(path: Path) -> dict[str, list[tuple[date, float]]]:
    bought: dict[str, list[tuple[date, float]]] = defaultdict(list)
    for line in path.read_text().splitlines()[1:]:
        customer, day, _cds, value = line.split()
        bought[customer].append((datetime.strptime(day, "%Y%m%d").date(), float(value)))
    return {c: sorted(v) for c, v in bought.items()}


def test_cdnow_purchases_match_the_file(embedded_settings: Settings, shared_data: Path) -> None:
    path = shared_data / "cdnow-purchases.txt"
    cx(embedded_settings, "import", "events", str(path), *CDNOW_MAP)
    found = cx_json(embedded_settings, "insights", "purchases")
    bought = _cdnow(path)
    rows = [p for purchases in bought.values() for p in purchases]
    assert (found["buyers"], found["purchases"]) == (len(bought), len(rows)) == (23_570, 69_659)
    assert found["revenue"] == pytest.approx(sum(v for _, v in rows), abs=0.01)
    assert found["average_order_value"] == pytest.approx(
        statistics.mean(v for _, v in rows), abs=0.005
    )
    again = {c for c, p in bought.items() if any(d > p[0][0] for d, _ in p)}
    assert found["repeat_rate"] == pytest.approx(len(again) / len(bought))
    gaps = [(b[0] - a[0]).days for p in bought.values() for a, b in itertools.pairwise(p)]
    assert found["median_days_between"] == pytest.approx(statistics.median(gaps), abs=0.05)
    per_buyer = Counter(min(len(p), 10) for p in bought.values())
    assert [f["buyers"] for f in found["frequency"]] == [per_buyer[k] for k in range(1, 11)]
    assert found["frequency"][-1]["purchases"] == "10+"

    # Repeat curves: by cohort of first-purchase month, the share who had bought again on
    # a later day by each month after the first; the data ends in June 1998.
    def month(d: date) -> int:
        return d.year * 12 + d.month

    curves = {c["cohort"]: c for c in found["repeat_curves"]}
    assert set(curves) == {"1997-01", "1997-02", "1997-03"}  # everyone began in Q1 1997
    for label, curve in curves.items():
        year, mon = map(int, label.split("-"))
        members = {c: p for c, p in bought.items() if (p[0][0].year, p[0][0].month) == (year, mon)}
        assert curve["buyers"] == len(members)
        assert len(curve["repeat_by_month"]) == 13
        for k, share in enumerate(curve["repeat_by_month"]):
            hits = 0
            for p in members.values():
                later = [d for d, _ in p if d > p[0][0]]
                hits += bool(later) and month(later[0]) - month(p[0][0]) <= k
            assert share == pytest.approx(hits / len(members)), (label, k)
        assert curve["repeat_by_month"] == sorted(curve["repeat_by_month"])  # cumulative

    # RFM segments cover every buyer; lifetime value is its published formula.
    segments = found["rfm"]["segments"]
    assert segments and all(tuple(s) == RFM_SEGMENT_FIELDS for s in segments)  # CSV header
    assert sum(s["buyers"] for s in segments) == len(bought)
    assert sum(s["revenue_share"] for s in segments) == pytest.approx(1.0)
    champions = next(s for s in segments if s["segment"] == "champions")
    lost = next(s for s in segments if s["segment"] == "lost")
    assert champions["purchases"] > lost["purchases"] and champions["spend"] > lost["spend"]
    value = found["lifetime_value"]
    totals = [sum(v for _, v in p) for p in bought.values()]
    assert value["historic_mean"] == pytest.approx(statistics.mean(totals), abs=0.005)
    end = max(d for d, _ in rows)
    year_ago = end - timedelta(days=365)
    veterans = [p for p in bought.values() if p[0][0] <= year_ago]
    stopped = sum(1 for p in veterans if p[-1][0] <= year_ago)
    assert value["yearly_churn"] == pytest.approx(stopped / len(veterans))
    assert value["projected"] == pytest.approx(
        value["average_order_value"] * value["purchases_per_year"] / value["yearly_churn"],
        rel=0.01,
    )
    assert found["channels"] == [
        {"channel": "unknown", "purchases": len(rows), "share": 1.0, "revenue": found["revenue"]}
    ]


def test_channels_segments_and_bad_input(quiet_api: ApiClient) -> None:
    api = quiet_api
    now = datetime.now(UTC).replace(microsecond=0)
    messages = []
    for i in range(40):
        messages.append(
            {"type": "identify", "messageId": f"id{i}", "userId": f"u{i}",
             "traits": {"country": "Spain" if i < 10 else "France"}}
        )  # fmt: skip
        for n in range(1 + i % 3):
            messages.append(
                track(f"o{i}-{n}", f"u{i}", "Order Completed", now - timedelta(days=30 - n * 7),
                      revenue=10.0 * (n + 1), channel="store" if i % 2 else "web")
            )  # fmt: skip
    messages.append(track("free", "u0", "Order Completed", now - timedelta(days=1)))
    send(api, *messages)
    found = get(api, "/api/v1/insights/purchases")
    assert found["buyers"] == 40 and found["without_amount"] == 1
    orders = [1 + i % 3 for i in range(40)]
    assert found["purchases"] == sum(orders) + 1
    channels = {c["channel"]: c for c in found["channels"]}
    assert channels["store"]["purchases"] == sum(o for i, o in enumerate(orders) if i % 2)
    assert channels["web"]["purchases"] == sum(o for i, o in enumerate(orders) if not i % 2)
    assert channels["unknown"]["purchases"] == 1  # no channel on the event or the message
    spain = get(api, "/api/v1/insights/purchases", where="country=Spain")
    assert spain["buyers"] == 10
    other = get(api, "/api/v1/insights/purchases", event="Refund Issued")
    assert other["purchases"] == 0 and "no 'Refund Issued' events" in other["note"]
    for params, field in [
        ({"months": 0}, "months"),
        ({"event": ""}, "event"),
        ({"where": "country"}, "where"),
        ({"from": "2026-02-30"}, "from"),
    ]:
        answer = api.http.get("/api/v1/insights/purchases", params=params, headers=api.auth)
        assert answer.status_code == 422, (params, answer.text)
        assert field in answer.text, (params, answer.text)
