"""Surveys through the CLI and the API: created with sensible defaults, tied to a stage
or touchpoint, and every bad input refused with the field and the reason."""

from __future__ import annotations

import csv
import json
import shutil
import statistics
from bisect import bisect_right
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cxloop.domain.scores import Mean, Nps, compare
from cxloop.project import Project
from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json


def test_the_cli_creates_lists_and_shows_surveys(embedded_settings: Settings) -> None:
    cx(embedded_settings, "lifecycle", "apply", "client-experience")
    created = cx(
        embedded_settings, "surveys", "create", "--type", "nps", "--name", "After delivery",
        "--stage", "client-experience:delivery", "--touchpoint", "Delivery Completed",
    ).stdout  # fmt: skip
    assert created.strip().isdigit()  # the id alone, for scripts
    survey_id = created.strip()
    choice = cx(
        embedded_settings, "surveys", "create", "--type", "custom", "--name", "Channel",
        "--question", "Where did you hear of us?", "--choice", "Friend", "--choice", "Search",
        "--no-why",
    ).stdout.strip()  # fmt: skip
    shown = cx_json(embedded_settings, "surveys", "show", survey_id)
    assert shown["kind"] == "nps" and shown["scale"] == [0, 10]
    assert shown["question"].startswith("How likely are you to recommend us")
    assert shown["stage"] == "client-experience:delivery"
    assert shown["touchpoint"] == "Delivery Completed" and shown["ask_why"] is True
    listed = cx_json(embedded_settings, "surveys", "list")
    assert [s["id"] for s in listed] == [int(survey_id), int(choice)]
    assert listed[1]["choices"] == ["Friend", "Search"] and listed[1]["ask_why"] is False
    moved = cx_json(
        embedded_settings, "surveys", "update", survey_id, "--stage", "client-experience:use",
        "--no-touchpoint",
    )  # fmt: skip
    assert (moved["stage"], moved["touchpoint"]) == ("client-experience:use", None)
    both = cx(embedded_settings, "surveys", "update", survey_id, "--stage", "x:y", "--no-stage",
              check=False)  # fmt: skip
    assert both.returncode == 2
    assert both.stderr.strip() == "error: --no-stage: give --stage or --no-stage, not both"
    taken = cx(embedded_settings, "surveys", "update", choice, "--name", "After delivery",
               check=False)  # fmt: skip
    assert taken.returncode == 2
    assert taken.stderr.strip() == "error: --name: a survey named 'After delivery' exists already"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "bogus", "--name", "x"], "type: must be one of nps, csat, ces, custom"),
        (["--type", "nps", "--name", " "], "name: give a name of 1 to 200 characters"),
        (["--type", "custom", "--name", "x", "--scale", "1-5"], "question: a custom survey"),
        (["--type", "custom", "--name", "x", "--question", "q"], "either a rating scale or"),
        (["--type", "custom", "--name", "x", "--question", "q", "--scale", "9-2"], "scale: give"),
        (["--type", "custom", "--name", "x", "--question", "q", "--scale", "a"], "--scale: give"),
        (["--type", "csat", "--name", "x", "--choice", "a", "--choice", "b"], "its own scale"),
        (["--type", "nps", "--name", "x", "--stage", "nomodel:x"], "stage: no lifecycle model"),
        (["--type", "nps", "--name", "x", "--stage", "loose"], "stage: give MODEL:STAGE"),
        (["--type", "nps", "--name", "x", "--audience", "robots"], "audience: must be"),
        (["--type", "nps", "--name", "x", "--department", "Sales"], "department: only employee"),
    ],
)
def test_bad_surveys_are_refused_with_the_field(
    embedded_settings: Settings, args: list[str], message: str
) -> None:
    result = cx(embedded_settings, "surveys", "create", *args, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert message in " ".join(result.stderr.split())


def post(api: ApiClient, body: dict[str, Any]) -> Any:
    return api.http.post("/api/v1/surveys", json=body, headers=api.auth)


def test_the_api_creates_surveys_and_names_the_field_of_each_error(api: ApiClient) -> None:
    assert api.http.get("/api/v1/surveys").status_code == 401  # a secret key is needed
    department = api.http.post("/api/v1/departments", json={"name": "Support"}, headers=api.auth)
    assert department.status_code == 201
    made = post(api, {"type": "nps", "name": "Team pulse", "audience": "employees",
                      "department": "Support"})  # fmt: skip
    assert made.status_code == 201, made.text
    survey = made.json()
    assert survey["question"] == "How likely are you to recommend working here to a friend?"
    assert survey["department"] == "Support" and survey["audience"] == "employees"
    again = post(api, {"type": "csat", "name": "Team pulse"})
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"
    rating = post(api, {"type": "custom", "name": "Effort", "question": "How hard?",
                        "scale": [1, 10]})  # fmt: skip
    assert rating.json()["scale"] == [1, 10]
    staged = post(api, {"type": "ces", "name": "x", "stage": "nomodel:a"})
    assert staged.status_code == 404 and staged.json()["error"]["field"] == "stage"
    unknown = post(api, {"type": "nps", "name": "y", "colour": "red"})
    assert unknown.status_code == 422
    listed = api.http.get("/api/v1/surveys", headers=api.auth).json()
    assert [s["name"] for s in listed] == ["Team pulse", "Effort"]
    one = api.http.get(f"/api/v1/surveys/{survey['id']}", headers=api.auth)
    assert one.json() == survey
    missing = api.http.get("/api/v1/surveys/999", headers=api.auth)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "survey"


def test_a_survey_is_changed_and_its_earlier_answers_keep_their_stage(api: ApiClient) -> None:
    installed = api.http.post(
        "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
    )
    assert installed.status_code == 201, installed.text
    sid = post(api, {"type": "nps", "name": "Onboarding",
                     "stage": "client-experience:delivery"}).json()["id"]  # fmt: skip
    post(api, {"type": "csat", "name": "Taken"})
    path = f"/api/v1/surveys/{sid}"

    def change(body: dict[str, Any], status: int = 200) -> Any:
        answer = api.http.patch(path, json=body, headers=api.auth)
        assert answer.status_code == status, answer.text
        return answer.json()

    def respond(score: int) -> None:
        answer = api.http.post(f"{path}/responses", json={"score": score}, headers=api.auth)
        assert answer.status_code == 201, answer.text

    respond(3)
    moved = change({"stage": "client-experience:use", "name": " First weeks "})
    assert (moved["stage"], moved["name"]) == ("client-experience:use", "First weeks")
    respond(10)
    report = api.http.get("/api/v1/feedback/nps", params={"by": "stage"}, headers=api.auth)
    per_stage = {g["key"]: g["responses"] for g in report.json()["groups"]}
    assert per_stage == {"client-experience:delivery": 1, "client-experience:use": 1}

    untied = change({"stage": None, "touchpoint": "Order Delivered"})
    assert (untied["stage"], untied["touchpoint"]) == (None, "Order Delivered")
    assert change({"question": "Would you tell a friend?"})["question"] == (
        "Would you tell a friend?"
    )
    for body, status, field in [
        ({}, 422, "survey"),
        ({"name": "Taken"}, 409, "name"),
        ({"name": "  "}, 422, "name"),
        ({"stage": "client-experience:nope"}, 404, "stage"),
        ({"stage": ""}, 422, "stage"),
        ({"touchpoint": " "}, 422, "touchpoint"),
        ({"question": ""}, 422, "question"),
        ({"colour": "red"}, 422, "colour"),
    ]:
        assert change(body, status)["error"]["field"] == field, body
    missing = api.http.patch("/api/v1/surveys/999", json={"name": "x"}, headers=api.auth)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "survey"
    assert api.http.get(path, headers=api.auth).json()["name"] == "First weeks"


def test_responses_are_checked_and_scored_per_touchpoint(api: ApiClient) -> None:
    survey = post(api, {"type": "nps", "name": "Delivery", "touchpoint": "Delivery Completed"})
    sid = survey.json()["id"]

    def answer(body: dict[str, Any]) -> Any:
        return api.http.post(f"/api/v1/surveys/{sid}/responses", json=body, headers=api.auth)

    delivery = [10, 9, 9, 8, 3, 0, 10]
    support = [2, 4, 7, 10]
    for score in delivery:
        assert answer({"score": score}).status_code == 201
    for score in support:
        assert answer({"score": score, "touchpoint": "Ticket Closed"}).status_code == 201
    html = answer({"score": 6, "touchpoint": "Ticket Closed",
                   "comment": "<script>alert(1)</script> too slow"})  # fmt: skip
    assert html.json()["comment"] == "<script>alert(1)</script> too slow"  # kept as text
    support.append(6)
    for bad, field in [
        ({"score": 11}, "score"),
        ({"score": 7.5}, "score"),
        ({}, "score"),
        ({"score": 5, "comment": "x" * 5001}, "comment"),
        ({"score": 5, "submitted_at": "2999-01-01T00:00:00Z"}, "submitted_at"),
    ]:
        refused = answer(bad)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["field"] == field
    unknown = api.http.post("/api/v1/surveys/999/responses", json={"score": 5}, headers=api.auth)
    assert unknown.status_code == 404
    nobody = answer({"score": 5, "customer": "no-such-user"})
    assert nobody.status_code == 404

    report = api.http.get(
        "/api/v1/feedback/nps", params={"by": "touchpoint"}, headers=api.auth
    ).json()
    everyone = Nps.of(delivery + support)
    assert report["responses"] == len(delivery) + len(support)
    assert report["nps"] == pytest.approx(everyone.score, abs=0.01)
    assert report["margin_of_error"] == pytest.approx(everyone.margin_of_error, abs=0.01)
    groups = {g["key"]: g for g in report["groups"]}
    assert groups["Delivery Completed"]["nps"] == pytest.approx(Nps.of(delivery).score, abs=0.01)
    assert groups["Ticket Closed"]["responses"] == len(support)
    # Each group against every other answer: here, the other touchpoint.
    gap = compare(Nps.of(delivery), Nps.of(support))
    assert gap is not None
    versus = groups["Delivery Completed"]["vs_rest"]
    assert versus["difference"] == pytest.approx(gap.difference, abs=0.01)
    assert versus["p_value"] == pytest.approx(gap.p_value, abs=1e-4)
    assert versus["significant"] is gap.significant
    later = api.http.get("/api/v1/feedback/nps", params={"from": "2999-01-01"}, headers=api.auth)
    assert later.json()["responses"] == 0 and later.json()["nps"] is None


def test_choice_surveys_take_one_of_their_choices(api: ApiClient) -> None:
    sid = post(api, {"type": "custom", "name": "Heard", "question": "Where?",
                     "choices": ["Friend", "Search"]}).json()["id"]  # fmt: skip
    url = f"/api/v1/surveys/{sid}/responses"
    assert api.http.post(url, json={"choice": "Friend"}, headers=api.auth).status_code == 201
    wrong = api.http.post(url, json={"choice": "TV"}, headers=api.auth)
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "choice"
    scored = api.http.post(url, json={"choice": "Friend", "score": 3}, headers=api.auth)
    assert scored.status_code == 422 and scored.json()["error"]["field"] == "score"


def test_cxloop_nps_reports_per_month(embedded_settings: Settings) -> None:
    sid = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "n").stdout.strip()
    from cxloop.feedback.responses import ResponseIn, record_response
    from cxloop.project import open_project

    project = open_project(embedded_settings)
    try:
        with project.engine.begin() as conn:
            for when, score in [("2026-01-05", 10), ("2026-01-20", 0), ("2026-02-02", 9)]:
                at = datetime.fromisoformat(when + "T12:00:00+00:00")
                record_response(conn, int(sid), ResponseIn(score=score, submitted_at=at))
    finally:
        project.close()
    report = cx_json(embedded_settings, "nps", "--by", "month")
    assert report["responses"] == 3
    assert [(g["key"], g["nps"], g["responses"]) for g in report["groups"]] == [
        ("2026-01", 0.0, 2), ("2026-02", 100.0, 1)
    ]  # fmt: skip
    bad = cx(embedded_settings, "nps", "--by", "week", check=False)
    assert bad.returncode == 2 and "--by: must be one of" in bad.stderr


