"""Automations under load: what 20 active rules cost the ingest path, and how fast
outgoing webhooks are delivered.

    .venv/bin/python bench/automations.py [--part all|ingest|webhooks] [--seconds 15]
                                          [--rounds 2] [--rules 20] [--payloads 10000]
                                          [--receiver-delay-ms 0]

**ingest**: the sustained HTTP ingestion load of bench/ingest.py (same Segment batches,
same load process) against `cxloop serve` twice per round, in fresh embedded projects:
once with no rules, once with ``--rules`` enabled rules. Twelve rules watch events of the
load (each matches 0.3% to 3% of the messages; together they start a run for about one
message in five, so the listener records runs and queues their jobs on every batch),
the others react to answers, cases, follow-ups and cron schedules (the worker's scans).
Most act days later, as real rules do; two act at once, so the server's worker also runs
their actions during the load. The rounds alternate to spread the machine's noise over
both; the best round of each is compared. Goal: with rules, at least 80% of the figure without.

**webhooks**: a receiver in its own process (Starlette on uvicorn) that verifies every
Standard Webhooks signature and counts distinct ``webhook-id``s. cxloop: an endpoint on
the ``event`` topic, ``--payloads`` track events posted to /v1/batch, and the server's
worker delivers one signed POST per event (each a job, an attempt row and a logged
status). Throughput is payloads over the time from the first to the last receipt. Peer in
the same run: a bare sender, the least any webhook sender does: one ``httpx.Client``
signing each payload with ``standardwebhooks`` and POSTing it, one after the other, with
no queue, log or retries. ``--receiver-delay-ms 50`` makes the receiver answer as one
across the internet would, where sending side by side is what counts.

A human summary is printed, and last one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as load_bench  # bench/ingest.py: the load process and its helpers

ALLOW_PRIVATE = {"CXLOOP_WEBHOOKS_ALLOW_PRIVATE": "true"}
GOAL = 0.8

# -- the rules ------------------------------------------------------------------------------


def _email(subject: str, text: str) -> dict[str, Any]:
    return {"type": "email", "subject": subject, "text": text}


EVENT_RULES: list[dict[str, Any]] = [
    {
        "name": "Browse abandonment: tents",
        "trigger": {
            "on": "event",
            "event": "Product Viewed",
            "where": [
                {"field": "category", "op": "equals", "value": "Camping"},
                {"field": "price", "op": "gte", "value": 300},
            ],
        },
        "timing": {"delay": "1d"},
        "actions": [
            _email(
                "Still thinking about the {{ event.properties.name }}?",
                "Hello {{ customer.first_name }}, the {{ event.properties.name }} is waiting.",
            )
        ],
    },
    {
        "name": "Big order thank-you",
        "trigger": {
            "on": "event",
            "event": "Order Completed",
            "where": [{"field": "revenue", "op": "gte", "value": 700}],
        },
        "actions": [
            {"type": "set_trait", "trait": "big_spender", "value": "yes"},
            {"type": "set_trait", "trait": "last_big_order", "value": "{{ event.timestamp }}"},
        ],
    },
    {
        "name": "Review request",
        "trigger": {"on": "event", "event": "Order Completed"},
        "conditions": {
            "rules": [{"kind": "trait", "field": "plan", "op": "equals", "value": "pro"}]
        },
        "timing": {"delay": "14d"},
        "actions": [
            _email(
                "How is your {{ event.properties.name }}?",
                "Hello {{ customer.first_name }}, tell us how it went.",
            )
        ],
    },
    {
        "name": "Checkout rescue",
        "trigger": {
            "on": "event",
            "event": "Checkout Started",
            "where": [{"field": "value", "op": "gte", "value": 250}],
        },
        "timing": {"delay": "2h"},
        "actions": [
            {
                "type": "followup",
                "summary": "Call {{ customer.name }} about a {{ event.properties.value }} cart",
            }
        ],
    },
    {
        "name": "Coupon users",
        "trigger": {"on": "event", "event": "Coupon Applied"},
        "actions": [{"type": "set_trait", "trait": "coupon_user", "value": "yes"}],
    },
    {
        "name": "Cart reminder",
        "trigger": {
            "on": "event",
            "event": "Cart Viewed",
            "where": [{"field": "quantity", "op": "gte", "value": 3}],
        },
        "timing": {"delay": "1d"},
        "actions": [_email("Your cart", "Hello {{ customer.first_name }}, your cart is saved.")],
    },
    {
        "name": "Footwear fit guide",
        "trigger": {
            "on": "event",
            "event": "Product Added",
            "where": [{"field": "category", "op": "equals", "value": "Footwear"}],
        },
        "timing": {"delay": "3d"},
        "actions": [_email("Finding your size", "Our fit guide: https://example.com/fit")],
    },
    {
        "name": "Searchers without orders",
        "trigger": {
            "on": "event",
            "event": "Products Searched",
            "where": [{"field": "category", "op": "equals", "value": "Accessories"}],
        },
        "conditions": {
            "rules": [{"kind": "trait", "field": "newsletter", "op": "equals", "value": True}]
        },
        "timing": {"delay": "7d"},
        "actions": [_email("Ideas for your next trip", "Hello {{ customer.first_name }}.")],
    },
    {
        "name": "Sign-in after a long time",
        "trigger": {"on": "event", "event": "Signed In"},
        "timing": {"delay": "30d"},
        "actions": [{"type": "add_to_segment", "segment": "Returning"}],
    },
    {
        "name": "Apparel list browsers",
        "trigger": {
            "on": "event",
            "event": "Product List Viewed",
            "where": [
                {"field": "category", "op": "equals", "value": "Apparel"},
                {"field": "price", "op": "gte", "value": 200},
            ],
        },
        "timing": {"delay": "2d"},
        "actions": [_email("New in apparel", "Hello {{ customer.first_name }}.")],
    },
    {
        "name": "Bulk buyers",
        "trigger": {
            "on": "event",
            "event": "Product Added",
            "where": [{"field": "quantity", "op": "gte", "value": 3}],
        },
        "timing": {"delay": "1d"},
        "actions": [{"type": "webhook", "endpoint": "crm"}],
    },
    {
        "name": "Stove upsell",
        "trigger": {
            "on": "event",
            "event": "Order Completed",
            "where": [{"field": "name", "op": "equals", "value": "Ultralight Tent 2P"}],
        },
        "timing": {"delay": "5d"},
        "actions": [_email("A stove for your tent?", "Hello {{ customer.first_name }}.")],
    },
]
OTHER_RULES: list[dict[str, Any]] = [
    {
        "name": "Detractor call-back",
        "trigger": {"on": "response", "measure": "nps", "score": {"op": "lte", "value": 6}},
        "actions": [{"type": "followup", "summary": "Call {{ customer.name }}"}],
    },
    {
        "name": "Promoter referral ask",
        "trigger": {"on": "response", "measure": "nps", "score": {"op": "gte", "value": 9}},
        "timing": {"delay": "1d"},
        "actions": [_email("Thank you!", "Would you tell a friend?")],
    },
    {
        "name": "Case acknowledgement",
        "trigger": {"on": "case_opened"},
        "actions": [_email("We are on it", "Case: {{ case.subject }}")],
    },
    {
        "name": "Case resolved survey",
        "trigger": {"on": "case_resolved"},
        "timing": {"delay": "1d"},
        "actions": [_email("Was it solved?", "Tell us about {{ case.subject }}.")],
    },
    {
        "name": "Overdue follow-ups",
        "trigger": {"on": "followup_overdue"},
        "actions": [{"type": "webhook", "endpoint": "crm"}],
    },
    {
        "name": "Monday pro check-in",
        "trigger": {"on": "schedule", "cron": "0 9 * * 1", "segment": "Pro"},
        "actions": [{"type": "followup", "summary": "Check in with {{ customer.name }}"}],
    },
    {
        "name": "Monthly newsletter list",
        "trigger": {"on": "schedule", "cron": "0 8 1 * *", "segment": "Pro"},
        "actions": [{"type": "set_trait", "trait": "monthly_checked", "value": "yes"}],
    },
    {
        "name": "Nightly CRM sync",
        "trigger": {"on": "schedule", "cron": "0 2 * * *", "segment": "Pro"},
        "actions": [{"type": "webhook", "endpoint": "crm"}],
    },
]


def rules(count: int) -> list[dict[str, Any]]:
    """``count`` rules, event rules first, repeated under new names past the 20 above."""
    pool = EVENT_RULES + OTHER_RULES
    return [
        {**pool[i % len(pool)], "name": f"{pool[i % len(pool)]['name']} {i // len(pool) + 1}"}
        if i >= len(pool)
        else pool[i]
        for i in range(count)
    ]


# -- a cxloop project ----------------------------------------------------------------------


@dataclass
class Project:
    home: Path
    port: int
    env: dict[str, str]
    write_key: str
    secret_key: str
    server: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [load_bench.cxloop_bin(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"cxloop {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def api(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        response = httpx.request(
            method,
            f"http://127.0.0.1:{self.port}/api/v1{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.secret_key}"},
            timeout=120,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def serve(self) -> None:
        log = (self.home / "server.log").open("wb")
        self.server = subprocess.Popen(
            [load_bench.cxloop_bin(), "serve"], env=self.env, stdout=log, stderr=log
        )
        load_bench.wait_for_port(self.port, self.server)

    def stop(self) -> None:
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(120)
            self.server = None

    def app_db(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.home / 'cxloop.db'}?mode=ro", uri=True)


def new_project(root: Path, name: str, extra_env: dict[str, str] | None = None) -> Project:
    home = root / name
    port = load_bench.free_port()
    env = load_bench.project_env(home, port, None) | (extra_env or {})
    project = Project(home, port, env, "", "")
    project.write_key = project.cli("keys", "create", "--kind", "write", "--name", "bench").strip()
    project.secret_key = project.cli(
        "keys", "create", "--kind", "secret", "--name", "bench"
    ).strip()
    return project


# -- part 1: ingest with and without rules --------------------------------------------------


@dataclass
class IngestRun:
    rules: int
    events_per_s: float
    acknowledged: int
    stored: int
    runs: dict[str, int]


def seed_customer(project: Project) -> None:
    """One known customer with the traits the rules and segments name (they are checked
    against stored customers when saved)."""
    import httpx

    identify = {
        "type": "identify",
        "messageId": "seed-1",
        "userId": "user-000001",
        "traits": {"email": "customer1@example.com", "plan": "pro", "newsletter": True},
    }
    httpx.post(
        f"http://127.0.0.1:{project.port}/v1/batch",
        json={"batch": [identify]},
        auth=(project.write_key, ""),
        timeout=60,
    ).raise_for_status()


def ingest_once(root: Path, args: argparse.Namespace, count: int, round_no: int) -> IngestRun:
    project = new_project(root, f"ingest-{count}-{round_no}", ALLOW_PRIVATE)
    try:
        project.serve()
        seed_customer(project)
        if count:
            project.api(
                "POST",
                "/webhooks",
                {"name": "crm", "url": "http://127.0.0.1:9/crm", "topics": ["automation"]},
            )
            project.api(
                "POST",
                "/segments",
                {
                    "name": "Pro",
                    "rules": [{"kind": "trait", "field": "plan", "op": "equals", "value": "pro"}],
                },
            )
            project.api(
                "POST",
                "/segments",
                {
                    "name": "Returning",
                    "rules": [{"kind": "trait", "field": "plan", "op": "equals", "value": "-"}],
                },
            )
            for body in rules(count):
                project.api("POST", "/automations", body)
        result = load_bench.load(project.port, project.write_key, args)
        stored = int(project.api("GET", "/stats?days=1")["events"]) - 1  # the seed
    finally:
        project.stop()
    with project.app_db() as db:
        found = dict(
            db.execute("SELECT status, count(*) FROM automation_runs GROUP BY status").fetchall()
        )
    shutil.rmtree(project.home, ignore_errors=True)
    return IngestRun(count, result.events_per_s, result.events_total, stored, found)


def bench_ingest(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"ingest: {args.seconds:g} s measured per run, /v1/batch of {args.batch} messages, "
        f"{args.connections} connections; {args.rounds} rounds of (no rules, {args.rules} rules)",
        flush=True,
    )
    found: dict[int, list[IngestRun]] = {0: [], args.rules: []}
    for round_no in range(args.rounds):
        for count in (0, args.rules):
            run = ingest_once(root, args, count, round_no)
            found[count].append(run)
            runs = ", ".join(f"{v:,} {k}" for k, v in sorted(run.runs.items())) or "none"
            print(
                f"  round {round_no + 1}, {count:>2} rules: {run.events_per_s:>9,.0f} events/s "
                f"({run.acknowledged:,} acknowledged, {run.stored:,} stored; rule runs: {runs})",
                flush=True,
            )
    base = max(r.events_per_s for r in found[0])
    ruled = max(r.events_per_s for r in found[args.rules])
    ratio = ruled / base if base else 0.0
    consistent = all(r.acknowledged == r.stored for runs in found.values() for r in runs)
    started = sum(sum(r.runs.values()) for r in found[args.rules])
    print(
        f"  best: {base:,.0f} events/s without rules, {ruled:,.0f} with {args.rules} "
        f"({ratio:.0%}; goal at least {GOAL:.0%}: {'met' if ratio >= GOAL else 'NOT met'}); "
        f"stored == acknowledged: {'yes' if consistent else 'NO'}",
        flush=True,
    )
    return {
        "events_per_s_without_rules": round(base),
        "events_per_s_with_rules": round(ruled),
        "rules": args.rules,
        "ratio": round(ratio, 3),
        "goal_met": ratio >= GOAL,
        "rule_runs_started": started,
        "consistent": consistent,
    }


# -- part 2: webhook delivery ---------------------------------------------------------------


def serve_receiver(port: int, secret: str, delay_ms: float = 0.0) -> None:
    """Verifies each delivery's signature and counts distinct webhook ids; with
    ``delay_ms``, answers each that much later, as a receiver across the internet does."""
    import asyncio

    from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    verifier = Webhook(secret)
    seen: set[str] = set()
    state = {"received": 0, "bad": 0, "first": 0.0, "last": 0.0}

    async def hook(request: Request) -> Response:
        body = await request.body()
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            state["bad"] += 1
            return Response(status_code=400)
        now = time.time()
        state["first"] = state["first"] or now
        state["last"] = now
        state["received"] += 1
        seen.add(request.headers["webhook-id"])
        return Response(status_code=204)

    async def stats(_request: Request) -> JSONResponse:
        return JSONResponse({**state, "unique": len(seen)})

    async def reset(_request: Request) -> JSONResponse:
        seen.clear()
        state.update(received=0, bad=0, first=0.0, last=0.0)
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/hook", hook, methods=["POST"]),
            Route("/stats", stats),
            Route("/reset", reset, methods=["POST"]),
        ]
    )
    load_bench.serve_app(app, port)


def receiver_stats(port: int) -> dict[str, Any]:
    import httpx

    found: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=30).json()
    return found


def track_batches(count: int, per_batch: int = 100) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    batches = []
    for start in range(0, count, per_batch):
        batches.append(
            {
                "batch": [
                    {
                        "type": "track",
                        "messageId": f"hook-{n:06d}",
                        "userId": f"user-{n % 500:04d}",
                        "event": "Order Completed",
                        "timestamp": (now - timedelta(seconds=count - n)).isoformat(),
                        "properties": {"order_id": f"ord-{n:06d}", "revenue": 10 + n % 90},
                    }
                    for n in range(start, min(start + per_batch, count))
                ]
            }
        )
    return batches


def bench_cxloop_webhooks(root: Path, args: argparse.Namespace, port: int) -> dict[str, Any]:
    import httpx

    project = new_project(root, "webhooks", ALLOW_PRIVATE)
    made = json.loads(
        project.cli(
            "webhooks",
            "create",
            "bench",
            "--url",
            f"http://127.0.0.1:{port}/hook",
            "--topic",
            "event",
            "-f",
            "json",
        )
    )
    made = made[0] if isinstance(made, list) else made
    receiver = start_receiver(port, made["secret"], args.receiver_delay_ms)
    try:
        project.serve()
        started = time.time()
        with httpx.Client(auth=(project.write_key, ""), timeout=120) as client:
            for body in track_batches(args.payloads):
                answer = client.post(f"http://127.0.0.1:{project.port}/v1/batch", json=body)
                answer.raise_for_status()
        ingested = time.time()
        deadline = time.monotonic() + args.timeout
        seen = receiver_stats(port)
        while seen["unique"] < args.payloads and time.monotonic() < deadline:
            time.sleep(1)
            seen = receiver_stats(port)
    finally:
        project.stop()
        stop_process(receiver)
    with project.app_db() as db:
        statuses = dict(
            db.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status")
        )
        attempts = db.execute("SELECT count(*) FROM webhook_attempts").fetchone()[0]
    shutil.rmtree(project.home, ignore_errors=True)
    span = (seen["last"] - seen["first"]) or 1e-9
    return {
        "received": seen["received"],
        "unique": seen["unique"],
        "bad_signatures": seen["bad"],
        "per_s": seen["unique"] / span,
        "seconds": span,
        "end_to_end_s": (seen["last"] - started) if seen["last"] else None,
        "ingest_s": ingested - started,
        "deliveries": statuses,
        "attempts": attempts,
    }


def bench_bare_sender(args: argparse.Namespace, port: int) -> dict[str, Any]:
    """The peer: sign and POST each payload in turn, nothing else."""
    import httpx
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signer = Webhook(secret)
    receiver = start_receiver(port, secret, args.receiver_delay_ms)
    payloads = [
        json.dumps(
            {
                "type": "event",
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {
                    "message_id": f"hook-{n:06d}",
                    "event": "Order Completed",
                    "customer_id": n % 500 + 1,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "properties": {"order_id": f"ord-{n:06d}", "revenue": 10 + n % 90},
                },
            },
            separators=(",", ":"),
        )
        for n in range(args.payloads)
    ]
    try:
        with httpx.Client(timeout=10) as client:
            for body in payloads:
                uid = "msg_" + uuid.uuid4().hex
                at = datetime.now(UTC)
                client.post(
                    f"http://127.0.0.1:{port}/hook",
                    content=body.encode(),
                    headers={
                        "content-type": "application/json",
                        "webhook-id": uid,
                        "webhook-timestamp": str(int(at.timestamp())),
                        "webhook-signature": signer.sign(uid, at, body),
                    },
                ).raise_for_status()
        seen = receiver_stats(port)
    finally:
        stop_process(receiver)
    span = (seen["last"] - seen["first"]) or 1e-9
    return {
        "received": seen["received"],
        "unique": seen["unique"],
        "bad_signatures": seen["bad"],
        "per_s": seen["unique"] / span,
        "seconds": span,
    }


def start_receiver(port: int, secret: str, delay_ms: float = 0.0) -> Any:
    proc = mp.get_context("spawn").Process(
        target=serve_receiver,
        args=(port, secret, delay_ms),
        daemon=True,
        name="cxloop-bench-receiver",
    )
    proc.start()
    load_bench.wait_for_port(port, proc)
    return proc


def stop_process(proc: Any) -> None:
    if proc.pid is not None and proc.is_alive():
        os.kill(proc.pid, signal.SIGTERM)
    proc.join(30)


def bench_webhooks(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    late = f", answering {args.receiver_delay_ms:g} ms late" if args.receiver_delay_ms else ""
    print(f"webhooks: {args.payloads:,} payloads to a local receiver that verifies each{late}")
    port = load_bench.free_port()
    cx = bench_cxloop_webhooks(root, args, port)
    delivered = cx["deliveries"].get("delivered", 0)
    print(
        f"  cxloop (queued by ingestion, delivered by the server's worker): "
        f"{cx['per_s']:,.0f} deliveries/s ({cx['unique']:,} distinct received in "
        f"{cx['seconds']:.1f} s, {cx['bad_signatures']} bad signatures; log: "
        f"{delivered:,} delivered, {cx['attempts']:,} attempts; end to end from the first "
        f"batch {cx['end_to_end_s'] or 0:.1f} s)",
        flush=True,
    )
    peer = bench_bare_sender(args, load_bench.free_port())
    print(
        f"  peer, a bare sender (httpx.Client + standardwebhooks, one POST after another, "
        f"no queue or log): {peer['per_s']:,.0f} deliveries/s ({peer['unique']:,} in "
        f"{peer['seconds']:.1f} s)",
        flush=True,
    )
    complete = (
        cx["unique"] == args.payloads
        and cx["bad_signatures"] == 0
        and delivered == args.payloads
        and cx["received"] == cx["unique"]
    )
    print(
        f"  check: every payload received once, signed, and logged delivered: "
        f"{'yes' if complete else 'NO'}",
        flush=True,
    )
    return {
        "deliveries_per_s": round(cx["per_s"]),
        "peer": "bare sender: httpx.Client + standardwebhooks, sequential",
        "peer_deliveries_per_s": round(peer["per_s"]),
        "payloads": args.payloads,
        "receiver_delay_ms": args.receiver_delay_ms,
        "delivered": delivered,
        "complete": complete,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "ingest", "webhooks"], default="all")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--rounds", type=int, default=2, help="ingest runs of each kind")
    parser.add_argument("--rules", type=int, default=20, help="active rules in the ruled runs")
    parser.add_argument("--batch", type=int, default=100, help="messages per request")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument("--payloads", type=int, default=10_000, help="webhook payloads")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for every delivery"
    )
    parser.add_argument(
        "--receiver-delay-ms",
        type=float,
        default=0.0,
        help="the receiver answers this much later (a receiver across the internet)",
    )
    args = parser.parse_args()
    if min(args.seconds, args.rounds, args.rules, args.batch, args.connections) < 1:
        parser.error("--seconds, --rounds, --rules, --batch and --connections must be >= 1")
    if args.payloads < 1 or args.receiver_delay_ms < 0:
        parser.error("--payloads must be at least 1, --receiver-delay-ms at least 0")
    print(
        f"cxloop automations benchmark: embedded store; {os.cpu_count()} cores, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    root = Path(tempfile.mkdtemp(prefix="cxloop-bench-auto-"))
    summary: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        if args.part in ("all", "ingest"):
            summary["ingest"] = bench_ingest(root, args)
        if args.part in ("all", "webhooks"):
            summary["webhooks"] = bench_webhooks(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    failed = not summary.get("ingest", {}).get("consistent", True) or not summary.get(
        "webhooks", {}
    ).get("complete", True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
