"""The journey map: a lifecycle model's stages as columns and, in lanes, what customers do
in each stage, where they meet us, how satisfied they are there, what they complain
about, who owns the stage, and the stage's key figures. It prints (or saves as PDF) and
its chart downloads as a PNG, for a workshop wall or a slide.

Each lane comes from the service the REST API calls: the key figures from ``stage_flow``
(``GET /api/v1/lifecycle/{key}/report``), scores from ``score_report`` per stage and per
touchpoint, pain points from ``themes_report`` per stage; what customers do from the
events stored while they stood in the stage (``stage_activity``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from cxloop.feedback.responses import Measure, score_report, stage_scores, touchpoints_by_stage
from cxloop.feedback.themes import themes_report
from cxloop.lifecycle import report
from cxloop.lifecycle.mirror import MovesStore, moves_store
from cxloop.web.pages.base import Filters, PageCtx
from cxloop.web.pages.lifecycle import (
    BAD,
    BRAND,
    choose_model,
    model_choices,
    service_errors,
)

router = APIRouter(include_in_schema=False)

TOP_ACTIONS = 5  # tracked events per stage
TOP_SHOWN = 3  # channels, pages, touchpoints and pain points per stage
THEMES_READ = 10  # themes per stage read, of which the negative ones are shown
TOUCHPOINT_MEASURES: tuple[Measure, ...] = ("nps", "csat", "ces")


def touchpoint_scores(
    conn: Connection,
    *,
    zone: ZoneInfo,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str],
) -> dict[str, list[dict[str, Any]]]:
    """Per touchpoint, each measure with answers there (``score_report(by="touchpoint")``,
    as ``GET /api/v1/feedback/{measure}?by=touchpoint``): ``{touchpoint: [{"measure",
    "score", "margin_of_error", "responses"}]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for measure in TOUCHPOINT_MEASURES:
        found = score_report(
            conn, measure, by="touchpoint", zone=zone, start=start, end=end, where=where
        )
        for group in found["groups"]:
            if group["key"] is None or not group["responses"]:
                continue
            out.setdefault(str(group["key"]), []).append(
                {
                    "measure": measure,
                    "score": group[measure],
                    "margin_of_error": group["margin_of_error"],
                    "responses": group["responses"],
                }
            )
    return out


def pain_points(themes: dict[str, Any], model_key: str) -> dict[str, list[dict[str, Any]]]:
    """Per stage of the model, its themes whose comments read negative on average, the
    most distinctive first (the order ``themes_report`` ranks them in)."""
    prefix = f"{model_key}:"
    out: dict[str, list[dict[str, Any]]] = {}
    for group in themes.get("groups", []):
        key = group["key"]
        if not isinstance(key, str) or not key.startswith(prefix):
            continue
        negative = [
            t
            for t in group["themes"]
            if t["mean_sentiment"] is not None and t["mean_sentiment"] < 0
        ]
        out[key[len(prefix) :]] = negative[:TOP_SHOWN]
    return out


def curve_option(stages: list[dict[str, Any]], scores: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Customers entering each stage (bars) and the NPS measured there (a line): the shape
    of the journey at a glance, for the PNG."""
    names = [s["name"] for s in stages]
    nps = [scores.get(s["key"], {}).get("nps", {}).get("nps") for s in stages]
    return {
        "animationDuration": 400,
        "legend": {"data": ["Entered", "NPS"], "top": 0},
        "tooltip": {"trigger": "axis"},
        "grid": {"left": 56, "right": 48, "top": 36, "bottom": 64, "containLabel": False},
        "xAxis": {
            "type": "category",
            "data": names,
            "axisLabel": {"interval": 0, "rotate": 30 if len(names) > 4 else 0},
        },
        "yAxis": [
            {"type": "value", "name": "Entered", "minInterval": 1},
            {"type": "value", "name": "NPS", "min": -100, "max": 100, "splitLine": {"show": False}},
        ],
        "series": [
            {
                "name": "Entered",
                "type": "bar",
                "data": [s["entered"] for s in stages],
                "itemStyle": {"color": BRAND},
                "barMaxWidth": 48,
            },
            {
                "name": "NPS",
                "type": "line",
                "yAxisIndex": 1,
                "data": nps,
                "connectNulls": True,
                "symbolSize": 9,
                "itemStyle": {"color": BAD},
                "lineStyle": {"width": 3},
            },
        ],
    }


def journey_lanes(
    conn: Connection,
    key: str,
    *,
    store: MovesStore | None,
    zone: ZoneInfo,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str],
) -> dict[str, Any]:
    """Every lane but the key figures, each from its service with the page's filters
    (pain points read every comment of the range: themes know no segment)."""
    themes = themes_report(conn, by="stage", start=start, end=end, top=THEMES_READ)
    activity = report.stage_activity(
        conn, key, store=store, start=start, end=end, where=where, top=TOP_ACTIONS
    )
    return {
        "activity": activity,
        "scores": stage_scores(conn, key, zone=zone, start=start, end=end, where=where),
        "touchpoints": touchpoints_by_stage(conn, key, start=start, end=end, where=where),
        "touchpoint_scores": touchpoint_scores(conn, zone=zone, start=start, end=end, where=where),
        "pains": pain_points(themes, key),
    }


@router.get("/journey", response_class=HTMLResponse)
def journey_page(page: PageCtx, model: str | None = None) -> HTMLResponse:
    filters = Filters.parse(page.request)
    errors = dict(filters.errors)
    project = page.state.project
    start, end = filters.window(page.zone)
    where = filters.where
    store = moves_store(project.events)
    flow: dict[str, Any] | None = None
    lanes: dict[str, Any] = {}
    with project.engine.connect() as conn:
        models = model_choices(conn)
        chosen, problem = choose_model(models, model)
        errors.update(problem)
        if chosen is not None:
            key = chosen["key"]
            try:
                flow = report.stage_flow(conn, key, start=start, end=end, where=where, store=store)
                lanes = journey_lanes(
                    conn, key, store=store, zone=page.zone, start=start, end=end, where=where
                )
            except ValueError as exc:
                errors.update(service_errors(exc))
                flow = None
    option = None
    if flow is not None:
        option = curve_option(flow["stages"], lanes["scores"])
    filters.errors = errors
    return page.render(
        "pages/journey.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        flow=flow,
        lanes=lanes,
        option=option,
        top_shown=TOP_SHOWN,
        is_admin=page.at_least("admin"),
    )
