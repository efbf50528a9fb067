"""Survey distribution: the job queue, single-use links on the public page, e-mails through
a real SMTP server on loopback, triggers with delays and a frequency cap, in-app surveys."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from cxloop.feedback.invites import InviteRefused, answer_invite, create_invite, invites_t
from cxloop.feedback.responses import ResponseIn
from cxloop.feedback.surveys import SurveyIn, create_survey
from cxloop.feedback.triggers import TRIGGER_FIELDS
from cxloop.project import open_database
from cxloop.service.worker import Worker
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.web.app import create_app
from tests.conftest import ApiClient, free_port, make_keys

NOW = datetime.now(UTC).replace(microsecond=0)


# -- the job queue -----------------------------------------------------------------------------


def test_the_queue_runs_a_keyed_job_once_and_retries_with_backoff(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            first = jobs.enqueue(conn, "x", {"n": 1}, key="k1", max_attempts=2, run_at=NOW)
            again = jobs.enqueue(conn, "x", {"n": 2}, key="k1")
            later = jobs.enqueue(conn, "x", {"n": 3}, run_at=NOW + timedelta(days=1))
        assert first is not None and again is None and later is not None
        with engine.begin() as conn:
            [claimed] = jobs.claim(conn, now=NOW)
            assert claimed.id == first and claimed.payload == {"n": 1}
            assert jobs.claim(conn, now=NOW) == []  # taken, and the other is not due
        # Its worker died: once the lease runs out, another claim takes it again.
        with engine.begin() as conn:
            [reclaimed] = jobs.claim(conn, now=NOW + jobs.LEASE + timedelta(seconds=1))
            assert reclaimed.id == first and reclaimed.attempts == 2
            assert jobs.fail(conn, claimed, "first", now=NOW) == "queued"
            assert jobs.fail(conn, reclaimed, "boom", now=NOW) == "failed"  # 2 of 2 attempts
        with engine.connect() as conn:
            shown = {j["id"]: j for j in jobs.list_jobs(conn)}
            assert shown[first]["status"] == "failed" and shown[first]["last_error"] == "boom"
            assert jobs.counts(conn)["failed"] == 1
        with engine.begin() as conn:
            assert jobs.retry(conn, first) == "failed"
            assert jobs.retry(conn, later) == "queued"  # not failed: untouched
            assert jobs.retry(conn, 999_999) is None
            [again_claimed] = jobs.claim(conn, now=datetime.now(UTC) + timedelta(seconds=1))
            assert again_claimed.id == first and again_claimed.attempts == 1
    finally:
        engine.dispose()


# -- a real SMTP server on loopback ------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mailing(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_security": "none",
            "jobs_poll_s": 0,
            "public_url": "https://cx.example.com",
        }
    )


@pytest.fixture
def quiet_api(settings: Settings) -> Iterator[ApiClient]:
    """The app with its own worker off: the test runs the queue when it wants to."""
    quiet = settings.model_copy(update={"jobs_poll_s": 0})
    write_key, secret_key = make_keys(quiet)
    with TestClient(create_app(quiet)) as http:
        yield ApiClient(http, write_key, secret_key, quiet)


def send(api: ApiClient, *messages: dict[str, Any]) -> None:
    response = api.http.post(
        "/v1/batch", content=json.dumps({"batch": list(messages)}), auth=(api.write_key, "")
    )
    assert response.status_code == 200, response.text
    # Any REST call waits until what was acknowledged is applied (listeners included).
    assert api.http.get("/api/v1/stats", headers=api.auth).status_code == 200


def created(api: ApiClient, path: str, body: dict[str, Any]) -> Any:
    response = api.http.post(path, json=body, headers=api.auth)
    assert response.status_code == 201, response.text
    return response.json()


def track(mid: str, user: str, event: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "messageId": mid,
        "userId": user,
        "event": event,
        "properties": props,
        "timestamp": at.isoformat(),
    }


def identify(user: str, email: str | None, name: str) -> dict[str, Any]:
    traits: dict[str, Any] = {"name": name}
    if email:
        traits["email"] = email
    return {
        "type": "identify",
        "messageId": f"id-{user}",
        "userId": user,
        "traits": traits,
        "timestamp": (NOW - timedelta(days=30)).isoformat(),
    }


def body_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode()
    raise AssertionError("no text part")


def test_a_delivery_trigger_mails_one_link_per_customer_within_the_cap(
    quiet_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api, (inbox, port) = quiet_api, smtp
    survey = created(
        api,
        "/api/v1/surveys",
        {"type": "nps", "name": "After delivery", "touchpoint": "Order Delivered"},
    )
    trigger = created(
        api,
        "/api/v1/survey-triggers",
        {
            "survey": survey["id"],
            "on": "event",
            "event": "Order Delivered",
            "delay": "3d",
            "cap_days": 30,
        },
    )
    assert trigger["delay_minutes"] == 3 * 1440
    assert tuple(trigger) == TRIGGER_FIELDS  # the CLI's CSV header
    delivered = NOW - timedelta(hours=1)
    send(
        api,
        identify("ann", "ann@example.com", "Ann\nBcc: evil@example.com"),
        identify("bob", None, "Bob"),
        track("d1", "ann", "Order Delivered", delivered),
        track("d2", "ann", "Order Delivered", delivered + timedelta(minutes=5)),
        track("d3", "bob", "Order Delivered", delivered),
    )
    worker = Worker(api.http.app.state.cxloop.project.engine, mailing(api.settings, port))  # type: ignore[attr-defined]
    early = worker.run_once(now=datetime.now(UTC))
    assert early.done == 0 and inbox.messages == []  # not yet: three days after delivery
    due = worker.run_once(now=delivered + timedelta(days=3, minutes=10))
    outcomes = sorted(o["outcome"] for o in due.outcomes)
    assert due.done == 3 and due.failed == due.retrying == 0
    assert sum(o.startswith("sent invite") for o in outcomes) == 1
    assert any("was asked on" in o and "cap 30 days" in o for o in outcomes)  # ann's second
    assert any("no e-mail address" in o for o in outcomes)  # bob
    [mail] = inbox.messages
    assert mail["To"] == "ann@example.com" and mail["Bcc"] is None
    assert "Hello Ann Bcc: evil@example.com," in body_text(mail)  # one line: no header
    assert mail["Subject"].startswith("How likely are you to recommend us")
    link = re.search(r"https://cx\.example\.com/s/(\S+)", body_text(mail))
    assert link is not None
    token = link.group(1)
    page = api.http.get(f"/s/{token}")
    assert page.status_code == 200 and "How likely are you to recommend us" in page.text
    answered = api.http.post(f"/s/{token}", data={"score": "10", "comment": "On time!"})
    assert answered.status_code == 200 and "Thank you" in answered.text
    response = api.http.get("/api/v1/feedback/nps", headers=api.auth).json()
    assert response["responses"] == 1 and response["promoters"] == 1
    # A replayed batch queues nothing new: each trigger and occurrence is sent once.
    send(api, track("d1", "ann", "Order Delivered", delivered))
    again = worker.run_once(now=delivered + timedelta(days=4))
    assert again.done == 0 and len(inbox.messages) == 1
    # History from before the trigger existed (an import of last month's deliveries) asks
    # nobody; a delivery that reaches cxloop a few hours late still does.
    send(
        api,
        identify("cy", "cy@example.com", "Cy"),
        identify("dee", "dee@example.com", "Dee"),
        track("d4", "cy", "Order Delivered", NOW - timedelta(days=30)),
        track("d5", "dee", "Order Delivered", NOW - timedelta(hours=5)),
    )
    with api.http.app.state.cxloop.project.engine.connect() as conn:  # type: ignore[attr-defined]
        queued = jobs.list_jobs(conn, kind="survey.send")
    assert len(queued) == 4 and queued[0]["key"].endswith(":d5")  # dee's, not cy's


def test_a_mail_server_that_is_down_is_retried_and_nothing_is_lost(
    quiet_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api, (inbox, _) = quiet_api, smtp
    survey = created(api, "/api/v1/surveys", {"type": "csat", "name": "Install"})
    created(
        api,
        "/api/v1/survey-triggers",
        {"survey": survey["id"], "on": "event", "event": "Installation Completed"},
    )
    send(
        api,
        identify("cy", "cy@example.com", "Cy"),
        track("i1", "cy", "Installation Completed", NOW - timedelta(minutes=1)),
    )
    closed_port = free_port()  # nothing listens there
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    down = Worker(engine, mailing(api.settings, closed_port)).run_once(now=datetime.now(UTC))
    assert down.retrying == 1 and down.done == 0
    assert "did not take the message" in down.outcomes[0]["error"]
    listed = api.http.get("/api/v1/jobs", headers=api.auth).json()
    [job] = listed["jobs"]
    assert job["status"] == "queued" and job["attempts"] == 1 and job["last_error"]
    # The mail server is back: the same job, with the same invite, goes out.
    up = Worker(engine, mailing(api.settings, smtp[1]))
    assert up.run_once(now=datetime.now(UTC)).done == 0  # backing off
    later = up.run_once(now=datetime.now(UTC) + timedelta(minutes=2))
    assert later.done == 1 and len(inbox.messages) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(invites_t)).scalar_one() == 1
    [done] = api.http.get("/api/v1/jobs", headers=api.auth).json()["jobs"]
    assert done["status"] == "done" and "token" not in json.dumps(done)


def test_e_mail_not_set_up_is_one_warning_and_every_job_waits(
    quiet_api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing setting is one problem: the log says it once, not once per waiting job,
    and the jobs stay queued for when e-mail is set up."""
    api = quiet_api
    survey = created(api, "/api/v1/surveys", {"type": "csat", "name": "Install"})
    created(
        api,
        "/api/v1/survey-triggers",
        {"survey": survey["id"], "on": "event", "event": "Installation Completed"},
    )
    people = ["ann", "bo", "cy", "dee"]
    send(
        api,
        *[identify(p, f"{p}@example.com", p.title()) for p in people],
        *[track(f"i-{p}", p, "Installation Completed", NOW - timedelta(minutes=1)) for p in people],
    )
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    worker = Worker(engine, api.settings.model_copy(update={"smtp_host": None}))
    with caplog.at_level("WARNING", logger="cxloop.service.worker"):
        first = worker.run_once(now=datetime.now(UTC))
        later = worker.run_once(now=datetime.now(UTC) + timedelta(minutes=5))
    assert first.retrying == len(people) and later.retrying == len(people)
    assert all("e-mail is not set up" in o["error"] for o in first.outcomes)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CXLOOP_SMTP_HOST" in warnings[0]
    listed = api.http.get("/api/v1/jobs", headers=api.auth).json()["jobs"]
    assert [j["status"] for j in listed] == ["queued"] * len(people)


