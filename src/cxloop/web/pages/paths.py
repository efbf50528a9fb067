"""Paths: what customers do right after (or before) an event, as a sankey of the most
common paths and a table of them, from the same ``PathsSpec`` as
``POST /api/v1/analytics/paths``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from cxloop.analytics.explore import event_names
from cxloop.analytics.funnel_spec import FunnelStep, SpecRejected
from cxloop.analytics.paths import EXIT, START, PathsSpec, run_paths
from cxloop.analytics.sql import EngineUnsupported
from cxloop.web.pages.base import Filters, PageCtx

router = APIRouter(include_in_schema=False)

DEFAULT_EVENT = "Quote Sent"
DIRECTIONS = {"after": "what came next", "before": "what came before"}
MARKERS = {EXIT: "(left)", START: "(first seen)"}
MINUS = "\u2212"
PER_DEPTH = 5  # events shown per step in the table of steps


@dataclass
class PathsForm:
    event: str = DEFAULT_EVENT
    direction: str = "after"
    depth: str = "3"
    limit: str = "20"
    collapse: str = "yes"
    filters: Filters = field(default_factory=Filters)
    errors: dict[str, str] = field(default_factory=dict)
    spec: PathsSpec | None = None


def parse_form(params: QueryParams, filters: Filters) -> PathsForm:
    """The form's state; opened bare, what the demo's customers do after a quote."""
    form = PathsForm(filters=filters)
    form.errors.update({k: v for k, v in filters.errors.items() if k in ("from", "to")})
    if "event" in params:
        form.event = str(params.get("event", "")).strip()[:200]
    direction = str(params.get("direction", "after"))
    form.direction = direction if direction in DIRECTIONS else "after"
    form.depth = str(params.get("depth", "3")).strip()[:3]
    form.limit = str(params.get("limit", "20")).strip()[:4]
    form.collapse = "no" if params.get("collapse") == "no" else "yes"
    if not form.event:
        form.errors["event"] = "name the event the paths start (or end) at"
    if not form.depth.isdigit() or not 1 <= int(form.depth) <= 5:
        form.errors["depth"] = "give a whole number from 1 to 5"
    if not form.limit.isdigit() or not 1 <= int(form.limit) <= 200:
        form.errors["limit"] = "give a whole number from 1 to 200"
    if form.errors:
        return form
    try:
        form.spec = PathsSpec(
            event=FunnelStep(event=form.event),
            direction="before" if form.direction == "before" else "after",
            depth=int(form.depth),
            limit=int(form.limit),
            collapse_repeats=form.collapse == "yes",
            date_from=filters.first.isoformat() if filters.first else None,
            date_to=filters.last.isoformat() if filters.last else None,
        )
    except ValidationError as exc:
        for problem in exc.errors():
            form.errors.setdefault(_field(str(problem["loc"][0])), problem["msg"])
    return form


def _field(spec_field: str) -> str:
    return {"date_from": "from", "date_to": "to"}.get(spec_field.split(".", 1)[0], spec_field)


def shown(name: str) -> str:
    """An event's name as people read it; the ends of paths in words."""
    return MARKERS.get(name, name)


def _node(path: list[str], at: int, after: bool) -> str:
    """A sankey node: the same event at another step is another node (a sankey has no
    cycles), so each name carries its distance from the anchor."""
    distance = at if after else len(path) - 1 - at
    name = shown(path[at])
    if distance == 0:
        return name
    sign = "+" if after else MINUS
    return f"{sign}{distance} {name}"


def flows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Customers along each link of the paths shown, in path order."""
    after = result["direction"] == "after"
    links: dict[tuple[str, str], int] = {}
    for item in result["paths"]:
        path = item["path"]
        for at in range(len(path) - 1):
            key = (_node(path, at, after), _node(path, at + 1, after))
            links[key] = links.get(key, 0) + item["customers"]
    return [{"source": s, "target": t, "value": v} for (s, t), v in links.items()]


def _sankey(links: list[dict[str, Any]]) -> dict[str, Any]:
    names = list(dict.fromkeys(n for link in links for n in (link["source"], link["target"])))
    return {
        "animation": False,  # drawn at once: no motion, and screenshots show it whole
        "tooltip": {"trigger": "item"},
        "series": [
            {
                "type": "sankey",
                "data": [{"name": n} for n in names],
                "links": links,
                "left": 8,
                "right": 160,
                "top": 8,
                "bottom": 8,
                "nodeGap": 10,
                "nodeAlign": "left",
                "emphasis": {"focus": "adjacency"},
                "lineStyle": {"color": "gradient", "curveness": 0.5, "opacity": 0.35},
                "label": {"fontSize": 12},
            }
        ],
    }


@router.get("/paths", response_class=HTMLResponse)
def paths_page(page: PageCtx) -> HTMLResponse:
    form = parse_form(page.request.query_params, Filters.parse(page.request))
    project = page.state.project
    result: dict[str, Any] | None = None
    if form.spec is not None:
        try:
            result = run_paths(form.spec, project.events, page.zone)
        except SpecRejected as exc:
            for problem in exc.problems:
                form.errors.setdefault(_field(problem.field), problem.message)
        except EngineUnsupported as exc:
            form.errors["event"] = str(exc)
    links = flows(result) if result else []
    return page.render(
        "pages/paths.html",
        form=form,
        result=result,
        links=links,
        sankey=_sankey(links) if links else None,
        names=event_names(project.events),
        directions=DIRECTIONS,
        shown=shown,
        per_depth=PER_DEPTH,
    )
