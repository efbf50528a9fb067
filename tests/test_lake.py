"""The Parquet lake holds every event and customer, readable by another engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from cxloop.analytics.lake import LakeError, export_parquet
from cxloop.cli.main import app
from cxloop.project import Project, open_project
from cxloop.settings import Settings
from tests.conftest import ServerProcess, make_keys
from tests.journeys import journeys
from tests.test_cli import cx, cx_json

T0 = datetime(2026, 1, 30, 12, 0, tzinfo=UTC)


def test_the_lake_holds_every_event_partitioned_by_month(project: Project, tmp_path: Path) -> None:
    journeys(
        project,
        {
            "p1": [("A", T0, {"total": 5}), ("B", T0 + timedelta(days=3))],
            "p2": [("A", T0 + timedelta(days=40))],
        },
    )
    lake = tmp_path / "lake"
    written = export_parquet(project.events, project.engine, lake)
    assert (written["events"], written["customers"]) == (3, 2)
    con = duckdb.connect()
    rows = con.execute(
        f"SELECT event, year, month, properties FROM read_parquet('{lake}/events/**/*.parquet', "
        "hive_partitioning = true) ORDER BY timestamp"
    ).fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [("A", 2026, 1), ("B", 2026, 2), ("A", 2026, 3)]
    assert json.loads(rows[0][3]) == {"total": 5}
    assert sorted(p.name for p in (lake / "events" / "year=2026").iterdir()) == [
        "month=1", "month=2", "month=3",
    ]  # fmt: skip
    customers = con.execute(f"SELECT count(*) FROM read_parquet('{lake}/customers.parquet')")
    assert customers.fetchone() == (2,)
    with pytest.raises(LakeError, match="not empty"):
        export_parquet(project.events, project.engine, lake)
    again = export_parquet(project.events, project.engine, lake, overwrite=True)
    assert again["events"] == 3


def test_the_cli_writes_the_lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "p"
    opened = open_project(Settings(home=home))
    try:
        journeys(opened, {"p1": [("A", T0)]})
    finally:
        opened.close()
    monkeypatch.setenv("CXLOOP_HOME", str(home))
    runner = CliRunner()
    done = runner.invoke(app, ["export", "parquet", str(tmp_path / "lake"), "-f", "json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["events"] == 1
    refused = runner.invoke(app, ["export", "parquet", str(tmp_path / "lake")])
    assert refused.exit_code == 2 and "--overwrite" in refused.output


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_the_running_server_writes_the_lake_and_spark_reads_it_meanwhile(
    server: ServerProcess, tmp_path: Path
) -> None:
    """DuckDB lets one process open its file, so while `cxloop serve` runs the export goes
    through the server, and Spark then answers from the lake beside it."""
    settings = server.settings
    write_key, _ = make_keys(settings)
    messages = [
        {"type": "track", "userId": who, "event": name, "messageId": f"{who}-{n}",
         "timestamp": (T0 + timedelta(hours=n)).isoformat()}
        for who, names in {"p1": ["A", "B"], "p2": ["A"]}.items()
        for n, name in enumerate(names)
    ]  # fmt: skip
    sent = httpx.post(f"{server.url}/v1/batch", json={"batch": messages}, auth=(write_key, ""))
    assert sent.status_code == 200, sent.text
    elsewhere = cx(settings, "export", "parquet", str(tmp_path / "elsewhere"), check=False)
    assert elsewhere.returncode == 2 and "CXLOOP_LAKE_DIR" in elsewhere.stderr
    written = cx_json(settings, "export", "parquet")
    assert (written["events"], written["customers"]) == (3, 2)
    again = cx(settings, "export", "parquet", check=False)
    assert again.returncode != 0 and "--overwrite" in again.stderr
    here = cx_json(settings, "funnel", "--steps", "A,B")
    there = cx_json(settings, "funnel", "--steps", "A,B", "--engine", "spark")
    assert there == here and [s["count"] for s in there["steps"]] == [2, 1]