def test_a_link_answers_once_and_shows_what_was_typed_escaped(quiet_api: ApiClient) -> None:
    api = quiet_api
    survey = created(api, "/api/v1/surveys", {"type": "nps", "name": "Onboarding"})
    send(api, identify("dee", "dee@example.com", "Dee"))
    invite = created(api, f"/api/v1/surveys/{survey['id']}/invites", {"customer": "dee"})
    token = invite["url"].rsplit("/", 1)[1]
    page = api.http.get(f"/s/{token}", params={"score": 4})
    assert page.status_code == 200
    assert "<script" not in page.text  # works without JavaScript
    assert 'name="viewport"' in page.text
    assert len(re.findall(r'type="radio" name="score"', page.text)) == 11
    assert re.search(r'value="4" required\s+checked', page.text)  # the score tapped in the e-mail
    hostile = "<script>alert(1)</script> too slow"
    refused = api.http.post(f"/s/{token}", data={"score": "11", "comment": hostile})
    assert refused.status_code == 422
    assert "&lt;script&gt;alert(1)&lt;/script&gt; too slow" in refused.text
    assert "<script>alert" not in refused.text and "from 0 to 10" in refused.text
    answered = api.http.post(f"/s/{token}", data={"score": "3", "comment": hostile})
    assert answered.status_code == 200 and "Thank you" in answered.text
    second = api.http.post(f"/s/{token}", data={"score": "9"})
    assert second.status_code == 409 and "already been answered" in second.text
    assert api.http.get(f"/s/{token}").status_code == 409
    assert api.http.get("/s/not-a-real-token").status_code == 404
    timeline = api.http.get("/api/v1/customers/dee/timeline", headers=api.auth).json()
    [said] = [item for item in timeline["items"] if item["kind"] == "response"]
    assert said["comment"] == hostile and said["score"] == 3  # stored as typed
    nps = api.http.get("/api/v1/feedback/nps", headers=api.auth).json()
    assert (nps["responses"], nps["detractors"]) == (1, 1)
    # The detractor is someone's task at once.
    [followup] = api.http.get("/api/v1/followups", headers=api.auth).json()
    assert followup["reason"] == "detractor" and "too slow" in followup["summary"]


