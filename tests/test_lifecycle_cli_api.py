"""Lifecycle models, departments, reports and stalled customers through the CLI and the API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cxloop.settings import Settings
from tests.conftest import ApiClient, ServerProcess, make_keys
from tests.test_cli import cx, cx_json

TELCO_MODEL = """\
key: telco
name: Telco subscribers
stages:
  - key: prospect
    name: Prospect
    owner: sales
    enter:
      - traits: [{field: tenure, op: lt, value: 1}]
  - key: subscriber
    name: Subscriber
    owner: customer service
    enter:
      - traits: [{field: tenure, op: gte, value: 1}]
exits:
  - traits: [{field: Churn, op: equals, value: "Yes"}]
    reason: churned
"""


def test_telco_churn_is_counted_as_exits(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    """The real Telco file: each imported profile is an identify event carrying its columns
    as traits, so a model whose exit rule reads the Churn trait counts every churned row."""
    path = shared_data / "telco-customer-churn.csv"
    churned = sum(1 for line in path.read_text().splitlines()[1:] if line.rstrip().endswith(",Yes"))
    assert churned == 1_869
    model = tmp_path / "telco.yaml"
    model.write_text(TELCO_MODEL)
    cx(embedded_settings, "lifecycle", "apply", str(model))
    cx(embedded_settings, "import", "customers", str(path), "--map", "customerID=user_id")
    report = cx_json(embedded_settings, "lifecycle", "report", "telco")
    assert report["exits_by_reason"] == {"churned": churned}
    stages = {s["key"]: s for s in report["stages"]}
    assert stages["prospect"]["entered"] + stages["subscriber"]["entered"] == 7_043
    assert sum(s["exited"] for s in stages.values()) == churned
    assert sum(s["current"] for s in stages.values()) == 7_043 - churned
    # A segment narrows the report to matching profiles.
    monthly = cx_json(
        embedded_settings, "lifecycle", "report", "telco", "--where", "Contract=Month-to-month"
    )
    monthly_rows = [
        line for line in path.read_text().splitlines()[1:] if ",Month-to-month," in line
    ]
    assert sum(s["entered"] for s in monthly["stages"]) == len(monthly_rows)
    assert monthly["exits_by_reason"]["churned"] == sum(
        1 for line in monthly_rows if line.rstrip().endswith(",Yes")
    )
    # Importing the same file again changes nothing, the report included.
    cx(embedded_settings, "import", "customers", str(path), "--map", "customerID=user_id")
    assert cx_json(embedded_settings, "lifecycle", "report", "telco") == report


def test_presets_apply_list_and_departments(embedded_settings: Settings) -> None:
    presets = cx_json(embedded_settings, "lifecycle", "presets")
    assert {p["key"] for p in presets} == {
        "sales",
        "client-experience",
        "prospect-to-advocate",
        "six-phase-journey",
        "buyer",
    }
    applied = cx_json(embedded_settings, "lifecycle", "apply", "client-experience")
    assert applied["created"] is True and applied["version"] == 1
    assert set(applied["departments_created"]) == {
        "marketing",
        "sales",
        "delivery",
        "product",
        "customer service",
    }
    again = cx_json(embedded_settings, "lifecycle", "apply", "client-experience")
    assert (again["created"], again["version"], again["departments_created"]) == (False, 2, [])
    [model] = cx_json(embedded_settings, "lifecycle", "list")
    assert [s["key"] for s in model["stages"]] == [
        "target",
        "connect",
        "engage",
        "delivery",
        "use",
        "support",
    ]
    renamed = cx_json(embedded_settings, "departments", "rename", "customer service", "Care")
    assert renamed["stages"] == ["client-experience:support"]
    [model] = cx_json(embedded_settings, "lifecycle", "list")
    assert model["stages"][-1]["owner"] == "Care"
    names = {d["name"] for d in cx_json(embedded_settings, "departments", "list")}
    assert "Care" in names and "customer service" not in names
    created = cx_json(embedded_settings, "departments", "create", "Finance")
    assert created["name"] == "Finance"
    duplicate = cx(embedded_settings, "departments", "create", "finance", check=False)
    assert duplicate.returncode != 0 and "exists" in duplicate.stderr
    shown = cx(embedded_settings, "lifecycle", "show", "client-experience").stdout
    assert "key: client-experience" in shown and "owner: Care" in shown


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key: m\nname: M\nstages:\n  - {key: a, name: A, owner: x, enter: [{event: E}]}\n"
         "  - {key: a, name: B, owner: x, enter: [{event: F}]}\n",
         "5: stages[1].key: the key 'a' is already used by stages[0]"),
        ("key: m\nname: M\ncolour: red\nstages: []\n", "3: colour: is not a known field"),
        ("key: m\nname: M\nstages:\n  - {key: a, name: A, owner: x, enter: []}\n"
         "  - {key: b, name: B, owner: x, enter: [{event: F}]}\n",
         "4: stages[0].enter: a stage needs at least one entry rule"),
        ("key: m\nname: M\nstages:\n  - key: a\n    name: A\n    owner: x\n    enter:\n"
         "      - event: E\n        where: [{field: total, op: gt, value: many}]\n"
         "  - {key: b, name: B, owner: x, enter: [{event: F}]}\n",
         "9: stages[0].enter[0].where[0]: op gt compares numbers"),
        ("key: m\nname: [unclosed\n", "yaml"),
    ],
)  # fmt: skip
def test_bad_model_files_name_the_line_and_install_nothing(
    embedded_settings: Settings, tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    result = cx(embedded_settings, "lifecycle", "apply", str(path), check=False)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert cx_json(embedded_settings, "lifecycle", "list") == []


def test_unknown_preset_or_file_is_a_clear_error(embedded_settings: Settings) -> None:
    result = cx(embedded_settings, "lifecycle", "apply", "no-such-model", check=False)
    assert result.returncode == 2 and "neither a preset" in result.stderr
    missing = cx(embedded_settings, "lifecycle", "report", "nope", check=False)
    assert missing.returncode != 0 and "no lifecycle model 'nope'" in missing.stderr
    bad_date = cx(embedded_settings, "lifecycle", "report", "x", "--from", "May", check=False)
    assert bad_date.returncode == 2 and "--from" in bad_date.stderr


# -- the API --------------------------------------------------------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)


def _track(mid: str, user: str, event: str, days_ago: float, **props: Any) -> dict[str, Any]:
    ts = (NOW - timedelta(days=days_ago)).isoformat()
    return {"type": "track", "messageId": mid, "userId": user, "event": event,
            "properties": props, "timestamp": ts}  # fmt: skip


def _send(api: ApiClient, messages: list[dict[str, Any]]) -> None:
    response = api.http.post(
        "/v1/batch", content=json.dumps({"batch": messages}), auth=(api.write_key, "")
    )
    assert response.status_code == 200, response.text


def test_api_report_customer_stages_and_stalled(api: ApiClient) -> None:
    created = api.http.post(
        "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
    )
    assert created.status_code == 201, created.text
    _send(
        api,
        [
            _track("s1", "ann", "Ad Clicked", 40),
            _track("s2", "ann", "Demo Requested", 39),  # skips Connect
            _track("s3", "ann", "Delivery Completed", 38),
            _track("s4", "bob", "Ad Clicked", 35),
            _track("s5", "bob", "Subscription Cancelled", 34, reason="price"),
            _track("s6", "cy", "Signed Up", 50),  # Connect since 50 days: over its 30
        ],
    )
    report = api.http.get("/api/v1/lifecycle/client-experience/report", headers=api.auth)
    assert report.status_code == 200, report.text
    body = report.json()
    stages = {s["key"]: s for s in body["stages"]}
    assert set(stages["target"]) >= {
        "key", "name", "owner", "entered", "current", "progressed", "exited",
        "conversion_rate", "drop_off_rate", "median_time_in_stage_s", "p90_time_in_stage_s",
        "over_target",
    }  # fmt: skip
    assert (stages["target"]["entered"], stages["target"]["progressed"]) == (2, 1)
    assert (stages["target"]["exited"], stages["target"]["drop_off_rate"]) == (1, 0.5)
    assert stages["target"]["median_time_in_stage_s"] == 86_400.0
    assert stages["connect"]["skipped"] == 1 and stages["connect"]["entered"] == 1
    assert stages["delivery"]["current"] == 1
    assert body["exits_by_reason"] == {"price": 1}
    assert stages["target"]["owner"] == "marketing"

    # Segment filters and date ranges are validated and applied.
    ranged = api.http.get(
        "/api/v1/lifecycle/client-experience/report",
        params={"from": (NOW - timedelta(days=36)).date().isoformat()},
        headers=api.auth,
    ).json()
    assert {s["key"]: s["entered"] for s in ranged["stages"]}["target"] == 1
    bad = api.http.get(
        "/api/v1/lifecycle/client-experience/report", params={"where": "oops"}, headers=api.auth
    )
    assert bad.status_code == 422 and "where" in bad.json()["error"]["message"]
    unknown = api.http.get("/api/v1/lifecycle/nope/report", headers=api.auth)
    assert unknown.status_code == 404

    ann = api.http.get("/api/v1/customers/ann", headers=api.auth).json()
    [cx_stage] = ann["stages"]
    assert cx_stage["stage"] == "delivery" and cx_stage["cycle"] == 1
    assert [(h["kind"], h["to_stage"], h["skipped"]) for h in cx_stage["history"]] == [
        ("enter", "target", []),
        ("progress", "engage", ["connect"]),
        ("progress", "delivery", []),
    ]
    assert cx_stage["history"][1]["message_id"] == "s2"

    stalled = api.http.get("/api/v1/lifecycle/client-experience/stalled", headers=api.auth)
    by_stage = {s["stage"]: s for s in stalled.json()}
    assert [c["user_id"] for c in by_stage["connect"]["customers"]] == ["cy"]
    assert by_stage["delivery"]["total"] == 1  # 38 days in delivery, target 21
    assert by_stage["target"]["total"] == 0


def test_api_refuses_invalid_models_with_every_problem(api: ApiClient) -> None:
    response = api.http.post(
        "/api/v1/lifecycle/models",
        json={"model": {"key": "Bad Key", "name": "x", "stages": [], "extra": 1}},
        headers=api.auth,
    )
    assert response.status_code == 422
    error = response.json()["error"]
    fields = {d["field"] for d in error["details"]}
    assert {"key", "extra"} <= fields
    listed = api.http.get("/api/v1/lifecycle/models", headers=api.auth)
    assert listed.json() == []
    unauthenticated = api.http.get("/api/v1/lifecycle/models")
    assert unauthenticated.status_code == 401


def test_lifecycle_commands_go_to_the_running_server(server: ServerProcess) -> None:
    """With `cxloop serve` running, lifecycle commands hand their work to it (it owns the
    event store); results come back the same."""
    settings = server.settings
    write_key, _secret = make_keys(settings)
    applied = cx_json(settings, "lifecycle", "apply", "sales")
    assert applied["created"] is True
    messages = [
        _track("r1", "rita", "Ad Clicked", 3),
        _track("r2", "rita", "Order Completed", 2),
        _track("r3", "sam", "Email Opened", 1),
    ]
    response = httpx.post(
        f"{server.url}/v1/batch", json={"batch": messages}, auth=(write_key, ""), timeout=10
    )
    assert response.status_code == 200, response.text
    report = cx_json(settings, "lifecycle", "report", "sales")
    stages = {s["key"]: s for s in report["stages"]}
    assert (stages["target"]["entered"], stages["target"]["progressed"]) == (2, 1)
    assert stages["convert"]["current"] == 1 and stages["engage"]["skipped"] == 1
    rebuilt = cx_json(settings, "lifecycle", "rebuild")
    assert rebuilt["transitions"] == 3
    shown = cx_json(settings, "customers", "show", "rita")
    assert [s["stage"] for s in shown["stages"]] == ["convert"]
    assert {d["name"] for d in cx_json(settings, "departments", "list")} == {
        "marketing",
        "sales",
    }
