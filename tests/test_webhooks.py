"""Outgoing webhooks to a real HTTP receiver on loopback: signed the Standard Webhooks way
(checked with that project's own library), retried with backoff on 5xx, final on 4xx,
disabled after failures in a row with a notice to admins by real SMTP, re-sent by hand;
private targets refused by default. Both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from cxloop.automations.webhooks import Unreachable, check_url
from cxloop.domain.values import bounded_key
from cxloop.service.worker import Worker
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.store.users import create_user
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys
from tests.receiver import Receiver
from tests.test_closing_loop import get
from tests.test_distribution import Inbox, identify, mailing, send, smtp, track
from tests.test_listener_backlog import install_trigger

__all__ = ["smtp"]
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def hook_api(settings: Settings) -> Iterator[ApiClient]:
    """The app with its worker off and loopback targets allowed (the receiver is local)."""
    quiet = settings.model_copy(
        update={"jobs_poll_s": 0, "webhooks_allow_private": True, "webhooks_disable_after": 4}
    )
    write_key, secret_key = make_keys(quiet)
    with TestClient(create_app(quiet)) as http:
        yield ApiClient(http, write_key, secret_key, quiet)


def worker(api: ApiClient, settings: Settings | None = None) -> Worker:
    project = api.http.app.state.cxloop.project  # type: ignore[attr-defined]
    return Worker(project.engine, settings or api.settings, events=project.events)


def endpoint(api: ApiClient, name: str, url: str, topics: list[str], **more: Any) -> Any:
    body = {"name": name, "url": url, "topics": topics, **more}
    response = api.http.post("/api/v1/webhooks", json=body, headers=api.auth)
    assert response.status_code == 201, response.text
    return response.json()


def test_changes_arrive_signed_and_logged(hook_api: ApiClient) -> None:
    api = hook_api
    send(api, identify("ann", "ann@example.com", "Ann"))
    with Receiver() as receiver:
        hook = endpoint(
            api, "crm", receiver.url, ["case", "event", "followup"], events=["Order Completed"]
        )
        assert hook["secret"].startswith("whsec_")
        assert "secret" not in get(api, "/api/v1/webhooks")[0]
        opened = api.http.post(
            "/api/v1/cases", json={"customer": "ann", "subject": "Broken"}, headers=api.auth
        )
        assert opened.status_code == 201
        send(
            api,
            track("o1", "ann", "Order Completed", NOW, total=12),
            track("p1", "ann", "Page Viewed", NOW),
        )
        send(api, track("o1", "ann", "Order Completed", NOW, total=12))  # a retry: no second
        summary = worker(api).run_once(now=datetime.now(UTC) + timedelta(seconds=1))
        assert summary.failed == 0, summary.outcomes
        got = sorted(receiver.received, key=lambda r: json.loads(r["body"])["type"])
        assert [json.loads(r["body"])["type"] for r in got] == ["case.opened", "event"]
        for item in got:  # what a receiver does with the library of the standard
            verified = Webhook(hook["secret"]).verify(item["body"], item["headers"])
            assert verified["data"]["customer_id"] == get(api, "/api/v1/customers/ann")["id"]
            assert item["headers"]["webhook-id"].startswith("msg_")
        event = json.loads(got[1]["body"])["data"]
        assert event["event"] == "Order Completed" and event["properties"] == {"total": 12}
        # A body changed on the way fails the check.
        tampered = got[0]["body"].replace("Broken", "Fixed")
        with pytest.raises(Exception, match=r"(?i)signature"):
            Webhook(hook["secret"]).verify(tampered, got[0]["headers"])
        log = get(api, "/api/v1/webhook-deliveries")
        assert {d["status"] for d in log} == {"delivered"}
        assert all(d["log"][0]["status_code"] == 200 for d in log)
        # A manual re-send carries the same id, so the receiver can drop it.
        resent = api.http.post(
            f"/api/v1/webhook-deliveries/{log[0]['id']}/resend", headers=api.auth
        )
        assert resent.status_code == 200
        worker(api).run_once(now=datetime.now(UTC) + timedelta(seconds=2))
        assert receiver.received[-1]["headers"]["webhook-id"] == log[0]["webhook_id"]
        assert len(get(api, "/api/v1/webhook-deliveries?webhook=crm")[0]["log"]) == 2


@pytest.mark.parametrize("concurrency", [1, 6])
def test_a_slow_receiver_gets_deliveries_side_by_side(
    hook_api: ApiClient, concurrency: int
) -> None:
    """Deliveries wait on someone else's server: the worker sends up to
    ``webhooks_concurrency`` at a time, and with 1 strictly one after the other."""
    api = hook_api
    send(api, identify("ann", "ann@example.com", "Ann"))
    with Receiver(delay_s=0.3) as receiver:
        endpoint(api, "slow", receiver.url, ["event"])
        send(api, *(track(f"s{n}", "ann", "Order Completed", NOW, n=n) for n in range(6)))
        settings = api.settings.model_copy(update={"webhooks_concurrency": concurrency})
        queue = worker(api, settings)
        summary = queue.run_once(now=datetime.now(UTC) + timedelta(seconds=1))
        queue.close()
    assert summary.done == 6 and summary.failed == summary.retrying == 0
    assert len({r["headers"]["webhook-id"] for r in receiver.received}) == 6
    if concurrency == 1:
        assert receiver.most_in_flight == 1
    else:
        assert receiver.most_in_flight > 1
    log = get(api, "/api/v1/webhook-deliveries?webhook=slow")
    assert [d["status"] for d in log] == ["delivered"] * 6


def test_failures_back_off_end_on_4xx_and_disable_the_endpoint(
    hook_api: ApiClient, smtp: tuple[Inbox, int]
) -> None:
    api = hook_api
    inbox, port = smtp
    project = api.http.app.state.cxloop.project  # type: ignore[attr-defined]
    with project.engine.begin() as conn:
        create_user(conn, email="boss@example.com", role="admin", password="a long passphrase")
    send(api, identify("ann", "ann@example.com", "Ann"))
    queue = worker(
        api,
        mailing(api.settings, port).model_copy(
            update={"webhooks_allow_private": True, "webhooks_disable_after": 4}
        ),
    )
    with Receiver(codes=[503, 502]) as flaky, Receiver() as gone:
        endpoint(api, "flaky", flaky.url, ["event"])
        endpoint(api, "gone", gone.url, ["event"])
        gone.always = 404
        send(api, track("e1", "ann", "Order Completed", NOW))
        start = datetime.now(UTC) + timedelta(seconds=1)
        queue.run_once(now=start)
        queue.run_once(now=start + timedelta(seconds=31))  # the first backoff is 30 s
        queue.run_once(now=start + timedelta(seconds=50))  # the second is 60 s: not yet
        assert [r["code"] for r in flaky.received] == [503, 502]
        queue.run_once(now=start + timedelta(seconds=95))
        assert [r["code"] for r in flaky.received] == [503, 502, 200]
        by_name = {d["endpoint"]: d for d in get(api, "/api/v1/webhook-deliveries")}
        assert by_name["flaky"]["status"] == "delivered" and by_name["flaky"]["attempts"] == 3
        assert [a["status_code"] for a in by_name["flaky"]["log"]] == [503, 502, 200]
        assert by_name["gone"]["status"] == "failed" and by_name["gone"]["attempts"] == 1
        assert by_name["gone"]["last_error"] == "HTTP 404"
        assert len(gone.received) == 1  # a 404 is not retried

        # Three more failures make four in a row: the endpoint is disabled, admins told.
        for n in range(3):
            send(api, track(f"x{n}", "ann", "Order Completed", NOW))
        queue.run_once(now=start + timedelta(minutes=5))
        [gone_hook] = [h for h in get(api, "/api/v1/webhooks") if h["name"] == "gone"]
        assert (
            not gone_hook["enabled"]
            and "4 failed attempts in a row" in gone_hook["disabled_reason"]
        )
        [notice] = [m for m in inbox.messages if "disabled" in m["Subject"]]
        assert notice["To"] == "boss@example.com" and "gone" in notice["Subject"]
        audit = get(api, "/api/v1/audit", entity="webhook")
        assert audit[0]["action"] == "disabled" and audit[0]["actor"] == "cxloop"
        send(api, track("y1", "ann", "Order Completed", NOW))
        queue.run_once(now=start + timedelta(minutes=6))
        assert len(gone.received) == 4  # nothing more goes to a disabled endpoint
        enabled = api.http.post("/api/v1/webhooks/gone/enable", headers=api.auth)
        assert enabled.json()["enabled"] and enabled.json()["failures_in_row"] == 0


def test_unsafe_targets_are_refused(settings: Settings) -> None:
    safe = settings.model_copy(update={"webhooks_allow_private": False})
    for url in (
        "http://127.0.0.1:9/hook",
        "http://localhost/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/",
        "http://192.168.0.9",
    ):
        with pytest.raises(Unreachable, match="private, loopback or link-local"):
            check_url(url, safe, resolve=True)
    for url, reason in (
        ("ftp://example.com/x", "http:// or https://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("http:///nohost", "names no host"),
    ):
        with pytest.raises(Unreachable, match=reason):
            check_url(url, safe, resolve=False)
    check_url("https://93.184.215.14/hook", safe, resolve=True)  # a public address is fine
    _write_key, secret_key = make_keys(safe)
    with TestClient(create_app(safe.model_copy(update={"jobs_poll_s": 0}))) as http:
        auth = {"Authorization": f"Bearer {secret_key}"}
        body = {"name": "internal", "url": "http://127.0.0.1:8080/admin", "topics": ["case"]}
        refused = http.post("/api/v1/webhooks", json=body, headers=auth)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "url"
        assert "CXLOOP_WEBHOOKS_ALLOW_PRIVATE" in refused.json()["error"]["message"]
        bad_topic = http.post(
            "/api/v1/webhooks",
            headers=auth,
            json={**body, "url": "https://93.184.215.14/", "topics": ["x"]},
        )
        assert bad_topic.status_code == 422 and bad_topic.json()["error"]["field"] == "topics"


def test_the_longest_message_ids_still_queue_one_survey_and_one_delivery_each(
    hook_api: ApiClient,
) -> None:
    """A messageId may be 200 characters, and the keys made of it are longer: they are
    fitted to their columns (PostgreSQL refuses longer ones) without colliding."""
    api = hook_api
    install_trigger(api)
    endpoint(api, "crm", "http://127.0.0.1:9/hook", ["event"], events=["Installation Completed"])
    first, second = "m" * 199 + "1", "m" * 199 + "2"
    send(api, identify("ann", "ann@example.com", "Ann"))
    for mid in (first, second, first):  # the third is a retry of the first
        send(api, track(mid, "ann", "Installation Completed", NOW - timedelta(minutes=1)))
    stats = get(api, "/api/v1/stats")
    assert (stats["events"], stats["listener_backlog"]) == (3, 0)
    with api.http.app.state.cxloop.project.engine.connect() as conn:  # type: ignore[attr-defined]
        keys = [j["key"] for j in jobs.list_jobs(conn, kind="survey.send")]
    assert len(keys) == 2 and len(set(keys)) == 2 and all(len(k) <= 200 for k in keys)
    assert len(get(api, "/api/v1/webhook-deliveries?webhook=crm")) == 2


def test_a_bounded_key_keeps_short_keys_and_tells_long_ones_apart() -> None:
    assert bounded_key("survey.send:1:m1") == "survey.send:1:m1"
    long_one, other = "k" * 250 + "1", "k" * 250 + "2"
    fitted = bounded_key(long_one)
    assert len(fitted) == 200 and fitted.startswith("k" * 100)
    assert fitted != bounded_key(other) and fitted == bounded_key(long_one)
    assert len(bounded_key(long_one, 300)) == 251
