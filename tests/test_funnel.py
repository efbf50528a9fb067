"""Funnels from journeys declared person by person, on every event store.

Each test states its journeys as ``{"person": [(event, time, properties), ...]}``; the
pipeline stores them as any client's events, and the funnel reads them back. The
``project`` fixture (conftest) runs each test on the embedded stores (DuckDB) and on
PostgreSQL: the same journeys must give the same answers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from cxloop.analytics.funnel import funnel_customers, run_funnel
from cxloop.analytics.funnel_spec import FunnelSpec, SpecRejected
from cxloop.cli.main import app
from cxloop.domain.messages import from_dict, normalise
from cxloop.project import Project, open_project
from cxloop.settings import Settings
from cxloop.store.models import CustomerIdentity
from cxloop.web.app import create_app
from tests.conftest import on_every_engine
from tests.journeys import cli_project, journeys, on_spark, stores, traits

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def funnel(project: Project, **spec: Any) -> dict[str, Any]:
    spec.setdefault("steps", [{"event": e} for e in ("A", "B", "C")])
    events, engine = stores(project)
    return run_funnel(FunnelSpec.model_validate(spec), events, engine, project.settings.zone)


def counts(result: dict[str, Any]) -> list[int]:
    return [s["count"] for s in result["steps"]]


def h(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@on_every_engine
def test_customers_are_counted_at_the_furthest_step_with_rates_and_times(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("A", h(0)), ("B", h(1)), ("C", h(3))],
            "p2": [("A", h(0)), ("B", h(2))],
            "p3": [("A", h(0)), ("Other", h(1))],
            "p4": [("B", h(0)), ("C", h(1))],  # never did step 0: not in the funnel
        },
    )
    result = funnel(project)
    assert counts(result) == [3, 2, 1]
    steps = result["steps"]
    assert [s["conversion_rate"] for s in steps] == [1.0, 0.6667, 0.3333]
    assert [s["drop_off_rate"] for s in steps] == [0.0, 0.3333, 0.5]
    assert steps[0]["avg_time_to_convert_s"] is None
    assert steps[1]["avg_time_to_convert_s"] == 5400.0  # (1 h + 2 h) / 2
    assert steps[1]["median_time_to_convert_s"] == 5400.0
    assert steps[2]["avg_time_to_convert_s"] == 7200.0


@on_every_engine
def test_every_step_zero_starts_an_attempt_and_the_best_one_counts(project: Project) -> None:
    journeys(
        project,
        {
            # The first attempt stalls (B comes after its 1-day window); the second,
            # started by the later A, completes: times come from it.
            "p1": [("A", h(0)), ("B", h(30)), ("A", h(40)), ("B", h(41)), ("C", h(43))],
        },
    )
    result = funnel(project, window_seconds=86400)
    assert counts(result) == [1, 1, 1]
    assert result["steps"][1]["avg_time_to_convert_s"] == 3600.0
    assert result["steps"][2]["avg_time_to_convert_s"] == 7200.0


@on_every_engine
def test_a_step_may_share_the_previous_steps_timestamp(project: Project) -> None:
    journeys(project, {"p1": [("B", h(0)), ("A", h(0)), ("C", h(0))]})
    assert counts(funnel(project)) == [1, 1, 1]


@on_every_engine
def test_one_event_serves_one_step_of_an_attempt(project: Project) -> None:
    journeys(project, {"p1": [("A", h(0))]})
    result = funnel(project, steps=[{"event": "A"}, {"event": "A"}])
    assert counts(result) == [1, 0]


@on_every_engine
def test_the_window_bound_is_inclusive(project: Project) -> None:
    journeys(
        project,
        {
            "on-time": [("A", h(0)), ("B", h(24))],
            "late": [("A", h(0)), ("B", h(24) + timedelta(seconds=1))],
        },
    )
    assert counts(funnel(project, window_seconds=86400))[:2] == [2, 1]


@on_every_engine
def test_missing_zero_or_negative_windows_mean_fourteen_days(project: Project) -> None:
    journeys(
        project,
        {"p1": [("A", h(0)), ("B", h(24 * 14))], "p2": [("A", h(0)), ("B", h(24 * 14 + 1))]},
    )
    for window in (None, 0, -5):
        assert counts(funnel(project, window_seconds=window))[:2] == [2, 1]


@on_every_engine
def test_strict_order_breaks_on_any_other_event(project: Project) -> None:
    journeys(
        project,
        {
            "clean": [("A", h(0)), ("B", h(1)), ("C", h(2))],
            "broken": [("A", h(0)), ("Noise", h(0.5)), ("B", h(1)), ("C", h(2))],
        },
    )
    assert counts(funnel(project, order="strict")) == [2, 1, 1]
    assert counts(funnel(project, order="ordered")) == [2, 2, 2]


@on_every_engine
def test_strict_order_is_not_broken_by_an_event_at_the_very_time_of_a_step(
    project: Project,
) -> None:
    """Only an event strictly between two steps' times breaks a strict attempt, so the
    answer never depends on how events of equal time are ordered (as in PostHog, which
    skips the strict reset for a timestamp shared by different steps)."""
    journeys(
        project,
        {
            # Each Noise is sent before the step it shares a time with (its message id
            # sorts first), so no tie-break by message id could save these attempts.
            "at-start": [("Noise", h(0)), ("A", h(0)), ("B", h(1)), ("C", h(2))],
            "at-step": [("A", h(0)), ("Noise", h(1)), ("B", h(1)), ("C", h(2))],
            "between": [("A", h(0)), ("Noise", h(0.5)), ("B", h(1)), ("C", h(2))],
            "two-between": [("A", h(0)), ("B", h(1)), ("Noise", h(1.5)), ("Noise", h(1.5)),
                            ("C", h(2))],
        },
    )  # fmt: skip
    assert counts(funnel(project, order="strict")) == [4, 3, 2]


@on_every_engine
def test_unordered_counts_steps_completed_in_any_order(project: Project) -> None:
    journeys(
        project,
        {
            "backwards": [("C", h(0)), ("B", h(1)), ("A", h(2))],
            "two": [("B", h(0)), ("A", h(1))],
            "one": [("C", h(0))],
            "late": [("A", h(0)), ("B", h(24 * 20))],
        },
    )
    result = funnel(project, order="unordered")
    assert counts(result) == [4, 2, 1]
    assert result["steps"][1]["avg_time_to_convert_s"] == 3600.0


@on_every_engine
def test_unordered_funnels_take_exclusions_over_the_whole_funnel(project: Project) -> None:
    """As PostHog's unordered exclusion tests: an attempt with an exclusion strictly between
    its first and last events is discarded, and a shorter clean attempt counts instead."""
    journeys(
        project,
        {
            "clean": [("S", h(1)), ("P", h(2))],
            "x-inside": [("S", h(3)), ("X", h(3.5)), ("P", h(4))],  # counts from P alone
            "x-after": [("S", h(5)), ("P", h(6)), ("X", h(7))],
        },
    )
    two = funnel(project, steps=[{"event": "S"}, {"event": "P"}], order="unordered",
                 exclusions=[{"event": "X"}])  # fmt: skip
    assert counts(two) == [3, 2]
    journeys(
        project,
        {
            "five-1": [("A", h(10)), ("X", h(11)), ("B", h(12)), ("C", h(13)), ("Y", h(13.5)),
                       ("D", h(14)), ("E", h(15))],
            "five-2": [("A", h(10)), ("B", h(11)), ("C", h(13)), ("D", h(14)), ("E", h(15))],
            "five-3": [("A", h(10)), ("X", h(10.5)), ("B", h(11)), ("C", h(13)), ("D", h(14)),
                       ("X", h(14.5)), ("E", h(15))],
        },
    )  # fmt: skip
    five = funnel(project, steps=[{"event": e} for e in "ABCDE"], order="unordered",
                  exclusions=[{"event": "X"}, {"event": "Y"}])  # fmt: skip
    # five-1's best clean attempt is D, E; five-3's only E (every longer one holds an X).
    assert counts(five) == [3, 2, 1, 1, 1]
    with pytest.raises(SpecRejected) as caught:
        funnel(project, steps=[{"event": e} for e in "ABC"], order="unordered",
               exclusions=[{"event": "X", "from_step": 0, "to_step": 1}])  # fmt: skip
    assert caught.value.problems[0].code == "bad_exclusion"


@on_every_engine
def test_an_exclusion_discards_the_attempt_and_removes_a_customer_with_no_clean_one(
    project: Project,
) -> None:
    journeys(
        project,
        {
            "excluded": [("A", h(0)), ("X", h(1)), ("B", h(2)), ("C", h(3))],
            "clean-later": [("A", h(0)), ("X", h(1)), ("A", h(5)), ("B", h(6))],
            "x-after-the-range": [("A", h(0)), ("B", h(1)), ("X", h(2)), ("C", h(3))],
            "clean": [("A", h(0)), ("B", h(1)), ("C", h(2))],
        },
    )
    whole = funnel(project, exclusions=[{"event": "X"}])
    assert counts(whole) == [2, 2, 1]  # "clean-later" from its second attempt, and "clean"
    first_gap = funnel(project, exclusions=[{"event": "X", "from_step": 0, "to_step": 1}])
    assert counts(first_gap) == [3, 3, 2]


@on_every_engine
def test_an_exclusion_at_the_very_time_of_a_step_is_not_between_the_steps(
    project: Project,
) -> None:
    """As PostHog's test_multiple_events_same_timestamp_exclusions: only an exclusion
    strictly between the two steps' times discards the attempt."""
    journeys(
        project,
        {
            "with-start": [("A", h(0)), ("X", h(0)), ("B", h(1)), ("C", h(2))],
            "with-step": [("A", h(0)), ("X", h(1)), ("B", h(1)), ("C", h(2))],
            "between": [("A", h(0)), ("X", h(0.5)), ("B", h(1)), ("C", h(2))],
        },
    )
    # Over the whole funnel, X at the time of B still lies between A and C.
    assert counts(funnel(project, exclusions=[{"event": "X"}])) == [1, 1, 1]
    assert counts(funnel(project, exclusions=[{"event": "X", "from_step": 0, "to_step": 1}])) == [
        2,
        2,
        2,
    ]
    # After step 1, up to the end of the window: X at the time of B is not after B.
    late = funnel(project, steps=[{"event": "A"}, {"event": "B"}, {"event": "Never"}],
                  exclusions=[{"event": "X", "from_step": 1, "to_step": 2}])  # fmt: skip
    assert counts(late) == [3, 3, 0]


