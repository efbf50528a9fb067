"""Surveys through the CLI and the API: created with sensible defaults, tied to a stage
or touchpoint, and every bad input refused with the field and the reason."""

from __future__ import annotations

from typing import Any

import pytest

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
