"""Analytics API latency: every analytics endpoint of a running `cxloop serve`, on a project
of 1,000,000 events (the funnel benchmark's data set).

    .venv/bin/python bench/analytics_api.py [--events 1000000] [--users 100000] [--runs 7]

It writes the data set of ``bench/funnel.py`` into a fresh embedded project, starts
``cxloop serve`` on a free loopback port, and times each call through HTTP (median of
``--runs`` after one warm-up): the 5-step ordered funnel with a 7-day window, the same funnel
strict, the customers who dropped off after step 1, weekly trends, weekly retention of the
users who signed up and the paths after signing up. The peer, in the same run, is the same
funnel as ClickHouse's ``windowFunnel`` through chdb on a Memory table (in-process, no
HTTP), when chdb is installed (``make bench-funnel`` installs it). Goal: every call
<= 100 ms. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from funnel import (
    STEPS,
    WINDOW_S,
    _loaded_project,
    make_data,
    run_chdb,
)
from lifecycle import _free_port, _wait

FUNNEL = {"steps": [{"event": s} for s in STEPS], "window_seconds": WINDOW_S}
CALLS: dict[str, tuple[str, dict[str, Any]]] = {
    "funnel": ("/api/v1/analytics/funnel", FUNNEL),
    "funnel strict": ("/api/v1/analytics/funnel", {**FUNNEL, "order": "strict"}),
    "funnel customers": (
        "/api/v1/analytics/funnel/customers",
        {"spec": FUNNEL, "step": 1, "limit": 100},
    ),
    "trends": ("/api/v1/analytics/trends", {"event": {"event": STEPS[1]}, "interval": "week"}),
    "retention": (
        "/api/v1/analytics/retention",
        {"start_event": {"event": STEPS[1]}, "period": "week", "periods": 8},
    ),
    "paths": ("/api/v1/analytics/paths", {"event": {"event": STEPS[1]}, "depth": 3}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-api-"))
    home = work / "project"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env.update(CXLOOP_HOME=str(home), CXLOOP_PORT=str(port))
    cxloop = str(Path(sys.executable).with_name("cxloop"))
    try:
        data = work / "events.parquet"
        make_data(args.events, args.users, data)
        _loaded_project(data, home).close()
        print(f"project: {args.events:,} events of {args.users:,} users", flush=True)
        key = subprocess.run(
            [cxloop, "keys", "create", "--kind", "secret", "--name", "bench"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        server = subprocess.Popen([cxloop, "serve"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)  # fmt: skip
        medians: dict[str, float] = {}
        try:
            _wait(port)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"},
                              timeout=600) as http:  # fmt: skip
                for name, (path, body) in CALLS.items():
                    http.post(path, json=body).raise_for_status()
                    times = []
                    for _ in range(args.runs):
                        began = time.perf_counter()
                        http.post(path, json=body).raise_for_status()
                        times.append(time.perf_counter() - began)
                    medians[name] = statistics.median(times) * 1000
                    print(f"{name:>17}: median {medians[name]:.0f} ms", flush=True)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
        summary: dict[str, Any] = {"events": args.events, "users": args.users, "runs": args.runs}
        summary.update(
            {f"{name.replace(' ', '_')}_ms": round(ms, 1) for name, ms in medians.items()}
        )
        summary["slowest_ms"] = round(max(medians.values()), 1)
        try:
            peer = run_chdb(data, args.runs)
        except ImportError:
            print("peer: chdb is not installed (make bench-funnel installs it)")
        else:
            summary["peer"] = "chdb windowFunnel, in-process"
            summary["peer_funnel_ms"] = round(peer["seconds"] * 1000, 1)
            print(f"peer, chdb windowFunnel (no HTTP): median {summary['peer_funnel_ms']:.0f} ms")
        print(json.dumps(summary))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
