"""Stage engine: how long `cxloop lifecycle rebuild` takes, and the stage-flow report's latency.

    .venv/bin/python bench/lifecycle.py [--events 10000000] [--customers 1000000]

It writes a synthetic history straight into a fresh embedded project's event store (as
Arrow, seeded: track events and pages of the client-experience preset's touchpoints plus
events no rule reads, over twelve months, a few customers cancelling), installs the
``client-experience`` preset, then times:

* ``cxloop lifecycle rebuild client-experience`` as a whole command;
* the peer in the same run: DuckDB SQL that finds each customer's first event of each
  stage (no order rules, skips, exits or cycles: a floor for reading the same events);
* ``GET /api/v1/lifecycle/client-experience/report`` through a running `cxloop serve`
  (median of 7 calls after one warm-up).

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import numpy as np
import pyarrow as pa

from cxloop.events.base import EVENTS_ARROW_SCHEMA
from cxloop.lifecycle.spec import preset
from cxloop.project import open_project
from cxloop.settings import Settings

# (type, name, weight): the preset's touchpoints, and events no rule reads.
EVENTS = [
    ("track", "Ad Clicked", 8), ("track", "Email Opened", 10), ("page", "Home", 10),
    ("page", "Pricing", 5), ("track", "Signed Up", 3), ("track", "Demo Requested", 2),
    ("track", "Order Completed", 2), ("track", "Delivery Completed", 1),
    ("track", "Product Used", 12), ("track", "Support Contacted", 1),
    ("track", "Subscription Cancelled", 0.3), ("track", "Product Viewed", 20),
    ("track", "Added To Cart", 8), ("page", "Blog", 6),
]  # fmt: skip
CHUNK = 2_000_000


def synthetic(events: int, customers: int, seed: int = 5) -> list[pa.Table]:
    rng = np.random.default_rng(seed)
    kinds = np.array([e[0] for e in EVENTS])
    names = np.array([e[1] for e in EVENTS])
    weights = np.array([e[2] for e in EVENTS], dtype=float)
    weights /= weights.sum()
    start = datetime(2025, 11, 1, tzinfo=UTC)
    year_us = int(timedelta(days=365).total_seconds() * 1e6)
    tables = []
    for offset in range(0, events, CHUNK):
        n = min(CHUNK, events - offset)
        pick = rng.choice(len(EVENTS), size=n, p=weights)
        customer = rng.integers(1, customers + 1, size=n)
        ts = pa.array(
            int(start.timestamp() * 1e6) + rng.integers(0, year_us, size=n),
            pa.timestamp("us", tz="UTC"),
        )
        kind = pa.array(kinds[pick])
        columns = {
            "message_id": pa.array([f"b{offset + i}" for i in range(n)]),
            "type": kind,
            "event": pa.array(np.where(kinds[pick] == "track", names[pick], None)),
            "name": pa.array(np.where(kinds[pick] == "track", None, names[pick])),
            "customer_id": pa.array(customer, pa.int64()),
            "timestamp": ts,
            "received_at": ts,
            "properties": pa.array(
                np.where(names[pick] == "Subscription Cancelled", '{"reason": "price"}', None)
            ),
        }
        table = pa.table(
            {
                f.name: columns.get(f.name, pa.nulls(n, f.type)).cast(f.type)
                for f in EVENTS_ARROW_SCHEMA
            },
            schema=EVENTS_ARROW_SCHEMA,
        )
        tables.append(table)
    return tables


PEER = """
SELECT count(*) FROM (
  SELECT customer_id, stage, min("timestamp") FROM events e JOIN stage_rules r
    ON e.type = r.type AND coalesce(e.event, e.name) = r.name
  GROUP BY ALL
)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-lifecycle-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env.update(CXLOOP_HOME=str(work / "project"), CXLOOP_PORT=str(port))
    cxloop = str(Path(sys.executable).with_name("cxloop"))
    try:
        started = time.perf_counter()
        project = open_project(Settings(home=work / "project"))
        for table in synthetic(args.events, args.customers):
            project.events.append(table)
        model = preset("client-experience")
        assert model is not None
        from cxloop.lifecycle import service

        with project.engine.begin() as conn:
            service.apply_model(conn, model.model)
        rules = [
            (("track" if r.event else "page"), r.event or r.page, s.key)
            for s in model.model.stages
            for r in s.enter
        ]
        project.close()
        print(
            f"history: {args.events:,} events of {args.customers:,} customers written in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )

        began = time.perf_counter()
        result = subprocess.run(
            [cxloop, "lifecycle", "rebuild", "client-experience", "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        rebuild_s = time.perf_counter() - began
        rebuilt = json.loads(result.stdout)
        print(f"cxloop lifecycle rebuild (whole command): {rebuild_s:.1f} s, {rebuilt}")

        con = duckdb.connect(str(work / "project" / "events.duckdb"), read_only=True)
        con.register(
            "stage_rules",
            pa.table(
                {
                    "type": [r[0] for r in rules],
                    "name": [r[1] for r in rules],
                    "stage": [r[2] for r in rules],
                }
            ),
        )
        began = time.perf_counter()
        con.execute(PEER).fetchall()
        peer_s = time.perf_counter() - began
        con.close()
        print(f"peer, DuckDB first event per customer and stage: {peer_s:.1f} s")

        keys = subprocess.run(
            [cxloop, "keys", "create", "--kind", "secret", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        server = subprocess.Popen([cxloop, "serve"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait(port)
            url = f"http://127.0.0.1:{port}/api/v1/lifecycle/client-experience/report"
            with httpx.Client(headers={"Authorization": f"Bearer {keys}"}, timeout=600) as http:
                http.get(url).raise_for_status()
                times = []
                for _ in range(7):
                    began = time.perf_counter()
                    http.get(url).raise_for_status()
                    times.append(time.perf_counter() - began)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        report_ms = statistics.median(times) * 1000
        print(f"stage-flow report through the API: median {report_ms:.0f} ms")
        print(
            json.dumps(
                {
                    "events": args.events,
                    "customers": args.customers,
                    "rebuild_s": round(rebuild_s, 2),
                    "transitions": rebuilt["transitions"],
                    "peer": "DuckDB first event per customer and stage",
                    "peer_s": round(peer_s, 2),
                    "report_ms": round(report_ms, 1),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("cxloop serve did not start")


if __name__ == "__main__":
    main()