def test_the_real_nps_file_imports_with_its_unscored_rows_rejected(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    source = tmp_path / "nps.csv"
    shutil.copy(shared_data / "nps-verbatims.csv", source)
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    scored = [int(r["NPS_SCORE"]) for r in rows if r["NPS_SCORE"].strip()]
    sid = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "v").stdout.strip()
    args = [
        "import", "responses", str(source), "--survey", sid,
        "--map", "score=NPS_SCORE,comment=text,submitted_at=CUSTOMER_RESPONSE_DATE",
        "--map", "touchpoint=SURVEY_SUB_TYPE", "--date-format", "%d/%m/%Y %H:%M",
    ]  # fmt: skip
    first = cx_json(embedded_settings, *args)
    assert first["rows"] == len(rows)
    assert first["imported"] == len(scored) and first["rejected"] == len(rows) - len(scored) > 0
    assert {r["reason"] for r in first["rejects"]} == {"score: the row has no score"}
    rejects = (tmp_path / "nps.csv.rejects.csv").read_text(encoding="utf-8").splitlines()
    assert len(rejects) >= 1 + first["rejected"] and rejects[0].startswith("line,reason,")
    again = cx_json(embedded_settings, *args)
    assert again["imported"] == 0 and again["unchanged"] == len(scored)
    # The same answers saved as UTF-16 (with its mark) are the same rows: nothing new.
    sixteen = tmp_path / "nps-utf16.csv"
    sixteen.write_text(source.read_text(encoding="utf-8"), encoding="utf-16")
    args16 = [str(sixteen) if a == str(source) else a for a in args]
    assert cx_json(embedded_settings, *args16)["unchanged"] == len(scored)
    report = cx_json(embedded_settings, "nps", "--survey", sid, "--by", "touchpoint")
    expected = Nps.of(scored)
    assert report["responses"] == len(scored)
    assert report["nps"] == pytest.approx(expected.score, abs=0.01)
    by_touchpoint = {g["key"]: g["responses"] for g in report["groups"]}
    assert by_touchpoint == dict(
        Counter(r["SURVEY_SUB_TYPE"] for r in rows if r["NPS_SCORE"].strip())
    )
    months = cx_json(embedded_settings, "nps", "--survey", sid, "--by", "month")["groups"]
    assert "2018-04" in {g["key"] for g in months}  # day-first dates read as such
    # Offline sentiment: detractors' comments read more negative than promoters'.
    said = cx_json(embedded_settings, "comments", "--survey", sid, "--by", "touchpoint")
    classes = said["by_nps_class"]
    assert classes["detractor"]["comments"] > 1000 and classes["promoter"]["comments"] > 500
    assert classes["detractor"]["mean_sentiment"] < 0 < classes["promoter"]["mean_sentiment"]
    assert (
        classes["detractor"]["mean_sentiment"]
        < classes["passive"]["mean_sentiment"]
        < classes["promoter"]["mean_sentiment"]
    )
    order = {g["key"]: g for g in said["groups"]}
    first_payment = order["First Payment"]
    assert len(first_payment["most_negative"]) == 3 and len(first_payment["most_positive"]) == 3
    assert set(first_payment["most_negative"]).isdisjoint(first_payment["most_positive"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--map", "comment=text"], "--map: map score (or choice) to a column"),
        (["--map", "score=NOPE"], "--map: no column 'NOPE'"),
        (["--map", "mood=text,score=NPS_SCORE"], "--map: 'mood' is not one of"),
        (["--map", "score=NPS_SCORE,submitted_at=CUSTOMER_RESPONSE_DATE"], "does not match"),
    ],
)
def test_bad_response_imports_say_what_is_wrong(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    sid = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "v").stdout.strip()
    path = str(shutil.copy(shared_data / "nps-verbatims.csv", tmp_path / "nps.csv"))
    result = cx(embedded_settings, "import", "responses", path, "--survey", sid, *extra,
                "--format", "json", check=False)  # fmt: skip
    if "does not match" in message:  # a row-level problem: rows rejected, the rest none
        summary = json.loads(result.stdout)
        assert summary["imported"] == 0 and message in summary["rejects"][0]["reason"]
        return
    assert result.returncode == 2 and message in " ".join(result.stderr.split())


