"""The lifecycle page: how customers flow through a model's stages (a funnel or a sankey),
per stage the report's figures beside the satisfaction measured there and the support
cases still open, and the customers who have stood too long in a stage.

The figures come from ``stage_flow``, the function behind
``GET /api/v1/lifecycle/{key}/report``, and the scores from ``score_report`` (as
``GET /api/v1/feedback/{measure}?by=stage``), called with the same window and segment, so
a number on the page is the API's number.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import Connection

from cxloop.feedback.responses import stage_scores
from cxloop.lifecycle import report, service
from cxloop.lifecycle.mirror import moves_store
from cxloop.service.cases import open_cases_by_stage
from cxloop.web.pages.base import Filters, PageCtx

router = APIRouter(include_in_schema=False)

View = Literal["funnel", "sankey"]
VIEWS: tuple[View, ...] = ("funnel", "sankey")
STALLED_SHOWN = 5  # customers listed per stage; the total is always given
EXITED = "Left the lifecycle"
FILTER_FIELDS = {"from", "to", "segment", "value", "model"}
BRAND, BAD, MUTED = "#0b5cad", "#b00020", "#7b8794"


def model_choices(conn: Connection) -> list[dict[str, Any]]:
    """The installed models' keys and names, for the model field (``list_models`` would
    also count every stage's customers, which the reports count themselves)."""
    return [{"key": m.key, "name": m.name} for m in service.installed_models(conn)]


def choose_model(
    models: list[dict[str, Any]], asked: str | None
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The model the page shows: the one asked for, else the first installed. An unknown
    key is said next to the model field rather than failing the page."""
    if not models:
        return None, {}
    for found in models:
        if found["key"] == asked:
            return found, {}
    if asked:
        return models[0], {"model": f"no lifecycle model {asked!r}; showing {models[0]['name']}"}
    return models[0], {}


def service_errors(exc: Exception) -> dict[str, str]:
    """A service's ``field: reason`` next to the filter it is about. A segment's bad value
    is reported by the segment field's name (``birth_year: …``), so it goes to "value"."""
    text = str(exc.args[0]) if exc.args else str(exc)
    name, sep, reason = text.partition(": ")
    if sep and name in FILTER_FIELDS:
        return {name: reason}
    if sep:
        return {"value": text}
    return {"form": text}


def funnel_option(stages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "animationDuration": 400,
        "tooltip": {"trigger": "item", "formatter": "{b}: {c} entered"},
        "series": [
            {
                "type": "funnel",
                "name": "Entered",
                "sort": "none",
                "left": "5%",
                "width": "90%",
                "min": 0,
                "max": max([s["entered"] for s in stages] + [1]),
                "minSize": "12%",
                "gap": 3,
                "label": {"show": True, "position": "inside", "formatter": "{b}: {c}"},
                "itemStyle": {"color": BRAND, "borderColor": "#fff"},
                "data": [{"name": s["name"], "value": s["entered"]} for s in stages],
            }
        ],
    }


def node_names(stages: list[dict[str, Any]]) -> list[str]:
    """Sankey nodes are known by name: a name two stages share gets its key added."""
    names = [s["name"] for s in stages]
    return [
        f"{name} ({s['key']})" if names.count(name) > 1 or name == EXITED else name
        for name, s in zip(names, stages, strict=True)
    ]


def sankey_option(stages: list[dict[str, Any]]) -> dict[str, Any]:
    """Each stage to the next (those who progressed) and to the exit (those who left)."""
    names = node_names(stages)
    links = []
    for i, stage in enumerate(stages):
        if i + 1 < len(stages) and stage["progressed"]:
            links.append({"source": names[i], "target": names[i + 1], "value": stage["progressed"]})
        if stage["exited"]:
            links.append({"source": names[i], "target": EXITED, "value": stage["exited"]})
    nodes = [{"name": n, "itemStyle": {"color": BRAND}} for n in names]
    if any(s["exited"] for s in stages):
        nodes.append({"name": EXITED, "itemStyle": {"color": BAD}})
    return {
        "animationDuration": 400,
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "type": "sankey",
                "data": nodes,
                "links": links,
                "left": 8,
                "right": 110,
                "nodeGap": 14,
                "emphasis": {"focus": "adjacency"},
                "lineStyle": {"color": "gradient", "opacity": 0.35},
                "label": {"color": "#17212b"},
            }
        ],
    }


@router.get("/lifecycle", response_class=HTMLResponse)
def lifecycle_page(page: PageCtx, model: str | None = None, view: str = "funnel") -> HTMLResponse:
    filters = Filters.parse(page.request)
    errors = dict(filters.errors)
    shown: View = "sankey" if view == "sankey" else "funnel"
    project = page.state.project
    start, end = filters.window(page.zone)
    flow: dict[str, Any] | None = None
    scores: dict[str, dict[str, Any]] = {}
    cases: dict[str, int] = {}
    stalled: list[dict[str, Any]] = []
    with project.engine.connect() as conn:
        models = model_choices(conn)
        chosen, problem = choose_model(models, model)
        errors.update(problem)
        if chosen is not None:
            key = chosen["key"]
            try:
                flow = report.stage_flow(
                    conn, key, start=start, end=end, where=filters.where,
                    store=moves_store(project.events),
                )  # fmt: skip
                scores = stage_scores(
                    conn, key, zone=page.zone, start=start, end=end, where=filters.where
                )
                cases = open_cases_by_stage(conn, key, where=filters.where)
            except ValueError as exc:
                errors.update(service_errors(exc))
                flow = None
            stalled = service.stalled(conn, key, limit=STALLED_SHOWN)
    option: dict[str, Any] | None = None
    if flow is not None and any(s["entered"] for s in flow["stages"]):
        stages = flow["stages"]
        option = sankey_option(stages) if shown == "sankey" else funnel_option(stages)
    filters.errors = errors
    return page.render(
        "pages/lifecycle.html",
        filters=filters,
        errors=errors,
        models=models,
        model=chosen,
        flow=flow,
        scores=scores,
        cases=cases,
        stalled=stalled,
        stalled_shown=STALLED_SHOWN,
        view=shown,
        views=VIEWS,
        option=option,
        is_admin=page.at_least("admin"),
    )
