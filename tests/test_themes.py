"""Themes of comments: recurring phrases overall and per touchpoint or stage, ranked by how
distinctive they are for the group, with counts, sentiment, score and recent examples; the
same through the CLI and the API, and bad input named."""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxloop.feedback.responses import ResponseIn, record_response
from cxloop.project import open_project
from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys
from tests.test_cli import cx, cx_json

DELIVERY = [  # (day in January 2026, score, comment)
    (2, 3, "Late delivery, the parcel arrived damaged. Poor service."),
    (4, 2, "Another late delivery and no apology from customer service"),
    (6, 4, "Late delivery again; service was rude"),
    (8, 8, "Great price, decent service"),
]
STORE = [
    (3, 10, "Friendly staff and quick service"),
    (5, 9, "Friendly staff, great price"),
    (7, 10, "The staff were friendly and the service quick"),
]


def at(day: int) -> str:
    return f"2026-01-{day:02d}T12:00:00Z"


def test_each_touchpoint_gets_its_own_phrases_first(api: ApiClient) -> None:
    made = api.http.post("/api/v1/surveys", json={"type": "nps", "name": "after"},
                         headers=api.auth)  # fmt: skip
    url = f"/api/v1/surveys/{made.json()['id']}/responses"
    stored: dict[str, dict[str, Any]] = {}
    for touchpoint, answers in [("Delivery Completed", DELIVERY), ("Store Visit", STORE)]:
        for day, score, comment in answers:
            body = {"score": score, "comment": comment, "touchpoint": touchpoint,
                    "submitted_at": at(day)}  # fmt: skip
            reply = api.http.post(url, json=body, headers=api.auth)
            assert reply.status_code == 201, reply.text
            stored[comment] = reply.json()
    silent = {"score": 0, "touchpoint": "Delivery Completed", "submitted_at": at(9)}
    assert api.http.post(url, json=silent, headers=api.auth).status_code == 201  # no comment

    got = api.http.get("/api/v1/feedback/themes", params={"by": "touchpoint"}, headers=api.auth)
    assert got.status_code == 200, got.text
    report = got.json()
    assert report["comments"] == 7
    # Overall there is nothing to weigh against: the count ranks, ties alphabetical.
    assert [(t["phrase"], t["comments"]) for t in report["themes"]] == [
        ("service", 6), ("delivery", 3), ("friendly", 3), ("late", 3), ("late delivery", 3),
        ("staff", 3), ("friendly staff", 2), ("great", 2), ("great price", 2), ("price", 2),
    ]  # fmt: skip
    groups = {g["key"]: g for g in report["groups"]}
    assert [g["key"] for g in report["groups"]] == ["Delivery Completed", "Store Visit"]
    delivery, store = groups["Delivery Completed"], groups["Store Visit"]
    assert (delivery["comments"], store["comments"]) == (4, 3)
    # "service" is the most said at the delivery touchpoint, but said everywhere, so the
    # delivery phrases come first; "great price" has one comment per touchpoint: no theme.
    assert [(t["phrase"], t["comments"]) for t in delivery["themes"]] == [
        ("delivery", 3), ("late", 3), ("late delivery", 3), ("service", 4)
    ]  # fmt: skip
    assert [(t["phrase"], t["comments"]) for t in store["themes"]] == [
        ("friendly", 3), ("staff", 3), ("friendly staff", 2), ("quick", 2), ("service", 2)
    ]  # fmt: skip

    def example(comment: str) -> dict[str, Any]:
        one = stored[comment]
        return {"id": one["id"], "score": one["score"], "comment": comment,
                "sentiment": one["sentiment"]}  # fmt: skip

    late = delivery["themes"][2]
    late_comments = [DELIVERY[2][2], DELIVERY[1][2], DELIVERY[0][2]]  # the most recent first
    assert late == {
        "phrase": "late delivery",
        "comments": 3,
        "share": 0.75,
        "mean_sentiment": round(sum(stored[c]["sentiment"] for c in late_comments) / 3, 4),
        "mean_score": 3.0,
        "examples": [example(c) for c in late_comments],
    }
    service = delivery["themes"][3]
    assert (service["share"], service["mean_score"]) == (1.0, 4.25)
    assert [e["comment"] for e in service["examples"]] == [c for _, _, c in DELIVERY[::-1][:3]]
    staff = store["themes"][2]
    assert staff["examples"] == [example(STORE[1][2]), example(STORE[0][2])]
    assert staff["share"] == round(2 / 3, 4) and staff["mean_score"] == 9.5

    fewer = api.http.get("/api/v1/feedback/themes", params={"top": 2}, headers=api.auth).json()
    assert [t["phrase"] for t in fewer["themes"]] == ["service", "delivery"]
    assert "groups" not in fewer
    later = api.http.get("/api/v1/feedback/themes", params={"from": "2026-01-06"},
                         headers=api.auth).json()  # fmt: skip
    assert later["comments"] == 3
    assert [(t["phrase"], t["comments"]) for t in later["themes"]] == [("service", 3)]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def pairs(text: str) -> set[tuple[str, str]]:
    said = words(text)
    return set(pairwise(said))


