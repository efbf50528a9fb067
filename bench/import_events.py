"""Import of a 1,000,000-row events CSV into the embedded store, against DuckDB's own CSV load.

    .venv/bin/python bench/import_events.py [--rows 1000000] [--customers 100000]

The peer is DuckDB reading the same file into a plain table (`CREATE TABLE AS SELECT * FROM
read_csv(...)`): no validation, no identities, no deduplication — the floor any import into
DuckDB pays. Both run as separate processes on the same file in the same run. The last line
printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

EVENTS = ["Page Viewed", "Product Viewed", "Added To Cart", "Order Completed", "Email Opened"]
CHANNELS = ["web", "email", "store", "phone"]


def write_csv(path: Path, rows: int, customers: int, seed: int = 11) -> None:
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w") as fh:
        fh.write("user_id,event,timestamp,channel,revenue,product\n")
        for i in range(rows):
            ts = start + timedelta(seconds=i * 30 + rng.randint(0, 29))
            event = rng.choice(EVENTS)
            revenue = f"{rng.uniform(5, 500):.2f}" if event == "Order Completed" else ""
            fh.write(
                f"u{rng.randrange(customers)},{event},{ts:%Y-%m-%d %H:%M:%S},"
                f"{rng.choice(CHANNELS)},{revenue},sku-{rng.randrange(2000)}\n"
            )


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
    return elapsed, result.stdout


PEER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE events AS SELECT * FROM read_csv(?)", [sys.argv[2]])
print(con.execute("SELECT count(*) FROM events").fetchone()[0])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-import-"))
    try:
        source = work / "events.csv"
        write_csv(source, args.rows, args.customers)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
        env["CXLOOP_HOME"] = str(work / "project")
        cxloop = str(Path(sys.executable).with_name("cxloop"))
        subprocess.run([cxloop, "init"], env=env, capture_output=True, check=True)
        cmd = [cxloop, "import", "events", str(source), "--format", "json"]
        seconds, out = timed(cmd, env)
        summary = json.loads(out)
        if summary["imported"] != args.rows or summary["rejected"]:
            sys.exit(f"import stored {summary['imported']} of {args.rows} rows: {summary}")
        peer_seconds, peer_out = timed(
            [sys.executable, "-c", PEER, str(work / "peer.duckdb"), str(source)], env
        )
        assert int(peer_out.strip()) == args.rows
        rate = args.rows / seconds
        peer_rate = args.rows / peer_seconds
        print(
            f"rows: {args.rows:,} ({args.customers:,} customers), file {source.stat().st_size:,} B"
        )
        print(f"cxloop import events (whole command): {seconds:.2f} s = {rate:,.0f} rows/s")
        print(f"  of which reading+storing (its own timer): {summary['seconds']:.2f} s")
        print(f"peer, duckdb read_csv CTAS: {peer_seconds:.2f} s = {peer_rate:,.0f} rows/s")
        print(
            json.dumps(
                {
                    "rows": args.rows,
                    "rows_per_s": round(rate),
                    "seconds": round(seconds, 3),
                    "peer": "duckdb read_csv CREATE TABLE AS (no validation)",
                    "peer_rows_per_s": round(peer_rate),
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