def test_csat_ces_and_enps_read_their_own_surveys(api: ApiClient) -> None:
    api.http.post("/api/v1/departments", json={"name": "Support"}, headers=api.auth)
    ids = {
        key: post(api, {"type": kind, "name": key, **extra}).json()["id"]
        for key, kind, extra in [
            ("csat", "csat", {}),
            ("ces", "ces", {}),
            ("nps", "nps", {}),
            ("team", "nps", {"audience": "employees", "department": "Support"}),
        ]
    }
    answers = {
        ids["csat"]: [5, 4, 2, 1, 5],
        ids["ces"]: [7, 6, 2],
        ids["nps"]: [10, 0],
        ids["team"]: [10, 10, 9, 3],
    }
    for sid, scores in answers.items():
        for s in scores:
            reply = api.http.post(
                f"/api/v1/surveys/{sid}/responses", json={"score": s}, headers=api.auth
            )
            assert reply.status_code == 201, reply.text
    bad = api.http.post(
        f"/api/v1/surveys/{ids['csat']}/responses", json={"score": 6}, headers=api.auth
    )
    assert bad.status_code == 422 and "from 1 to 5" in bad.json()["error"]["message"]

    def report(measure: str, **params: Any) -> Any:
        return api.http.get(f"/api/v1/feedback/{measure}", params=params, headers=api.auth).json()

    csat = report("csat")
    assert csat["csat"] == 60.0 and csat["responses"] == 5 and csat["satisfied"] == 3
    ces = report("ces")
    assert ces["ces"] == pytest.approx(5.0) and ces["responses"] == 3
    assert ces["margin_of_error"] == pytest.approx(Mean.ces([7, 6, 2]).margin_of_error, abs=0.01)
    assert report("nps")["responses"] == 2  # customers only: employees answer eNPS
    enps = report("enps")
    assert enps["enps"] == pytest.approx(Nps.of([10, 10, 9, 3]).score, abs=0.01)
    wrong = api.http.get("/api/v1/feedback/enps", params={"survey": ids["csat"]},
                         headers=api.auth)  # fmt: skip
    assert wrong.status_code == 422 and wrong.json()["error"]["field"] == "survey"
    assert api.http.get("/api/v1/feedback/mood", headers=api.auth).status_code == 422