def test_an_expired_link_is_refused_and_a_bad_answer_keeps_it_open(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            survey_id = create_survey(conn, SurveyIn(type="nps", name="Expiring"))["id"]
            _invite, token = create_invite(conn, survey_id, expires_days=1, now=NOW)
        with pytest.raises(ValueError, match="score"), engine.begin() as conn:
            answer_invite(conn, token, ResponseIn(score=12), now=NOW)
        with engine.begin() as conn:
            answer_invite(conn, token, ResponseIn(score=7), now=NOW + timedelta(hours=1))
        with engine.begin() as conn:
            _invite, late = create_invite(conn, survey_id, expires_days=1, now=NOW)
        with pytest.raises(InviteRefused) as refused, engine.begin() as conn:
            answer_invite(conn, late, ResponseIn(score=7), now=NOW + timedelta(days=2))
        assert refused.value.status == 410
        with pytest.raises(ValueError, match="expires_days"), engine.begin() as conn:
            create_invite(conn, survey_id, expires_days=0)
    finally:
        engine.dispose()


def test_in_app_surveys_are_fetched_and_answered_with_the_write_key(quiet_api: ApiClient) -> None:
    api = quiet_api
    survey = created(api, "/api/v1/surveys", {"type": "ces", "name": "Checkout effort"})
    created(
        api,
        "/api/v1/survey-triggers",
        {"survey": survey["id"], "on": "event", "event": "Checkout Completed", "channel": "in_app"},
    )
    send(
        api,
        identify("eve", None, "Eve"),
        track("c1", "eve", "Checkout Completed", NOW - timedelta(minutes=1)),
    )
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    ran = Worker(engine, api.settings).run_once(now=datetime.now(UTC))
    assert ran.done == 1 and "ready in the app" in ran.outcomes[0]["outcome"]
    auth = (api.write_key, "")
    assert api.http.get("/v1/surveys/pending", params={"userId": "eve"}).status_code == 401
    pending = api.http.get("/v1/surveys/pending", params={"userId": "eve"}, auth=auth).json()
    assert pending["survey"]["id"] == survey["id"] and pending["token"]
    refetched = api.http.get("/v1/surveys/pending", params={"userId": "eve"}, auth=auth).json()
    stale = api.http.post(
        "/v1/surveys/answer", json={"token": pending["token"], "score": 6}, auth=auth
    )
    assert stale.status_code == 404  # fetching again replaced the token
    bad = api.http.post(
        "/v1/surveys/answer", json={"token": refetched["token"], "score": 9}, auth=auth
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "score"
    ok = api.http.post(
        "/v1/surveys/answer", json={"token": refetched["token"], "score": 6}, auth=auth
    )
    assert ok.status_code == 200, ok.text
    again = api.http.post(
        "/v1/surveys/answer", json={"token": refetched["token"], "score": 6}, auth=auth
    )
    assert again.status_code == 409
    none = api.http.get("/v1/surveys/pending", params={"userId": "eve"}, auth=auth).json()
    assert none == {"survey": None}
    ces = api.http.get("/api/v1/feedback/ces", headers=api.auth).json()
    assert ces["responses"] == 1 and ces["ces"] == 6.0


def test_stage_triggers_fire_on_entries_after_they_are_made(quiet_api: ApiClient) -> None:
    api = quiet_api
    assert (
        api.http.post(
            "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
        ).status_code
        == 201
    )
    send(
        api,
        identify("fay", "fay@example.com", "Fay"),
        track("e0", "fay", "Delivery Completed", NOW - timedelta(days=3)),
    )
    survey = created(
        api,
        "/api/v1/surveys",
        {"type": "nps", "name": "Delivery NPS", "stage": "client-experience:delivery"},
    )
    trigger = created(
        api,
        "/api/v1/survey-triggers",
        {
            "survey": survey["id"],
            "on": "stage",
            "stage": "client-experience:delivery",
            "delay": "24h",
        },
    )
    send(
        api,
        identify("gus", "gus@example.com", "Gus"),
        track("e1", "gus", "Delivery Completed", NOW - timedelta(hours=2)),
    )
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    worker = Worker(engine, api.settings)
    assert worker.scan()["stage_triggers"] == 1  # gus, not fay (before the trigger existed)
    assert worker.scan()["stage_triggers"] == 0
    # A rebuilt history writes the same moves as new rows: nobody is asked again, and
    # fay's entry, from before the trigger, still asks nobody.
    rebuilt = api.http.post("/api/v1/lifecycle/rebuild", json={}, headers=api.auth)
    assert rebuilt.status_code == 200 and rebuilt.json()["transitions"] >= 2, rebuilt.text
    assert worker.scan()["stage_triggers"] == 0
    # Entries while the trigger is paused ask nobody once it is resumed.
    path = f"/api/v1/survey-triggers/{trigger['id']}"
    assert api.http.patch(path, json={"active": False}, headers=api.auth).status_code == 200
    send(
        api,
        identify("hal", "hal@example.com", "Hal"),
        track("e2", "hal", "Delivery Completed", NOW - timedelta(hours=1)),
    )
    assert api.http.patch(path, json={"active": True}, headers=api.auth).status_code == 200
    assert worker.scan()["stage_triggers"] == 0
    with engine.connect() as conn:
        [job] = jobs.list_jobs(conn, kind="survey.send")
    assert datetime.fromisoformat(job["run_at"]) == NOW - timedelta(hours=2) + timedelta(hours=24)
    bad = api.http.post(
        "/api/v1/survey-triggers",
        json={"survey": survey["id"], "on": "stage", "stage": "client-experience:nowhere"},
        headers=api.auth,
    )
    assert bad.status_code == 404 and bad.json()["error"]["field"] == "stage"
    for body, field in [
        ({"survey": survey["id"], "on": "event"}, "event"),
        ({"survey": survey["id"], "on": "event", "event": "X", "delay": "soon"}, "delay"),
        ({"survey": survey["id"], "on": "sometimes"}, "on"),
        ({"survey": survey["id"], "on": "case_resolved", "channel": "sms"}, "channel"),
    ]:
        refused = api.http.post("/api/v1/survey-triggers", json=body, headers=api.auth)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == field, body
    assert (
        api.http.post(
            "/api/v1/survey-triggers", json={"survey": 999, "on": "case_resolved"}, headers=api.auth
        ).status_code
        == 404
    )
