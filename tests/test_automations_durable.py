"""Durable execution: SIGKILL the server while its worker runs a rule's actions, start it
again, and check that every run finished with nothing lost and nothing doubled.

Events arrive through the real Segment client; the rule opens a follow-up, sets a trait,
sends an e-mail to a real SMTP server on loopback and calls a webhook on a real (slow)
HTTP receiver, so the kill lands while deliveries are in flight. Actions that change the
database happen exactly once; a webhook or e-mail cut off mid-send is sent again with the
same ``webhook-id`` / ``Message-ID``, which is what receivers drop repeats by.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics import Client

from cxloop.settings import Settings
from tests.conftest import ServerProcess, free_port, make_keys
from tests.receiver import Receiver
from tests.test_distribution import Inbox, smtp

__all__ = ["smtp"]
pytestmark = pytest.mark.slow
CUSTOMERS = 30
WAIT = 180.0  # a guard against a hang, not a measurement


def _wait(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_worker_loses_and_doubles_nothing(
    settings: Settings, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    write_key, secret_key = make_keys(settings)
    env = {
        "CXLOOP_JOBS_POLL_S": "0.2",
        "CXLOOP_JOBS_LEASE_S": "2",
        "CXLOOP_WEBHOOKS_ALLOW_PRIVATE": "true",
        "CXLOOP_SMTP_HOST": "127.0.0.1",
        "CXLOOP_SMTP_PORT": str(smtp_port),
        "CXLOOP_SMTP_SECURITY": "none",
    }
    server = ServerProcess(settings, free_port(), tmp_path / "server.log", env=env)
    server.start()
    rest = httpx.Client(
        base_url=f"{server.url}/api/v1",
        timeout=30,
        headers={"Authorization": f"Bearer {secret_key}"},
    )
    client = Client(write_key, host=server.url, upload_size=50, max_retries=10)
    try:
        # Deliveries after the fifth wait in the receiver until the server has been killed.
        with Receiver(delay_s=0.15, hold_after=5) as receiver:
            for n in range(CUSTOMERS):
                client.identify(
                    f"c{n}",
                    {"name": f"Customer {n}", "email": f"c{n}@example.com"},
                    message_id=f"id-{n}",
                )
            client.flush()
            hook = rest.post(
                "/webhooks", json={"name": "crm", "url": receiver.url, "topics": ["automation"]}
            )
            assert hook.status_code == 201, hook.text
            rule = {
                "name": "Thank buyers",
                "trigger": {"on": "event", "event": "Order Completed"},
                "actions": [
                    {"type": "followup", "summary": "Call {{ customer.name }}"},
                    {
                        "type": "set_trait",
                        "trait": "thanked_for",
                        "value": "{{ event.properties.order }}",
                    },
                    {
                        "type": "email",
                        "subject": "Thanks, {{ customer.first_name }}",
                        "text": "Thank you for order {{ event.properties.order }}.",
                    },
                    {"type": "webhook", "endpoint": "crm"},
                ],
            }
            made = rest.post("/automations", json=rule)
            assert made.status_code == 201, made.text
            for n in range(CUSTOMERS):
                client.track(f"c{n}", "Order Completed", {"order": f"o-{n}"}, message_id=f"o-{n}")
            client.flush()
            _wait(lambda: len(receiver.received) >= 5, "the first deliveries")
            server.kill()  # mid-run: deliveries in flight, steps queued
            at_kill = len(receiver.received)
            assert at_kill == 5
            receiver.release()
            server.start()

            def finished() -> list[dict[str, Any]] | None:
                found = rest.get("/automation-runs", params={"limit": 1000}).json()
                done = [r for r in found if r["status"] in ("done", "failed", "skipped")]
                return found if len(done) == CUSTOMERS == len(found) else None

            runs = _wait(finished, "every run to finish")
            _wait(
                lambda: len({r["headers"]["webhook-id"] for r in receiver.received}) >= CUSTOMERS,
                "every delivery",
            )
            received = list(receiver.received)
    finally:
        client.shutdown()
        rest.close()

    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        timeout=30,
        headers={"Authorization": f"Bearer {secret_key}"},
    ) as rest:
        assert {r["status"] for r in runs} == {"done"}, [r["outcome"] for r in runs]
        assert sorted(r["occurrence"] for r in runs) == sorted(
            f"event:o-{n}" for n in range(CUSTOMERS)
        )
        assert all([a["status"] for a in r["actions"]] == ["done"] * 4 for r in runs)
        followups = [
            f
            for f in rest.get("/followups", params={"limit": 1000}).json()
            if f["reason"] == "automation"
        ]
        assert sorted(Counter(f["customer_id"] for f in followups).values()) == [1] * CUSTOMERS
        for n in (0, CUSTOMERS // 2, CUSTOMERS - 1):
            assert rest.get(f"/customers/c{n}").json()["traits"]["thanked_for"] == f"o-{n}"
        deliveries = rest.get("/webhook-deliveries", params={"limit": 1000}).json()
        assert len(deliveries) == CUSTOMERS and {d["status"] for d in deliveries} == {"delivered"}
    ids = Counter(r["headers"]["webhook-id"] for r in received)
    assert set(ids) == {d["webhook_id"] for d in deliveries}  # each payload arrived
    repeats = sum(ids.values()) - len(ids)  # at most the ones cut off by the kill
    assert repeats <= 20, ids
    mails = Counter(m["Message-ID"] for m in inbox.messages)
    assert len(mails) == CUSTOMERS and sum(mails.values()) - len(mails) <= 20
    server.stop()
    print(
        f"\n[{'postgres' if settings.events_url else 'embedded'}] deliveries before the "
        f"kill: {at_kill}/{CUSTOMERS}; webhook repeats after the restart: {repeats}; "
        f"e-mail repeats: {sum(mails.values()) - len(mails)}"
    )
