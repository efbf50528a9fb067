"""A report filtered by a name nobody has (a misspelt trait, a segment never saved) is
refused naming the option, from the CLI and the API alike, instead of answering with an
empty report that looks like a real one."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxloop.settings import Settings
from tests.conftest import ApiClient, ServerProcess, free_port
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import install
from tests.test_distribution import identify, quiet_api, send

__all__ = ["quiet_api"]


def _people(settings: Settings, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "user_id,email,country,plan\n"
        + "".join(f"p{i},p{i}@example.com,Spain,{'pro' if i % 2 else 'basic'}\n" for i in range(4))
    )
    cx(settings, "import", "customers", str(people))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nps", "--where", "plna=pro"], "--where: no customer has a trait 'plna'"),
        (["nps", "--where", "segment=Nope"], "--where: no saved segment 'Nope'"),
        (["nps", "--by", "segment", "--segment", "plna"], "segment: no customer has a trait"),
        (["nps", "--where", "plan=pro", "--where", "plan=basic"], "--where: 'plan' is given twice"),
        (["csat", "--where", "plna=pro"], "--where: no customer has a trait 'plna'"),
        (
            ["lifecycle", "report", "client-experience", "--where", "plna=pro"],
            "--where: no customer has a trait 'plna'",
        ),
        (
            ["insights", "gaps", "client-experience", "--where", "plna=pro"],
            "--where: no customer has a trait 'plna'",
        ),
        (["insights", "purchases", "--where", "plna=pro"], "no customer has a trait 'plna'"),
    ],
)
def test_the_cli_refuses_names_nobody_has(
    embedded_settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    _people(embedded_settings, tmp_path)
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    failed = cx(embedded_settings, *args, check=False)
    assert failed.returncode == 2, failed.stdout  # bad input
    assert message in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1 and "Traceback" not in failed.stderr


def test_the_cli_still_answers_for_a_trait_and_a_profile_field(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    _people(embedded_settings, tmp_path)
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    for where in ("plan=pro", "country=Spain", "plan=nobody-has-this-value"):
        report = cx_json(embedded_settings, "lifecycle", "report", "client-experience",
                         "--where", where)  # fmt: skip
        assert {"stages"} <= set(report), where
    grouped = cx_json(embedded_settings, "nps", "--by", "segment", "--segment", "plan")
    assert grouped["responses"] == 0


def test_the_api_refuses_names_nobody_has(quiet_api: ApiClient) -> None:
    api = quiet_api
    install(api)
    message = identify("ann", "ann@example.com", "Ann")
    send(api, {**message, "traits": {**message["traits"], "plan": "pro"}})
    for path in ("/api/v1/feedback/nps", "/api/v1/lifecycle/client-experience/report",
                 "/api/v1/insights/gaps/client-experience"):  # fmt: skip
        bad = api.http.get(path, params={"where": "plna=pro"}, headers=api.auth)
        assert bad.status_code == 422, (path, bad.text)
        error = bad.json()["error"]
        assert error["field"] == "where" and "'plna'" in error["message"], path
        good = api.http.get(path, params={"where": "plan=pro"}, headers=api.auth)
        assert good.status_code == 200, (path, good.text)
    grouped = api.http.get(
        "/api/v1/feedback/nps", params={"by": "segment", "segment": "plna"}, headers=api.auth
    )
    assert grouped.status_code == 422 and grouped.json()["error"]["field"] == "segment"


def test_the_cli_names_its_option_when_the_server_answers(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    _people(embedded_settings, tmp_path)
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    server = ServerProcess(embedded_settings, free_port(), tmp_path / "server.log")
    server.start()
    try:
        for args in (["nps"], ["lifecycle", "report", "client-experience"],
                     ["insights", "gaps", "client-experience"]):  # fmt: skip
            failed = cx(embedded_settings, *args, "--where", "plna=pro", check=False)
            assert failed.returncode == 2, args
            assert failed.stderr.startswith("error: --where: no customer has a trait 'plna'")
    finally:
        server.stop()
