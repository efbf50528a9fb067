"""Key drivers: the relative weights checked against independent computations, and the
whole analysis on journeys with a planted effect, on every backend; the CLI."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from cxloop.insights.drivers import DRIVER_FIELDS
from cxloop.insights.importance import correlations, importance, relative_weights
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get, install, patch
from tests.test_distribution import created, quiet_api, send, track

__all__ = ["quiet_api"]  # the fixture, shared
NOW = datetime.now(UTC).replace(microsecond=0)


def test_relative_weights_add_up_to_the_r_squared_of_least_squares() -> None:
    rng = np.random.default_rng(7)
    n = 2_000
    a = rng.normal(size=n)
    b = 0.7 * a + 0.7 * rng.normal(size=n)  # correlated with a
    c = rng.normal(size=n)
    y = 2.0 * a + 1.0 * b + 0.2 * c + rng.normal(size=n)
    x = np.column_stack([a, b, c])
    fit = relative_weights(correlations(np.column_stack([y, x])))
    assert fit.r_squared == pytest.approx(LinearRegression().fit(x, y).score(x, y), abs=1e-9)
    assert fit.shares.sum() == pytest.approx(1.0)
    standardised = LinearRegression().fit((x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std())
    assert fit.coefficients == pytest.approx(standardised.coef_, abs=1e-9)
    assert fit.shares[0] > fit.shares[1] > fit.shares[2]


def test_uncorrelated_drivers_weigh_their_squared_correlation() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    x = rng.normal(size=(n, 2))
    x -= x.mean(axis=0)
    x[:, 1] -= x[:, 0] * (x[:, 0] @ x[:, 1]) / (x[:, 0] @ x[:, 0])  # exactly uncorrelated
    y = 1.5 * x[:, 0] + 0.5 * x[:, 1] + rng.normal(size=n)
    fit = relative_weights(correlations(np.column_stack([y, x])))
    r = [np.corrcoef(x[:, j], y)[0, 1] for j in range(2)]
    assert fit.shares * fit.r_squared == pytest.approx(np.square(r), abs=1e-6)


def test_twin_and_sparse_drivers_stay_finite_and_intervals_hold_the_estimate() -> None:
    rng = np.random.default_rng(11)
    n = 600
    a = rng.normal(size=n)
    sparse = np.where(rng.random(n) < 0.2, a + rng.normal(size=n), np.nan)
    y = a + rng.normal(size=n)
    x = np.column_stack([a, a.copy(), sparse])  # a twin of a, and one seen for a fifth
    found = importance(y, x, resamples=100)
    assert np.all(np.isfinite(found.fit.coefficients))
    assert found.fit.shares[0] == pytest.approx(found.fit.shares[1])  # twins split evenly
    assert 0 <= found.fit.r_squared <= 1
    low, high = found.r_squared_ci
    assert low <= found.fit.r_squared <= high


CUSTOMERS = 150


def _journeys(api: ApiClient) -> dict[str, float]:
    """150 customers answer the relationship NPS; a bad case costs about four points, a
    tidy installation adds some, and a newsletter click means nothing."""
    install(api)
    draw = random.Random(5)
    messages: list[dict[str, Any]] = []
    bad: set[int] = set()
    for i in range(CUSTOMERS):
        messages.append(track(f"s{i}", f"c{i}", "Signed Up", NOW - timedelta(days=90)))
        if draw.random() < 0.5:
            messages.append(track(f"n{i}", f"c{i}", "Newsletter Clicked", NOW - timedelta(days=80)))
        if i % 3 == 0:
            bad.add(i)
    send(api, *messages)
    relationship = created(api, "/api/v1/surveys", {"type": "nps", "name": "Relationship"})
    install_csat = created(
        api,
        "/api/v1/surveys",
        {"type": "csat", "name": "Installation", "touchpoint": "Installation Completed"},
    )
    rare = created(api, "/api/v1/surveys", {"type": "ces", "name": "Rare", "touchpoint": "Rare"})
    for i in range(CUSTOMERS):
        when = (NOW - timedelta(days=30)).isoformat()
        case = created(
            api, "/api/v1/cases", {"customer": f"c{i}", "subject": "Help", "opened_at": when}
        )
        patch(
            api,
            f"/api/v1/cases/{case['id']}",
            {"outcome": "negative" if i in bad else "positive", "note": "done"},
        )
        tidy = draw.randint(1, 5)
        created(
            api,
            f"/api/v1/surveys/{install_csat['id']}/responses",
            {"customer": f"c{i}", "score": tidy, "submitted_at": when},
        )
        score = 7.5 - (4 if i in bad else 0) + 0.5 * (tidy - 3) + draw.gauss(0, 1)
        created(
            api,
            f"/api/v1/surveys/{relationship['id']}/responses",
            {"customer": f"c{i}", "score": max(0, min(10, round(score))),
             "submitted_at": (NOW - timedelta(days=1)).isoformat()},
        )  # fmt: skip
        if i < 5:
            created(
                api,
                f"/api/v1/surveys/{rare['id']}/responses",
                {"customer": f"c{i}", "score": 4, "submitted_at": when},
            )
    return {"relationship": relationship["id"]}


def test_the_planted_effects_come_out_on_top(quiet_api: ApiClient) -> None:
    api = quiet_api
    surveys = _journeys(api)
    found = get(api, "/api/v1/insights/drivers", resamples=100)
    assert found["outcome"] == "nps" and found["customers"] == CUSTOMERS
    assert found["surveys"] == [surveys["relationship"]]
    by_key = {d["driver"]: d for d in found["drivers"]}
    worst = found["drivers"][0]
    assert all(tuple(d) == DRIVER_FIELDS for d in found["drivers"])  # the CLI's CSV header
    assert worst["driver"] == "case:negative" and worst["rank"] == 1
    assert worst["direction"] == "lowers" and worst["significant"]
    lo, hi = worst["importance_ci"]
    assert lo <= worst["importance"] <= hi
    tidy = by_key["touchpoint:Installation Completed"]
    assert tidy["direction"] == "raises" and tidy["significant"]
    assert tidy["measured"] == CUSTOMERS
    noise = by_key["event:Newsletter Clicked"]
    assert not noise["significant"] and noise["importance"] < tidy["importance"]
    assert sum(d["importance"] for d in found["drivers"]) == pytest.approx(100, abs=0.1)
    # everyone had a case: a driver that does not vary is left out, and says why
    left = {d["driver"]: d["why"] for d in found["left_out"]}
    assert left["case:any"] == "the same for every customer"
    assert left["touchpoint:Rare"] == "5 customers, fewer than 30"
    # performance: a bad case is on its good side for the two thirds without one
    assert worst["performance"] == pytest.approx(100 * (1 - 50 / CUSTOMERS), abs=0.1)
    assert 0 < found["r_squared"] <= 1 and found["r_squared_adjusted"] < found["r_squared"]
    assert {d["quadrant"] for d in found["drivers"]} <= {
        "concentrate here", "keep up the good work", "low priority", "possible overkill",
    }  # fmt: skip
    # The same question twice gives the same answer (the resampling is seeded).
    assert get(api, "/api/v1/insights/drivers", resamples=100) == found

    # Too few customers with an outcome: the answer says so and shows no numbers.
    few = get(api, "/api/v1/insights/drivers", min_sample=1000)
    assert few["drivers"] == [] and few["r_squared"] is None
    assert f"{CUSTOMERS}, fewer than 1000" in few["note"]

    # Churn reads a model's exits (none here: everyone is still in it, so nothing varies).
    churn = get(api, "/api/v1/insights/drivers", outcome="churn", model="client-experience")
    assert churn["customers"] == CUSTOMERS and churn["outcome_mean"] == 0


def test_drivers_refuse_bad_input_by_field(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    path = "/api/v1/insights/drivers"
    for params, status, field in [
        ({"outcome": "joy"}, 422, "outcome"),
        ({"outcome": "churn"}, 422, "model"),
        ({"outcome": "churn", "model": "nope"}, 404, "nope"),
        ({"survey": 999}, 404, "survey"),
        ({"min_sample": 2}, 422, "min_sample"),
        ({"resamples": 5}, 422, "resamples"),
        ({"from": "2026-05-02", "to": "2026-05-01"}, 422, "to"),
    ]:
        answer = api.http.get(path, params=params, headers=api.auth)
        assert answer.status_code == status, (params, answer.text)
        assert field in answer.text, (params, answer.text)
    employees = created(
        api, "/api/v1/surveys", {"type": "nps", "name": "Staff", "audience": "employees"}
    )
    refused = api.http.get(path, params={"survey": employees["id"]}, headers=api.auth)
    assert refused.status_code == 422 and "survey" in refused.text


def test_the_cli_lists_drivers_and_says_when_there_are_too_few(
    embedded_settings: Settings,
) -> None:
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    found = cx_json(embedded_settings, "insights", "drivers")
    assert found["customers"] == 0 and found["drivers"] == []
    assert "too few customers" in found["note"]
    table = cx(embedded_settings, "insights", "drivers", "--outcome", "churn", "--model",
               "client-experience")  # fmt: skip
    assert "too few customers" in table.stderr
    for args, message in [
        (["--outcome", "churn"], "model"),
        (["--outcome", "joy"], "--outcome"),
        (["--resamples", "5"], "--resamples"),
        (["--from", "yesterday"], "--from"),
    ]:
        failed = cx(embedded_settings, "insights", "drivers", *args, check=False)
        assert failed.returncode != 0, args
        assert message in failed.stderr + failed.stdout, (args, failed.stderr)
        assert "Traceback" not in failed.stderr
