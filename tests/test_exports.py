"""Exports: customer lists as CSV, the events of a period as Parquet, and the whole
project exported and imported into an empty project on the other backend (embedded to
PostgreSQL and back), whose reports must equal the original's."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import PgDatabase, make_keys
from tests.test_cli import cx, cx_json, project_env

__all__: list[str] = []
pytestmark = pytest.mark.slow
REPORTS = (
    "/api/v1/stats",
    "/api/v1/overview?model=client-experience",
    "/api/v1/report?model=client-experience&format=json",
    "/api/v1/lifecycle/client-experience/report",
    "/api/v1/feedback/nps?by=touchpoint",
    "/api/v1/cases/metrics",
    "/api/v1/followups/metrics",
    "/api/v1/insights/gaps/client-experience",
    "/api/v1/customers?limit=100&sort=id",
    "/api/v1/automations",
    "/api/v1/automation-runs?limit=1000",
    "/api/v1/staff",
    "/api/v1/segments",
)


def _reports(settings: Settings) -> dict[str, Any]:
    _write, secret = make_keys(settings)
    quiet = settings.model_copy(update={"jobs_poll_s": 0})
    found: dict[str, Any] = {}
    with TestClient(create_app(quiet)) as http:
        for path in REPORTS:
            answer = http.get(path, headers={"Authorization": f"Bearer {secret}"})
            assert answer.status_code == 200, (path, answer.text)
            found[path] = answer.json()
        funnel = {
            "steps": [
                {"event": "Ad Clicked"},
                {"event": "Signed Up"},
                {"event": "Order Completed"},
            ],
            "window_seconds": 30 * 86400,
        }
        answer = http.post(
            "/api/v1/analytics/funnel", json=funnel, headers={"Authorization": f"Bearer {secret}"}
        )
        assert answer.status_code == 200, answer.text
        found["funnel"] = answer.json()
    return found


def _without_clock(data: Any) -> Any:
    """What may differ between two reads of the same data: when each was computed."""
    if isinstance(data, dict):
        return {
            k: _without_clock(v)
            for k, v in data.items()
            if k not in ("generated_at", "computed_at", "as_of", "took_ms", "active_since")
        }
    if isinstance(data, list):
        return [_without_clock(v) for v in data]
    return data


def test_a_project_moves_to_the_other_backend_with_the_same_reports(
    settings: Settings, backend: str, pg_database: PgDatabase, tmp_path: Path
) -> None:
    if backend == "embedded":
        target = Settings(
            home=tmp_path / "copy",
            database_url=pg_database.sqlalchemy_url,
            events_url=pg_database.url,
        )
    else:
        target = Settings(home=tmp_path / "copy")
    cx(settings, "demo", "--customers", "150", "--no-serve")
    segment = tmp_path / "segment.yaml"
    segment.write_text("rules:\n  - {kind: trait, field: country, op: exists}\n")
    cx(settings, "segments", "create", "Located", "--file", str(segment))
    before = _reports(settings)
    assert before["/api/v1/automations"] and before["/api/v1/stats"]["events"] > 1000

    folder = tmp_path / "export"
    exported = cx_json(settings, "export", "project", str(folder))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert exported["events"] == manifest["counts"]["events"] == before["/api/v1/stats"]["events"]
    assert manifest["counts"]["customers"] >= 150 and manifest["counts"]["staff"] == 12
    assert not (folder / "app" / "user_sessions.jsonl").exists()
    refused = cx(settings, "import", "project", str(folder), check=False)
    assert refused.returncode == 2 and "not empty" in refused.stderr

    imported = cx_json(target, "import", "project", str(folder))
    assert imported["events"] == exported["events"]
    after = _reports(target)
    for path in (*REPORTS, "funnel"):
        assert _without_clock(after[path]) == _without_clock(before[path]), path
    # The copy goes on by itself: new ids follow the imported ones.
    cx(target, "keys", "create", "--kind", "write", "--name", "after import")
    ids = {k["name"]: k["id"] for k in cx_json(target, "keys", "list")}
    assert ids["after import"] > max(k["id"] for k in cx_json(settings, "keys", "list"))

    bad = tmp_path / "not-an-export"
    bad.mkdir()
    wrong = cx(Settings(home=tmp_path / "third"), "import", "project", str(bad), check=False)
    assert wrong.returncode == 2 and "holds no cxloop export" in wrong.stderr


def test_customer_lists_and_event_periods_export(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    s = embedded_settings
    cx(s, "demo", "--customers", "120", "--no-serve")
    # A name a spreadsheet would run as a formula (profiles come from browsers).
    evil = tmp_path / "evil.csv"
    evil.write_text('user_id,email,name\nevil-1,evil@example.com,"=HYPERLINK(""http://x.test"")"\n')
    cx(s, "import", "customers", str(evil))
    out = tmp_path / "all.csv"
    cx(s, "export", "customers", "--out", str(out))
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    stats = cx_json(s, "stats")
    assert len(rows) == stats["customers"] and rows[0]["id"] and "email" in rows[0]
    [row] = [r for r in rows if r["email"] == "evil@example.com"]
    assert row["name"] == '\'=HYPERLINK("http://x.test")'
    segment = tmp_path / "segment.yaml"
    segment.write_text("rules:\n  - {kind: trait, field: country, op: equals, value: Spain}\n")
    cx(s, "segments", "create", "Spain", "--file", str(segment))
    spain = tmp_path / "spain.csv"
    cx(s, "export", "customers", "--out", str(spain), "--segment", "Spain")
    members = list(csv.DictReader(io.StringIO(spain.read_text())))
    assert members and {m["country"] for m in members} == {"Spain"}
    unknown = cx(s, "export", "customers", "--out", str(spain), "--segment", "Mars", check=False)
    assert unknown.returncode == 2 and "Mars" in unknown.stderr
    # The web download streams the same file; an unknown segment is refused before it starts.
    _write, secret = make_keys(s)
    with TestClient(create_app(s.model_copy(update={"jobs_poll_s": 0}))) as http:
        auth = {"Authorization": f"Bearer {secret}"}
        download = http.get("/api/v1/export/customers.csv?segment=Spain", headers=auth)
        assert download.status_code == 200
        assert list(csv.DictReader(io.StringIO(download.text))) == members
        assert 'filename="cxloop-customers-Spain.csv"' in download.headers["content-disposition"]
        whole = http.get("/api/v1/export/customers.csv", headers=auth)
        assert list(csv.DictReader(io.StringIO(whole.text))) == rows
        refused = http.get("/api/v1/export/customers.csv?segment=Mars", headers=auth)
        assert refused.status_code == 404 and "Mars" in refused.text

    # A whole month inside the demo's history (the twelve months before today).
    first = (date.today() - timedelta(days=60)).replace(day=1)
    last = (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    days = tmp_path / "month.parquet"
    cx(s, "export", "events", "--out", str(days), "--from", str(first), "--to", str(last))
    table = pq.read_table(days)
    stamps = table.column("timestamp").to_pylist()
    assert table.num_rows > 0
    assert all((t.year, t.month) == (first.year, first.month) for t in stamps)
    assert set(table.column_names) >= {"message_id", "customer_id", "properties", "context"}
    backwards = cx(
        s,
        "export",
        "events",
        "--out",
        str(days),
        "--from",
        str(last),
        "--to",
        str(first),
        check=False,
    )
    assert backwards.returncode == 2 and "to: must not be before from" in backwards.stderr
    assert project_env(s)["CXLOOP_HOME"] == str(s.home)
