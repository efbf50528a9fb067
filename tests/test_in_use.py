"""Deleting what a rule, a survey trigger or a segment still names is refused, naming the
users, instead of leaving a rule that fails on every run or a trigger that never fires."""

from __future__ import annotations

from typing import Any

from cxloop.lifecycle.spec import preset
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx
from tests.test_closing_loop import get, install
from tests.test_distribution import created, identify, quiet_api, send

__all__ = ["quiet_api"]


def _refused(api: ApiClient, path: str) -> dict[str, Any]:
    response = api.http.delete(path, headers=api.auth)
    assert response.status_code == 409, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "conflict"
    return error


def _deleted(api: ApiClient, path: str) -> None:
    response = api.http.delete(path, headers=api.auth)
    assert response.status_code == 204, response.text


def _rule(name: str, **parts: Any) -> dict[str, Any]:
    return {
        "name": name,
        "trigger": {"on": "event", "event": "Order Completed"},
        "actions": [{"type": "followup", "summary": "Call them"}],
        **parts,
    }


def _stage_users(api: ApiClient) -> dict[str, Any]:
    """A rule entering 'use', an active survey trigger on 'delivery', a segment of those
    standing in 'use' and a survey answered in 'use', all of client-experience; the
    trigger is returned."""
    entered = {"on": "stage_entered", "model": "client-experience", "stage": "use"}
    created(api, "/api/v1/automations", _rule("Welcome to use", trigger=entered))
    survey = created(api, "/api/v1/surveys", {"type": "csat", "name": "Delivery CSAT"})
    trigger: dict[str, Any] = created(
        api,
        "/api/v1/survey-triggers",
        {"survey": survey["id"], "on": "stage", "stage": "client-experience:delivery"},
    )
    standing = {"kind": "stage", "model": "client-experience", "stage": "use"}
    created(api, "/api/v1/segments", {"name": "Users", "rules": [standing]})
    tied = {"type": "nps", "name": "Use NPS", "stage": "client-experience:use"}
    trigger["tied_survey"] = created(api, "/api/v1/surveys", tied)["id"]
    return trigger


def test_a_segment_a_rule_names_is_kept_until_the_rule_lets_go(quiet_api: ApiClient) -> None:
    api = quiet_api
    message = identify("ann", "ann@example.com", "Ann")
    send(api, {**message, "traits": {**message["traits"], "plan": "pro"}})
    segment = {"name": "Pros", "rules": [{"kind": "trait", "field": "plan", "value": "pro"}]}
    created(api, "/api/v1/segments", segment)
    created(api, "/api/v1/segments", {**segment, "name": "Spare"})
    in_it = {"match": "all", "rules": [{"kind": "segment", "segment": "Pros"}]}
    created(api, "/api/v1/automations", _rule("Only pros", conditions=in_it))
    add = [{"type": "add_to_segment", "segment": "Pros"}]
    created(api, "/api/v1/automations", _rule("Collect pros", actions=add))
    weekly = {"on": "schedule", "cron": "0 9 * * MON", "segment": "Pros"}
    created(api, "/api/v1/automations", _rule("Weekly pros", trigger=weekly))

    error = _refused(api, "/api/v1/segments/Pros")
    assert error["field"] == "segment"
    for name in ("Only pros", "Collect pros", "Weekly pros"):
        assert repr(name) in error["message"]
    assert "Pros" in {s["name"] for s in get(api, "/api/v1/segments")}
    _deleted(api, "/api/v1/segments/Spare")  # one nothing uses goes at once

    for name in ("Only pros", "Collect pros"):
        _deleted(api, f"/api/v1/automations/{name}")
    error = _refused(api, "/api/v1/segments/Pros")
    assert "'Weekly pros'" in error["message"] and "'Only pros'" not in error["message"]
    _deleted(api, "/api/v1/automations/Weekly pros")
    _deleted(api, "/api/v1/segments/Pros")


def test_a_model_is_kept_while_rules_active_triggers_or_segments_name_it(
    quiet_api: ApiClient,
) -> None:
    api = quiet_api
    install(api)  # the client-experience model
    send(api, identify("ann", "ann@example.com", "Ann"))  # rules preview on a customer
    path = "/api/v1/lifecycle/models/client-experience"
    trigger = _stage_users(api)

    schedule = {"department": "marketing", "weekday": "mon", "model": "client-experience"}
    saved = api.http.put("/api/v1/report-schedules", json=schedule, headers=api.auth)
    assert saved.status_code == 200, saved.text

    error = _refused(api, path)
    assert error["field"] == "model"
    message = error["message"]
    assert "the report schedule of 'marketing'" in message
    assert f"survey {trigger['tied_survey']} ('Use NPS')" in message
    assert "rule 'Welcome to use'" in message
    assert f"survey trigger {trigger['id']}" in message
    assert "segment 'Users'" in message
    assert api.http.get(path, headers=api.auth).status_code == 200

    _deleted(api, "/api/v1/automations/Welcome to use")
    _deleted(api, "/api/v1/segments/Users")
    _deleted(api, "/api/v1/report-schedules/marketing")
    untied = api.http.patch(
        f"/api/v1/surveys/{trigger['tied_survey']}", json={"stage": None}, headers=api.auth
    )
    assert untied.status_code == 200, untied.text
    trigger_path = f"/api/v1/survey-triggers/{trigger['id']}"
    paused = api.http.patch(trigger_path, json={"active": False}, headers=api.auth)
    assert paused.status_code == 200, paused.text
    _deleted(api, path)  # a paused trigger does not hold the model

    # Resuming it now would fire on a model that is gone: refused, naming the stage.
    resumed = api.http.patch(trigger_path, json={"active": True}, headers=api.auth)
    assert resumed.status_code == 404, resumed.text
    assert resumed.json()["error"]["field"] == "stage"
    assert "client-experience" in resumed.json()["error"]["message"]
    [kept] = [t for t in get(api, "/api/v1/survey-triggers") if t["id"] == trigger["id"]]
    assert kept["active"] is False