@on_every_engine
def test_first_and_last_touch_read_the_customers_earliest_and_latest_valued_step_event(
    project: Project,
) -> None:
    """As PostHog's first- and last-touch attribution tests: the value comes from the
    customer's earliest (latest) event of any step that has the property at all."""
    journeys(
        project,
        {
            "safari-later": [("A", h(0)), ("B", h(1), {"browser": "Safari"})],
            "chrome-first": [("A", h(0), {"browser": "Chrome"}), ("B", h(1))],
            "both": [("A", h(0), {"browser": "Mac"}), ("B", h(1), {"browser": "Linux"})],
            "none": [("A", h(0)), ("B", h(1)), ("Other", h(2), {"browser": "Edge"})],
        },
    )
    steps = [{"event": "A"}, {"event": "B"}]

    def groups(attribution: str) -> dict[str | None, list[int]]:
        result = funnel(project, steps=steps,
                        breakdown={"property": "browser", "attribution": attribution})  # fmt: skip
        return {g["value"]: counts(g) for g in result["breakdown"]}

    assert groups("first_touch") == {"Safari": [1, 1], "Chrome": [1, 1], "Mac": [1, 1],
                                     None: [1, 1]}  # fmt: skip
    assert groups("last_touch") == {"Safari": [1, 1], "Chrome": [1, 1], "Linux": [1, 1],
                                    None: [1, 1]}  # fmt: skip


