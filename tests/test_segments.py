"""Saved segments on every backend: rules of each kind against a computation by hand,
refusals naming the rule, members as a filter of the reports, refresh, CSV export; the CLI."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxloop.settings import Settings
from tests.conftest import ApiClient
from tests.test_cli import cx, cx_json
from tests.test_closing_loop import get, install
from tests.test_distribution import created, quiet_api, send, track

__all__ = ["quiet_api"]  # the fixture, shared
NOW = datetime.now(UTC).replace(microsecond=0)
PEOPLE = 40


def _plan(i: int) -> str:
    return "pro" if i % 4 == 0 else "basic"


def _orders(i: int) -> int:
    return i % 3  # 0, 1 or 2 recent orders


def _data(api: ApiClient) -> None:
    install(api)
    messages: list[dict[str, Any]] = []
    for i in range(PEOPLE):
        messages.append(
            {"type": "identify", "messageId": f"id{i}", "userId": f"u{i}",
             "traits": {"plan": _plan(i), "country": "Spain" if i < 20 else "France",
                        "email": f"u{i}@example.com", "seats": i}}
        )  # fmt: skip
        messages.append(track(f"ad{i}", f"u{i}", "Ad Clicked", NOW - timedelta(days=50)))
        for n in range(_orders(i)):
            messages.append(
                track(f"o{i}-{n}", f"u{i}", "Order Completed", NOW - timedelta(days=5 + n))
            )
        messages.append(track(f"old{i}", f"u{i}", "Order Completed", NOW - timedelta(days=200)))
    send(api, *messages)
    survey = created(api, "/api/v1/surveys", {"type": "nps", "name": "Relationship"})
    for i in range(0, PEOPLE, 5):
        created(api, f"/api/v1/surveys/{survey['id']}/responses",
                {"customer": f"u{i}", "score": 10 if i % 10 == 0 else 3})  # fmt: skip


def _ids(api: ApiClient, name: str) -> set[str]:
    page = get(api, f"/api/v1/segments/{name}/customers", limit=1000)
    return {item["email"] for item in page["items"]}


def _emails(indexes: Any) -> set[str]:
    return {f"u{i}@example.com" for i in indexes}


def test_rules_of_each_kind_and_their_use_as_a_filter(quiet_api: ApiClient) -> None:
    api = quiet_api
    _data(api)
    body = {
        "name": "Busy pros",
        "description": "pro plan, two orders this month",
        "rules": [
            {"kind": "trait", "field": "plan", "op": "equals", "value": "pro"},
            {"kind": "event", "event": "Order Completed", "within_days": 30, "min_count": 2},
        ],
    }
    made = created(api, "/api/v1/segments", body)
    busy_pros = [i for i in range(PEOPLE) if _plan(i) == "pro" and _orders(i) >= 2]
    assert made["members"] == len(busy_pros) and made["refreshed_at"]
    assert _ids(api, "Busy pros") == _emails(busy_pros)

    anyone = created(api, "/api/v1/segments", {
        "name": "Promoters or quiet", "match": "any",
        "rules": [
            {"kind": "score", "measure": "nps", "op": "gte", "value": 9},
            {"kind": "event", "event": "Order Completed", "within_days": 30, "done": False},
            {"kind": "trait", "field": "seats", "op": "gte", "value": 38},
        ],
    })  # fmt: skip
    promoters = {i for i in range(0, PEOPLE, 5) if i % 10 == 0}
    quiet = {i for i in range(PEOPLE) if _orders(i) == 0}
    assert _ids(api, "Promoters or quiet") == _emails(promoters | quiet | {38, 39})
    assert anyone["match"] == "any"
    staged = created(api, "/api/v1/segments", {
        "name": "In target", "rules": [{"kind": "stage", "model": "client-experience",
                                        "stage": "engage", "ever": False}],
    })  # fmt: skip
    # a recent order moves a customer back in (after the old one's inactivity exit) to Engage
    assert staged["members"] == sum(1 for i in range(PEOPLE) if _orders(i) >= 1)

    # A saved segment filters the reports: where segment=NAME.
    flow = get(api, "/api/v1/insights/gaps/client-experience", where="segment=Busy pros")
    entered = {s["key"]: s["entered"] for s in flow["stages"]}
    assert entered["target"] == len(busy_pros)
    nps = get(api, "/api/v1/feedback/nps", where="segment=Promoters or quiet")
    answered = [i for i in range(0, PEOPLE, 5) if i in promoters | quiet | {38, 39}]
    assert nps["responses"] == len(answered)
    unknown = api.http.get(
        "/api/v1/insights/gaps/client-experience", params={"where": "segment=Nobody"},
        headers=api.auth,
    )  # fmt: skip
    assert unknown.status_code == 404 and "no saved segment 'Nobody'" in unknown.text

    # ... and breaks them down: its members against everyone else.
    split = api.http.post("/api/v1/analytics/funnel", headers=api.auth, json={
        "steps": [{"event": "Ad Clicked"}, {"event": "Order Completed"}],
        "breakdown": {"segment": "Busy pros"}, "window_seconds": 366 * 86400,
    })  # fmt: skip
    assert split.status_code == 200, split.text
    groups = {g["value"]: [s["count"] for s in g["steps"]] for g in split.json()["breakdown"]}
    rest = [i for i in range(PEOPLE) if i not in busy_pros]
    assert groups == {
        "in Busy pros": [len(busy_pros), len(busy_pros)],
        "not in Busy pros": [len(rest), sum(1 for i in rest if _orders(i) >= 1)],
    }
    missing = api.http.post("/api/v1/analytics/trends", headers=api.auth,
                            json={"breakdown": {"segment": "Nobody"}})  # fmt: skip
    assert missing.status_code == 422 and "breakdown.segment" in missing.text

    # CSV export: every member, with its userId and traits.
    export = api.http.get("/api/v1/segments/Busy pros/export.csv", headers=api.auth)
    assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert {r["user_id"] for r in rows} == {f"u{i}" for i in busy_pros}
    assert all('"plan": "pro"' in r["traits"] for r in rows)
    assert export.headers["content-disposition"] == 'attachment; filename="Busy_pros.csv"'
    unknown = api.http.get("/api/v1/segments/Nobody/export.csv", headers=api.auth)
    assert unknown.status_code == 404 and "Nobody" in unknown.text  # refused, not an empty file

    # New data changes the members only when the segment is refreshed.
    send(api, track("late", "u1", "Order Completed", NOW - timedelta(days=1)),
         track("late2", "u1", "Order Completed", NOW - timedelta(days=1, hours=2)))  # fmt: skip
    assert get(api, "/api/v1/segments/Busy pros")["members"] == len(busy_pros)
    # u1 is basic: still out; the rule on plan holds
    refreshed = api.http.post("/api/v1/segments/Busy pros/refresh", headers=api.auth).json()
    assert refreshed["members"] == len(busy_pros)
    renamed = api.http.put("/api/v1/segments/Busy pros", headers=api.auth, json={
        **body, "name": "Busy anyone", "rules": body["rules"][1:],
    })  # fmt: skip
    assert renamed.status_code == 200, renamed.text
    busy = [i for i in range(PEOPLE) if _orders(i) >= 2] + [1]
    assert renamed.json()["members"] == len(set(busy))
    assert api.http.delete("/api/v1/segments/Busy anyone", headers=api.auth).status_code == 204
    names = [s["name"] for s in get(api, "/api/v1/segments")]
    assert names == ["In target", "Promoters or quiet"]


def test_bad_rules_are_refused_naming_the_rule(quiet_api: ApiClient) -> None:
    api = quiet_api
    _data(api)
    for rules, status, says in [
        ([{"kind": "trait", "field": "shoe_size", "value": "42"}], 422,
         "rules[0].field: no customer has a trait 'shoe_size'"),
        ([{"kind": "stage", "model": "nope", "stage": "x"}], 422, "rules[0].model"),
        ([{"kind": "stage", "model": "client-experience", "stage": "x"}], 422, "rules[0].stage"),
        ([{"kind": "trait", "field": "seats", "op": "gt", "value": "many"}], 422, "compares"),
        ([{"kind": "event", "event": "Order Completed", "within_days": 0}], 422, "within_days"),
        ([{"kind": "mood", "field": "x"}], 422, "kind"),
        ([], 422, "rules"),
    ]:  # fmt: skip
        answer = api.http.post(
            "/api/v1/segments", json={"name": "Bad", "rules": rules}, headers=api.auth
        )
        assert answer.status_code == status, (rules, answer.text)
        assert says in answer.text, (rules, answer.text)
    assert get(api, "/api/v1/segments") == []  # nothing half-saved
    ok = {"name": "Pros", "rules": [{"kind": "trait", "field": "plan", "value": "pro"}]}
    created(api, "/api/v1/segments", ok)
    twice = api.http.post("/api/v1/segments", json=ok, headers=api.auth)
    assert twice.status_code == 422 and "exists already" in twice.text
    missing = api.http.get("/api/v1/segments/Nope", headers=api.auth)
    assert missing.status_code == 404 and "no saved segment" in missing.text


def test_the_cli_saves_lists_and_exports(embedded_settings: Settings, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "user_id,email,country,plan\n"
        + "".join(f"p{i},p{i}@example.com,{'Spain' if i % 2 else 'France'},pro\n" for i in range(6))
    )
    cx(embedded_settings, "import", "customers", str(people))
    rules = tmp_path / "spain.yaml"
    rules.write_text("match: all\nrules:\n  - {kind: trait, field: country, value: Spain}\n")
    made = cx_json(embedded_settings, "segments", "create", "Spain", "--file", str(rules))
    assert made["members"] == 3
    listed = cx_json(embedded_settings, "segments", "list")
    assert [(s["name"], s["members"]) for s in listed] == [("Spain", 3)]
    out = tmp_path / "spain.csv"
    done = cx(embedded_settings, "segments", "export", "Spain", "--out", str(out))
    assert "wrote 3 customers" in done.stderr
    assert {r["user_id"] for r in csv.DictReader(out.open())} == {"p1", "p3", "p5"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {kind: trait, field: shoe_size, value: 42}\n")
    failed = cx(embedded_settings, "segments", "create", "Bad", "--file", str(bad), check=False)
    assert failed.returncode != 0 and "no customer has a trait 'shoe_size'" in failed.stderr
    gone = cx(embedded_settings, "segments", "create", "X", "--file", "nope.yaml", check=False)
    assert gone.returncode != 0 and "--file" in gone.stderr
    orders = tmp_path / "orders.csv"
    orders.write_text("user_id,event,timestamp,revenue\n" + "".join(
        f"p{i},Order Completed,2026-11-0{i + 1}T10:00:00Z,10\n" for i in range(6)))  # fmt: skip
    cx(embedded_settings, "import", "events", str(orders), "--map", "revenue=properties.revenue")
    spain = cx_json(embedded_settings, "insights", "purchases", "--where", "segment=Spain")
    assert (spain["buyers"], spain["revenue"]) == (3, 30.0)
    split = cx_json(embedded_settings, "trends", "--event", "Order Completed", "--interval",
                    "month", "--breakdown", "segment:Spain")  # fmt: skip
    assert {g["value"]: sum(p["events"] for p in g["series"]) for g in split["breakdown"]} == {
        "in Spain": 3, "not in Spain": 3}  # fmt: skip
