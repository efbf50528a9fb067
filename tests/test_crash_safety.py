"""Acknowledged means stored: SIGKILL the server mid-stream, restart it, let the client retry.

The official Segment client streams messages (ids set by the test) in small batches. Its
request function is wrapped (the real one still does the work) so that every batch the
server acknowledged with a 200 is recorded. The server is killed with SIGKILL while the
stream runs and started again on the same port and stores; the client's own retries send
what was not acknowledged. Afterwards every acknowledged message must be stored exactly
once, and so must every message sent (a batch the server committed but could not answer
is sent again and must not be stored twice).
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import duckdb
import httpx
import psycopg
import pytest
from segment.analytics import Client
from segment.analytics import consumer as segment_consumer

from cxloop.settings import Settings
from tests.conftest import ServerProcess, make_keys

pytestmark = pytest.mark.slow

FIRST_PART = 3000  # sent before the kill
SECOND_PART = 2000  # queued once the server is dead: sent to it and retried
KILL_AFTER = 1000  # acknowledged messages before the kill
USERS = 300
CLIENTS = 3  # concurrent clients, so that requests are in flight when the server dies
UPLOAD_SIZE = 50
WAIT = 120.0  # a guard against a hang, not a measurement


@dataclass
class Ledger:
    """What the wrapped request function saw, shared with the consumer thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: list[list[str]] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    failures: list[tuple[str, list[str]]] = field(default_factory=list)
    acked_enough: threading.Event = field(default_factory=threading.Event)
    failed: threading.Event = field(default_factory=threading.Event)
    in_flight: int = 0  # requests sent whose outcome is not recorded yet
    settled: threading.Condition = field(default_factory=threading.Condition)

    def begin(self) -> None:
        with self.settled:
            self.in_flight += 1

    def end(self) -> None:
        with self.settled:
            self.in_flight -= 1
            self.settled.notify_all()

    def wait_settled(self, timeout: float) -> bool:
        """Every request sent so far has its answer or its failure recorded."""
        with self.settled:
            return self.settled.wait_for(lambda: self.in_flight == 0, timeout)

    def acked_ids(self) -> list[str]:
        with self.lock:
            return [mid for batch in self.acked for mid in batch]


def _wrap(real: Any, ledger: Ledger) -> Any:
    def post(*args: Any, **kwargs: Any) -> Any:
        ids = [m["messageId"] for m in kwargs["batch"]]
        ledger.begin()
        try:
            try:
                response = real(*args, **kwargs)
            except Exception as exc:
                with ledger.lock:
                    ledger.failures.append((type(exc).__name__, ids))
                ledger.failed.set()
                raise
            with ledger.lock:
                ledger.acked.append(ids)
                ledger.accepted.append(int(response.json()["accepted"]))
                if sum(len(b) for b in ledger.acked) >= KILL_AFTER:
                    ledger.acked_enough.set()
            return response
        finally:
            ledger.end()

    return post


def _message(client: Client, n: int, run: str, rng: random.Random) -> tuple[str, str]:
    user = rng.randrange(USERS)
    mid = f"{run}-{n:06d}"
    common: dict[str, Any] = {
        "user_id": f"u-{run}-{user}",
        "anonymous_id": f"a-{run}-{user}",
        "context": {"ip": f"198.51.100.{user % 250}", "locale": "en-GB"},
        "message_id": mid,
    }
    kind = n % 10
    if kind == 0:
        client.identify(traits={"email": f"user{user}@example.com", "plan": "pro"}, **common)
    elif kind < 4:
        client.page(name="Product", properties={"path": f"/p/{n % 97}", "n": n}, **common)
    else:
        client.track(
            event=rng.choice(["Product Viewed", "Product Added", "Order Completed"]),
            properties={"sku": f"sku-{n % 211}", "price": round(rng.uniform(1, 200), 2), "n": n},
            **common,
        )
    return mid, common["user_id"]


def _stored_counts(settings: Settings) -> Counter[str]:
    """message id -> rows, read from the event store itself (server stopped)."""
    if settings.events_url:
        with psycopg.connect(settings.events_url) as con:
            rows = con.execute("SELECT message_id, count(*) FROM events GROUP BY 1").fetchall()
    else:
        con = duckdb.connect(settings.effective_events_url.split("///", 1)[1], read_only=True)
        try:
            rows = con.execute("SELECT message_id, count(*) FROM events GROUP BY 1").fetchall()
        finally:
            con.close()
    return Counter({str(mid): int(n) for mid, n in rows})


def _logged_ids(settings: Settings) -> set[str]:
    """Message ids in the ingestion log that were not yet applied when the server died.

    A 200 means the batch is fsynced to this log; the stores catch up behind it, and the
    restarted server replays whatever they had not taken yet.
    """
    from cxloop.ingest.log import IngestLog

    ingest_log = IngestLog(settings.home_dir / "ingest-log")
    try:
        return {m.message_id for _, record in ingest_log.pending() for m in record.messages}
    finally:
        ingest_log.close()


