"""Funnel and retention speed: cxloop against ClickHouse (chdb), DuckDB SQL and pandas.

    .venv/bin/python bench/funnel.py [--events 10000000] [--users 1000000] [--runs 5]

One seeded data set (a 5-step journey with drop-off at each step plus other events, over
90 days) is written to Parquet; then each contestant runs in a process of its own, loads
the data its way, runs the same 5-step ordered funnel with a 7-day window ``--runs`` times
after a warm-up, and reports its median:

* **cxloop**: the data appended to a fresh project's event store; ``run_funnel`` in-process;
* **chdb**: ClickHouse (the engine PostHog runs on) embedded, ``windowFunnel`` on a Memory
  table;
* **duckdb-sql**: the best hand-written DuckDB SQL we know for it (each step the earliest
  next event within the window after the attempt's start, by range joins);
* **pandas**: a naive ``groupby(user).apply`` (one run, no warm-up: it is slow);
* **cxloop-retention** and **chdb-retention**: weekly retention of the users who signed up
  (8 weeks, returning with any event); chdb in the arrays form (per user the cohort week and
  the weeks active, then ``sumForEach``);
* **cxloop-spark** and **cxloop-spark-retention**: the same funnel and retention through
  ``--engine spark``: the project exported with ``cxloop export parquet``, then Spark in
  local mode over the lake (the funnel's rules in the executors with ``applyInPandas``).
  Reported for scale-out, not for speed on two cores: the session is warm, the lake is not
  cached in memory.

It prints each median, the customers per step each counted, and the ratio to chdb; the last
line is JSON with at least ``{"ratio_vs_chdb": x}``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

STEPS = ["Visit", "Signed Up", "Demo Requested", "Order Completed", "Referral Sent"]
NOISE = ["Product Viewed", "Email Opened", "Blog Read"]
WINDOW_S = 7 * 86400
RETENTION_WEEKS = 8
START = 1_767_225_600  # 2026-01-01 UTC


def make_data(events: int, users: int, path: Path, seed: int = 11) -> None:
    """Each user walks the journey, stopping at each step with some chance, plus noise."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, size=events)
    # Step events get a step-dependent share; noise fills the rest.
    names = np.array(STEPS + NOISE)
    weights = np.array([0.30, 0.15, 0.08, 0.05, 0.02, 0.2, 0.12, 0.08])
    pick = rng.choice(len(names), size=events, p=weights / weights.sum())
    ts = START + rng.integers(0, 90 * 86400, size=events)
    table = pa.table(
        {
            "user_id": pa.array(user, pa.int64()),
            "event": pa.array(names[pick]),
            "ts": pa.array(ts * 1_000_000, pa.timestamp("us", tz="UTC")),
            "message_id": pa.array([f"f{i}" for i in range(events)]),
        }
    )
    pq.write_table(table, path)


def run_cxloop(data: Path, runs: int) -> dict[str, Any]:
    from cxloop.analytics.funnel import run_funnel
    from cxloop.analytics.funnel_spec import FunnelSpec

    project = _loaded_project(data)
    try:
        spec = FunnelSpec.model_validate(
            {"steps": [{"event": s} for s in STEPS], "window_seconds": WINDOW_S}
        )
        result: dict[str, Any] = {}

        def once() -> None:
            result.update(run_funnel(spec, project.events, project.engine, project.settings.zone))

        seconds = _timed(once, runs)
        return {"seconds": seconds, "counts": [s["count"] for s in result["steps"]]}
    finally:
        project.close()


def _loaded_project(data: Path, home: Path | None = None) -> Any:
    """A fresh project (in ``home``, else a temporary folder) whose event store holds the
    data set."""
    from cxloop.events.base import EVENTS_ARROW_SCHEMA
    from cxloop.project import open_project
    from cxloop.settings import Settings

    if home is None:
        home = Path(tempfile.mkdtemp(prefix="cxloop-bench-funnel-"))
        atexit.register(shutil.rmtree, home, ignore_errors=True)
    project = open_project(Settings(home=home))
    source = pq.read_table(data)
    for offset in range(0, source.num_rows, 2_000_000):
        part = source.slice(offset, 2_000_000)
        n = part.num_rows
        columns = {
            "message_id": part["message_id"],
            "type": pa.array(["track"] * n),
            "event": part["event"],
            "customer_id": pa.compute.add(part["user_id"], 1),
            "timestamp": part["ts"],
            "received_at": part["ts"],
        }
        project.events.append(
            pa.table(
                {
                    f.name: (
                        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type)
                    )
                    for f in EVENTS_ARROW_SCHEMA
                },
                schema=EVENTS_ARROW_SCHEMA,
            )
        )
    return project


def _chdb_events(data: Path) -> Any:
    """An embedded ClickHouse session holding the data set in a Memory table ``b.events``."""
    from chdb import session

    db = session.Session()
    db.query("CREATE DATABASE IF NOT EXISTS b")
    db.query(
        "CREATE TABLE b.events ENGINE = Memory AS "
        f"SELECT user_id, event, ts FROM file('{data}', Parquet)"
    )
    return db