def test_a_webhook_a_rule_posts_to_is_kept(quiet_api: ApiClient) -> None:
    api = quiet_api
    send(api, identify("ann", "ann@example.com", "Ann"))  # rules preview on a customer
    hook = {"name": "crm", "url": "https://crm.example.com/hook", "topics": ["automation"]}
    created(api, "/api/v1/webhooks", hook)
    post = [{"type": "webhook", "endpoint": "crm"}]
    created(api, "/api/v1/automations", _rule("Tell the CRM", actions=post))
    error = _refused(api, "/api/v1/webhooks/crm")
    assert error["field"] == "webhook" and "'Tell the CRM'" in error["message"]
    _deleted(api, "/api/v1/automations/Tell the CRM")
    _deleted(api, "/api/v1/webhooks/crm")


def test_the_cli_refuses_in_one_line(embedded_settings: Settings, tmp_path: Any) -> None:
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    people = tmp_path / "people.csv"
    people.write_text("user_id,email\nann,ann@example.com\n")
    cx(embedded_settings, "import", "customers", str(people))  # rules preview on a customer
    rule = tmp_path / "rule.yaml"
    rule.write_text(
        "name: Stalled in use\n"
        "trigger: {on: stage_exited, model: client-experience}\n"
        "actions: [{type: followup, summary: Ask why}]\n"
    )
    cx(embedded_settings, "automations", "create", "--file", str(rule))
    refused = cx(embedded_settings, "lifecycle", "remove", "client-experience", check=False)
    assert refused.returncode == 2  # bad input, as every refusal
    assert refused.stderr.strip().splitlines() == [
        "error: model: 'client-experience' is still used by rule 'Stalled in use'; "
        "change or delete it first"
    ]
    assert "Traceback" not in refused.stderr
    cx(embedded_settings, "automations", "delete", "Stalled in use")
    cx(embedded_settings, "lifecycle", "remove", "client-experience")


def _version_without(*dropped: str) -> dict[str, Any]:
    found = preset("client-experience")
    assert found is not None
    model = found.model.model_dump(mode="json")
    return {**model, "stages": [s for s in model["stages"] if s["key"] not in dropped]}


def test_a_new_model_version_keeps_the_stages_something_names(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    send(api, identify("ann", "ann@example.com", "Ann"))  # rules preview on a customer
    trigger = _stage_users(api)
    delivering = {"kind": "stage", "model": "client-experience", "stage": "delivery"}
    only = {"match": "all", "rules": [delivering]}
    created(api, "/api/v1/automations", _rule("While delivering", conditions=only))

    models = "/api/v1/lifecycle/models"
    refused = api.http.post(
        models, json={"model": _version_without("use", "delivery")}, headers=api.auth
    )
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["field"] == "stages"
    for user in (
        "rule 'Welcome to use' (stage 'use')",
        "rule 'While delivering' (stage 'delivery')",
        f"survey trigger {trigger['id']} (stage 'delivery')",
        "segment 'Users' (stage 'use')",
        f"survey {trigger['tied_survey']} ('Use NPS', stage 'use')",
    ):
        assert user in error["message"]
    [model] = [m for m in get(api, models) if m["key"] == "client-experience"]
    assert model["version"] == 1
    assert "use" in [s["key"] for s in model["stages"]]

    # A stage nobody names may go; so may one whose only user is a paused trigger.
    paused = api.http.patch(
        f"/api/v1/survey-triggers/{trigger['id']}", json={"active": False}, headers=api.auth
    )
    assert paused.status_code == 200, paused.text
    _deleted(api, "/api/v1/automations/While delivering")
    applied = api.http.post(
        models, json={"model": _version_without("support", "delivery")}, headers=api.auth
    )
    assert applied.status_code == 201, applied.text
    assert applied.json()["version"] == 2


def test_a_rule_condition_on_a_stage_the_model_lacks_is_refused(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    send(api, identify("ann", "ann@example.com", "Ann"))
    wrong = {"kind": "stage", "model": "client-experience", "stage": "usee"}
    response = api.http.post(
        "/api/v1/automations",
        json=_rule("Typo", conditions={"match": "all", "rules": [wrong]}),
        headers=api.auth,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == "conditions.rules.0.stage"
    assert "'usee' is not a stage of client-experience" in error["message"]
