"""The insights pages. Gaps: a lifecycle model's stages ranked by how badly they fail their
customers, each with its owner, its figures, the sample sizes and the parts of its score.
Drivers: what most moves overall NPS or churn, as an importance-performance quadrant.
Retarget: which segments reach a model's goal, value by value, and which to target.
Purchases: how often and how much customers buy, where, their RFM segments and value.
Churn: who is about to leave, why, how good the model is, and follow-ups for them.
Segments: saved rule-based groups of customers, their members and CSV export.

The pages call ``stage_gaps`` and ``key_drivers``, the functions behind
``GET /api/v1/insights/gaps/{model}`` and ``GET /api/v1/insights/drivers``, with the same
window and segment, so a number on a page is the API's number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from cxloop import segments, yamltext
from cxloop.domain.segments import SegmentIn
from cxloop.insights.churn import churn_risk, follow_up_at_risk
from cxloop.insights.drivers import OUTCOMES, Outcome, key_drivers
from cxloop.insights.filters import segment_members
from cxloop.insights.gaps import MIN_SAMPLE, PARTS, stage_gaps
from cxloop.insights.purchases import AMOUNT, purchase_behaviour
from cxloop.insights.purchases import EVENT as PURCHASE_EVENT
from cxloop.insights.retarget import retarget
from cxloop.lifecycle.mirror import moves_store
from cxloop.lifecycle.service import get_model
from cxloop.web.pages.base import PAGE_SIZE, Filters, Page, PageCtx, PageForbidden
from cxloop.web.pages.lifecycle import choose_model, model_choices, service_errors
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)
BRAND, MUTED = "#0b5cad", "#7b8794"


def _filtered(page: Page) -> tuple[Filters, dict[str, str], datetime | None, datetime | None]:
    """The page's filters, their errors (to add to) and the window they give."""
    filters = Filters.parse(page.request)
    start, end = filters.window(page.zone)
    return filters, dict(filters.errors), start, end


def _for_model(
    page: Page,
    model: str | None,
    errors: dict[str, str],
    compute: Callable[[Connection, str], dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, Any] | None]:
    """(the installed models, the one shown, ``compute(conn, key)`` for it): an unknown
    model or a service's refusal goes into ``errors`` next to its field."""
    found = None
    with page.state.project.engine.connect() as conn:
        models = model_choices(conn)
        chosen, problem = choose_model(models, model)
        errors.update(problem)
        if chosen is not None:
            try:
                found = compute(conn, chosen["key"])
            except ValueError as exc:
                text = str(exc)
                errors.update(
                    {"goal": text.partition(": ")[2]}
                    if text.startswith("goal:")
                    else service_errors(exc)
                )
    return models, chosen, found


@router.get("/insights")
def insights_home(page: PageCtx) -> RedirectResponse:
    return RedirectResponse("/insights/gaps", status_code=303)


def priority_option(stages: list[dict[str, Any]]) -> dict[str, Any]:
    """Ranked stages as horizontal bars, worst on top; unranked stages are left out."""
    ranked = [s for s in stages if s["priority"] is not None][::-1]
    return {
        "grid": {"left": 8, "right": 40, "top": 8, "bottom": 24, "containLabel": True},
        "xAxis": {"type": "value", "min": 0, "max": 100},
        "yAxis": {"type": "category", "data": [f"{s['name']} ({s['owner']})" for s in ranked]},
        "tooltip": {"trigger": "axis"},
        "series": [
            {
                "type": "bar",
                "name": "priority",
                "data": [s["priority"] for s in ranked],
                "itemStyle": {"color": BRAND},
                "label": {"show": True, "position": "right"},
            }
        ],
    }


@router.get("/insights/gaps", response_class=HTMLResponse)
def gaps_page(page: PageCtx, model: str | None = None) -> HTMLResponse:
    filters, errors, start, end = _filtered(page)
    store = moves_store(page.state.project.events)
    models, chosen, found = _for_model(
        page, model, errors,
        lambda conn, key: stage_gaps(
            conn, key, start=start, end=end, where=filters.where, zone=page.zone, store=store
        ),
    )  # fmt: skip
    option = None
    if found is not None and any(s["priority"] is not None for s in found["stages"]):
        option = priority_option(found["stages"])
    filters.errors = errors
    return page.render(
        "pages/insights_gaps.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        gaps=found,
        option=option,
        parts=PARTS,
        min_sample=MIN_SAMPLE,
        is_admin=page.at_least("admin"),
    )


QUADRANT_COLOURS = {
    "concentrate here": "#b00020",
    "keep up the good work": "#1b7f3b",
    "low priority": "#7b8794",
    "possible overkill": "#0b5cad",
}