def test_enps_per_department_sits_beside_the_customer_nps_of_its_stages(api: ApiClient) -> None:
    applied = api.http.post(
        "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
    )
    assert applied.status_code == 201, applied.text
    plan = {  # department: (employee scores, its stage, customer scores there)
        "marketing": ([10, 10, 9], "client-experience:connect", [10, 9, 9, 8]),
        "sales": ([10, 6, 3], "client-experience:engage", [9, 6, 5, 2]),
        "delivery": ([2, 3, 0], "client-experience:delivery", [0, 1, 3, 10]),
        "product": ([9, 9, 7], None, []),
    }
    for department, (staff, stage, customers) in plan.items():
        team = post(api, {"type": "nps", "name": f"team {department}", "audience": "employees",
                          "department": department}).json()["id"]  # fmt: skip
        for score in staff:
            api.http.post(f"/api/v1/surveys/{team}/responses", json={"score": score},
                          headers=api.auth)  # fmt: skip
        if stage:
            sid = post(api, {"type": "nps", "name": f"at {stage}", "stage": stage}).json()["id"]
            for score in customers:
                api.http.post(f"/api/v1/surveys/{sid}/responses", json={"score": score},
                              headers=api.auth)  # fmt: skip
    got = api.http.get("/api/v1/feedback/enps/departments", headers=api.auth).json()
    rows = {d["department"]: d for d in got["departments"]}
    assert rows["marketing"]["enps"] == 100.0
    assert rows["marketing"]["customer_nps"] == pytest.approx(Nps.of([10, 9, 9, 8]).score)
    assert rows["sales"]["stages"] == ["client-experience:engage"]
    assert rows["product"]["customer_nps"] is None and rows["product"]["customer_responses"] == 0
    assert got["correlated_departments"] == 3
    expected = statistics.correlation(
        [Nps.of(plan[d][0]).score or 0.0 for d in ("delivery", "marketing", "sales")],
        [Nps.of(plan[d][2]).score or 0.0 for d in ("delivery", "marketing", "sales")],
    )
    assert got["correlation"] == pytest.approx(expected, abs=1e-3) and got["correlation"] > 0.5


