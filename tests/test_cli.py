"""The `cxloop` command as a user runs it: settings, keys, formats, errors, imports."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import ServerProcess, cxloop_bin, free_port, make_keys, project_env

CDNOW_MAP = [
    "--map", "customer_id=user_id", "--map", "date=timestamp",
    "--map", "dollar_value=properties.revenue", "--set", "event=Order Completed",
    "--date-format", "%Y%m%d",
]  # fmt: skip
TELCO_MAP = ["--map", "customerID=user_id", "--map", "gender=gender"]


def cx(
    settings: Settings, *args: str, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [cxloop_bin(), *args],
        env=project_env(settings, **env),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=settings.home.parent,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"cxloop {' '.join(args)} failed:\n{result.stderr}")
    return result


def cx_json(settings: Settings, *args: str) -> Any:
    return json.loads(cx(settings, *args, "--format", "json").stdout)


def test_config_show_masks_secrets_and_honours_settings(embedded_settings: Settings) -> None:
    url = "postgresql+psycopg://alice:s3cret-pw@db.internal:5432/cx"
    shown = cx_json(embedded_settings, "config", "show")
    assert shown["home"] == str(embedded_settings.home.resolve())
    assert shown["database_url"].startswith("sqlite:///")
    assert shown["timezone"] == "UTC"
    masked = cx(
        embedded_settings, "config", "show", "--format", "json",
        CXLOOP_DATABASE_URL=url, CXLOOP_SECRET_KEY="hush", CXLOOP_TIMEZONE="Europe/Berlin",
    ).stdout  # fmt: skip
    assert "s3cret-pw" not in masked and "hush" not in masked
    data = json.loads(masked)
    assert data["database_url"] == "postgresql+psycopg://alice:********@db.internal:5432/cx"
    assert data["secret_key"] == "********"
    assert data["timezone"] == "Europe/Berlin"


def test_bad_setting_is_named_on_stderr(embedded_settings: Settings) -> None:
    result = cx(embedded_settings, "config", "show", check=False, CXLOOP_TIMEZONE="Mars/Base")
    assert result.returncode == 2
    assert "CXLOOP_TIMEZONE" in result.stderr and "Mars/Base" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_a_home_that_is_a_file_is_named_and_an_empty_one_is_the_default(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    afile = tmp_path / "notes.txt"
    afile.write_text("not a project\n")
    result = cx(embedded_settings, "stats", check=False, CXLOOP_HOME=str(afile))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: CXLOOP_HOME: {afile} is a file, not a folder; name a folder for the project"
    )
    assert afile.read_text() == "not a project\n"
    shown = json.loads(cx(embedded_settings, "config", "show", "-f", "json", CXLOOP_HOME="").stdout)
    assert shown["home"] == str(embedded_settings.home.parent.resolve() / ".cxloop")


def test_import_says_which_columns_it_renamed(embedded_settings: Settings, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("user_id,email,email\nann,a@example.com,b@example.com\n")
    done = cx(embedded_settings, "import", "customers", str(people))
    assert "note: column 3 is read as 'email_2' (a second 'email')" in done.stderr
    data = cx_json(embedded_settings, "import", "customers", str(people))
    assert data["notes"] == ["column 3 is read as 'email_2' (a second 'email')"]
    shown = cx_json(embedded_settings, "customers", "show", "ann")
    assert shown["email"] == "a@example.com" and shown["traits"]["email_2"] == "b@example.com"


def test_init_is_idempotent(embedded_settings: Settings) -> None:
    first = cx(embedded_settings, "init")
    second = cx(embedded_settings, "init")
    assert "ready" in first.stdout and "ready" in second.stdout
    assert (embedded_settings.home / "cxloop.db").exists()
    assert (embedded_settings.home / "events.duckdb").exists()


def test_keys_create_list_revoke(embedded_settings: Settings) -> None:
    key = cx(embedded_settings, "keys", "create", "--kind", "write", "--name", "website").stdout
    assert re.fullmatch(r"cxw_[A-Za-z0-9_-]{20,}\n", key)
    listed = cx_json(embedded_settings, "keys", "list")
    assert [(k["kind"], k["name"], k["prefix"]) for k in listed] == [("write", "website", key[:10])]
    assert key.strip() not in json.dumps(listed)
    cx(embedded_settings, "keys", "revoke", str(listed[0]["id"]))
    assert cx_json(embedded_settings, "keys", "list") == []
    bad = cx(embedded_settings, "keys", "create", "--kind", "admin", "--name", "x", check=False)
    assert bad.returncode == 2 and "--kind" in bad.stderr


def test_import_real_files_counts_and_reimport_changes_nothing(
    settings: Settings, shared_data: Path
) -> None:
    cdnow = cx_json(
        settings, "import", "events", str(shared_data / "cdnow-purchases.txt"), *CDNOW_MAP
    )
    assert (cdnow["read"], cdnow["imported"], cdnow["rejected"]) == (69_659, 69_659, 0)
    telco = cx_json(settings, "import", "customers", str(shared_data / "telco-customer-churn.csv"),
                    *TELCO_MAP)  # fmt: skip
    assert (telco["read"], telco["imported"], telco["rejected"]) == (7_043, 7_043, 0)
    stats = cx_json(settings, "stats")
    # The purchases, and one identify event per imported profile.
    assert stats["events"] == 69_659 + 7_043
    assert stats["customers"] == 23_570 + 7_043
    again = cx_json(
        settings, "import", "events", str(shared_data / "cdnow-purchases.txt"), *CDNOW_MAP
    )
    assert (again["imported"], again["unchanged"]) == (0, 69_659)
    telco_again = cx_json(
        settings, "import", "customers", str(shared_data / "telco-customer-churn.csv"), *TELCO_MAP
    )
    assert (telco_again["imported"], telco_again["updated"], telco_again["unchanged"]) == (
        0, 0, 7_043)  # fmt: skip
    assert cx_json(settings, "stats")["events"] == 69_659 + 7_043
    blank = cx_json(settings, "customers", "show", "4472-LVYGI", "--timeline", "0")
    assert blank["gender"] == "female" and blank["traits"].get("TotalCharges") is None
    charged = cx_json(settings, "customers", "show", "7590-VHVEG", "--timeline", "0")
    assert charged["traits"]["TotalCharges"] == pytest.approx(29.85)
    assert blank["traits"]["tenure"] == 0 and blank["traits"]["Churn"] == "No"
    buyer = cx_json(settings, "customers", "show", "00001")
    assert buyer["event_count"] == 1
    assert buyer["timeline"][0]["properties"]["revenue"] == pytest.approx(11.77)
    assert buyer["timeline"][0]["timestamp"].startswith("1997-01-01")


def test_cli_json_is_the_api_json(embedded_settings: Settings, shared_data: Path) -> None:
    cx(embedded_settings, "import", "customers", str(shared_data / "telco-customer-churn.csv"),
       *TELCO_MAP)  # fmt: skip
    _, secret = make_keys(embedded_settings)
    with TestClient(create_app(embedded_settings)) as http:
        auth = {"Authorization": f"Bearer {secret}"}
        api_page = http.get("/api/v1/customers?gender=male&limit=5&sort=id", headers=auth).json()
        api_one = http.get("/api/v1/customers/7590-VHVEG?timeline=5", headers=auth).json()
    cli_page = cx_json(
        embedded_settings, "customers", "list", "--where", "gender=male", "--limit", "5",
        "--sort", "id",
    )  # fmt: skip
    assert cli_page == api_page
    assert (
        cx_json(embedded_settings, "customers", "show", "7590-VHVEG", "--timeline", "5") == api_one
    )


def test_import_rejects_go_to_a_file_with_reasons(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "events.csv"
    source.write_text(
        "user,when,what,amount\n"
        "u1,2024-05-01 10:00:00,Order Completed,10.5\n"
        "u2,not a date,Order Completed,3\n"
        ",2024-05-02 11:00:00,Order Completed,4\n"
        "u3,2024-05-03,Refund Issued,-2\n"
    )
    args = ["import", "events", str(source), "--map", "user=user_id", "--map", "when=timestamp",
            "--map", "what=event"]  # fmt: skip
    summary = cx_json(embedded_settings, *args)
    assert (summary["read"], summary["imported"], summary["rejected"]) == (4, 2, 2)
    rejects_file = Path(summary["rejects_file"])
    assert rejects_file == tmp_path / "events.rejects.csv"
    with rejects_file.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["field"] for r in rows] == ["timestamp", "user_id"]
    assert "not a date" in rows[0]["reason"]
    assert rows[0]["user"] == "u2"
    events = cx_json(embedded_settings, "events", "list", "--customer", "u3")
    assert events["items"][0]["properties"] == {"amount": -2}


def test_import_reads_the_named_encoding(embedded_settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "kunden.csv"
    source.write_bytes("Kundennummer;Stadt;Notiz\nk1;München;Grüße\nk2;Köln;€ 5\n".encode("cp1252"))
    args = ["import", "customers", str(source), "--map", "Kundennummer=user_id",
            "--map", "Stadt=city", "--encoding", "cp1252"]  # fmt: skip
    summary = cx_json(embedded_settings, *args)
    assert (summary["read"], summary["imported"], summary["rejected"]) == (2, 2, 0)
    shown = cx_json(embedded_settings, "customers", "show", "k2")
    assert shown["city"] == "Köln" and shown["traits"]["Notiz"] == "€ 5"
    refused = cx(embedded_settings, *args[:-1], "ebcdic-klingon", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "encoding" in refused.stderr and "ebcdic-klingon" in refused.stderr


def test_surveys_link_prints_a_working_link(embedded_settings: Settings) -> None:
    """`link` is defined beside the other server-reaching commands, yet belongs to the
    `surveys` group that is loaded only when it runs."""
    made = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "Rel")
    link = cx(embedded_settings, "surveys", "link", made.stdout.strip()).stdout.strip()
    assert re.fullmatch(r"http://[^/]+/s/[A-Za-z0-9_-]{20,}", link), link


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["import", "events", "missing.csv"], "missing.csv"),
        (["import", "events", "{csv}", "--map", "nope=user_id"], "nope"),
        (["import", "events", "{csv}", "--map", "user=bogus_field"], "bogus_field"),
        (["import", "events", "{csv}", "--map", "user"], "--map"),
        (["events", "list", "--from", "yesterday"], "--from"),
        (["customers", "list", "--where", "shoe_size=42"], "shoe_size"),
        (["customers", "list", "--search", "a" * 201], "search: at most 200 characters"),
        (["customers", "show", "nobody"], "nobody"),
        (["customers", "show", "99999999999999999999999"], "too large"),
        (["timeline", "nobody"], "nobody"),
        (["timeline", "1", "--limit", "0"], "limit"),
        (["export", "customers", "--out", "{dir}"], "Is a directory"),
        (["export", "events", "--out", "events.csv"], ".parquet"),
        (["funnel", "--steps", "A,B", "--customers-at", "0", "--limit", "-5"], "limit"),
        # An error names the option that was given, not the field it fills.
        (["funnel", "--steps", "A,B", "--breakdown", "x", "--attribution", "step:x"],
         "--attribution: give first_touch, last_touch or step:K, not 'step:x'"),
        (["funnel", "--steps", "A,B", "--attribution", "last_touch"],
         "--attribution: only with --breakdown"),
        (["webhooks", "create", "crm", "--url", "ftp://x", "--topic", "event"],
         "--url: must start with http:// or https://"),
        (["webhooks", "create", "crm", "--url", "https://crm.example.com", "--topic", "nope"],
         "--topic: unknown nope"),
        (["report-schedules", "set", "sales", "--to", "bad"],
         "--to: 'bad' is not an e-mail address"),
        (["import", "events", "{csv}", "--set", "event=A", "--set", "event=B"],
         "--set: 'event' is given twice"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line_and_nonzero(
    embedded_settings: Settings, tmp_path: Path, args: list[str], expected: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text("user,when,what\nu1,2024-01-01,Signed Up\n")
    given = [a.replace("{csv}", str(source)).replace("{dir}", str(tmp_path)) for a in args]
    result = cx(embedded_settings, *given, check=False)
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr


def test_commands_work_while_the_server_runs(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    """DuckDB has one writer: with `serve` running, the CLI hands its work to the server."""
    server = ServerProcess(embedded_settings, free_port(), tmp_path / "server.log")
    server.start()
    try:
        summary = cx_json(embedded_settings, "import", "events",
                          str(shared_data / "cdnow-purchases.txt"), *CDNOW_MAP)  # fmt: skip
        assert summary["imported"] == 69_659
        customers = cx_json(embedded_settings, "import", "customers",
                            str(shared_data / "telco-customer-churn.csv"), *TELCO_MAP)  # fmt: skip
        assert customers["imported"] == 7_043
        stats = cx_json(embedded_settings, "stats")
        assert (stats["events"], stats["customers"]) == (69_659 + 7_043, 30_613)
        shown = cx_json(embedded_settings, "customers", "show", "00002")
        assert shown["event_count"] == 2
        cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "Pulse")
        taken = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "Pulse",
                   check=False)  # fmt: skip
        # A conflict (409) is refused input, exit 2, as it is without a server.
        assert taken.returncode == 2, taken.stderr
        assert taken.stderr.strip() == "error: name: a survey named 'Pulse' exists already"
        second = cx(embedded_settings, "serve", "--port", str(free_port()), check=False)
        assert second.returncode != 0 and "already runs" in second.stderr
    finally:
        server.stop()
    assert cx_json(embedded_settings, "stats")["events"] == 69_659 + 7_043


def test_demo_loads_once_and_prints_working_keys(embedded_settings: Settings) -> None:
    first = cx(embedded_settings, "demo", "--no-serve", "--customers", "150", "--seed", "3")
    write_key = re.search(r"write key:\s+(cxw_\S+)", first.stdout)
    secret_key = re.search(r"secret key:\s+(cxs_\S+)", first.stdout)
    assert write_key and secret_key
    assert "http://127.0.0.1:8000" in first.stdout
    assert "wait in the job queue until CXLOOP_SMTP_HOST is set" in first.stdout
    stats = cx_json(embedded_settings, "stats")
    assert stats["events"] > 150 * 20
    again = cx(
        embedded_settings, "demo", "--no-serve", "--customers", "150", "--seed", "3",
        CXLOOP_SMTP_HOST="127.0.0.1",
    )  # fmt: skip
    assert "CXLOOP_SMTP_HOST" not in again.stdout  # e-mail set up: nothing to say
    assert cx_json(embedded_settings, "stats")["events"] == stats["events"]
    with TestClient(create_app(embedded_settings)) as http:
        ok = http.get("/api/v1/stats", headers={"Authorization": f"Bearer {secret_key.group(1)}"})
        assert ok.status_code == 401, "keys of an earlier demo run are retired"


def test_jsonl_segment_history_imports_with_merges(settings: Settings, tmp_path: Path) -> None:
    """identify/alias lines of a JSONL export merge people exactly as live traffic does."""
    lines = [
        {"type": "track", "messageId": "j1", "anonymousId": "anon-9", "event": "Ad Clicked",
         "timestamp": "2024-03-01T10:00:00Z", "properties": {"campaign": "spring"}},
        {"type": "identify", "messageId": "j2", "userId": "u-9", "anonymousId": "anon-9",
         "timestamp": "2024-03-01T10:05:00Z", "traits": {"email": "nine@example.com"}},
        {"type": "track", "messageId": "j3", "userId": "old-9", "event": "Signed Up",
         "timestamp": "2024-02-01T09:00:00Z"},
        {"type": "alias", "messageId": "j4", "previousId": "old-9", "userId": "u-9",
         "timestamp": "2024-03-02T08:00:00Z"},
        {"type": "track", "messageId": "j5", "event": "Orphan",
         "timestamp": "2024-03-03T00:00:00Z"},
    ]  # fmt: skip
    source = tmp_path / "history.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    summary = cx_json(settings, "import", "events", str(source))
    assert (summary["read"], summary["imported"], summary["rejected"]) == (6, 4, 2)
    customer = cx_json(settings, "customers", "show", "u-9")
    assert {e["message_id"] for e in customer["timeline"]} == {"j1", "j2", "j3", "j4"}
    assert {(i["kind"], i["value"]) for i in customer["identities"]} >= {
        ("user_id", "u-9"), ("user_id", "old-9"), ("anonymous_id", "anon-9"),
        ("email", "nine@example.com"),
    }  # fmt: skip
    assert customer["first_seen"].startswith("2024-02-01")
    with (tmp_path / "history.rejects.csv").open() as fh:
        rejects = list(csv.DictReader(fh))
    assert [(r["row"], r["field"]) for r in rejects] == [("5", "userId"), ("6", "line")]
    again = cx_json(settings, "import", "events", str(source))
    assert (again["imported"], again["unchanged"]) == (0, 4)


def test_serve_reports_a_busy_event_store_in_one_line(embedded_settings: Settings) -> None:
    import duckdb

    cx(embedded_settings, "init")
    holder = duckdb.connect(str(embedded_settings.home / "events.duckdb"))
    try:
        result = cx(embedded_settings, "serve", "--port", str(free_port()), check=False)
    finally:
        holder.close()
    assert result.returncode == 1
    assert "in use by another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_piped_table_keeps_each_row_on_one_line(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    long_note = "a note long enough to be folded at eighty columns, " * 2
    source = tmp_path / "notes.csv"
    with source.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "event", "timestamp", "note"])
        for i in range(3):
            writer.writerow(
                [f"reader-{i}", "Note Written", f"2026-01-0{i + 1}T10:00:00Z", long_note]
            )
    cx(embedded_settings, "import", "events", str(source))

    def table(**extra: str) -> list[str]:
        env = project_env(embedded_settings, **extra)
        if not extra:
            env.pop("COLUMNS", None)
        out = subprocess.run(
            [cxloop_bin(), "events", "list"], env=env, capture_output=True, text=True,
            timeout=300, check=True,
        ).stdout  # fmt: skip
        return [line for line in out.splitlines() if line.startswith("│")]

    piped = table()
    assert len(piped) == 3  # one line per event, the whole note on it
    assert all(long_note.strip() in line for line in piped)
    folded = table(COLUMNS="80")  # a width asked for is kept
    assert len(folded) > 3
    assert all(len(line) <= 80 for line in folded)


def test_a_registered_server_that_does_not_answer_is_one_clear_error(
    embedded_settings: Settings,
) -> None:
    """server.json names a live process (this test's) whose address answers nothing: the
    command says so in one line instead of a traceback, and stores nothing locally."""
    import os

    home = embedded_settings.home_dir
    home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{free_port()}"
    (home / "server.json").write_text(json.dumps({"url": url, "pid": os.getpid(), "token": "t"}))
    result = cx(embedded_settings, "stats", check=False)
    assert result.returncode == 1, result.stderr
    assert "error: the running server did not answer" in result.stderr
    assert "Traceback" not in result.stderr