def quadrant_option(found: dict[str, Any]) -> dict[str, Any]:
    """Importance (up) against performance (right), split at the medians, one point per
    driver coloured by its quadrant."""
    lines = found["quadrant_lines"]
    points = [
        {
            "name": d["label"],
            "value": [d["performance"], d["importance"]],
            "itemStyle": {"color": QUADRANT_COLOURS[d["quadrant"]]},
            # the more important half is named on the chart; every point in the tooltip
            "label": {"show": d["importance"] >= lines["importance"]},
        }
        for d in found["drivers"]
    ]
    return {
        "grid": {"left": 8, "right": 24, "top": 24, "bottom": 36, "containLabel": True},
        "xAxis": {"type": "value", "name": "performance", "nameLocation": "middle",
                  "nameGap": 24, "min": 0, "max": 100},
        "yAxis": {"type": "value", "name": "importance (% of R²)", "nameLocation": "middle",
                  "nameGap": 36, "min": 0},
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "type": "scatter",
                "symbolSize": 12,
                "data": points,
                "label": {"show": True, "position": "right", "formatter": "{b}",
                          "fontSize": 11},
                "markLine": {
                    "silent": True,
                    "symbol": "none",
                    "lineStyle": {"type": "dashed", "color": MUTED},
                    "label": {"show": False},
                    "data": [{"xAxis": lines["performance"]}, {"yAxis": lines["importance"]}],
                },
            }
        ],
    }  # fmt: skip


@router.get("/insights/drivers", response_class=HTMLResponse)
def drivers_page(page: PageCtx, outcome: str = "nps", model: str | None = None) -> HTMLResponse:
    filters, errors, start, end = _filtered(page)
    project = page.state.project
    chosen_outcome: Outcome = "churn" if outcome == "churn" else "nps"
    if outcome not in OUTCOMES:
        errors["outcome"] = f"choose NPS or churn, not {outcome!r}"
    found: dict[str, Any] | None = None
    with project.engine.connect() as conn:
        models = model_choices(conn)
        chosen, problem = choose_model(models, model)
        errors.update(problem)
        if chosen_outcome == "nps" or chosen is not None:
            try:
                found = key_drivers(
                    conn, project.events, outcome=chosen_outcome,
                    model=chosen["key"] if chosen and chosen_outcome == "churn" else None,
                    start=start, end=end, where=filters.where,
                )  # fmt: skip
            except (ValueError, LookupError) as exc:
                errors.update(service_errors(exc))
    option = quadrant_option(found) if found and found["drivers"] else None
    filters.errors = errors
    return page.render(
        "pages/insights_drivers.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        outcome=chosen_outcome,
        found=found,
        option=option,
        colours=QUADRANT_COLOURS,
        is_admin=page.at_least("admin"),
    )


def shares_option(attribute: dict[str, Any], goal: str) -> dict[str, Any]:
    """One attribute's values: their share among the targeted beside their share among
    those who reached the goal (a value that converts well has the second bar longer)."""
    values = [v for v in attribute["values"]][::-1]
    return {
        "grid": {"left": 8, "right": 24, "top": 32, "bottom": 8, "containLabel": True},
        "legend": {"top": 0},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value", "axisLabel": {"formatter": "{value} %"}},
        "yAxis": {"type": "category", "data": [v["value"] for v in values]},
        "series": [
            {"type": "bar", "name": "of the targeted", "itemStyle": {"color": MUTED},
             "data": [round(100 * v["share_targeted"], 1) for v in values]},
            {"type": "bar", "name": f"of those who {goal}", "itemStyle": {"color": BRAND},
             "data": [round(100 * v["share_converted"], 1) for v in values]},
        ],
    }  # fmt: skip


@router.get("/insights/retarget", response_class=HTMLResponse)
def retarget_page(
    page: PageCtx, model: str | None = None, goal: str | None = None, attribute: str = ""
) -> HTMLResponse:
    filters, errors, start, end = _filtered(page)
    stages: list[dict[str, str]] = []

    def compute(conn: Connection, key: str) -> dict[str, Any]:
        _id, definition, _version = get_model(conn, key)
        stages.extend({"key": s.key, "name": s.name} for s in definition.stages)
        return retarget(conn, key, goal=goal or None, start=start, end=end, where=filters.where)

    models, chosen, found = _for_model(page, model, errors, compute)
    shown = None
    if found and found["attributes"]:
        named = [a for a in found["attributes"] if a["attribute"] == attribute]
        shown = named[0] if named else found["attributes"][0]
        if attribute and not named:
            errors["attribute"] = f"no attribute {attribute!r} here; showing the strongest"
    option = shares_option(shown, found["goal_is"]) if found and shown else None
    filters.errors = errors
    return page.render(
        "pages/insights_retarget.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        stages=stages,
        goal=goal or "",
        found=found,
        shown=shown,
        option=option,
        is_admin=page.at_least("admin"),
    )