def test_benchmarks_are_imported_with_sources_and_read_against(
    embedded_settings: Settings, tmp_path: Path
) -> None:
    table = tmp_path / "benchmarks.csv"
    table.write_text(
        "measure,scope,name,value,source,as_of\n"
        "nps,industry,Utilities,20,Test figure written by this test,2026-01-01\n"
        "csat,competitor,Acme,81.5,Test figure written by this test,\n"
        "nps,industry,Telecom,150,Test figure,\n"
        "mood,industry,Any,3,Test figure,\n"
        "ces,industry,Retail,5,,\n",
        encoding="utf-8",
    )
    summary = cx_json(embedded_settings, "benchmarks", "import", str(table))
    assert summary["saved"] == 2 and summary["rejected"] == 3
    reasons = [r["reason"] for r in summary["rejects"]]
    assert reasons[0] == "value: a nps lies from -100 to 100"
    assert reasons[1].startswith("measure:") and reasons[2].startswith("source:")
    again = cx_json(embedded_settings, "benchmarks", "import", str(table))  # replaces, no twins
    assert again["saved"] == 2
    listed = cx_json(embedded_settings, "benchmarks", "list")
    assert [(b["measure"], b["name"]) for b in listed] == [("csat", "Acme"), ("nps", "Utilities")]
    # A spreadsheet's "Unicode text" export (UTF-16 with its mark) reads as it is; a
    # cp1252 file names the option that reads it.
    sixteen = tmp_path / "unicode.csv"
    sixteen.write_text(
        "measure,scope,name,value,source\nnps,industry,Télécoms,12,Test figure\n", encoding="utf-16"
    )
    assert cx_json(embedded_settings, "benchmarks", "import", str(sixteen))["saved"] == 1
    western = tmp_path / "western.csv"
    western.write_bytes(
        "measure,scope,name,value,source\nnps,industry,Café,9,Test\n".encode("cp1252")
    )
    refused = cx(embedded_settings, "benchmarks", "import", str(western), check=False)
    assert refused.returncode == 2 and "--encoding cp1252" in refused.stderr
    read = cx_json(embedded_settings, "benchmarks", "import", str(western), "--encoding", "cp1252")
    assert read["saved"] == 1
    names = {b["name"] for b in cx_json(embedded_settings, "benchmarks", "list")}
    assert {"Télécoms", "Café"} <= names
    utilities = next(b["id"] for b in listed if b["name"] == "Utilities")
    acme = next(b["id"] for b in listed if b["name"] == "Acme")
    sid = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "n").stdout.strip()
    from cxloop.feedback.responses import ResponseIn, record_response
    from cxloop.project import open_project

    project = open_project(embedded_settings)
    try:
        with project.engine.begin() as conn:
            for score in [10, 10, 9, 7, 2]:  # NPS 40 from 5 answers: a wide margin
                record_response(conn, int(sid), ResponseIn(score=score))
    finally:
        project.close()
    report = cx_json(embedded_settings, "nps", "--benchmark", str(utilities))
    versus = report["benchmark"]
    assert versus["difference"] == pytest.approx(report["nps"] - 20)
    assert versus["within_margin"] is (abs(versus["difference"]) <= report["margin_of_error"])
    assert versus["source"] == "Test figure written by this test"
    wrong = cx(embedded_settings, "nps", "--benchmark", str(acme), check=False)
    assert wrong.returncode == 2 and "benchmark: it is a csat benchmark" in wrong.stderr
    missing = cx(embedded_settings, "nps", "--benchmark", "999", check=False)
    assert missing.returncode == 2 and "no benchmark with id 999" in missing.stderr