def test_acknowledged_messages_survive_sigkill(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_key, secret_key = make_keys(server.settings)
    settings = server.settings
    ledger = Ledger()
    monkeypatch.setattr(segment_consumer, "post", _wrap(segment_consumer.post, ledger))
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    total = FIRST_PART + SECOND_PART
    clients = [
        Client(
            write_key,
            host=server.url,
            upload_size=UPLOAD_SIZE,
            upload_interval=0.05,
            max_queue_size=total,
            max_retries=30,
            timeout=10,
            on_error=lambda exc, batch: errors.append((exc, batch)),
        )
        for _ in range(CLIENTS)
    ]
    run = uuid.uuid4().hex[:8]
    owner: dict[str, str] = {}  # message id -> user id, in the order sent
    killed = threading.Event()

    def produce(index: int) -> None:
        rng = random.Random(index)
        for n in range(index, total, CLIENTS):
            if n >= FIRST_PART:
                killed.wait(WAIT)
            mid, user = _message(clients[index], n, run, rng)
            owner[mid] = user

    producers = [
        threading.Thread(target=produce, args=(i,), name=f"producer-{i}", daemon=True)
        for i in range(CLIENTS)
    ]
    for thread in producers:
        thread.start()
    try:
        assert ledger.acked_enough.wait(WAIT), "the server acknowledged nothing"
        server.kill()
        killed.set()
        # The clients meet the dead server (with the second part at the latest) before the
        # restart, so some batch is certainly retried.
        assert ledger.failed.wait(WAIT), "no client met the dead server"
        # An answer that arrived just before the kill is recorded before the snapshot.
        assert ledger.wait_settled(WAIT), "a request to the dead server never ended"
        # The store as the crash left it, before any retry: every acknowledged message is
        # in it. Messages stored but never acknowledged were committed by a request the
        # kill cut off before its answer; the client sends them again.
        acked_by_dead_server = ledger.acked_ids()
        at_crash = _stored_counts(settings)
        logged = _logged_ids(settings)
        server.start()
        for thread in producers:
            thread.join(WAIT)
            assert not thread.is_alive()
        for client in clients:
            flusher = threading.Thread(target=client.flush, daemon=True)
            flusher.start()
            flusher.join(WAIT)
            assert not flusher.is_alive(), "a client did not finish sending"
    finally:
        killed.set()
        for client in clients:
            client.join()

    sent = set(owner)
    assert len(sent) == total
    assert errors == [], f"batches dropped by a client: {[str(e) for e, _ in errors]}"
    assert KILL_AFTER <= len(acked_by_dead_server) < total
    durable = set(at_crash) | logged
    assert [mid for mid in acked_by_dead_server if mid not in durable] == []
    assert [mid for mid, n in at_crash.items() if n != 1] == []
    assert durable <= sent
    committed_unanswered = durable - set(acked_by_dead_server)

    acked = ledger.acked_ids()
    assert sorted(acked) == sorted(sent), "every message is acknowledged once in the end"
    assert ledger.accepted == [len(b) for b in ledger.acked]  # nothing refused
    retried = {mid for _, ids in ledger.failures for mid in ids}
    assert retried, "no batch was retried"
    assert committed_unanswered <= retried

    # Through the REST API of the restarted server: all there, no customer twice.
    users = set(owner.values())
    with httpx.Client(
        base_url=f"{server.url}/api/v1",
        headers={"Authorization": f"Bearer {secret_key}"},
        timeout=30,
    ) as rest:
        stats = rest.get("/stats").json()
        assert stats["events"] == total
        assert stats["rejected_messages"] == 0
        assert stats["customers"] == stats["identified_customers"] == len(users)
        assert stats["merges"] == 0
        # Acknowledged and retried messages, each once on its customer's timeline.
        probe = sorted(acked_by_dead_server)[:: max(1, len(acked_by_dead_server) // 5)]
        for mid in [*probe, *sorted(retried)[:: max(1, len(retried) // 5)]]:
            timeline = rest.get("/events", params={"customer": owner[mid], "limit": 1000})
            found = [e for e in timeline.json()["items"] if e["message_id"] == mid]
            assert len(found) == 1, mid
            assert found[0]["user_id"] == owner[mid]
            assert found[0]["context"]["library"]["name"] == "analytics-python"

    # In the store itself, server stopped: one row per message id.
    server.stop()
    counts = _stored_counts(settings)
    assert set(counts) == sent
    assert [mid for mid, n in counts.items() if n != 1] == []
    assert sum(counts.values()) == total

    print(
        f"\n[{'postgres' if settings.events_url else 'embedded'}] acknowledged before the "
        f"kill: {len(acked_by_dead_server)}/{total}; stored at the crash: {len(at_crash)} "
        f"({len(committed_unanswered)} committed but unanswered); failed attempts: "
        f"{len(ledger.failures)} ({len(retried)} messages retried); acknowledged batches: "
        f"{len(ledger.acked)}; stored in the end: {sum(counts.values())}, each once"
    )
