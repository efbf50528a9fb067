"""Server time of every web page on the demo project, beside the REST API call that
answers the same figures.

    .venv/bin/python bench/pages.py [--customers 5000] [--runs 15] [--home DIR]

A fresh demo project (``cxloop demo --no-serve``, 5,000 customers by default: about
230,000 events, five lifecycle models, surveys, cases and follow-ups) is served by
``cxloop serve`` on a free loopback port. A user signs in through the sign-in form and
each page is fetched once to warm up, then ``--runs`` times; what is recorded is the
server's own time from the ``Server-Timing`` header every answer carries (the time
between the request arriving and the answer leaving, templates included), so the HTTP
client's overhead is not counted. The peer, in the same run, is the REST API endpoint
that gives the page's main figures (same services, JSON instead of HTML), with a secret
key: the difference is what the page adds. Goal: every page <= 300 ms (median). It prints
a table; the last line is JSON; the exit status is 1 if a page fails or misses the goal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from cxloop.settings import Settings
from cxloop.store.database import make_engine
from cxloop.store.users import create_user

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lifecycle import _free_port, _wait

GOAL_MS = 300.0
EMAIL, PASSWORD = "bench@pages.example.com", "bench password 1234"
# page path -> the REST API call with the same figures (None: no single twin)
PAGES: list[tuple[str, str | None]] = [
    ("/", "/api/v1/overview"),
    ("/lifecycle?model=buyer", "/api/v1/lifecycle/buyer/report"),
    ("/journey?model=buyer", "/api/v1/lifecycle/buyer/report"),
    ("/insights/gaps?model=client-experience", "/api/v1/insights/gaps/client-experience"),
    ("/insights/drivers", "/api/v1/insights/drivers"),
    ("/insights/retarget?model=buyer", "/api/v1/insights/retarget/buyer"),
    ("/insights/purchases", "/api/v1/insights/purchases"),
    ("/insights/churn?model=client-experience", "/api/v1/insights/churn/client-experience"),
    ("/funnels", None),
    ("/retention", None),
    ("/paths", None),
    ("/customers", "/api/v1/customers?limit=50"),
    ("/customers/{customer}", "/api/v1/customers/{customer}/timeline"),
    ("/inbox", "/api/v1/followups?limit=50"),
    ("/feedback", "/api/v1/feedback/nps?by=stage"),
    ("/feedback/surveys/1", "/api/v1/feedback/nps?survey=1&by=month"),
    ("/settings", "/api/v1/lifecycle/models"),
]


def server_ms(answer: httpx.Response) -> float:
    timing = answer.headers.get("server-timing", "")
    for part in timing.split(","):
        name, _, rest = part.strip().partition(";")
        if name == "app" and rest.startswith("dur="):
            return float(rest[4:])
    raise SystemExit(f"no Server-Timing header on {answer.request.url}")


def timed(client: httpx.Client, path: str, runs: int) -> tuple[int, list[float]]:
    first = client.get(path)
    times = []
    for _ in range(runs):
        answer = client.get(path)
        if answer.status_code != 200:
            return answer.status_code, []
        times.append(server_ms(answer))
    return first.status_code, times


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--home", type=Path, help="reuse (or keep) the project here")
    args = parser.parse_args()
    cxloop = str(Path(sys.executable).with_name("cxloop"))
    scratch = None
    home = args.home
    if home is None:
        scratch = Path(tempfile.mkdtemp(prefix="cxloop-bench-pages-"))
        home = scratch / "project"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env["CXLOOP_HOME"] = str(home)
    port = _free_port()
    server = None
    try:
        loaded = time.monotonic()
        out = subprocess.run(
            [cxloop, "demo", "--customers", str(args.customers), "--no-serve"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        secret = next(
            line.split(":", 1)[1].split()[0]
            for line in out.splitlines()
            if line.strip().startswith("secret key")
        )
        engine = make_engine(Settings(home=home).effective_database_url)
        with engine.begin() as conn, contextlib.suppress(ValueError):
            create_user(conn, email=EMAIL, role="admin", password=PASSWORD)  # once per home
        engine.dispose()
        print(f"demo project loaded in {time.monotonic() - loaded:.0f} s", file=sys.stderr)
        server = subprocess.Popen(
            [cxloop, "serve"], env={**env, "CXLOOP_PORT": str(port)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(port)
        base = f"http://127.0.0.1:{port}"
        time.sleep(5)  # the job worker's first scan and the sequence index read
        page_client = httpx.Client(base_url=base, timeout=120)
        signed = page_client.post("/login", data={"email": EMAIL, "password": PASSWORD})
        if signed.status_code not in (200, 303) or "cxloop_session" not in page_client.cookies:
            raise SystemExit(f"could not sign in: {signed.status_code}")
        api = httpx.Client(
            base_url=base, timeout=120, headers={"Authorization": f"Bearer {secret}"}
        )
        customer = api.get("/api/v1/customers", params={"limit": 1}).json()["items"][0]["id"]
        rows = []
        failed = False
        for path, twin in PAGES:
            path = path.format(customer=customer)
            status, times = timed(page_client, path, args.runs)
            row: dict[str, Any] = {"page": path, "status": status}
            if times:
                row["median_ms"] = round(statistics.median(times), 1)
                row["p95_ms"] = round(p95(times), 1)
                failed |= row["median_ms"] > GOAL_MS
            else:
                failed = True
            if twin:
                twin = twin.format(customer=customer)
                _, api_times = timed(api, twin, args.runs)
                row["api"] = twin
                row["api_median_ms"] = round(statistics.median(api_times), 1) if api_times else None
            rows.append(row)
        print(f"{'page':34} {'median':>8} {'p95':>8}   {'API twin':44} {'median':>8}")
        for r in rows:
            print(
                f"{r['page']:34} {r.get('median_ms', r['status']):>8} {r.get('p95_ms', ''):>8}"
                f"   {r.get('api', ''):44} {r.get('api_median_ms') or '':>8}"
            )
        summary = {
            "bench": "pages",
            "customers": args.customers,
            "runs": args.runs,
            "goal_ms": GOAL_MS,
            "machine": f"{platform.machine()} {os.cpu_count()} cpus",
            "pages": rows,
        }
        print(json.dumps(summary))
        if failed:
            sys.exit(1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