def run_chdb(data: Path, runs: int) -> dict[str, Any]:
    db = _chdb_events(data)
    conditions = ", ".join(f"event = '{s}'" for s in STEPS)
    query = (
        "SELECT level, count() FROM (SELECT user_id, "
        f"windowFunnel({WINDOW_S})(toDateTime(ts), {conditions}) AS level "
        "FROM b.events GROUP BY user_id) GROUP BY level ORDER BY level FORMAT JSONCompact"
    )
    found: dict[int, int] = {}

    def once() -> None:
        rows = json.loads(db.query(query).bytes())["data"]
        found.clear()
        found.update({int(level): int(n) for level, n in rows})

    seconds = _timed(once, runs)
    return {"seconds": seconds, "counts": _at_least(found)}


def run_duckdb_sql(data: Path, runs: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"CREATE TABLE events AS SELECT user_id, event, ts FROM read_parquet('{data}')")
    names = ", ".join(f"'{s}'" for s in STEPS)
    parts = [
        f"e AS (SELECT user_id, ts, event FROM events WHERE event IN ({names}))",
        "a0 AS (SELECT user_id, ts AS t0, ts AS t FROM e WHERE event = 'Visit')",
    ]
    for k, step in enumerate(STEPS[1:], start=1):
        parts.append(
            f"a{k} AS (SELECT a.user_id, a.t0, min(e.ts) AS t FROM a{k - 1} a JOIN e "
            f"ON e.user_id = a.user_id AND e.event = '{step}' AND e.ts >= a.t "
            f"AND e.ts <= a.t0 + INTERVAL {WINDOW_S} SECOND GROUP BY a.user_id, a.t0)"
        )
    levels = " UNION ALL ".join(
        f"SELECT user_id, {k + 1} AS level FROM a{k}" for k in range(len(STEPS))
    )
    query = (
        "WITH " + ", ".join(parts) + f", l AS ({levels}) "
        "SELECT level, count(*) FROM (SELECT user_id, max(level) AS level FROM l GROUP BY 1) "
        "GROUP BY 1 ORDER BY 1"
    )
    found: dict[int, int] = {}

    def once() -> None:
        found.clear()
        found.update({int(level): int(n) for level, n in con.execute(query).fetchall()})

    seconds = _timed(once, runs)
    return {"seconds": seconds, "counts": _at_least(found)}


def run_pandas(data: Path, runs: int) -> dict[str, Any]:
    import pandas as pd

    frame = pq.read_table(data).to_pandas()
    frame = frame[frame.event.isin(STEPS)].sort_values(["user_id", "ts", "message_id"])
    window = pd.Timedelta(seconds=WINDOW_S)

    def level(group: pd.DataFrame) -> int:
        best = 0
        events = list(zip(group.event, group.ts, strict=True))
        for i, (name, start) in enumerate(events):
            if name != STEPS[0]:
                continue
            reached, last = 1, start
            for other, at in events[i + 1 :]:
                if at > start + window or reached == len(STEPS):
                    break
                if other == STEPS[reached] and at >= last:
                    reached, last = reached + 1, at
            best = max(best, reached)
        return best

    found: dict[int, int] = {}

    def once() -> None:
        levels = frame.groupby("user_id").apply(level)
        found.clear()
        found.update({int(k): int(v) for k, v in levels.value_counts().items() if k})

    began = time.perf_counter()
    once()
    return {"seconds": time.perf_counter() - began, "counts": _at_least(found)}


def run_cxloop_retention(data: Path, runs: int) -> dict[str, Any]:
    from cxloop.analytics.periods import RetentionSpec, run_retention

    project = _loaded_project(data)
    try:
        spec = RetentionSpec.model_validate(
            {"start_event": {"event": STEPS[1]}, "period": "week", "periods": RETENTION_WEEKS}
        )
        result: dict[str, Any] = {}

        def once() -> None:
            result.update(
                run_retention(spec, project.events, project.engine, project.settings.zone)
            )

        seconds = _timed(once, runs)
        return {"seconds": seconds, "counts": _retention_totals(result["cohorts"])}
    finally:
        project.close()


def run_chdb_retention(data: Path, runs: int) -> dict[str, Any]:
    """The arrays form: per user the cohort week and the weeks active, then counts."""
    db = _chdb_events(data)
    query = (
        "SELECT cohort, count() AS size, "
        "sumForEach(arrayMap(k -> toUInt64(has(weeks, addWeeks(cohort, k))), "
        f"range({RETENTION_WEEKS}))) "
        "FROM (SELECT user_id, minIf(toMonday(ts), event = '" + STEPS[1] + "') AS cohort, "
        "groupUniqArray(toMonday(ts)) AS weeks FROM b.events GROUP BY user_id "
        "HAVING countIf(event = '" + STEPS[1] + "') > 0) "
        "GROUP BY cohort ORDER BY cohort FORMAT JSONCompact"
    )
    found: list[Any] = []

    def once() -> None:
        found[:] = json.loads(db.query(query).bytes())["data"]

    seconds = _timed(once, runs)
    cohorts = [{"size": int(size), "values": [int(size), *map(int, values[1:])]}
               for _, size, values in found]  # fmt: skip
    return {"seconds": seconds, "counts": _retention_totals(cohorts)}


