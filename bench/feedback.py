"""NPS by touchpoint and by month through the API, on 1,000,000 survey responses.

    .venv/bin/python bench/feedback.py [--responses 1000000] [--runs 21]
                                       [--backend embedded] [--backend postgres]
                                       [--zone Europe/Paris] [--sql STATEMENT]

A seeded data set (four customer NPS surveys, ten touchpoints, 24 months of answers in the
project's time zone, one in ten with a comment) is written straight into a fresh
project's app database with the project's driver-level bulk insert, on each backend asked
for (both by default: the embedded SQLite default, and PostgreSQL on 127.0.0.1:5432 in a
database created for the run and dropped afterwards, vacuumed and analysed after the load
as autovacuum would). ``--sql`` statements run on the app database after the load, to
measure an index before a migration adds it. Then ``cxloop serve`` runs on a free
loopback port, with the project's zone set to ``--zone`` so months follow its daylight
saving; once the server is idle (its job worker first reads every answer, looking for
detractors), ``GET /api/v1/feedback/nps?by=touchpoint`` and ``?by=month`` are each timed
through HTTP: median and 95th percentile of ``--runs`` calls after one warm-up.

The peer, in the same run, is plain pandas on the same rows already loaded into a
DataFrame (scores, touchpoint text, UTC timestamps): what is timed is the computation
alone, classifying the answers and a ``groupby`` per touchpoint or per month in the zone
(``tz_convert`` included), not the load and no HTTP. Every figure the API gives (counts
and NPS per group and overall) must equal the peer's, or the run fails. Goal: each call
<= 200 ms. It prints a table; the last line is JSON; the exit status is 1 if any figure
differs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Table, text

from cxloop.feedback.surveys import SurveyIn, create_survey
from cxloop.project import open_project
from cxloop.settings import Settings
from cxloop.store.bulk import driver_rows, insert_driver_rows
from cxloop.store.models import SurveyResponse

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lifecycle import _free_port, _wait

PG_ADMIN = os.environ.get(
    "CXLOOP_BENCH_PG_ADMIN_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)
SURVEYS = [  # (name, its touchpoint, share of the answers)
    ("After purchase", "Order Completed", 0.35),
    ("After delivery", "Delivery Completed", 0.30),
    ("After support", "Ticket Closed", 0.20),
    ("Relationship", None, 0.15),
]
TOUCHPOINTS = [
    "Order Completed",
    "Delivery Completed",
    "Ticket Closed",
    "Checkout",
    "Onboarding Call",
    "Invoice Sent",
    "Return Processed",
    "App Session",
    "Store Visit",
    "Renewal",
]
COMMENTS = [
    "Fast delivery, great service",
    "The app keeps crashing",
    "Too expensive for what it is",
    "Friendly staff, solved my problem",
    "Waited an hour on the phone",
    "Works as promised",
    "Terrible experience, never again",
    "Good value",
]
MONTHS = 24
FIRST_MONTH = (2024, 11)
CHUNK = 200_000
CALLS = {"by touchpoint": {"by": "touchpoint"}, "by month": {"by": "month"}}
GOAL_MS = 200.0
PEER = "pandas groupby on a loaded DataFrame (the computation only)"
responses_t = cast(Table, SurveyResponse.__table__)


def make_responses(count: int, zone: ZoneInfo, seed: int = 7) -> pa.Table:
    """The answers, seeded: which survey, touchpoint (the survey's own for most, another
    for some), score (each touchpoint its own mix, drifting over the months), when
    (uniform over the 24 months, to the microsecond) and an occasional comment."""
    rng = np.random.default_rng(seed)
    survey = rng.choice(len(SURVEYS), size=count, p=[s[2] for s in SURVEYS])
    own = np.array([TOUCHPOINTS.index(s[1]) if s[1] else -1 for s in SURVEYS])[survey]
    other = rng.integers(0, len(TOUCHPOINTS), size=count)
    touchpoint = np.where((own >= 0) & (rng.random(count) < 0.7), own, other)
    mixes = rng.dirichlet(np.linspace(1.0, 4.0, 11), size=len(TOUCHPOINTS))
    score = np.empty(count, dtype=np.int64)
    for t in range(len(TOUCHPOINTS)):
        mine = touchpoint == t
        score[mine] = rng.choice(11, size=int(mine.sum()), p=mixes[t])
    year, month = FIRST_MONTH
    first = datetime(year, month, 1, tzinfo=zone)
    last = datetime(
        year + (month - 1 + MONTHS) // 12, (month - 1 + MONTHS) % 12 + 1, 1, tzinfo=zone
    )
    start_us = int(first.timestamp() * 1_000_000)
    span_us = int(last.timestamp() * 1_000_000) - start_us
    at_us = start_us + rng.integers(0, span_us, size=count)
    drift = (at_us - start_us) / span_us  # later answers score a little higher
    score = np.minimum(score + (rng.random(count) < 0.15 * drift), 10)
    commented = rng.random(count) < 0.1
    comment = np.array(COMMENTS, dtype=object)[rng.integers(0, len(COMMENTS), size=count)]
    return pa.table(
        {
            "survey": pa.array(survey, pa.int64()),
            "score": pa.array(score, pa.int64()),
            "touchpoint": pa.array(np.array(TOUCHPOINTS, dtype=object)[touchpoint]),
            "submitted_at": pa.array(at_us, pa.timestamp("us", tz="UTC")),
            "comment": pa.array(np.where(commented, comment, None)),
        }
    )


def load_project(settings: Settings, data: pa.Table, statements: Sequence[str] = ()) -> None:
    """The surveys created as the API creates them, then every answer bulk-inserted in one
    transaction (sentiment scored once per distinct comment, as storing it would), then
    ``statements`` (``--sql``: an index tried before a migration adds it)."""
    from cxloop.feedback.text import sentiment

    project = open_project(settings)
    try:
        with project.engine.begin() as conn:
            ids = [
                create_survey(conn, SurveyIn(type="nps", name=name, touchpoint=touchpoint))["id"]
                for name, touchpoint, _ in SURVEYS
            ]
            moods = {c: sentiment(c) for c in COMMENTS}
            for offset in range(0, data.num_rows, CHUNK):
                part = data.slice(offset, CHUNK)
                comments = part["comment"].to_pylist()
                rows = pa.table(
                    {
                        "survey_id": pa.array(np.array(ids)[part["survey"].to_numpy()]),
                        "score": part["score"],
                        "comment": part["comment"],
                        "sentiment": pa.array(
                            [None if c is None else moods[c] for c in comments], pa.float64()
                        ),
                        "touchpoint": part["touchpoint"],
                        "submitted_at": part["submitted_at"],
                        "created_at": part["submitted_at"],
                    }
                )
                prepared = driver_rows(conn.dialect, responses_t, rows, {"source": "import"})
                insert_driver_rows(conn, responses_t, prepared)
            for statement in statements:
                conn.execute(text(statement))
        if project.engine.dialect.name == "postgresql":
            # What autovacuum does to a table that grew by a million rows, done now so the
            # timings do not depend on when it wakes up.
            with project.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE survey_responses"))
    finally:
        project.close()


Figures = dict[str, dict[str, Any]]


def nps_figures(report: dict[str, Any]) -> Figures:
    """What must agree, per group key (``""``: all answers): counts and the NPS."""
    keys = ("responses", "promoters", "passives", "detractors", "nps")
    out = {"": {k: report[k] for k in keys}}
    out.update({str(g["key"]): {k: g[k] for k in keys} for g in report["groups"]})
    return out


def peer_frame(data: pa.Table) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "score": data["score"].to_numpy(),
            "touchpoint": data["touchpoint"].to_numpy(zero_copy_only=False),
            "submitted_at": data["submitted_at"].to_pandas(),
        }
    )


def peer_nps(frame: pd.DataFrame, by: str, zone: ZoneInfo) -> Figures:
    """NPS per touchpoint or per month in the zone, as one would write it in pandas."""
    score = frame["score"]
    flags = pd.DataFrame(
        {"promoters": score >= 9, "passives": (score >= 7) & (score <= 8), "detractors": score <= 6}
    )
    if by == "month":
        local = frame["submitted_at"].dt.tz_convert(str(zone))
        key = local.dt.year * 100 + local.dt.month
    else:
        key = frame["touchpoint"]
    counts = flags.groupby(key).sum()
    counts.loc["all"] = counts.sum()
    out: Figures = {}
    for group, row in counts.iterrows():
        n = {k: int(row[k]) for k in ("promoters", "passives", "detractors")}
        total = sum(n.values())
        nps = round(100 * (n["promoters"] - n["detractors"]) / total, 2)
        label = (
            ""
            if group == "all"
            else f"{group // 100:04d}-{group % 100:02d}"
            if by == "month"
            else str(group)
        )
        out[label] = {"responses": total, **n, "nps": nps}
    return out


def timed(call: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    """Milliseconds of each of ``runs`` calls after a warm-up, and the last result."""
    result = call()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - began) * 1000)
    return times, result


def p95(times: list[float]) -> float:
    return float(np.percentile(times, 95))


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the run, dropped afterwards."""
    import psycopg

    name = f"cxbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_backend(
    backend: str,
    data: pa.Table,
    zone: ZoneInfo,
    args: argparse.Namespace,
    work: Path,
    pg_url: str | None,
) -> dict[str, tuple[list[float], Figures]]:
    """Load a project on the backend, start ``cxloop serve`` and time each call."""
    home = work / backend
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env.update(CXLOOP_HOME=str(home), CXLOOP_PORT=str(port), CXLOOP_TIMEZONE=str(zone))
    settings = Settings(home=home, timezone=str(zone))
    if pg_url is not None:
        database_url = pg_url.replace("postgresql://", "postgresql+psycopg://")
        env.update(CXLOOP_DATABASE_URL=database_url, CXLOOP_EVENTS_URL=pg_url)
        settings = Settings(
            home=home, timezone=str(zone), database_url=database_url, events_url=pg_url
        )
    began = time.perf_counter()
    load_project(settings, data, args.sql or ())
    print(
        f"{backend}: {data.num_rows:,} responses written in {time.perf_counter() - began:.1f} s",
        flush=True,
    )
    cxloop = str(Path(sys.executable).with_name("cxloop"))
    key = subprocess.run(
        [cxloop, "keys", "create", "--kind", "secret", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    server = subprocess.Popen(
        [cxloop, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    out: dict[str, tuple[list[float], Figures]] = {}
    try:
        _wait(port)
        settled = _settled(server.pid)
        print(f"{backend}: server idle after {settled:.0f} s of start-up work", flush=True)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=600,
            headers={"Authorization": f"Bearer {key}"},
        ) as http:
            for name, params in CALLS.items():

                def call(params: dict[str, str] = params) -> Any:
                    reply = http.get("/api/v1/feedback/nps", params=params)
                    reply.raise_for_status()
                    return reply.json()

                times, report = timed(call, args.runs)
                out[name] = (times, nps_figures(report))
                print(
                    f"{backend} {name}: median {statistics.median(times):.0f} ms, "
                    f"p95 {p95(times):.0f} ms",
                    flush=True,
                )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return out


def _settled(pid: int, quiet_s: float = 3.0, timeout_s: float = 600.0) -> float:
    """Seconds until the server process stays idle (under 5 % of a core for ``quiet_s``),
    so calls are timed on a server at rest: at start its job worker reads every answer
    once (the detractor scan), a million of them here, and other start-up work runs."""

    def cpu_s() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    began = time.monotonic()
    quiet = 0.0
    last = cpu_s()
    while quiet < quiet_s and time.monotonic() - began < timeout_s:
        time.sleep(0.5)
        now = cpu_s()
        quiet = quiet + 0.5 if now - last < 0.025 else 0.0
        last = now
    return time.monotonic() - began


def differences(got: Figures, want: Figures) -> list[str]:
    if got.keys() != want.keys():
        return [f"groups differ: {sorted(got.keys() ^ want.keys())}"]
    return [
        f"{key or 'overall'}: {got[key]} != {want[key]}" for key in want if got[key] != want[key]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--backend", action="append", choices=["embedded", "postgres"])
    parser.add_argument("--zone", default="Europe/Paris", help="the project's time zone")
    parser.add_argument(
        "--sql",
        action="append",
        metavar="STATEMENT",
        help="run on the app database after loading (repeatable), e.g. CREATE INDEX …",
    )
    args = parser.parse_args()
    backends: list[str] = args.backend or ["embedded", "postgres"]
    zone = ZoneInfo(args.zone)
    print(
        f"cxloop feedback benchmark: {args.responses:,} NPS responses, {len(SURVEYS)} surveys, "
        f"{len(TOUCHPOINTS)} touchpoints, {MONTHS} months in {zone}; {args.runs} calls after "
        f"a warm-up; {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"pandas {pd.__version__}",
        flush=True,
    )
    data = make_responses(args.responses, zone)
    frame = peer_frame(data)
    peer: dict[str, tuple[list[float], Figures]] = {}
    for name, params in CALLS.items():
        times, figures = timed(lambda by=params["by"]: peer_nps(frame, by, zone), args.runs)
        peer[name] = (times, figures)
        print(
            f"peer {name}: median {statistics.median(times):.0f} ms, p95 {p95(times):.0f} ms",
            flush=True,
        )
    results: dict[str, dict[str, tuple[list[float], Figures]]] = {}
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-feedback-"))
    try:
        for backend in backends:
            if backend == "postgres":
                with pg_database() as url:
                    results[backend] = bench_backend(backend, data, zone, args, work, url)
            else:
                results[backend] = bench_backend(backend, data, zone, args, work, None)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    wrong: list[str] = []
    print()
    print(f"| call | {' | '.join(backends)} | peer: {PEER} | groups | figures equal |")
    print(f"| --- | {' | '.join('---:' for _ in backends)} | ---: | ---: | --- |")
    summary: dict[str, Any] = {
        "responses": args.responses,
        "runs": args.runs,
        "zone": str(zone),
        "peer": PEER,
        "sql": args.sql or [],
    }
    for name in CALLS:
        peer_times, want = peer[name]
        cells = []
        equal = True
        for backend in backends:
            times, got = results[backend][name]
            found = differences(got, want)
            wrong += [f"{backend} {name}: {d}" for d in found]
            equal = equal and not found
            median = statistics.median(times)
            cells.append(f"{median:.0f} ms (p95 {p95(times):.0f})")
            slug = f"{backend}_{name.replace(' ', '_')}"
            summary[f"{slug}_median_ms"] = round(median, 1)
            summary[f"{slug}_p95_ms"] = round(p95(times), 1)
        peer_median = statistics.median(peer_times)
        summary[f"peer_{name.replace(' ', '_')}_median_ms"] = round(peer_median, 1)
        print(
            f"| {name} | {' | '.join(cells)} | {peer_median:.0f} ms (p95 "
            f"{p95(peer_times):.0f}) | {len(want) - 1} | {'yes' if equal else 'NO'} |"
        )
    slowest = max(summary[k] for k in summary if k.endswith("_median_ms") and "peer" not in k)
    summary["goal_met"] = slowest <= GOAL_MS
    summary["figures_equal"] = not wrong
    print()
    for line in wrong:
        print(f"DIFFERENT: {line}")
    print(json.dumps(summary), flush=True)
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
