"""The demo's feedback agrees with its history: late deliveries and bad support lower the
scores, every department has eNPS, cases sit in their stage, follow-ups are being worked."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from cxloop.demo.loader import load_demo
from cxloop.feedback.responses import enps_beside_stages, score_report
from cxloop.project import Project, open_project
from cxloop.service.cases import case_metrics, cases_t
from cxloop.service.followups import followup_metrics, followups_t
from cxloop.settings import Settings
from cxloop.store.models import Survey, SurveyResponse


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    settings = Settings(home=tmp_path_factory.mktemp("demo") / "project")
    project = open_project(settings)
    load_demo(project, customers=1500, seed=7)
    try:
        yield project
    finally:
        project.close()


def scores(project: Project, survey: str) -> list[Any]:
    with project.engine.connect() as conn:
        return conn.execute(
            select(SurveyResponse.customer_id, SurveyResponse.score, SurveyResponse.submitted_at)
            .join(Survey, Survey.id == SurveyResponse.survey_id)
            .where(Survey.name == survey)
        ).all()


def test_bad_support_lowers_later_scores(demo: Project) -> None:
    with demo.engine.connect() as conn:
        negative = {
            r.customer_id: r.resolved_at
            for r in conn.execute(
                select(cases_t.c.customer_id, cases_t.c.resolved_at).where(
                    cases_t.c.outcome == "negative"
                )
            )
        }
    after_bad = [
        r.score
        for r in scores(demo, "Relationship NPS")
        if r.customer_id in negative and r.submitted_at > negative[r.customer_id]
    ]
    others = [r.score for r in scores(demo, "Relationship NPS") if r.customer_id not in negative]
    assert len(after_bad) >= 5 and len(others) >= 50
    assert statistics.mean(after_bad) < statistics.mean(others) - 2
    csat_bad = [r.score for r in scores(demo, "Support CSAT") if r.customer_id in negative]
    csat_rest = [r.score for r in scores(demo, "Support CSAT") if r.customer_id not in negative]
    assert statistics.mean(csat_bad) < statistics.mean(csat_rest)


def test_scores_read_per_stage_and_employees_per_department(demo: Project) -> None:
    with demo.engine.connect() as conn:
        by_stage = score_report(conn, "nps", by="stage")
        enps = enps_beside_stages(conn)
    stages = {g["key"]: g for g in by_stage["groups"]}
    assert {
        "client-experience:engage",
        "client-experience:delivery",
        "client-experience:use",
    } <= set(stages)
    # Delivery is where the planted problems are (late deliveries, one poor installer).
    assert stages["client-experience:delivery"]["nps"] < stages["client-experience:use"]["nps"]
    departments = {d["department"]: d for d in enps["departments"]}
    assert set(departments) == {"marketing", "sales", "delivery", "product", "customer service"}
    assert departments["delivery"]["enps"] < departments["product"]["enps"]
    assert enps["correlated_departments"] >= 3 and enps["correlation"] is not None


def test_cases_and_followups_are_in_their_stages_and_being_worked(demo: Project) -> None:
    with demo.engine.connect() as conn:
        cases = case_metrics(conn)
        followups = followup_metrics(conn)
        reasons = {r[0] for r in conn.execute(select(followups_t.c.reason).distinct())}
    assert cases["cases"] > 50 and cases["positive_resolution_rate"] is not None
    stages = {s["stage"] for s in cases["stages"]}
    # Help-desk cases open in the support stage; the detractor call-back rule's, in
    # whichever client-experience stage the customer stood.
    assert "client-experience:support" in stages
    assert all(s.startswith("client-experience:") for s in stages)
    with demo.engine.connect() as conn:
        by_source = dict(
            conn.execute(
                select(cases_t.c.source, func.count(func.distinct(cases_t.c.stage)))
                .where(cases_t.c.stage.is_not(None))
                .group_by(cases_t.c.source)
            ).all()
        )
    assert by_source["rule"] >= 1 and all(n == 1 for k, n in by_source.items() if k != "rule")
    assert cases["after_case"]["responses"] > 0 and cases["without_case"]["customers"] > 0
    assert reasons == {"detractor", "negative_case", "stalled"}
    assert followups["done"] > 0 and followups["in_progress"] > 0 and followups["open"] > 0
    assert followups["median_hours_to_close"] > 0
    assert 0 < followups["detractors_followed_up_share"] < 100
    # Loading again adds nothing: the demo is loaded once per project.
    load_demo(demo, customers=1500, seed=7)
    with demo.engine.connect() as conn:
        assert followup_metrics(conn)["followups"] == followups["followups"]


def test_scores_break_down_by_a_customer_segment(demo: Project) -> None:
    with demo.engine.connect() as conn:
        whole = score_report(conn, "nps")
        by_channel = score_report(conn, "nps", by="segment", segment="channel")
        store = score_report(conn, "nps", where={"channel": "store"})
        with pytest.raises(ValueError, match="segment"):
            score_report(conn, "nps", by="segment")
        with pytest.raises(ValueError, match="segment"):
            score_report(conn, "nps", segment="channel")
    groups = {g["key"]: g for g in by_channel["groups"]}
    assert sum(g["responses"] for g in groups.values()) == whole["responses"]
    assert groups["store"]["responses"] == store["responses"]
    assert groups["store"]["nps"] == store["nps"]
