"""How long a `cxloop` command takes to start, against the libraries it cannot do without.

    .venv/bin/python bench/startup.py [--runs 7]

Every command first imports the command tree, so its start-up is paid by `cxloop --help`,
by each `cxloop import` and by every report alike. Timed as whole processes (interpreter
start and exit included), the best of ``--runs`` each:

* `cxloop --help`;
* `cxloop stats --format json` on a fresh embedded project (opens both stores);
* the **peer**: a bare interpreter importing only the libraries any command needs
  (SQLAlchemy's ORM, DuckDB, pyarrow, Typer, pydantic-settings) — the floor a command
  tree built on them can reach.

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEER = "import sqlalchemy.orm, duckdb, pyarrow, typer, pydantic_settings"


def best_of(runs: int, cmd: list[str], env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed:\n{result.stderr}")
        best = min(best, elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs of each command (best kept)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cxloop-bench-startup-"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
        env["CXLOOP_HOME"] = str(work / "project")
        cxloop = str(Path(sys.executable).with_name("cxloop"))
        subprocess.run([cxloop, "init"], env=env, capture_output=True, check=True)
        figures = {
            "help_s": best_of(args.runs, [cxloop, "--help"], env),
            "stats_s": best_of(args.runs, [cxloop, "stats", "--format", "json"], env),
            "peer_s": best_of(args.runs, [sys.executable, "-c", PEER], env),
        }
        print(f"best of {args.runs} runs, whole processes:")
        print(f"  cxloop --help:              {figures['help_s']:.2f} s")
        print(f"  cxloop stats --format json: {figures['stats_s']:.2f} s")
        print(f"  peer, the libraries alone:  {figures['peer_s']:.2f} s  ({PEER})")
        print(
            json.dumps(
                {
                    **{k: round(v, 3) for k, v in figures.items()},
                    "peer": PEER,
                    "runs": args.runs,
                }
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
