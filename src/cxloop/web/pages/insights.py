"""The insights pages. Gaps: a lifecycle model's stages ranked by how badly they fail their
customers, each with its owner, its figures, the sample sizes and the parts of its score.

The page calls ``stage_gaps``, the function behind ``GET /api/v1/insights/gaps/{model}``,
with the same window and segment, so a number on the page is the API's number.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from cxloop.insights.gaps import MIN_SAMPLE, PARTS, stage_gaps
from cxloop.lifecycle.mirror import moves_store
from cxloop.web.pages.base import Filters, PageCtx
from cxloop.web.pages.lifecycle import choose_model, model_choices, service_errors

router = APIRouter(include_in_schema=False)
BRAND, MUTED = "#0b5cad", "#7b8794"


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
    filters = Filters.parse(page.request)
    errors = dict(filters.errors)
    project = page.state.project
    start, end = filters.window(page.zone)
    found: dict[str, Any] | None = None
    with project.engine.connect() as conn:
        models = model_choices(conn)
        chosen, problem = choose_model(models, model)
        errors.update(problem)
        if chosen is not None:
            try:
                found = stage_gaps(
                    conn, chosen["key"], start=start, end=end, where=filters.where,
                    zone=page.zone, store=moves_store(project.events),
                )  # fmt: skip
            except ValueError as exc:
                errors.update(service_errors(exc))
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
