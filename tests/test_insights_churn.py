"""Churn risk: trained on what was known before the outcome, evaluated on held-out
customers, explained per customer, and turned into follow-ups, on every backend."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from cxloop.insights.churn import AT_RISK_FIELDS, train
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get, install
from tests.test_distribution import quiet_api, send, track

__all__ = ["quiet_api"]  # the fixture, shared
NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMERS = 300


def _days(n: float) -> datetime:
    return NOW - timedelta(days=n)


def _journeys(api: ApiClient) -> set[str]:
    """300 customers since 200 days; before the cutoff (90 days ago) those about to leave
    were mostly quiet, those who stay mostly busy; a fifth go against the pattern."""
    install(api)
    draw = random.Random(9)
    leavers: set[str] = set()
    messages: list[dict[str, Any]] = []
    for i in range(CUSTOMERS):
        user = f"c{i}"
        leaves = i % 2 == 0
        busy = (not leaves) if draw.random() < 0.8 else leaves
        messages.append(track(f"a{i}", user, "Ad Clicked", _days(200)))
        messages.append(track(f"s{i}", user, "Signed Up", _days(180)))
        for k, day in enumerate([150, 120, 100] if busy else [100]):
            messages.append(track(f"u{i}-{k}", user, "Product Used", _days(day + draw.random())))
        if leaves:
            leavers.add(user)
            messages.append(
                track(f"x{i}", user, "Subscription Cancelled", _days(40), reason="price")
            )
        else:
            messages.append(track(f"r{i}", user, "Product Used", _days(5)))
    send(api, *messages)
    return leavers


def test_risk_is_learned_before_the_outcome_and_evaluated_on_held_out_customers(
    quiet_api: ApiClient,
) -> None:
    api = quiet_api
    leavers = _journeys(api)
    today = NOW.date().isoformat()  # a fixed end: the same question twice is the same
    found = get(api, "/api/v1/insights/churn/client-experience", limit=1000, to=today)
    assert found["customers_at_cutoff"] == CUSTOMERS
    assert found["churned_after_cutoff"] == len(leavers) == CUSTOMERS // 2
    ev = found["evaluation"]
    assert (ev["train_customers"], ev["test_customers"]) == (225, 75)
    assert ev["churn_rate"] == pytest.approx(0.5)
    assert 0.7 < ev["auc"] < 0.95  # the planted pattern, and a fifth against it
    assert ev["brier"] < ev["brier_if_constant"]
    assert 3 <= len(ev["calibration"]) <= 10
    for cell in ev["calibration"]:
        assert 0 <= cell["predicted"] <= 1 and 0 <= cell["observed"] <= 1
    recent = next(f for f in found["features"] if f["feature"] == "event:Product Used")
    assert recent["coefficient"] < 0  # using the product before the cutoff: fewer leave
    # Today the leavers are gone: only those still in the lifecycle are scored.
    assert found["customers_now"] == CUSTOMERS - len(leavers)
    listed = found["at_risk"]
    assert {r["customer_id"] for r in listed} and len(listed) == found["customers_now"]
    assert all(tuple(r) == AT_RISK_FIELDS for r in listed)  # the CLI's CSV header
    risks = [r["risk"] for r in listed]
    assert risks == sorted(risks, reverse=True)
    for row in listed[:10]:
        assert row["owner"] and row["stage"]
        assert all(r["contribution"] > 0 for r in row["reasons"]) and len(row["reasons"]) <= 3
    # A fixed split and solver: the same question, the same answer.
    again = get(api, "/api/v1/insights/churn/client-experience", limit=1000, to=today)
    assert again["evaluation"]["auc"] == ev["auc"] and again["at_risk"] == listed

    # At-risk customers become follow-ups of the stage's owner, once per stay.
    headers = api.auth
    made = api.http.post(
        "/api/v1/insights/churn/client-experience/followups",
        json={"threshold": 0.01, "limit": 5},
        headers=headers,
    )
    assert made.status_code == 200, made.text
    assert made.json()["created"] == 5 and made.json()["looked_at"] == 5
    opened = get(api, "/api/v1/followups", reason="churn_risk")
    assert len(opened) == 5
    top = {r["customer_id"]: r for r in listed[:5]}
    for item in opened:
        assert item["customer_id"] in top
        assert item["department"] == top[item["customer_id"]]["owner"]
        assert item["summary"].startswith("Churn risk ")
    twice = api.http.post(
        "/api/v1/insights/churn/client-experience/followups",
        json={"threshold": 0.01, "limit": 5},
        headers=headers,
    ).json()
    assert (twice["created"], twice["already_open"]) == (0, 5)


def test_too_little_history_and_bad_input(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    send(api, track("a", "solo", "Ad Clicked", _days(200)))
    found = get(api, "/api/v1/insights/churn/client-experience")
    assert found["evaluation"] is None and found["at_risk"] == []
    assert "too little history" in found["note"]
    refused = api.http.post(
        "/api/v1/insights/churn/client-experience/followups", json={}, headers=api.auth
    )
    assert refused.status_code == 422 and "too little history" in refused.text
    path = "/api/v1/insights/churn/client-experience"
    for url, params, status, field in [
        ("/api/v1/insights/churn/nope", {}, 404, "nope"),
        (path, {"horizon_days": 3}, 422, "horizon_days"),
        (path, {"limit": 0}, 422, "limit"),
        (path, {"to": "2026-13-01"}, 422, "to"),
        (path, {"where": "oops"}, 422, "where"),
    ]:
        answer = api.http.get(url, params=params, headers=api.auth)
        assert answer.status_code == status, (params, answer.text)
        assert field in answer.text, (params, answer.text)
    for body, field in [({"threshold": 1.5}, "threshold"), ({"limit": 0}, "limit")]:
        answer = api.http.post(f"{path}/followups", json=body, headers=api.auth)
        assert answer.status_code == 422 and field in answer.text, (body, answer.text)


def test_training_holds_out_a_stratified_quarter() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4000, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=4000) > 0.8).astype(int)
    trained = train(x, y)
    ev = trained.evaluation
    assert (ev["train_customers"], ev["test_customers"]) == (3000, 1000)
    assert ev["auc"] > 0.9 and trained.model.coef_[0][0] > 0
    # calibrated: in each tenth of risk the predicted and observed rates are close
    for cell in ev["calibration"]:
        assert cell["observed"] == pytest.approx(cell["predicted"], abs=0.12)


def test_the_cli_says_when_there_is_too_little_history(embedded_settings: Settings) -> None:
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    found = cx_json(embedded_settings, "insights", "churn", "client-experience")
    assert "too little history" in found["note"]
    table = cx(embedded_settings, "insights", "churn", "client-experience")
    assert "too little history" in table.stderr
    failed = cx(embedded_settings, "insights", "churn", "client-experience", "--follow-up", "0.5",
                check=False)  # fmt: skip
    assert failed.returncode != 0 and "too little history" in failed.stderr
    bad = cx(embedded_settings, "insights", "churn", "nope", check=False)
    assert bad.returncode != 0 and "no lifecycle model 'nope'" in bad.stderr