def frequency_option(found: dict[str, Any]) -> dict[str, Any]:
    return {
        "grid": {"left": 8, "right": 16, "top": 16, "bottom": 8, "containLabel": True},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "data": [f["purchases"] for f in found["frequency"]],
                  "name": "purchases"},
        "yAxis": {"type": "value"},
        "series": [{"type": "bar", "data": [f["buyers"] for f in found["frequency"]],
                    "itemStyle": {"color": BRAND}}],
    }  # fmt: skip


CHARTED_COHORT = 30  # buyers a cohort needs to be drawn (the table lists every cohort)


def repeat_option(found: dict[str, Any]) -> dict[str, Any]:
    longest = max((len(c["repeat_by_month"]) for c in found["repeat_curves"]), default=0)
    drawn = [c for c in found["repeat_curves"] if c["buyers"] >= CHARTED_COHORT]
    return {
        "grid": {"left": 8, "right": 16, "top": 36, "bottom": 8, "containLabel": True},
        "legend": {"top": 0, "type": "scroll"},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "category", "data": list(range(longest)),
                  "name": "months after the first purchase"},
        "yAxis": {"type": "value", "axisLabel": {"formatter": "{value} %"}},
        "series": [
            {"type": "line", "name": c["cohort"],
             "data": [round(100 * v, 1) for v in c["repeat_by_month"]]}
            for c in drawn or found["repeat_curves"]
        ],
    }  # fmt: skip


@router.get("/insights/purchases", response_class=HTMLResponse)
def purchases_page(
    page: PageCtx, event: str = PURCHASE_EVENT, amount: str = AMOUNT
) -> HTMLResponse:
    filters, errors, start, end = _filtered(page)
    project = page.state.project
    found: dict[str, Any] | None = None
    event, amount = event.strip()[:200], amount.strip()[:200]
    if not event:
        errors["event"] = "name the purchase event"
    if not amount:
        errors["amount"] = "name the property that holds the amount"
    if "event" not in errors and "amount" not in errors:
        try:
            with project.engine.connect() as conn:
                where = filters.where
                among = set(conn.execute(segment_members(where)).scalars()) if where else None
            found = purchase_behaviour(
                project.events, event=event, amount=amount, start=start, end=end, among=among
            )
        except ValueError as exc:
            errors.update(service_errors(exc))
    charts = {}
    if found and found.get("buyers"):
        charts = {"frequency": frequency_option(found), "repeat": repeat_option(found)}
    filters.errors = errors
    return page.render(
        "pages/insights_purchases.html",
        filters=filters,
        errors=errors,
        event=event,
        amount=amount,
        found=found,
        charts=charts,
        charted_cohort=CHARTED_COHORT,
    )


