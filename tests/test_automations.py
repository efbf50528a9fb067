"""Rules: triggers, conditions, delays and actions, run through the job queue to a real
SMTP server on loopback; refusals at save time; the audit log. Both backends."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

from cxloop.service.worker import Worker
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get, install
from tests.test_distribution import Inbox, identify, mailing, quiet_api, send, smtp, track

__all__ = ["quiet_api", "smtp"]
NOW = datetime.now(UTC).replace(microsecond=0)


def worker(api: ApiClient, settings: Settings | None = None) -> Worker:
    project = api.http.app.state.cxloop.project  # type: ignore[attr-defined]
    return Worker(project.engine, settings or api.settings, events=project.events)


def rule(api: ApiClient, body: dict[str, Any], status: int = 201, **params: Any) -> Any:
    response = api.http.post("/api/v1/automations", json=body, headers=api.auth, params=params)
    assert response.status_code == status, response.text
    return response.json()


def runs(api: ApiClient, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(api, "/api/v1/automation-runs", **params)
    return found


def text_of(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            raw = part.get_payload(decode=True)
            assert isinstance(raw, bytes)
            return raw.decode().replace("\r\n", "\n")
    raise AssertionError("no text part")


DELIVERED = {
    "name": "Review request",
    "trigger": {
        "on": "event",
        "event": "Order Delivered",
        "where": [{"field": "total", "op": "gte", "value": 50}],
    },
    "timing": {"delay": "3d"},
    "actions": [
        {
            "type": "email",
            "subject": "How is your {{ event.properties.item }}, {{ customer.first_name }}?",
            "text": "Hello {{ customer.first_name }},\nyour {{ event.properties.item }} "
            "arrived {{ event.timestamp[:10] }}.\n",
        }
    ],
}


def test_an_event_rule_mails_once_after_its_delay(
    quiet_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api = quiet_api
    inbox, port = smtp
    send(api, identify("ann", "ann@example.com", "Ann Lee"), identify("bob", None, "Bob"))
    made = rule(api, DELIVERED)
    assert made["enabled"] and made["trigger"]["event"] == "Order Delivered"
    batch = [
        track("d1", "ann", "Order Delivered", NOW, item="lamp", total=80),
        track("d2", "ann", "Order Delivered", NOW, item="cup", total=5),  # below the filter
        track("d3", "bob", "Order Delivered", NOW, item="desk", total=300),  # no e-mail address
    ]
    send(api, *batch)
    send(api, *batch)  # a client retrying: the same message ids start nothing new
    [bob, ann] = runs(api, rule="Review request")
    assert {ann["occurrence"], bob["occurrence"]} == {"event:d1", "event:d3"}
    assert ann["status"] == "scheduled" and ann["due_at"] == (NOW + timedelta(days=3)).isoformat()

    mailer = worker(api, mailing(api.settings, port))
    mailer.run_once(now=NOW + timedelta(days=2))
    assert inbox.messages == []  # not due yet
    mailer.run_once(now=NOW + timedelta(days=3, minutes=1))
    [message] = inbox.messages
    assert message["To"] == "Ann Lee <ann@example.com>"
    assert message["Subject"] == "How is your lamp, Ann?"
    assert text_of(message) == f"Hello Ann,\nyour lamp arrived {NOW:%Y-%m-%d}.\n"
    assert message["Message-ID"].startswith(f"<automation-{ann['id']}-0@")
    done = {r["customer_id"]: r for r in runs(api, rule="Review request")}
    assert done[ann["customer_id"]]["status"] == "done"
    assert done[ann["customer_id"]]["actions"][0]["outcome"] == "e-mail sent to ann@example.com"
    assert done[bob["customer_id"]]["status"] == "failed"
    assert "no e-mail address" in done[bob["customer_id"]]["actions"][0]["outcome"]
    mailer.run_once(now=NOW + timedelta(days=5))
    assert len(inbox.messages) == 1  # never twice
    assert get(api, "/api/v1/automations/Review request")["runs"] == {"done": 1, "failed": 1}


NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
LONG_OUTPUT = "{% for i in range(99999) %}{{ 'twenty characters..' }}{% endfor %}"
ENDLESS_MACRO = "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"


def test_bad_rules_are_refused_naming_the_field(quiet_api: ApiClient) -> None:
    api = quiet_api
    send(
        api,
        identify("ann", "ann@example.com", "Ann"),
        track("v1", "ann", "Visit Scheduled", NOW, technician_id="t1"),
    )
    email = {"type": "email", "subject": "Hi", "text": "Hello {{ customer.nickname }}"}
    cases = [
        ({**DELIVERED, "actions": [email]}, "actions.0.text", "nickname"),
        (
            {
                **DELIVERED,
                "name": "x",
                "trigger": {"on": "event", "event": "Visit Scheduled"},
                "actions": [{**email, "text": "{{ event.properties.visit_at }}"}],
            },
            "actions.0.text",
            "visit_at",
        ),
        (
            {**DELIVERED, "actions": [{**email, "text": "{{ ''.__class__.__mro__ }}"}]},
            "actions.0.text",
            "not allowed",
        ),
        ({**DELIVERED, "actions": [{**email, "text": "{% if %}"}]}, "actions.0.text", "parse"),
        # Templates that would cost too much are refused in bounded time, not run for ever.
        (
            {**DELIVERED, "actions": [{**email, "text": NESTED_LOOPS}]},
            "actions.0.text",
            "longer than 2 s",
        ),
        (
            {**DELIVERED, "actions": [{**email, "text": "{{ '-' * 10**9 }}"}]},
            "actions.0.text",
            "repetition longer than",
        ),
        (
            {**DELIVERED, "actions": [{**email, "text": "{{ 2 ** (10 ** 6) }}"}]},
            "actions.0.text",
            "powers above",
        ),
        (
            {**DELIVERED, "actions": [{**email, "text": LONG_OUTPUT}]},
            "actions.0.text",
            "more than 1,000,000 characters",
        ),
        (
            {**DELIVERED, "actions": [{**email, "text": ENDLESS_MACRO}]},
            "actions.0.text",
            "calls itself",
        ),
        (
            {**DELIVERED, "actions": [{"type": "case", "subject": "x", "model": "moon"}]},
            "actions.0.model",
            "moon",
        ),
        (
            {
                "name": "Loop",
                "trigger": {"on": "case_opened"},
                "actions": [{"type": "case", "subject": "again"}],
            },
            "actions.0",
            "loop",
        ),
        ({**DELIVERED, "timing": {"delay": "3 weeks"}}, "timing.delay", "90m, 24h, 3d"),
        (
            {**DELIVERED, "trigger": {"on": "stage_entered", "model": "nope", "stage": "x"}},
            "trigger.model",
            "no lifecycle model",
        ),
        (
            {**DELIVERED, "actions": [{"type": "add_to_segment", "segment": "VIPs"}]},
            "segment",
            "no saved segment",
        ),
        (
            {**DELIVERED, "actions": [{"type": "webhook", "endpoint": "crm"}]},
            "actions.0.endpoint",
            "no webhook",
        ),
        (
            {**DELIVERED, "trigger": {"on": "schedule", "cron": "every day", "segment": "a"}},
            "trigger.cron",
            "cron",
        ),
        ({**DELIVERED, "trigger": {"on": "event"}}, "trigger", "needs event"),
        (
            {**DELIVERED, "actions": [{"type": "set_trait", "trait": "email", "value": "a@b.c"}]},
            "actions.0",
            "identify",
        ),
    ]
    for body, field, reason in cases:
        response = api.http.post("/api/v1/automations", json=body, headers=api.auth)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert error["field"].startswith(field) or error["message"].startswith(field), (
            field,
            error,
        )
        assert reason in error["message"], (reason, error)
    assert get(api, "/api/v1/automations") == []
    # A member may read rules but not make one.
    assert api.http.post("/api/v1/automations", json=DELIVERED).status_code == 401


def test_answers_cases_and_stages_act_through_every_action(quiet_api: ApiClient) -> None:
    api = quiet_api
    # The cases the actions open carry the wall clock: keep this test's clock fresh.
    now = datetime.now(UTC)
    install(api)
    send(
        api,
        {
            **identify("ann", "ann@example.com", "Ann"),
            "traits": {"name": "Ann", "plan": "pro", "email": "ann@example.com", "city": "Lyon"},
        },
        {
            **identify("bob", "bob@example.com", "Bob"),
            "traits": {"name": "Bob", "plan": "free", "email": "bob@example.com"},
        },
        track("a0", "ann", "Signed Up", now - timedelta(minutes=30)),
        track("b0", "bob", "Signed Up", now - timedelta(minutes=30)),
    )
    segment = {
        "name": "Rescued",
        "rules": [{"kind": "trait", "field": "plan", "op": "equals", "value": "none"}],
    }
    assert api.http.post("/api/v1/segments", json=segment, headers=api.auth).status_code == 201
    survey = api.http.post(
        "/api/v1/surveys", json={"type": "nps", "name": "NPS"}, headers=api.auth
    ).json()
    rule(
        api,
        {
            "name": "Pro detractors",
            "trigger": {"on": "response", "measure": "nps", "score": {"op": "lte", "value": 6}},
            "conditions": {
                "rules": [{"kind": "trait", "field": "plan", "op": "equals", "value": "pro"}]
            },
            "actions": [
                {
                    "type": "followup",
                    "summary": "Call {{ customer.name }} ({{ response.score }})",
                    "department": "delivery",
                },
                {"type": "case", "subject": "Detractor: {{ response.comment }}"},
                {
                    "type": "set_trait",
                    "trait": "last_detractor_score",
                    "value": "{{ response.score }}",
                },
                {"type": "add_to_segment", "segment": "Rescued"},
            ],
        },
    )
    rule(
        api,
        {
            "name": "Case follow-up",
            "trigger": {"on": "case_opened"},
            "actions": [
                {"type": "followup", "summary": "Case for {{ customer.name }}: {{ case.subject }}"}
            ],
        },
    )
    rule(
        api,
        {
            "name": "Welcome",
            "trigger": {"on": "stage_entered", "model": "client-experience", "stage": "engage"},
            "actions": [
                {"type": "set_trait", "trait": "engaged_via", "value": "{{ stage.event }}"},
                # A profile field's name sets the field, checked as identify checks it.
                {"type": "set_trait", "trait": "gender", "value": "F"},
                {"type": "set_trait", "trait": "city", "value": None},
            ],
        },
    )
    rule(
        api,
        {
            "name": "Bad year",
            "trigger": {"on": "stage_entered", "model": "client-experience", "stage": "engage"},
            "actions": [{"type": "set_trait", "trait": "birth_year", "value": "{{ stage.event }}"}],
        },
    )
    for who, score in (("ann", 3), ("bob", 2), ("ann", 9)):
        answer = {"customer": who, "score": score, "comment": "too slow"}
        path = f"/api/v1/surveys/{survey['id']}/responses"
        assert api.http.post(path, json=answer, headers=api.auth).status_code == 201
    send(api, track("a1", "ann", "Order Completed", now))
    queue = worker(api)
    queue.run_once(now=now + timedelta(minutes=1))
    queue.run_once(now=now + timedelta(minutes=2))  # the case the first pass opened

    [pro] = runs(api, rule="Pro detractors", status="done")
    [free] = runs(api, rule="Pro detractors", status="skipped")
    assert free["outcome"] == "conditions not met: rules.0 (plan equals 'pro')"
    assert [a["status"] for a in pro["actions"]] == ["done"] * 4
    ann = get(api, "/api/v1/customers/ann")
    assert ann["traits"]["last_detractor_score"] == "3"
    assert ann["traits"]["engaged_via"] == "Order Completed"
    assert ann["gender"] == "female" and ann["city"] is None
    assert "gender" not in ann["traits"] and "city" not in ann["traits"]
    # A value the field cannot take fails that step, naming it; the profile keeps its year.
    [bad_year] = runs(api, rule="Bad year")
    assert bad_year["status"] == "failed" and ann["birth_year"] is None
    assert bad_year["actions"][0]["outcome"] == (
        "actions.0.value: birth year must be a year, got 'Order Completed'"
    )
    mine = [
        f
        for f in get(api, "/api/v1/followups", limit=200)
        if f["customer_id"] == ann["id"] and f["reason"] == "automation"
    ]
    summaries = sorted(f["summary"] for f in mine)
    assert summaries == ["Call Ann (3)", "Case for Ann: Detractor: too slow"]
    [case] = [c for c in get(api, "/api/v1/cases") if c["customer_id"] == ann["id"]]
    assert case["subject"] == "Detractor: too slow" and case["source"] == "rule"
    members = get(api, "/api/v1/segments/Rescued/customers")["items"]
    assert [m["id"] for m in members] == [ann["id"]]
    # A refresh of the segment keeps the customer a rule added.
    refreshed = api.http.post("/api/v1/segments/Rescued/refresh", headers=api.auth)
    assert refreshed.status_code == 200 and refreshed.json()["members"] == 1
    # Scans again (a restart): nothing runs twice.
    queue.run_once(now=now + timedelta(minutes=3))
    assert len(runs(api, rule="Pro detractors")) == 2
    assert len(runs(api, rule="Case follow-up")) == 1
    assert len(runs(api, rule="Welcome")) == 1


def test_rules_that_start_each_other_are_stopped(quiet_api: ApiClient) -> None:
    api = quiet_api
    send(api, identify("ann", "ann@example.com", "Ann"))
    # A case opens a follow-up; an overdue follow-up opens a case: a loop through two rules.
    rule(
        api,
        {
            "name": "A",
            "trigger": {"on": "case_opened"},
            "actions": [{"type": "followup", "summary": "look"}],
        },
    )
    rule(
        api,
        {
            "name": "B",
            "trigger": {"on": "followup_overdue"},
            "actions": [{"type": "case", "subject": "overdue"}],
        },
    )
    opened = api.http.post(
        "/api/v1/cases", json={"customer": "ann", "subject": "first"}, headers=api.auth
    )
    assert opened.status_code == 201
    queue = worker(api)
    moment = NOW
    for _ in range(8):  # each follow-up is overdue after its SLA (48 hours)
        moment += timedelta(days=3)
        queue.run_once(now=moment)
    done = runs(api, status="done")
    stopped = runs(api, status="skipped")
    assert 1 <= len(done) <= 3
    assert stopped and "its own action caused this" in stopped[0]["outcome"]
    assert len(get(api, "/api/v1/cases")) <= 2


def test_changes_are_in_the_audit_log_for_admins(quiet_api: ApiClient) -> None:
    api = quiet_api
    send(api, identify("ann", "ann@example.com", "Ann"))
    rule(api, DELIVERED)
    assert (
        api.http.post("/api/v1/automations/Review request/disable", headers=api.auth).status_code
        == 200
    )
    assert (
        api.http.delete("/api/v1/automations/Review request", headers=api.auth).status_code == 204
    )
    entries = get(api, "/api/v1/audit", entity="rule")
    assert [e["action"] for e in entries] == ["deleted", "disabled", "created"]
    assert all(e["entity_id"] == entries[0]["entity_id"] for e in entries)
    assert entries[-1]["details"]["definition"]["trigger"]["event"] == "Order Delivered"
    assert {e["actor"] for e in entries} == {"tests"}  # the secret key's name

    # Models, keys, users and merges too, each in the transaction of its change.
    install(api)
    send(api, identify("bob", "bob@example.com", "Bob"))
    merged = api.http.post(
        "/api/v1/customers/ann/merge", json={"from_customer": "bob"}, headers=api.auth
    )
    assert merged.status_code == 200, merged.text
    key = api.http.post("/api/v1/keys", json={"kind": "write", "name": "site"}, headers=api.auth)
    assert key.status_code == 201
    found = {(e["entity"], e["action"]) for e in get(api, "/api/v1/audit")}
    assert {("model", "created"), ("merge", "merged"), ("key", "created")} <= found
    [merge] = get(api, "/api/v1/audit", entity="merge")
    ann_id = get(api, "/api/v1/customers/ann")["id"]
    assert merge["summary"].endswith(f"merged into customer {ann_id}")
    bad = api.http.get("/api/v1/audit", params={"entity": "planet"}, headers=api.auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "entity"
    # From the command line the actor is the user running it.
    cx(api.settings, "users", "create", "--email", "lead@example.com", "--role", "admin")
    lines = cx_json(api.settings, "audit", "--entity", "user")
    assert lines[0]["summary"] == "user lead@example.com created as admin"
    assert lines[0]["actor"] == f"cli:{getpass.getuser()}"