@on_every_engine
def test_step_attribution_counts_a_customer_once_per_value_at_that_step(
    project: Project,
) -> None:
    """As PostHog's test_breakdown_step_attributions and
    test_funnel_step_breakdown_event_single_person_multiple_breakdowns."""
    second = timedelta(seconds=1)
    journeys(
        project,
        {
            "p1": [("A", T0, {"browser": "Chrome"}), ("B", T0 + second, {"browser": "Safari"}),
                   ("B", T0 + 2 * second, {"browser": "Chrome"}),
                   ("C", T0 + 3 * second, {"browser": "Chrome"})],
            "p2": [("S", T0 + n * second, {"browser": b})
                   for n, b in enumerate(["Chrome", "Safari", "Mac", "0"])],
        },
    )  # fmt: skip

    def groups(steps: str, step: int) -> tuple[list[int], dict[str | None, list[int]]]:
        by_step = {"property": "browser", "attribution": "step", "step": step}
        result = funnel(project, steps=[{"event": e} for e in steps], window_seconds=30,
                        breakdown=by_step)  # fmt: skip
        return counts(result), {g["value"]: counts(g) for g in result["breakdown"]}

    # With step 1 taken by the Safari event, then by the Chrome one: both reach the end.
    assert groups("ABC", 1) == ([1, 1, 1], {"Safari": [1, 1, 1], "Chrome": [1, 1, 1]})
    assert groups("SB", 0) == (
        [1, 0],
        {"Chrome": [1, 0], "Safari": [1, 0], "Mac": [1, 0], "0": [1, 0]},
    )


