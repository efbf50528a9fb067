"""Closing the loop: support cases from the API and from tracking events, follow-ups for
detractors, bad case outcomes and stalled customers, notes, and the unified timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from cxloop.service.worker import Worker
from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys
from tests.test_cli import cx, cx_json
from tests.test_distribution import created, identify, quiet_api, send, track

__all__ = ["quiet_api"]  # the fixture, shared
NOW = datetime.now(UTC).replace(microsecond=0)


def patch(api: ApiClient, path: str, body: dict[str, Any], status: int = 200) -> Any:
    response = api.http.patch(path, json=body, headers=api.auth)
    assert response.status_code == status, response.text
    return response.json()


def get(api: ApiClient, path: str, **params: Any) -> Any:
    response = api.http.get(path, params=params, headers=api.auth)
    assert response.status_code == 200, response.text
    return response.json()


def install(api: ApiClient) -> None:
    response = api.http.post(
        "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
    )
    assert response.status_code == 201, response.text


def test_cases_open_from_events_and_the_api_with_their_stage_and_metrics(
    quiet_api: ApiClient,
) -> None:
    api = quiet_api
    install(api)
    csat = created(api, "/api/v1/surveys", {"type": "csat", "name": "Support CSAT"})
    created(
        api, "/api/v1/survey-triggers", {"survey": csat["id"], "on": "case_resolved", "delay": "1h"}
    )
    send(
        api,
        identify("ann", "ann@example.com", "Ann"),
        identify("bob", "bob@example.com", "Bob"),
        track("a1", "ann", "Delivery Completed", NOW - timedelta(days=5)),
        track("b1", "bob", "Signed Up", NOW - timedelta(days=5)),
        track(
            "t1",
            "ann",
            "Support Ticket Opened",
            NOW - timedelta(days=4),
            subject="Broken part",
            channel="phone",
            category="hardware",
        ),
    )
    # The same event again (a help desk retrying) opens no second case.
    send(api, track("t1", "ann", "Support Ticket Opened", NOW - timedelta(days=4)))
    [from_event] = get(api, "/api/v1/cases")
    assert from_event["subject"] == "Broken part" and from_event["source"] == "event"
    assert (from_event["channel"], from_event["category"]) == ("phone", "hardware")
    assert from_event["stage"] == "client-experience:delivery"  # where ann stood then
    assert from_event["department"] == "delivery"  # the stage's owner
    by_api = created(
        api,
        "/api/v1/cases",
        {
            "customer": "bob",
            "subject": "Login fails",
            "channel": "chat",
            "opened_at": (NOW - timedelta(hours=10)).isoformat(),
        },
    )
    assert by_api["stage"] == "client-experience:connect" and by_api["department"] == "marketing"
    assert by_api["status"] == "open" and by_api["timeline"].endswith("/timeline")

    blank = patch(api, f"/api/v1/cases/{by_api['id']}", {"assignee": "  "}, status=422)
    assert blank["error"]["field"] == "assignee"
    assert get(api, f"/api/v1/cases/{by_api['id']}")["status"] == "open"  # nobody took it
    assigned = patch(api, f"/api/v1/cases/{by_api['id']}", {"assignee": "Sam"})
    assert assigned["status"] == "in_progress" and assigned["assignee"] == "Sam"
    patch(api, f"/api/v1/cases/{by_api['id']}", {"responded": True})
    case_path = f"/api/v1/cases/{by_api['id']}"
    for both in ({"assignee": "Kim", "unassign": True}, {"outcome": "positive", "unassign": True}):
        refused = patch(api, case_path, both, status=422)
        assert refused["error"]["field"] == "unassign"
    assert get(api, case_path)["status"] == "in_progress"  # neither was half done
    # Answered already: given back, it stays in progress for whoever takes it next.
    back = patch(api, case_path, {"unassign": True})
    assert (back["assignee"], back["status"]) == (None, "in_progress")
    again = patch(api, case_path, {"unassign": True}, status=422)
    assert "nobody has case" in again["error"]["message"]
    good = patch(api, f"/api/v1/cases/{by_api['id']}", {"outcome": "positive", "note": "Reset"})
    assert good["status"] == "resolved" and good["resolution_note"] == "Reset"
    bad = patch(
        api, f"/api/v1/cases/{from_event['id']}", {"outcome": "negative", "note": "No spare part"}
    )
    again = api.http.patch(
        f"/api/v1/cases/{from_event['id']}", json={"outcome": "positive"}, headers=api.auth
    )
    assert again.status_code == 422 and again.json()["error"]["field"] == "outcome"

    # A bad outcome is the owning department's follow-up, due within its SLA.
    [followup] = get(api, "/api/v1/followups", reason="negative_case")
    assert followup["department"] == "delivery" and followup["case_id"] == from_event["id"]
    assert followup["status"] == "open" and "No spare part" not in followup["summary"]
    resolved_at = datetime.fromisoformat(bad["resolved_at"])
    assert datetime.fromisoformat(followup["due_at"]) == resolved_at + timedelta(hours=48)
    # Each resolution queues the CSAT survey of the case-resolved trigger.
    sends = [j for j in get(api, "/api/v1/jobs")["jobs"] if j["kind"] == "survey.send"]
    assert len(sends) == 2

    metrics = get(api, "/api/v1/cases/metrics")
    assert (metrics["cases"], metrics["resolved"], metrics["positive_resolution_rate"]) == (
        2,
        2,
        50.0,
    )
    stages = {s["stage"]: s for s in metrics["stages"]}
    assert stages["client-experience:connect"]["median_hours_to_first_response"] is not None
    hours = datetime.fromisoformat(good["resolved_at"]) - (NOW - timedelta(hours=10))
    assert stages["client-experience:connect"]["median_hours_to_resolution"] == round(
        hours.total_seconds() / 3600, 2
    )
    assert metrics["after_case"]["customers"] == 2 and metrics["without_case"]["customers"] == 0

    for body, field in [
        ({"customer": "nobody", "subject": "x"}, "customer"),
        ({"customer": "ann", "subject": "  "}, "subject"),
        ({"customer": "ann", "subject": "x", "model": "nope"}, "model"),
        ({"customer": "ann", "subject": "x", "department": "nope"}, "department"),
        ({"customer": "ann", "subject": "x", "priority": "high"}, "priority"),
    ]:
        refused = api.http.post("/api/v1/cases", json=body, headers=api.auth)
        assert refused.status_code in (404, 422), (body, refused.text)
        assert field in refused.text, (body, refused.text)
    assert api.http.get("/api/v1/cases/999", headers=api.auth).status_code == 404


def test_detractors_and_stalled_customers_become_followups_once(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    put = api.http.put("/api/v1/departments/delivery/sla", json={"hours": 24}, headers=api.auth)
    assert put.status_code == 200 and put.json()["followup_sla_hours"] == 24
    bad_sla = api.http.put("/api/v1/departments/delivery/sla", json={"hours": 0}, headers=api.auth)
    assert bad_sla.status_code == 422 and bad_sla.json()["error"]["field"] == "hours"
    survey = created(
        api,
        "/api/v1/surveys",
        {"type": "nps", "name": "Delivery NPS", "stage": "client-experience:delivery"},
    )
    send(
        api,
        identify("cy", "cy@example.com", "Cy"),
        identify("dee", "dee@example.com", "Dee"),
        track("c1", "cy", "Delivery Completed", NOW - timedelta(days=2)),
        track("d1", "dee", "Signed Up", NOW - timedelta(days=40)),
    )  # connect: target 30 days
    answered = NOW - timedelta(days=1)
    for customer, score in [("cy", 2), ("dee", 10), ("cy", 6)]:
        created(
            api,
            f"/api/v1/surveys/{survey['id']}/responses",
            {
                "customer": customer,
                "score": score,
                "comment": "late" if score < 7 else "great",
                "submitted_at": answered.isoformat(),
            },
        )
    # Each detractor's follow-up came with its answer; the scan finds the stalled customer.
    assert len(get(api, "/api/v1/followups", reason="detractor")) == 2
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    worker = Worker(engine, api.settings)
    quiet = {"stage_triggers": 0, "detractors": 0, "stalled": 0, "reports": 0, "segments": 0,
             "automations": 0, "webhooks": 0}  # fmt: skip
    assert worker.scan() == {**quiet, "stalled": 1}
    assert worker.scan() == quiet
    open_delivery = get(api, "/api/v1/followups", department="delivery", status="open")
    assert [f["reason"] for f in open_delivery] == ["detractor", "detractor"]
    assert all(
        datetime.fromisoformat(f["due_at"]) == answered + timedelta(hours=24) for f in open_delivery
    )
    assert all(f["overdue"] for f in open_delivery)  # due a day after yesterday's answer: now
    [stuck] = get(api, "/api/v1/followups", reason="stalled")
    assert stuck["department"] == "marketing" and stuck["stage"] == "client-experience:connect"
    assert "Stalled in Connect" in stuck["summary"]

    first = open_delivery[0]["id"]
    refused = api.http.patch(
        f"/api/v1/followups/{first}", json={"status": "done"}, headers=api.auth
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "note"
    patch(api, f"/api/v1/followups/{first}", {"status": "in_progress", "assignee": "Lee"})
    closed = patch(
        api, f"/api/v1/followups/{first}", {"status": "done", "note": "Called, refunded"}
    )
    assert closed["status"] == "done" and closed["closed_at"] and not closed["overdue"]
    wrong = api.http.patch(
        f"/api/v1/followups/{first}", json={"status": "closed"}, headers=api.auth
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "status"

    metrics = get(api, "/api/v1/followups/metrics")
    assert (metrics["detractors"], metrics["detractors_followed_up"]) == (2, 1)
    assert metrics["detractors_followed_up_share"] == 50.0
    assert (metrics["followups"], metrics["done"], metrics["overdue"]) == (3, 1, 2)
    span = datetime.fromisoformat(closed["closed_at"]) - datetime.fromisoformat(
        closed["created_at"]
    )
    assert metrics["median_hours_to_close"] == round(span.total_seconds() / 3600, 2)
    departments = {d["department"]: d for d in metrics["departments"]}
    assert departments["delivery"]["overdue"] == 1 and departments["marketing"]["open"] == 1


def test_the_timeline_orders_everything_and_takes_notes_from_any_department(
    quiet_api: ApiClient,
) -> None:
    api = quiet_api
    install(api)
    survey = created(api, "/api/v1/surveys", {"type": "nps", "name": "Relationship"})
    send(
        api,
        identify("eve", "eve@example.com", "Eve"),
        track("e1", "eve", "Ad Clicked", NOW - timedelta(days=10)),
        track("e2", "eve", "Signed Up", NOW - timedelta(days=9)),
    )
    created(
        api,
        f"/api/v1/surveys/{survey['id']}/responses",
        {
            "customer": "eve",
            "score": 4,
            "comment": "<b>slow</b>",
            "submitted_at": (NOW - timedelta(days=8)).isoformat(),
        },
    )
    created(
        api,
        "/api/v1/cases",
        {
            "customer": "eve",
            "subject": "Where is my order?",
            "opened_at": (NOW - timedelta(days=7)).isoformat(),
        },
    )
    Worker(api.http.app.state.cxloop.project.engine, api.settings).scan()  # type: ignore[attr-defined]
    note = created(
        api,
        "/api/v1/customers/eve/notes",
        {"body": "<script>x</script> called her", "author": "Lee", "department": "sales"},
    )
    assert note["body"] == "<script>x</script> called her"
    whole = get(api, "/api/v1/customers/eve/timeline")
    kinds = [item["kind"] for item in whole["items"]]
    assert set(kinds) == {"event", "stage", "response", "case", "followup", "note"}
    moments = [datetime.fromisoformat(item["at"]) for item in whole["items"]]
    assert moments == sorted(moments, reverse=True)
    assert kinds[0] == "note" and kinds[-1] in ("event", "stage")
    # Paging: two at a time, following next_before, gives the same items.
    paged: list[dict[str, Any]] = []
    before = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if before:
            params["before"] = before
        page = get(api, "/api/v1/customers/eve/timeline", **params)
        paged.extend(page["items"])
        before = page["next_before"]
        if before is None:
            break
    assert [(i["kind"], i["at"]) for i in paged] == [(i["kind"], i["at"]) for i in whole["items"]]
    only = get(api, "/api/v1/customers/eve/timeline", kinds="note,case")
    assert [i["kind"] for i in only["items"]] == ["note", "case"]
    for body, field in [
        ({"body": " ", "author": "Lee"}, "body"),
        ({"body": "x", "author": "Lee", "department": "nope"}, "department"),
        ({"body": "x" * 10_001, "author": "Lee"}, "body"),
    ]:
        refused = api.http.post("/api/v1/customers/eve/notes", json=body, headers=api.auth)
        assert refused.status_code in (404, 422) and field in refused.text, refused.text
    bad = api.http.get(
        "/api/v1/customers/eve/timeline", params={"kinds": "tweets"}, headers=api.auth
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "kinds"
    assert api.http.get("/api/v1/customers/nobody/timeline", headers=api.auth).status_code == 404


def test_the_cli_runs_cases_followups_notes_and_jobs(embedded_settings: Settings) -> None:
    s = embedded_settings
    cx(s, "lifecycle", "apply", "client-experience")
    events = s.home / "events.jsonl"
    rows = [
        {
            "type": "identify",
            "userId": "fin",
            "traits": {"email": "fin@example.com"},
            "timestamp": (NOW - timedelta(days=3)).isoformat(),
            "messageId": "f0",
        },
        {
            "type": "track",
            "userId": "fin",
            "event": "Delivery Completed",
            "messageId": "f1",
            "timestamp": (NOW - timedelta(days=2)).isoformat(),
        },
    ]
    events.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cx(s, "import", "events", str(events))
    case_id = cx(s, "cases", "open", "--customer", "fin", "--subject", "Scratched door").stdout
    assert case_id.strip().isdigit()
    blank = cx(s, "cases", "assign", case_id.strip(), "--to", "", check=False)
    assert blank.returncode == 2 and "--to: give the name" in blank.stderr
    empty = cx(s, "notes", "add", "fin", "--text", " ", "--author", "Sam", check=False)
    assert empty.returncode == 2 and empty.stderr.strip() == "error: --text: the note is empty"
    taken = cx_json(s, "cases", "assign", case_id.strip(), "--to", "Kim")
    assert (taken["assignee"], taken["status"]) == ("Kim", "in_progress")
    given_back = cx_json(s, "cases", "unassign", case_id.strip())
    assert (given_back["assignee"], given_back["status"]) == (None, "open")
    cx(s, "cases", "assign", case_id.strip(), "--to", "Sam")
    resolved = cx_json(
        s, "cases", "resolve", case_id.strip(), "--outcome", "negative", "--note", "Replaced"
    )
    assert resolved["status"] == "resolved" and resolved["department"] == "delivery"
    listed = cx_json(s, "followups", "list", "--department", "delivery", "--status", "open")
    [followup] = listed
    assert followup["reason"] == "negative_case"
    _write_key, secret_key = make_keys(s)
    with TestClient(create_app(s.model_copy(update={"jobs_poll_s": 0}))) as http:
        same = http.get(
            "/api/v1/followups",
            params={"department": "delivery", "status": "open"},
            headers={"Authorization": f"Bearer {secret_key}"},
        )
    assert same.json() == listed  # the CLI prints the API's JSON
    fid = str(followup["id"])
    assert cx_json(s, "followups", "update", fid, "--assignee", "Lee")["assignee"] == "Lee"
    blank = cx(s, "followups", "update", fid, "--assignee", " ", check=False)
    assert blank.returncode == 2 and "--assignee: give the name or e-mail" in blank.stderr
    both = cx(s, "followups", "update", fid, "--assignee", "Ann", "--unassign", check=False)
    assert both.returncode == 2
    assert both.stderr.strip() == "error: --unassign: give an assignee or unassign, not both"
    assert cx_json(s, "followups", "update", fid, "--unassign")["assignee"] is None
    cx(s, "followups", "update", fid, "--assignee", "Lee")
    closing = cx(
        s, "followups", "update", fid, "--unassign", "--status", "done", "--note", "x", check=False
    )
    assert closing.returncode == 2 and "who closed it stays on record" in closing.stderr
    late = cx(s, "cases", "unassign", case_id.strip(), check=False)
    assert late.returncode == 2 and "resolved; who had it stays on record" in late.stderr
    done = cx_json(
        s, "followups", "update", str(followup["id"]), "--status", "done", "--note", "Apologised"
    )
    assert done["status"] == "done"
    note_id = cx(s, "notes", "add", "fin", "--text", "VIP", "--author", "Lee").stdout.strip()
    assert note_id.isdigit()
    timeline = cx_json(s, "timeline", "fin")
    assert {i["kind"] for i in timeline["items"]} >= {"event", "stage", "case", "followup", "note"}
    ran = cx_json(s, "jobs", "run")
    assert ran["failed"] == 0 and set(ran["scanned"]) == {
        "stage_triggers", "detractors", "stalled", "reports", "segments", "automations",
        "webhooks"}  # fmt: skip
    metrics = cx_json(s, "cases", "metrics")
    assert metrics["cases"] == 1 and metrics["positive_resolution_rate"] == 0.0
    bad = cx(s, "followups", "list", "--status", "closed", check=False)
    assert bad.returncode != 0 and "status" in bad.stderr
    missing = cx(s, "cases", "resolve", "999", "--outcome", "positive", check=False)
    assert missing.returncode != 0 and "case" in missing.stderr