def test_the_api_adds_benchmarks_and_refuses_impossible_ones(api: ApiClient) -> None:
    url = "/api/v1/feedback/benchmarks"
    good = {"measure": "csat", "scope": "industry", "name": "Banks", "value": 78,
            "source": "Test figure written by this test"}  # fmt: skip
    made = api.http.post(url, json=good, headers=api.auth)
    assert made.status_code == 201 and made.json()["value"] == 78
    too_high = api.http.post(url, json={**good, "value": 120}, headers=api.auth)
    assert too_high.status_code == 422 and too_high.json()["error"]["field"] == "value"
    no_source = api.http.post(url, json={**good, "source": ""}, headers=api.auth)
    assert no_source.status_code == 422
    assert [b["name"] for b in api.http.get(url, headers=api.auth).json()] == ["Banks"]
    report = api.http.get(
        "/api/v1/feedback/csat", params={"benchmark": made.json()["id"]}, headers=api.auth
    ).json()
    assert report["benchmark"]["name"] == "Banks" and report["benchmark"]["difference"] is None


def test_months_are_the_project_zones_on_both_sides_of_daylight_saving(
    project: Project, backend: str
) -> None:
    from cxloop.feedback.responses import (
        ResponseIn,
        days_window,
        record_response,
        score_report,
    )
    from cxloop.feedback.surveys import SurveyIn, create_survey

    paris = ZoneInfo("Europe/Paris")  # UTC+1 in winter, UTC+2 from 30 March to 26 October 2025
    answers = [  # (UTC time, NPS score, CES score, the month in Paris)
        ("2025-01-31T22:59:59.999999", 10, 7, "2025-01"),  # 23:59:59.999999 on 31 January
        ("2025-01-31T23:00:00", 0, 1, "2025-02"),  # midnight on 1 February
        ("2025-03-31T21:59:59", 9, 6, "2025-03"),  # summer time: 23:59:59 on 31 March
        ("2025-03-31T22:00:00", 8, 2, "2025-04"),  # midnight, 1 April (23:00 if taken as winter)
        ("2025-04-30T21:59:59.5", 3, 5, "2025-04"),
        ("2025-10-31T22:59:59", 10, 4, "2025-10"),  # winter time again: 23:59:59, 31 October
        ("2025-10-31T23:00:00", 10, 7, "2025-11"),  # midnight, 1 November
    ]
    with project.engine.begin() as conn:
        nps = create_survey(conn, SurveyIn(type="nps", name="n"))
        ces = create_survey(conn, SurveyIn(type="ces", name="c"))
        for when, nps_score, ces_score, _ in answers:
            at = datetime.fromisoformat(when).replace(tzinfo=UTC)
            record_response(conn, nps["id"], ResponseIn(score=nps_score, submitted_at=at))
            record_response(conn, ces["id"], ResponseIn(score=ces_score, submitted_at=at))
    months = sorted({a[3] for a in answers})
    with project.engine.connect() as conn:
        report = score_report(conn, "nps", by="month", zone=paris)
        assert [g["key"] for g in report["groups"]] == months
        for group in report["groups"]:
            mine = [a[1] for a in answers if a[3] == group["key"]]
            assert (group["responses"], group["nps"]) == (len(mine), Nps.of(mine).score)
        effort = score_report(conn, "ces", by="month", zone=paris)
        for group in effort["groups"]:
            mine = [a[2] for a in answers if a[3] == group["key"]]
            assert group["ces"] == pytest.approx(Mean.ces(mine).score, abs=0.01)
        # In UTC the midnights above are the evening before: other months.
        utc = score_report(conn, "nps", by="month", zone=ZoneInfo("UTC"))
        assert [(g["key"], g["responses"]) for g in utc["groups"]] == [
            ("2025-01", 2), ("2025-03", 2), ("2025-04", 1), ("2025-10", 2)
        ]  # fmt: skip
        # Whole days in the zone: 1 February to 31 March in Paris.
        start, end = days_window(date(2025, 2, 1), date(2025, 3, 31), paris)
        window = score_report(conn, "nps", by="month", zone=paris, start=start, end=end)
        assert [(g["key"], g["responses"]) for g in window["groups"]] == [
            ("2025-02", 1), ("2025-03", 1)
        ]  # fmt: skip
        one = score_report(conn, "nps", zone=paris, start=start, end=end, survey_id=nps["id"])
        assert one["responses"] == 2 and "groups" not in one