@on_every_engine
def test_merged_identities_count_as_one_customer(project: Project) -> None:
    journeys(project, {"anon-m": [("A", h(0))]})
    journeys(project, {"known-m": [("B", h(1))]})
    merged = normalise(
        from_dict(
            {
                "type": "identify",
                "userId": "known-m",
                "anonymousId": "anon-m",
                "messageId": "merge-1",
                "timestamp": h(2).isoformat(),
            }
        ),
        received_at=datetime.now(UTC),
    )
    project.pipeline.ingest([merged], source="t")
    assert counts(funnel(project)) == [1, 1, 0]


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_date_ranges_select_attempts_by_their_first_step_in_the_project_time_zone(
    tmp_path: Path, engine: str
) -> None:
    opened = open_project(Settings(home=tmp_path / "ny", timezone="America/New_York"))
    on_spark(opened, engine == "spark")
    try:
        # 02:00 UTC on 3 March is still 2 March in New York.
        at = datetime(2026, 3, 3, 2, 0, tzinfo=UTC)
        journeys(opened, {"p1": [("A", at), ("B", at + timedelta(hours=1))]})
        assert counts(funnel(opened, date_from="2026-03-03"))[:2] == [0, 0]
        assert counts(funnel(opened, date_from="2026-03-02", date_to="2026-03-02"))[:2] == [1, 1]
    finally:
        on_spark(opened, False)
        opened.close()


@on_every_engine
def test_breakdowns_attribute_by_first_touch_last_touch_or_a_step(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("A", h(0), {"plan": "free"}), ("B", h(1), {"plan": "pro"})],
            "p2": [("A", h(0), {"plan": "pro"}), ("B", h(1), {"plan": "pro"})],
            "p3": [("A", h(0), {"plan": "free"})],
        },
    )
    steps = [{"event": "A"}, {"event": "B"}]

    def groups(**breakdown: Any) -> dict[str, list[int]]:
        result = funnel(project, steps=steps, breakdown={"property": "plan", **breakdown})
        return {g["value"]: [s["count"] for s in g["steps"]] for g in result["breakdown"]}

    assert groups() == {"free": [2, 1], "pro": [1, 1]}
    assert groups(attribution="last_touch") == {"pro": [2, 2], "free": [1, 0]}
    assert groups(attribution="step", step=1) == {"pro": [2, 2], None: [1, 0]}
    assert groups(limit=1) == {"free": [2, 1], "Other": [1, 1]}


