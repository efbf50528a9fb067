"""Retargeting: on the real Telco file each value's counts, rates, lift and tests match a
computation straight from the CSV; a goal stage, bad input and too-small groups through
the API on every backend."""

from __future__ import annotations

import csv
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cxloop.insights.retarget import VALUE_FIELDS
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get, install
from tests.test_distribution import quiet_api, send, track
from tests.test_lifecycle_cli_api import TELCO_MODEL

__all__ = ["quiet_api"]  # the fixture, shared
NOW = datetime.now(UTC).replace(microsecond=0)


def _chi_square(table: list[list[float]]) -> float:
    """Pearson's statistic of a contingency table, by the textbook formula."""
    rows = [sum(r) for r in table]
    columns = [sum(c) for c in zip(*table, strict=True)]
    total = sum(rows)
    return sum(
        (table[i][j] - rows[i] * columns[j] / total) ** 2 / (rows[i] * columns[j] / total)
        for i in range(len(rows))
        for j in range(len(columns))
    )


def _benjamini_hochberg(p_values: list[float]) -> list[float]:
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [0.0] * len(p_values)
    running = 1.0
    for rank in range(len(order), 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * len(p_values) / rank)
        adjusted[i] = running
    return adjusted


def test_telco_contract_type_against_churn_matches_the_csv(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    path = shared_data / "telco-customer-churn.csv"
    model = tmp_path / "telco.yaml"
    model.write_text(TELCO_MODEL)
    cx(embedded_settings, "lifecycle", "apply", str(model))
    cx(embedded_settings, "import", "customers", str(path), "--map", "customerID=user_id")
    found = cx_json(embedded_settings, "insights", "retarget", "telco", "--goal", "exit")

    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    churned = [r for r in rows if r["Churn"] == "Yes"]
    assert (found["targeted"], found["converted"]) == (len(rows), len(churned)) == (7043, 1869)
    overall = len(churned) / len(rows)
    assert found["conversion_rate"] == pytest.approx(overall)

    attributes = {a["attribute"]: a for a in found["attributes"]}
    assert "trait:Churn" not in attributes  # the goal's own trait would restate it
    assert "trait:tenure" not in attributes and "trait:TotalCharges" not in attributes
    contract = attributes["trait:Contract"]
    assert found["attributes"][0]["attribute"] == "trait:Contract"  # the strongest
    customers = Counter(r["Contract"] for r in rows)
    left = Counter(r["Contract"] for r in churned)
    table = [[left[v], customers[v] - left[v]] for v in customers]
    statistic = _chi_square(table)
    assert contract["chi_square"] == pytest.approx(statistic, rel=1e-9)
    assert contract["cramers_v"] == pytest.approx(math.sqrt(statistic / len(rows)), rel=1e-9)
    values = {v["value"]: v for v in contract["values"]}
    assert set(values) == {"Month-to-month", "One year", "Two year"}
    assert all(tuple(v) == VALUE_FIELDS for v in contract["values"])  # the CLI's CSV header
    for value, count in customers.items():
        row = values[value]
        assert (row["targeted"], row["converted"]) == (count, left[value])
        assert row["share_targeted"] == pytest.approx(count / len(rows))
        assert row["share_converted"] == pytest.approx(left[value] / len(churned))
        assert row["conversion_rate"] == pytest.approx(left[value] / count)
        assert row["lift"] == pytest.approx(left[value] / count / overall)
        rest = [
            [left[value], count - left[value]],
            [len(churned) - left[value], len(rows) - count - (len(churned) - left[value])],
        ]
        # one degree of freedom: p = erfc(sqrt(statistic / 2))
        assert row["p_value"] == pytest.approx(math.erfc(math.sqrt(_chi_square(rest) / 2)))
        assert row["significant"]
    assert values["Month-to-month"]["conversion_rate"] == pytest.approx(1655 / 3875)
    assert values["Two year"]["lift"] < 0.2

    # The adjustment is Benjamini-Hochberg over every tested value of every attribute.
    tested = [v for a in found["attributes"] for v in a["values"] if v["p_value"] is not None]
    expected = _benjamini_hochberg([v["p_value"] for v in tested])
    assert [v["p_adjusted"] for v in tested] == pytest.approx(expected, rel=1e-9)
    gender = attributes["gender"]
    assert gender["p_value"] > 0.05 and not any(v["significant"] for v in gender["values"])
    # Suggestions: the significant values most and least likely to churn.
    assert ("trait:Contract", "Month-to-month") in {
        (v["attribute"], v["value"]) for v in found["best"]
    }
    assert found["worst"][0]["attribute"] == "trait:Contract"
    assert found["worst"][0]["value"] == "Two year"
    assert all(v["lift"] > 1 for v in found["best"]) and all(v["lift"] < 1 for v in found["worst"])

    table_out = cx(embedded_settings, "insights", "retarget", "telco", "--goal", "exit",
                   COLUMNS="200")  # fmt: skip
    assert "Contract" in table_out.stdout and "Month-to-month" in table_out.stdout
    assert "7,043 targeted, 1,869 left the lifecycle" in table_out.stderr


def test_a_goal_stage_bad_input_and_small_groups(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    messages = []
    for i in range(60):
        channel = "web" if i % 2 else "store"
        messages.append(
            {"type": "identify", "messageId": f"id{i}", "userId": f"u{i}",
             "traits": {"channel": channel, "plan": "pro" if i % 3 == 0 else "basic"}}
        )  # fmt: skip
        messages.append(track(f"a{i}", f"u{i}", "Ad Clicked", NOW - timedelta(days=20)))
        # store customers mostly go on to a demo; web ones rarely
        if (channel == "store" and i % 10 != 0) or (channel == "web" and i % 10 == 1):
            messages.append(track(f"d{i}", f"u{i}", "Demo Requested", NOW - timedelta(days=10)))
    send(api, *messages)
    found = get(api, "/api/v1/insights/retarget/client-experience", goal="engage", min_sample=5)
    assert found["goal"] == "engage" and found["goal_is"] == "reached Engage or a later stage"
    assert (found["targeted"], found["converted"]) == (60, 24 + 6)
    channel = {a["attribute"]: a for a in found["attributes"]}["channel"]
    by_value = {v["value"]: v for v in channel["values"]}
    assert by_value["store"]["converted"] == 24 and by_value["web"]["converted"] == 6
    assert by_value["store"]["lift"] == pytest.approx((24 / 30) / (30 / 60))
    assert by_value["store"]["significant"] and by_value["web"]["significant"]
    assert found["best"][0]["value"] == "store" and found["worst"][0]["value"] == "web"

    small = get(api, "/api/v1/insights/retarget/client-experience", where="plan=pro")
    assert small["targeted"] == 20 and small["attributes"] == [] and "too few" in small["note"]

    path = "/api/v1/insights/retarget/client-experience"
    for url, params, status, field in [
        (path, {"goal": "nowhere"}, 422, "goal"),
        (path, {"min_sample": 1}, 422, "min_sample"),
        (path, {"where": "plan"}, 422, "where"),
        (path, {"from": "2026-05-02", "to": "2026-05-01"}, 422, "to"),
        ("/api/v1/insights/retarget/nope", {}, 404, "nope"),
    ]:
        answer = api.http.get(url, params=params, headers=api.auth)
        assert answer.status_code == status, (params, answer.text)
        assert field in answer.text, (params, answer.text)
