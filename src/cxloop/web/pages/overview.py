"""The overview page: the figures a team reads first, from the same report as
``GET /api/v1/overview``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from cxloop.lifecycle.mirror import moves_store
from cxloop.lifecycle.service import list_models
from cxloop.reports.overview import overview
from cxloop.web.pages.base import Filters, PageCtx

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview_page(page: PageCtx, model: str | None = None) -> HTMLResponse:
    filters = Filters.parse(page.request)
    project = page.state.project
    start, end = filters.window(page.zone)
    with project.engine.connect() as conn:
        models = list_models(conn)
        keys = [m["key"] for m in models]
        chosen = model if model in keys else (keys[0] if keys else None)
        figures = overview(
            conn,
            zone=page.zone,
            model=chosen,
            start=start,
            end=end,
            where=filters.where,
            store=moves_store(project.events),
        )
    return page.render(
        "pages/overview.html", filters=filters, figures=figures, models=models, model=chosen
    )