def _spark_lake(data: Path) -> Any:
    from cxloop.analytics.lake import export_parquet
    from cxloop.events.spark_lake import SparkLake

    project = _loaded_project(data)
    try:
        lake = project.settings.home_dir / "lake"
        export_parquet(project.events, project.engine, lake)
        return SparkLake(lake), project.settings.zone
    finally:
        project.close()


def run_cxloop_spark(data: Path, runs: int) -> dict[str, Any]:
    from cxloop.analytics.funnel import run_funnel
    from cxloop.analytics.funnel_spec import FunnelSpec

    lake, zone = _spark_lake(data)
    spec = FunnelSpec.model_validate(
        {"steps": [{"event": s} for s in STEPS], "window_seconds": WINDOW_S}
    )
    result: dict[str, Any] = {}

    def once() -> None:
        result.update(run_funnel(spec, lake, None, zone))

    seconds = _timed(once, runs)
    return {"seconds": seconds, "counts": [s["count"] for s in result["steps"]]}


def run_cxloop_spark_retention(data: Path, runs: int) -> dict[str, Any]:
    from cxloop.analytics.periods import RetentionSpec, run_retention

    lake, zone = _spark_lake(data)
    spec = RetentionSpec.model_validate(
        {"start_event": {"event": STEPS[1]}, "period": "week", "periods": RETENTION_WEEKS}
    )
    result: dict[str, Any] = {}

    def once() -> None:
        result.update(run_retention(spec, lake, None, zone))

    seconds = _timed(once, runs)
    return {"seconds": seconds, "counts": _retention_totals(result["cohorts"])}


def _retention_totals(cohorts: list[dict[str, Any]]) -> list[int]:
    """Customers per week offset over all cohorts (weeks not yet over are left out)."""
    totals = [0] * RETENTION_WEEKS
    for cohort in cohorts:
        for k, n in enumerate(cohort["values"]):
            totals[k] += n
    return totals


CONTESTANTS = {
    "cxloop": run_cxloop,
    "chdb": run_chdb,
    "duckdb-sql": run_duckdb_sql,
    "pandas": run_pandas,
    "cxloop-retention": run_cxloop_retention,
    "chdb-retention": run_chdb_retention,
    "cxloop-spark": run_cxloop_spark,
    "cxloop-spark-retention": run_cxloop_spark_retention,
}


def _timed(once: Any, runs: int) -> float:
    once()  # warm-up
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        once()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _at_least(levels: dict[int, int]) -> list[int]:
    """Customers per furthest level -> customers who reached at least each step."""
    return [sum(n for level, n in levels.items() if level >= k) for k in range(1, len(STEPS) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip", action="append", default=[], choices=sorted(CONTESTANTS))
    parser.add_argument("--contestant", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contestant:
        print(json.dumps(CONTESTANTS[args.contestant](Path(args.data), args.runs)))
        return
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-funnel-data-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    data = work / "events.parquet"
    began = time.perf_counter()
    make_data(args.events, args.users, data)
    print(f"data: {args.events:,} events of {args.users:,} users in "
          f"{time.perf_counter() - began:.1f} s", flush=True)  # fmt: skip
    results: dict[str, dict[str, Any]] = {}
    for name in CONTESTANTS:
        if name in args.skip:
            continue
        done = subprocess.run(
            [sys.executable, __file__, "--contestant", name, "--data", str(data),
             "--runs", str(args.runs)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
        )  # fmt: skip
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{name:>22}: median {results[name]['seconds']:.3f} s, "
              f"customers per step {results[name]['counts']}", flush=True)  # fmt: skip
    chdb_s = results.get("chdb", {}).get("seconds")
    summary: dict[str, Any] = {"events": args.events, "users": args.users, "runs": args.runs}
    for name, found in results.items():
        summary[f"{name}_s"] = round(found["seconds"], 3)
    if chdb_s and "cxloop" in results:
        summary["ratio_vs_chdb"] = round(results["cxloop"]["seconds"] / chdb_s, 2)
        print(f"funnel, cxloop / chdb: {summary['ratio_vs_chdb']}x")
    retention_chdb = results.get("chdb-retention", {}).get("seconds")
    if retention_chdb and "cxloop-retention" in results:
        ratio = round(results["cxloop-retention"]["seconds"] / retention_chdb, 2)
        summary["retention_ratio_vs_chdb"] = ratio
        print(f"weekly retention, cxloop / chdb: {ratio}x")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