def calibration_option(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Observed against predicted churn per tenth of risk, beside the diagonal a perfectly
    calibrated model would follow."""
    cells = evaluation["calibration"]
    return {
        "grid": {"left": 8, "right": 16, "top": 32, "bottom": 8, "containLabel": True},
        "legend": {"top": 0},
        "tooltip": {"trigger": "item"},
        "xAxis": {"type": "value", "min": 0, "max": 100, "name": "predicted %"},
        "yAxis": {"type": "value", "min": 0, "max": 100, "name": "observed %"},
        "series": [
            {"type": "line", "name": "held-out customers", "itemStyle": {"color": BRAND},
             "data": [[round(100 * c["predicted"], 1), round(100 * c["observed"], 1)]
                      for c in cells]},
            {"type": "line", "name": "perfect calibration", "symbol": "none",
             "lineStyle": {"type": "dashed", "color": MUTED}, "data": [[0, 0], [100, 100]]},
        ],
    }  # fmt: skip


@router.get("/insights/churn", response_class=HTMLResponse)
def churn_page(
    page: PageCtx,
    model: str | None = None,
    offset: int = 0,
    created: int | None = None,
    already: int | None = None,
    error: str = "",
) -> HTMLResponse:
    filters, errors, _start, end = _filtered(page)
    if error == "followups":
        errors["threshold"] = "give a risk between 1 and 99 % and at most 1,000 customers"
    events = page.state.project.events
    offset = max(0, min(offset, 1_000_000))
    models, chosen, found = _for_model(
        page, model, errors,
        lambda conn, key: churn_risk(
            conn, events, key, end=end, where=filters.where, limit=PAGE_SIZE, offset=offset
        ),
    )  # fmt: skip
    option = calibration_option(found["evaluation"]) if found and found["evaluation"] else None
    filters.errors = errors
    return page.render(
        "pages/insights_churn.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        found=found,
        option=option,
        offset=offset,
        page_size=PAGE_SIZE,
        created=created,
        already=already,
        may_follow_up=page.at_least("analyst"),
        is_admin=page.at_least("admin"),
    )


@router.post("/insights/churn/followups", response_class=HTMLResponse)
async def churn_followups_page(page: PageCtx) -> Response:
    """Follow-ups for the most at-risk customers at or above a risk, each for the owner
    of the stage the customer stands in (analysts and admins: members work only their
    own department's items)."""
    page.require("analyst")
    data = await page.form()
    project = page.state.project
    key = data.get("model", "")
    try:
        threshold = float(data.get("threshold", "")) / 100
        limit = int(data.get("limit", ""))
    except ValueError:
        threshold, limit = -1.0, 0
    back = f"/insights/churn?model={quote(key)}"
    if not 0 < threshold < 1 or not 1 <= limit <= 1000:
        return RedirectResponse(f"{back}&error=followups", status_code=303)
    with project.engine.connect() as conn:
        found = churn_risk(conn, project.events, key, limit=limit)
    if found["note"]:
        return RedirectResponse(f"{back}&error=followups", status_code=303)
    made = await written(
        page.state, lambda conn: follow_up_at_risk(conn, found, threshold=threshold)
    )
    return RedirectResponse(
        f"{back}&created={made['created']}&already={made['already_open']}#at-risk",
        status_code=303,
    )


EXAMPLE_RULES = (
    "rules:\n"
    "  - {kind: trait, field: country, value: Spain}\n"
    "  - {kind: event, event: Order Completed, within_days: 30, min_count: 2}\n"
)


def _segments_page(
    page: Page, *, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
    done: str = "", status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    with page.state.project.engine.connect() as conn:
        saved = segments.list_segments(conn)
    return page.render(
        "pages/insights_segments.html",
        saved=saved,
        form=form or {"name": "", "description": "", "match": "all", "rules": EXAMPLE_RULES},
        errors=errors or {},
        done=done,
        may_edit=page.at_least("analyst"),
        status_code=status_code,
    )


@router.get("/insights/segments", response_class=HTMLResponse)
def segments_page(page: PageCtx, done: str = "") -> HTMLResponse:
    return _segments_page(page, done=done[:40])


@router.post("/insights/segments", response_class=HTMLResponse)
async def save_segment_page(page: PageCtx) -> Response:
    """Save a segment from the form: its rules as YAML or JSON, errors next to the field."""
    page.require("analyst")
    data = await page.form()
    form = {k: data.get(k, "") for k in ("name", "description", "match", "rules")}
    errors: dict[str, str] = {}
    try:
        rules = yamltext.load(form["rules"]) or {}
    except yaml.YAMLError as exc:
        rules = None
        errors["rules"] = f"not YAML or JSON: {str(exc).splitlines()[0]}"
    if rules is not None:
        if isinstance(rules, list):
            rules = {"rules": rules}
        if not isinstance(rules, dict):
            errors["rules"] = "give the rules as a list (or a mapping with rules)"
    new = None
    if not errors:
        assert isinstance(rules, dict)
        try:
            new = SegmentIn.model_validate(
                {**rules, "name": form["name"].strip(), "match": form["match"] or "all",
                 "description": form["description"].strip() or None}
            )  # fmt: skip
        except ValidationError as exc:
            for problem in exc.errors():
                where = ".".join(str(p) for p in problem["loc"])
                field = "name" if where.startswith("name") else "rules"
                errors.setdefault(field, f"{where}: {problem['msg']}")
    if new is None:
        return _segments_page(page, form=form, errors=errors, status_code=422)
    events = page.state.project.events
    chosen = new
    try:
        await written(page.state, lambda conn: segments.save_segment(conn, events, chosen))
    except ValueError as exc:
        text = str(exc)
        field = "name" if text.startswith("name:") else "rules"
        return _segments_page(page, form=form, errors={field: text}, status_code=422)
    return RedirectResponse("/insights/segments?done=saved", status_code=303)


@router.post("/insights/segments/{segment_id}/{action}", response_class=HTMLResponse)
async def segment_action_page(page: PageCtx, segment_id: int, action: str) -> Response:
    """Refresh or delete a saved segment."""
    page.require("analyst")
    await page.form()
    if action not in ("refresh", "delete"):
        raise PageForbidden(f"no such action on a segment: {action!r}")
    events = page.state.project.events

    def run(conn: Connection) -> None:
        found = [s for s in segments.list_segments(conn) if s["id"] == segment_id]
        if not found:
            raise ValueError("segment: it was deleted meanwhile")
        if action == "refresh":
            segments.refresh_segment(conn, events, found[0]["name"])
        else:
            segments.delete_segment(conn, found[0]["name"])

    try:
        await written(page.state, run)
    except ValueError as exc:
        return _segments_page(page, errors={"list": str(exc)}, status_code=422)
    done = {"refresh": "refreshed", "delete": "deleted"}[action]
    return RedirectResponse(f"/insights/segments?done={done}", status_code=303)
