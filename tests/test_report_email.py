"""The weekly report e-mail per department, through the job queue to a real SMTP server on
loopback; and the worker's periodic refresh of saved segments. Both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from typing import Any

from cxloop import mail
from cxloop.mail import MailError
from cxloop.service.worker import Worker
from cxloop.settings import Settings
from cxloop.store.users import create_user
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get
from tests.test_distribution import Inbox, created, mailing, quiet_api, send, smtp, track
from tests.test_segments import _data

__all__ = ["quiet_api", "smtp"]  # the fixtures, shared


def _thursday_noon_after(moment: datetime) -> datetime:
    noon = moment.replace(hour=12, minute=0, second=0, microsecond=0)
    return noon + timedelta(days=(3 - noon.weekday()) % 7)


# A week's moment has passed since the schedule was made; pinned to Thursday noon (UTC), so
# the hours the tests add after it never reach the next Monday 08:00 or Wednesday 07:00 slot.
LATER = _thursday_noon_after(datetime.now(UTC) + timedelta(days=8))


def _parts(message: Message) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html", "application/pdf"):
            found[kind] = part.get_payload(decode=True)
            if kind == "application/pdf":
                found["filename"] = part.get_filename()
    return found


def _worker(api: ApiClient, settings: Settings, **kwargs: Any) -> Worker:
    project = api.http.app.state.cxloop.project  # type: ignore[attr-defined]
    return Worker(project.engine, settings, events=project.events, **kwargs)


def test_a_departments_weekly_report_is_mailed_once_with_its_pdf(
    quiet_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api = quiet_api
    inbox, port = smtp
    _data(api)
    body = {"department": "Marketing", "weekday": "Wed", "hour": 7,
            "recipients": ["lead@example.com", "team@example.com"]}  # fmt: skip
    saved = api.http.put("/api/v1/report-schedules", json=body, headers=api.auth)
    assert saved.status_code == 200, saved.text
    assert saved.json()["weekday"] == "wed" and saved.json()["sends_to"] == body["recipients"]

    worker = _worker(api, mailing(api.settings, port))
    first = worker.run_once(now=LATER)
    assert first.scanned["reports"] == 1 and first.failed == 0
    assert [o["outcome"] for o in first.outcomes if o["kind"] == "report.email"] == ["sent to 2"]
    assert sorted(m["To"] for m in inbox.messages) == body["recipients"]
    message = inbox.messages[0]
    assert " report for marketing, week to " in message["Subject"]
    parts = _parts(message)
    assert parts["application/pdf"].startswith(b"%PDF-")
    assert parts["filename"].startswith("cxloop-report-client-experience-")
    html = parts["text/html"].decode()
    assert "<svg" in html and "<script" not in html
    report = get(api, "/api/v1/report", department="marketing")
    marketing = [s["name"] for s in report["gaps"]["stages"]]
    assert marketing and all(f">{name}<" in html for name in marketing)
    assert "Stages to look at first:" in parts["text/plain"].decode()

    again = worker.run_once(now=LATER + timedelta(hours=1))  # the same week: nothing new
    assert again.scanned["reports"] == 0 and len(inbox.messages) == 2
    listed = get(api, "/api/v1/report-schedules")
    assert listed[0]["last_sent_at"] is not None

    # With no addresses of its own, the schedule goes to the department's users.
    project = api.http.app.state.cxloop.project  # type: ignore[attr-defined]
    with project.engine.begin() as conn:
        create_user(conn, email="sam@example.com", role="member", password="a long passphrase",
                    department="sales")  # fmt: skip
    to_users = api.http.put("/api/v1/report-schedules", headers=api.auth,
                            json={"department": "sales", "weekday": "mon"})  # fmt: skip
    assert to_users.json()["sends_to"] == ["sam@example.com"]


def test_a_retry_after_a_mail_failure_sends_only_the_missing_copies(
    quiet_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api = quiet_api
    inbox, port = smtp
    _data(api)
    body = {"department": "sales", "recipients": ["a@example.com", "b@example.com"]}
    assert api.http.put("/api/v1/report-schedules", json=body, headers=api.auth).is_success
    refused: list[str] = []

    def flaky(settings: Settings, message: EmailMessage) -> None:
        """The real client; the server refuses the second address once (it is down)."""
        if message["To"] == "b@example.com" and not refused:
            refused.append(message["To"])
            raise MailError("the mail server is down")
        mail.send(settings, message)

    worker = _worker(api, mailing(api.settings, port), sender=flaky)
    first = worker.run_once(now=LATER)
    assert first.retrying == 1 and [m["To"] for m in inbox.messages] == ["a@example.com"]
    # Retried after its backoff: only b's copy goes out; a gets no second one.
    second = worker.run_once(now=LATER + timedelta(hours=7))
    assert second.done == 1 and [m["To"] for m in inbox.messages] == ["a@example.com",
                                                                     "b@example.com"]  # fmt: skip


def test_bad_schedules_name_the_field(quiet_api: ApiClient) -> None:
    api = quiet_api
    _data(api)
    cases = [
        ({"department": "Nobody"}, 404, "no department named 'Nobody'"),
        ({"department": "sales", "weekday": "someday"}, 422, "weekday"),
        ({"department": "sales", "hour": 24}, 422, "hour"),
        ({"department": "sales", "recipients": ["not an address"]}, 422, "recipients"),
        ({"department": "sales", "model": "nope"}, 404, "nope"),
    ]
    for body, status, says in cases:
        answer = api.http.put("/api/v1/report-schedules", json=body, headers=api.auth)
        assert answer.status_code == status and says in answer.text, (body, answer.text)
    gone = api.http.delete("/api/v1/report-schedules/sales", headers=api.auth)
    assert gone.status_code == 404 and "has no report schedule" in gone.text


def test_the_worker_refreshes_saved_segments_each_period(quiet_api: ApiClient) -> None:
    api = quiet_api
    _data(api)
    rules = [{"kind": "event", "event": "Order Completed", "within_days": 30, "min_count": 2}]
    made = created(api, "/api/v1/segments", {"name": "Busy", "rules": rules})
    send(api, track("x1", "u0", "Order Completed", datetime.now(UTC) - timedelta(hours=1)),
         track("x2", "u0", "Order Completed", datetime.now(UTC) - timedelta(hours=2)))  # fmt: skip
    assert get(api, "/api/v1/segments/Busy")["members"] == made["members"]  # not yet
    worker = _worker(api, api.settings.model_copy(update={"segments_refresh_minutes": 60}))
    now = datetime.now(UTC)
    ran = worker.run_once(now=now)
    assert ran.scanned["segments"] == 1 and ran.failed == 0
    assert get(api, "/api/v1/segments/Busy")["members"] == made["members"] + 1  # u0 joined
    assert worker.run_once(now=now).scanned["segments"] == 0  # once per period
    # A worker without the event store leaves the refresh queued for one that has it.
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]
    blind = Worker(engine, api.settings.model_copy(update={"segments_refresh_minutes": 60}))
    later = now + timedelta(hours=1)
    assert blind.run_once(now=later).scanned["segments"] == 1
    queued = get(api, "/api/v1/jobs", status="queued")
    assert [j["kind"] for j in queued["jobs"]] == ["segments.refresh"]


def test_the_cli_sets_lists_and_deletes_schedules(embedded_settings: Settings) -> None:
    cx(embedded_settings, "departments", "create", "Support")
    made = cx_json(embedded_settings, "report-schedules", "set", "Support", "--weekday", "fri",
                   "--hour", "16", "--to", "desk@example.com")  # fmt: skip
    assert (made["weekday"], made["hour"], made["sends_to"]) == ("fri", 16, ["desk@example.com"])
    assert datetime.fromisoformat(made["next_at"]).weekday() == 4
    listed = cx(embedded_settings, "report-schedules", "list", "--format", "csv").stdout
    assert "Support" in listed and "desk@example.com" in listed
    bad = cx(embedded_settings, "report-schedules", "set", "Support", "--weekday", "someday",
             check=False)  # fmt: skip
    assert bad.returncode == 2 and "--weekday" in bad.stderr
    cx(embedded_settings, "report-schedules", "delete", "Support")
    assert cx_json(embedded_settings, "report-schedules", "list") == []