def test_themes_of_the_real_nps_file_are_counted_right(
    embedded_settings: Settings, shared_data: Path, tmp_path: Path
) -> None:
    source = tmp_path / "nps.csv"
    shutil.copy(shared_data / "nps-verbatims.csv", source)
    with source.open(encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["NPS_SCORE"].strip() and r["text"].strip()]
    sid = cx(embedded_settings, "surveys", "create", "--type", "nps", "--name", "v").stdout.strip()
    cx(embedded_settings, "import", "responses", str(source), "--survey", sid,
       "--map", "score=NPS_SCORE,comment=text,submitted_at=CUSTOMER_RESPONSE_DATE",
       "--map", "touchpoint=SURVEY_SUB_TYPE", "--date-format", "%d/%m/%Y %H:%M")  # fmt: skip
    report = cx_json(embedded_settings, "themes", "--survey", sid, "--by", "touchpoint",
                     "--top", "20")  # fmt: skip
    assert report["comments"] == len(rows)
    overall = {t["phrase"]: t for t in report["themes"]}
    assert len(report["themes"]) == 20 and "service" in overall
    # Independently: comments that use the word, and that say the two words in a row.
    with_service = [r for r in rows if "service" in words(r["text"])]
    assert overall["service"]["comments"] == len(with_service) > 500
    assert report["themes"][0]["phrase"] == "service"  # the most said
    saying = [r for r in rows if ("customer", "service") in pairs(r["text"])]
    assert overall["customer service"]["comments"] == len(saying)
    mean = sum(int(r["NPS_SCORE"]) for r in with_service) / len(with_service)
    assert overall["service"]["mean_score"] == pytest.approx(mean, abs=0.01)
    sizes = Counter(r["SURVEY_SUB_TYPE"] for r in rows)
    groups = {g["key"]: g for g in report["groups"]}
    assert {k: g["comments"] for k, g in groups.items()} == dict(sizes)
    order = groups["Order"]
    assert len(order["themes"]) == 20
    for theme in order["themes"]:
        assert theme["comments"] >= 2 and len(theme["examples"]) == 3
        assert theme["share"] == round(theme["comments"] / sizes["Order"], 4)
    orders = [r for r in rows if r["SURVEY_SUB_TYPE"] == "Order"]
    phrase = next(t for t in order["themes"] if " " not in t["phrase"])
    assert phrase["comments"] == sum(1 for r in orders if phrase["phrase"] in words(r["text"]))
    for example in phrase["examples"]:
        assert phrase["phrase"] in words(example["comment"])
    # Detractors complain about what they wait for, promoters praise how easy it was.
    assert overall["waiting"]["mean_sentiment"] < 0 < overall["easy"]["mean_sentiment"]
    assert overall["waiting"]["mean_score"] < overall["easy"]["mean_score"]


def test_the_cli_prints_the_api_json_for_the_same_filters(settings: Settings) -> None:
    cx(settings, "lifecycle", "apply", "client-experience")
    survey = cx(settings, "surveys", "create", "--type", "csat", "--name", "after delivery",
                "--stage", "client-experience:delivery").stdout.strip()  # fmt: skip
    other = cx(settings, "surveys", "create", "--type", "csat", "--name", "other").stdout.strip()
    project = open_project(settings)
    try:
        with project.engine.begin() as conn:
            for day, score, comment in DELIVERY + STORE:
                when = datetime(2026, 1, day, 12, tzinfo=UTC)
                answer = ResponseIn(score=min(score, 5), comment=comment, submitted_at=when)
                record_response(conn, int(survey), answer)
                record_response(conn, int(other), answer)
    finally:
        project.close()
    args = ["--survey", survey, "--by", "stage", "--from", "2026-01-03", "--to", "2026-01-07",
            "--top", "3"]  # fmt: skip
    from_cli = cx_json(settings, "themes", *args)
    assert from_cli["comments"] == 5
    assert [g["key"] for g in from_cli["groups"]] == ["client-experience:delivery"]
    assert from_cli["groups"][0]["themes"] == from_cli["themes"]  # one group: counts rank
    assert [t["phrase"] for t in from_cli["themes"]] == ["service", "friendly", "staff"]
    table = cx(settings, "themes", *args, "--format", "table", COLUMNS="200").stdout
    assert "service" in table and "client-experience:delivery" in table
    _, secret_key = make_keys(settings)
    params = {"survey": survey, "by": "stage", "from": "2026-01-03", "to": "2026-01-07",
              "top": 3}  # fmt: skip
    with TestClient(create_app(settings)) as http:
        reply = http.get("/api/v1/feedback/themes", params=params,
                         headers={"Authorization": f"Bearer {secret_key}"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert reply.json() == from_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--survey", "999"], "survey: no survey with id 999"),
        (["--by", "month"], "--by: must be one of touchpoint, stage, not 'month'"),
        (["--top", "0"], "--top: give 1 to 100, not 0"),
        (["--from", "2026-13-01"], "--from: '2026-13-01' is not a date"),
    ],
)
def test_bad_theme_options_are_named(
    embedded_settings: Settings, args: list[str], message: str
) -> None:
    result = cx(embedded_settings, "themes", *args, check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert message in " ".join(result.stderr.split())


def test_the_api_names_the_bad_field(api: ApiClient) -> None:
    url = "/api/v1/feedback/themes"
    empty = api.http.get(url, headers=api.auth)
    assert empty.json() == {"comments": 0, "themes": []}
    for params, status, field in [
        ({"survey": 999}, 404, "survey"),
        ({"by": "month"}, 422, "by"),
        ({"top": 0}, 422, "top"),
        ({"top": 101}, 422, "top"),
        ({"from": "soon"}, 422, "from"),
    ]:
        reply = api.http.get(url, params=params, headers=api.auth)
        assert reply.status_code == status, params
        assert reply.json()["error"]["field"] == field, params
