"""Trends, retention and paths from declared journeys, on both event stores (conftest)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from cxloop.analytics.funnel import run_funnel
from cxloop.analytics.funnel_spec import FunnelSpec, SpecRejected
from cxloop.analytics.paths import PathsSpec, run_paths
from cxloop.analytics.periods import RetentionSpec, TrendsSpec, run_retention, run_trends
from cxloop.analytics.sql import EngineUnsupported
from cxloop.cli.main import app
from cxloop.domain.segments import SegmentIn, TraitRule
from cxloop.project import Project, open_project
from cxloop.segments import save_segment
from cxloop.settings import Settings
from tests.conftest import on_every_engine
from tests.journeys import cli_project, journeys, on_spark, stores, traits

MONDAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def d(days: float) -> datetime:
    return MONDAY + timedelta(days=days)


def trends(project: Project, **spec: Any) -> dict[str, Any]:
    events, engine = stores(project)
    return run_trends(TrendsSpec.model_validate(spec), events, engine, project.settings.zone)


def retention(project: Project, **spec: Any) -> dict[str, Any]:
    events, engine = stores(project)
    return run_retention(RetentionSpec.model_validate(spec), events, engine,
                         project.settings.zone)  # fmt: skip


@on_every_engine
def test_trends_count_events_and_customers_per_period_with_empty_ones(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("A", d(0), {"plan": "pro"}), ("A", d(0.1), {"plan": "pro"}), ("A", d(1))],
            "p2": [("A", d(0), {"plan": "free"}), ("A", d(3), {"plan": "free"}), ("B", d(3))],
        },
    )
    result = trends(project, event={"event": "A"}, date_from="2026-03-02", date_to="2026-03-05")
    assert [(p["date"], p["events"], p["customers"]) for p in result["series"]] == [
        ("2026-03-02", 3, 2),
        ("2026-03-03", 1, 1),
        ("2026-03-04", 0, 0),
        ("2026-03-05", 1, 1),
    ]
    weekly = trends(project, interval="week", date_from="2026-03-02", date_to="2026-03-08")
    assert [(p["date"], p["events"], p["customers"]) for p in weekly["series"]] == [
        ("2026-03-02", 6, 2)
    ]
    split = trends(project, event={"event": "A"}, breakdown={"property": "plan"},
                   date_from="2026-03-02", date_to="2026-03-02")  # fmt: skip
    assert {g["value"]: g["series"][0]["events"] for g in split["breakdown"]} == {
        "pro": 2,
        "free": 1,
    }


@on_every_engine
def test_retention_cohorts_by_first_start_and_counts_returns_on_or_after(project: Project) -> None:
    journeys(
        project,
        {
            # First A in week 0; back in weeks 1 and 3 (a later A starts no new cohort).
            "p1": [("A", d(0)), ("B", d(8)), ("A", d(15)), ("B", d(22))],
            "p2": [("A", d(1)), ("B", d(16))],  # week 0, back in week 2
            "p3": [("A", d(9)), ("B", d(10)), ("B", d(16))],  # week 1, back in weeks 1 and 2
        },
    )
    spec = {"start_event": {"event": "A"}, "return_event": {"event": "B"}, "period": "week",
            "periods": 4, "date_from": "2026-03-02", "date_to": "2026-03-15"}  # fmt: skip
    on = retention(project, **spec)
    assert [(c["start"], c["size"], c["values"]) for c in on["cohorts"]] == [
        ("2026-03-02", 2, [2, 1, 1, 1]),
        ("2026-03-09", 1, [1, 1, 0, 0]),
    ]
    after = retention(project, **spec, returning="on_or_after")
    assert [c["values"] for c in after["cohorts"]] == [[2, 2, 2, 1], [1, 1, 0, 0]]
    later = retention(project, **{**spec, "date_from": "2026-03-09"})
    assert [c["start"] for c in later["cohorts"]] == ["2026-03-09"]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_periods_follow_the_project_time_zone(tmp_path: Path, engine: str) -> None:
    opened = open_project(Settings(home=tmp_path / "tz", timezone="America/New_York"))
    on_spark(opened, engine == "spark")
    try:
        # 03:00 UTC on Tuesday is still Monday evening in New York.
        journeys(opened, {"p1": [("A", datetime(2026, 3, 3, 3, 0, tzinfo=UTC))]})
        result = trends(opened, event={"event": "A"}, date_from="2026-03-02",
                        date_to="2026-03-03")  # fmt: skip
        assert [(p["date"], p["events"]) for p in result["series"]] == [
            ("2026-03-02", 1),
            ("2026-03-03", 0),
        ]
    finally:
        on_spark(opened, False)
        opened.close()


def test_bad_specs_name_the_field(project: Project) -> None:
    with pytest.raises(SpecRejected) as caught:
        trends(project, date_from="2026-03-05", date_to="2026-03-01")
    assert (caught.value.problems[0].code, caught.value.problems[0].field) == (
        "bad_date",
        "date_to",
    )
    with pytest.raises(SpecRejected) as caught:
        retention(project, breakdown={"property": "a", "trait": "b"})
    assert caught.value.problems[0].code == "bad_breakdown"
    with pytest.raises(SpecRejected):
        paths(project, event={"event": "A"}, date_from="soon")
    with pytest.raises(ValueError, match="periods"):
        RetentionSpec.model_validate({"periods": 0})
    with pytest.raises(ValueError, match="interval"):
        TrendsSpec.model_validate({"interval": "hour"})


def test_the_cli_prints_trends_and_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "cli"
    cli_project(home, {"p1": [("A", d(0)), ("B", d(8))], "p2": [("A", d(1))]})
    monkeypatch.setenv("CXLOOP_HOME", str(home))
    runner = CliRunner()
    args = ["retention", "--start", "A", "--return", "B", "--periods", "3"]
    answer = runner.invoke(app, [*args, "--from", "2026-03-02", "--to", "2026-03-08", "-f", "json"])
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout)["cohorts"][0]["values"] == [2, 1, 0]
    table = runner.invoke(app, ["trends", "--event", "A", "--from", "2026-03-02",
                                "--to", "2026-03-03", "-f", "csv"])  # fmt: skip
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines() == ["date,events,customers", "2026-03-02,1,1",
                                         "2026-03-03,1,1"]  # fmt: skip
    refused = runner.invoke(app, ["retention", "--period", "year"])
    assert refused.exit_code == 2 and "period" in refused.output


def paths(project: Project, **spec: Any) -> dict[str, Any]:
    return run_paths(PathsSpec.model_validate(spec), stores(project)[0], project.settings.zone)


@on_every_engine
def test_paths_after_and_before_an_event_with_exits(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("Home", d(0)), ("Order", d(1)), ("Visit", d(2)), ("Visit", d(2.5)),
                   ("Delivered", d(3))],
            "p2": [("Order", d(1)), ("Visit", d(2)), ("Delivered", d(3)), ("Order", d(4))],
            "p3": [("Home", d(0)), ("Order", d(1))],
            "p4": [("Home", d(0))],  # never ordered: not on any path
        },
    )  # fmt: skip
    after = paths(project, event={"event": "Order"}, depth=2)
    assert after["customers"] == 3
    assert [(p["path"], p["customers"], p["share"]) for p in after["paths"]] == [
        (["Order", "Visit", "Delivered"], 2, 0.6667),  # the repeated Visit counts once
        (["Order", "$exit"], 1, 0.3333),
    ]
    assert after["steps"][0]["events"] == [
        {"event": "Visit", "customers": 2, "share": 0.6667},
        {"event": "$exit", "customers": 1, "share": 0.3333},
    ]
    raw = paths(project, event={"event": "Order"}, depth=2, collapse_repeats=False)
    assert ["Order", "Visit", "Visit"] in [p["path"] for p in raw["paths"]]
    before = paths(project, event={"event": "Order"}, direction="before", depth=1)
    assert [(p["path"], p["customers"]) for p in before["paths"]] == [
        (["Home", "Order"], 2),
        (["$start", "Order"], 1),
    ]


@on_every_engine
def test_retention_breaks_down_by_the_first_start_events_property(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("A", d(0), {"plan": "pro"}), ("A", d(8), {"plan": "free"}), ("B", d(8))],
            "p2": [("A", d(1), {"plan": "free"})],
            "p3": [("A", d(2), {"plan": "pro"}), ("B", d(9))],
        },
    )
    result = retention(project, start_event={"event": "A"}, return_event={"event": "B"},
                       period="week", periods=2, date_from="2026-03-02", date_to="2026-03-08",
                       breakdown={"property": "plan"})  # fmt: skip
    groups = {g["value"]: [c["values"] for c in g["cohorts"]] for g in result["breakdown"]}
    assert groups == {"pro": [[2, 2]], "free": [[1, 0]]}


@on_every_engine
def test_monthly_retention_reads_months_in_the_project_zone_with_a_trait_breakdown(
    settings: Settings, backend: str
) -> None:
    opened = open_project(settings.model_copy(update={"timezone": "America/New_York"}))
    on_spark(opened, backend == "spark")
    ny = ZoneInfo("America/New_York")
    try:
        journeys(
            opened,
            {
                # 23:30 on 31 January in New York is already 1 February in UTC: a January
                # cohort, back one month later (in UTC it would be the same month).
                "p1": [("A", datetime(2026, 1, 31, 23, 30, tzinfo=ny)),
                       ("B", datetime(2026, 2, 10, 12, 0, tzinfo=ny))],
                "p2": [("A", datetime(2026, 1, 15, 9, 0, tzinfo=ny)),
                       ("B", datetime(2026, 3, 5, 9, 0, tzinfo=ny))],
                "p3": [("A", datetime(2026, 2, 3, 9, 0, tzinfo=ny))],
            },
        )  # fmt: skip
        traits(opened, {"p1": {"plan": "pro"}, "p2": {"plan": "free"}, "p3": {"plan": "pro"}},
               datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
        spec = {"start_event": {"event": "A"}, "return_event": {"event": "B"}, "period": "month",
                "periods": 3, "date_from": "2026-01-01", "date_to": "2026-02-28"}  # fmt: skip
        on = retention(opened, **spec)
        assert [(c["start"], c["values"]) for c in on["cohorts"]] == [
            ("2026-01-01", [2, 1, 1]),
            ("2026-02-01", [1, 0, 0]),
        ]
        after = retention(opened, **spec, returning="on_or_after")
        assert [c["values"] for c in after["cohorts"]] == [[2, 2, 1], [1, 0, 0]]
        split = retention(opened, **spec, breakdown={"trait": "plan"})
        assert {g["value"]: [c["values"] for c in g["cohorts"]] for g in split["breakdown"]} == {
            "pro": [[1, 1, 0], [1, 0, 0]],
            "free": [[1, 0, 1]],
        }
        january = retention(opened, **{**spec, "date_to": "2026-01-31"})
        assert [c["start"] for c in january["cohorts"]] == ["2026-01-01"]
    finally:
        on_spark(opened, False)
        opened.close()


@on_every_engine
def test_paths_start_at_the_first_anchor_inside_the_date_range(project: Project) -> None:
    journeys(
        project,
        {
            # The first Order is before the range; the path starts at the second one.
            "p1": [("Order", d(0)), ("Visit", d(0.5)), ("Order", d(3)), ("Delivered", d(4))],
            "p2": [("Home", d(2)), ("Order", d(3)), ("Order", d(3.5)), ("Review", d(5))],
            "p3": [("Order", d(0)), ("Visit", d(1))],  # no Order in the range
        },
    )
    in_range = {"date_from": "2026-03-04", "date_to": "2026-03-10"}
    after = paths(project, event={"event": "Order"}, depth=2, **in_range)
    assert after["customers"] == 2
    assert sorted((p["path"], p["customers"]) for p in after["paths"]) == [
        (["Order", "Delivered", "$exit"], 1),
        (["Order", "Review", "$exit"], 1),  # the repeated Order counts once
    ]
    before = paths(project, event={"event": "Order"}, direction="before", depth=3, **in_range)
    assert sorted((p["path"], p["customers"]) for p in before["paths"]) == [
        (["$start", "Home", "Order"], 1),
        (["$start", "Order", "Visit", "Order"], 1),
    ]


@on_every_engine
def test_retention_over_more_periods_than_a_mask_holds_gives_the_same_answer(
    project: Project,
) -> None:
    """Customers' active periods are counted as one 64-bit mask each while the data spans
    at most 62 periods, and with a join otherwise: both give the same cohorts."""
    journeys(
        project,
        {
            "p1": [("A", d(0)), ("B", d(1)), ("B", d(3))],
            "p2": [("A", d(0)), ("B", d(2)), ("A", d(2.5))],
            "p3": [("B", d(1)), ("A", d(1))],  # came back the very day: no return
        },
    )
    spec = {"start_event": {"event": "A"}, "return_event": {"event": "B"}, "period": "day",
            "periods": 4, "date_from": "2026-03-02", "date_to": "2026-03-03"}  # fmt: skip
    expected = [("2026-03-02", [2, 1, 1, 1]), ("2026-03-03", [1, 0, 0, 0])]
    within = retention(project, **spec)
    assert [(c["start"], c["values"]) for c in within["cohorts"]] == expected
    journeys(project, {"p4": [("Z", d(100))]})  # the data now spans 101 days
    beyond = retention(project, **spec)
    assert [(c["start"], c["values"]) for c in beyond["cohorts"]] == expected


def test_a_saved_segment_breaks_funnels_trends_and_retention_down_against_the_rest(
    project: Project,
) -> None:
    journeys(
        project,
        {
            "p1": [("A", d(0)), ("B", d(1)), ("A", d(7))],
            "p2": [("A", d(0))],
            "p3": [("A", d(0)), ("B", d(2))],
            "p4": [("A", d(1)), ("A", d(8)), ("A", d(9))],  # no plan at all: not a member
        },
    )
    traits(project, {"p1": {"plan": "pro"}, "p2": {"plan": "free"}, "p3": {"plan": "pro"}},
           d(-1))  # fmt: skip
    with project.engine.begin() as conn:
        rules = [TraitRule(field="plan", value="pro")]
        save_segment(conn, project.events, SegmentIn(name="Pros", rules=rules))
    by_segment = {"segment": "Pros"}

    steps = [{"event": "A"}, {"event": "B"}]
    events, engine = stores(project)
    split = run_funnel(FunnelSpec.model_validate({"steps": steps, "breakdown": by_segment}),
                       events, engine, project.settings.zone)  # fmt: skip
    assert {g["value"]: [s["count"] for s in g["steps"]] for g in split["breakdown"]} == {
        "in Pros": [2, 2],
        "not in Pros": [2, 0],
    }

    weekly = trends(project, event={"event": "A"}, interval="week", breakdown=by_segment)
    assert {
        g["value"]: [(p["events"], p["customers"]) for p in g["series"]]
        for g in weekly["breakdown"]
    } == {"in Pros": [(2, 2), (1, 1)], "not in Pros": [(2, 2), (2, 1)]}

    kept = retention(project, start_event={"event": "A"}, return_event={"event": "A"},
                     period="week", periods=2, breakdown=by_segment)  # fmt: skip
    assert {g["value"]: [c["values"] for c in g["cohorts"]] for g in kept["breakdown"]} == {
        "in Pros": [[2, 1]],
        "not in Pros": [[2, 1]],
    }

    with pytest.raises(SpecRejected) as caught:
        trends(project, breakdown={"segment": "Nobody"})
    problem = caught.value.problems[0]
    assert (problem.code, problem.field) == ("breakdown_segment_missing", "breakdown.segment")
    assert "'Nobody'" in problem.message
    with pytest.raises(SpecRejected) as caught:
        trends(project, breakdown={"segment": "Pros", "trait": "plan"})
    assert caught.value.problems[0].code == "bad_breakdown"
    # Segments live in the app database: a lake alone cannot say who is in one.
    with pytest.raises(EngineUnsupported, match="app database"):
        run_trends(TrendsSpec.model_validate({"breakdown": by_segment}), project.events, None,
                   project.settings.zone)  # fmt: skip