@pytest.mark.parametrize(
    ("zone", "year", "month"),
    [
        ("Europe/Paris", 2025, 4),
        ("Asia/Amman", 2016, 4),  # the clocks skipped midnight on 1 April
        ("America/Havana", 2026, 11),  # midnight on 1 November came twice
        ("America/St_Johns", 2009, 11),  # 00:01 on 1 November went back to 23:01 on 31 October
        ("Asia/Kathmandu", 2025, 1),  # UTC+5:45
        ("Australia/Lord_Howe", 2025, 10),  # half an hour of daylight saving
    ],
)
def test_month_edges_give_every_instant_its_month_in_the_zone(
    zone: str, year: int, month: int
) -> None:
    from cxloop.feedback.responses import _month, _month_edges

    tz = ZoneInfo(zone)
    middle = datetime(year, month, 1, 12, tzinfo=UTC)
    first, last = middle - timedelta(days=62), middle + timedelta(days=62)
    edges = _month_edges(first, last, tz)
    assert edges[0][0] == first and all(a[0] < b[0] for a, b in pairwise(edges))
    instants = [first, last]
    for edge, _ in edges:  # around each edge to the microsecond, and every minute near it
        instants += [edge - timedelta(microseconds=1), edge]
        instants += [edge + timedelta(minutes=m) for m in range(-150, 150)]
    starts = [e[0] for e in edges]
    for moment in instants:
        if first <= moment <= last:
            assert edges[bisect_right(starts, moment) - 1][1] == _month(moment, tz), moment