@on_every_engine
def test_breakdowns_by_a_customer_trait(project: Project) -> None:
    journeys(
        project,
        {
            "p1": [("A", h(0)), ("B", h(1))],
            "p2": [("A", h(0))],
            "p3": [("A", h(0)), ("B", h(2))],
            "p4": [("A", h(0))],  # no plan: the None group
        },
    )
    traits(project, {"p1": {"plan": "pro", "seats": 5}, "p2": {"plan": "pro"},
                     "p3": {"plan": "free", "seats": 12.5}}, h(-1))  # fmt: skip

    def groups(trait: str) -> dict[str | None, list[int]]:
        result = funnel(project, steps=[{"event": "A"}, {"event": "B"}], breakdown={"trait": trait})
        return {g["value"]: counts(g) for g in result["breakdown"]}

    assert groups("plan") == {"pro": [2, 1], "free": [1, 1], None: [1, 0]}
    assert groups("seats") == {"5": [1, 1], "12.5": [1, 1], None: [2, 0]}  # numbers as text


@on_every_engine
def test_step_filters_compare_properties(project: Project) -> None:
    journeys(
        project,
        {
            "big": [("A", h(0)), ("Order", h(1), {"total": 120, "coupon": "SPRING-10"})],
            "small": [("A", h(0)), ("Order", h(1), {"total": "20", "coupon": "none"})],
            "none": [("A", h(0)), ("Order", h(1), {})],
        },
    )

    def reached(*filters: dict[str, Any]) -> int:
        steps = [{"event": "A"}, {"event": "Order", "filters": list(filters)}]
        return int(funnel(project, steps=steps)["steps"][1]["count"])

    assert reached({"property": "total", "op": "gt", "value": 100}) == 1
    assert reached({"property": "total", "op": "lt", "value": 100}) == 1
    assert reached({"property": "total", "op": "eq", "value": 20}) == 1
    assert reached({"property": "coupon", "op": "contains", "value": "spring"}) == 1
    assert reached({"property": "coupon", "op": "in", "value": ["none", "x"]}) == 1
    assert reached({"property": "coupon", "op": "neq", "value": "none"}) == 2
    # Values and names are query parameters: quotes are just characters.
    assert reached({"property": "coupon", "op": "eq", "value": "x' OR 1=1 --"}) == 0
    assert reached({"property": "it's", "op": "neq", "value": "'"}) == 3


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"steps": [{"event": "A"}]}, "too_few_steps"),
        ({"window_seconds": 367 * 86400}, "window_too_long"),
        ({"exclusions": [{"event": "B"}]}, "exclusion_is_a_step"),
        ({"exclusions": [{"event": "X", "from_step": 2, "to_step": 1}]}, "bad_exclusion"),
        ({"breakdown": {"property": "nowhere"}}, "breakdown_property_missing"),
        ({"breakdown": {"trait": "nobody"}}, "breakdown_trait_missing"),
        ({"date_from": "yesterday"}, "bad_date"),
    ],
)
@on_every_engine
def test_bad_specs_are_refused_with_a_code(
    project: Project, spec: dict[str, Any], code: str
) -> None:
    journeys(project, {"p1": [("A", h(0)), ("B", h(1))]})
    with pytest.raises(SpecRejected) as caught:
        funnel(project, **spec)
    assert caught.value.problems[0].code == code


def test_a_filter_value_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(ValueError, match="compares numbers"):
        FunnelSpec.model_validate(
            {
                "steps": [
                    {"event": "A", "filters": [{"property": "n", "op": "gt", "value": "x"}]},
                    {"event": "B"},
                ]
            }
        )


@on_every_engine
def test_unknown_events_warn_and_count_zero(project: Project) -> None:
    journeys(project, {"p1": [("A", h(0))]})
    result = funnel(project, steps=[{"event": "A"}, {"event": "Never Sent"}])
    assert counts(result) == [1, 0]
    assert result["warnings"][0]["code"] == "unknown_event"


def test_the_cli_and_the_api_answer_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "cli"
    cli_project(home, {"p1": [("A", h(0)), ("B", h(1))], "p2": [("A", h(0))]})
    monkeypatch.setenv("CXLOOP_HOME", str(home))
    runner = CliRunner()
    cli = runner.invoke(app, ["funnel", "--steps", "A,B", "--window", "7d", "--format", "json"])
    assert cli.exit_code == 0, cli.output
    data = json.loads(cli.stdout)
    assert [s["count"] for s in data["steps"]] == [2, 1]
    bad = runner.invoke(app, ["funnel", "--steps", "A", "--format", "json"])
    assert bad.exit_code == 2
    assert "at least two steps" in bad.output
    key = runner.invoke(app, ["keys", "create", "--kind", "secret", "--name", "t"]).stdout.strip()
    with TestClient(create_app(Settings(home=home))) as client:
        answer = client.post(
            "/api/v1/analytics/funnel",
            json={"steps": [{"event": "A"}, {"event": "B"}], "window_seconds": 604800},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == data
        refused = client.post(
            "/api/v1/analytics/funnel",
            json={"steps": [{"event": "A"}, {"event": "B"}], "exclusions": [{"event": "A"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "exclusion_is_a_step"


def test_the_rees46_sample_gives_the_funnel_pandas_computes(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real REES46 e-commerce sample, imported as a user would, against an independent
    pandas computation of view -> cart -> purchase within the default 14 days."""
    import pandas as pd

    source = shared_data / "rees46-ecommerce-events-sample.csv"
    monkeypatch.setenv("CXLOOP_HOME", str(tmp_path / "rees"))
    runner = CliRunner()
    imported = runner.invoke(
        app,
        ["import", "events", str(source), "--map", "event_type=event",
         "--map", "event_time=timestamp", "--map", "user_id=user_id"],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    answer = runner.invoke(app, ["funnel", "--steps", "view,cart,purchase", "--format", "json"])
    assert answer.exit_code == 0, answer.output
    ours = [s["count"] for s in json.loads(answer.stdout)["steps"]]

    frame = pd.read_csv(source)
    frame["at"] = pd.to_datetime(frame["event_time"].str.replace(" UTC", ""), utc=True)
    window = pd.Timedelta(days=14)
    views = frame[frame.event_type == "view"][["user_id", "at"]].rename(columns={"at": "t0"})
    carts = frame[frame.event_type == "cart"][["user_id", "at"]].rename(columns={"at": "t1"})
    buys = frame[frame.event_type == "purchase"][["user_id", "at"]].rename(columns={"at": "t2"})
    step1 = views.merge(carts, on="user_id")
    step1 = step1[(step1.t1 >= step1.t0) & (step1.t1 <= step1.t0 + window)]
    # The earliest cart of each attempt leaves the most room for the purchase.
    step1 = step1.groupby(["user_id", "t0"], as_index=False)["t1"].min()
    step2 = step1.merge(buys, on="user_id")
    step2 = step2[(step2.t2 >= step2.t1) & (step2.t2 <= step2.t0 + window)]
    expected = [views.user_id.nunique(), step1.user_id.nunique(), step2.user_id.nunique()]
    assert ours == expected, (ours, expected)
    assert expected[0] > 0 and expected[1] > 0, expected  # the check is not vacuous


@on_every_engine
def test_the_customers_who_dropped_off_after_a_step_are_listed(project: Project) -> None:
    journeys(
        project,
        {
            "all-the-way": [("A", h(0)), ("B", h(1)), ("C", h(2))],
            "stopped-at-b": [("A", h(0)), ("B", h(1))],
            "stopped-at-a": [("A", h(0))],
        },
    )
    spec = FunnelSpec.model_validate({"steps": [{"event": e} for e in ("A", "B", "C")]})
    zone = project.settings.zone

    def names(step: int, outcome: str) -> list[str]:
        events, engine = stores(project)
        found = funnel_customers(spec, events, engine, zone, step=step, outcome=outcome)
        ids = [c["id"] for c in found["customers"]]
        assert found["total"] == len(ids)
        with project.engine.connect() as conn:
            rows = conn.execute(
                select(CustomerIdentity.customer_id, CustomerIdentity.value).where(
                    CustomerIdentity.customer_id.in_(ids), CustomerIdentity.kind == "user_id"
                )
            ).all()
        return sorted(value for _, value in rows)

    assert names(0, "dropped") == ["stopped-at-a"]
    assert names(1, "dropped") == ["stopped-at-b"]
    assert names(1, "reached") == ["all-the-way", "stopped-at-b"]
    with pytest.raises(SpecRejected):
        names(2, "dropped")  # nobody can drop off after the last step


def test_the_cli_runs_every_query_on_spark_over_the_exported_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "cli"
    cli_project(home, {"p1": [("A", h(0)), ("B", h(1))], "p2": [("A", h(0)), ("C", h(2))]})
    monkeypatch.setenv("CXLOOP_HOME", str(home))
    runner = CliRunner()
    missing = runner.invoke(app, ["funnel", "--steps", "A,B", "--engine", "spark"])
    assert missing.exit_code == 2
    assert "holds no Parquet lake" in missing.output and "cxloop export parquet" in missing.output
    wrong = runner.invoke(app, ["funnel", "--steps", "A,B", "--lake", str(tmp_path)])
    assert wrong.exit_code == 2 and "only with --engine spark" in wrong.output
    exported = runner.invoke(app, ["export", "parquet", "--format", "json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["directory"] == str(home.resolve() / "lake")
    answers: dict[str, Any] = {}
    for query in (
        ["funnel", "--steps", "A,B", "--customers-at", "0"],
        ["funnel", "--steps", "A,B"],
        ["trends", "--event", "A"],
        ["retention", "--start", "A", "--period", "day"],
        ["paths", "A"],
    ):
        here = runner.invoke(app, [*query, "--format", "json"])
        there = runner.invoke(app, [*query, "--engine", "spark", "--format", "json"])
        assert here.exit_code == 0 and there.exit_code == 0, (here.output, there.output)
        assert json.loads(there.stdout) == json.loads(here.stdout), query
        answers[query[0]] = json.loads(there.stdout)
    assert [s["count"] for s in answers["funnel"]["steps"]] == [2, 1]  # not vacuous
    assert answers["paths"]["customers"] == 2
    next((home / "lake" / "events").rglob("*.parquet")).write_bytes(b"not parquet")
    broken = runner.invoke(app, ["funnel", "--steps", "A,B", "--engine", "spark"])
    assert broken.exit_code == 2
    assert "cannot read the lake" in broken.output and "Traceback" not in broken.output


@on_every_engine
def test_a_project_without_events_answers_with_empty_funnels(project: Project) -> None:
    result = funnel(project, steps=[{"event": "A"}, {"event": "B"}])
    assert counts(result) == [0, 0]
    assert {w["code"] for w in result["warnings"]} == {"unknown_event"}


@on_every_engine
def test_breakdown_groups_are_listed_by_customers_at_the_last_step_first(
    project: Project,
) -> None:
    """As PostHog lists them (test_funnel_step_breakdown_event_with_string_only_breakdown):
    Chrome converts once out of one, Safari not at all out of two, so Chrome comes first."""
    journeys(
        project,
        {
            "c1": [("A", h(0), {"browser": "Chrome"}), ("B", h(1)), ("C", h(2))],
            "s1": [("A", h(0), {"browser": "Safari"}), ("B", h(1))],
            "s2": [("A", h(0), {"browser": "Safari"})],
        },
    )
    result = funnel(project, breakdown={"property": "browser"})
    assert [(g["value"], counts(g)) for g in result["breakdown"]] == [
        ("Chrome", [1, 1, 1]),
        ("Safari", [2, 1, 0]),
    ]
