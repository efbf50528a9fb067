"""Retention: cohorts by the period of their first start event, and the share of each that
came back period after period, from the same ``RetentionSpec`` as
``POST /api/v1/analytics/retention``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from cxloop.analytics.explore import event_names
from cxloop.analytics.funnel_spec import FunnelStep, SpecRejected
from cxloop.analytics.periods import Interval, RetentionSpec, run_retention
from cxloop.analytics.sql import EngineUnsupported
from cxloop.web.pages.base import Filters, PageCtx

router = APIRouter(include_in_schema=False)

DEFAULT_START, DEFAULT_RETURN = "Order Completed", "Product Used"
PERIODS = {"day": "Day", "week": "Week", "month": "Month"}
RETURNING = {"on": "in that period", "on_or_after": "in that period or later"}
MAX_COHORTS = 60  # the latest cohorts shown; a longer range is narrowed by dates


@dataclass
class RetentionForm:
    start: str = DEFAULT_START
    back: str = DEFAULT_RETURN
    period: str = "month"
    periods: str = "8"
    returning: str = "on"
    filters: Filters = field(default_factory=Filters)
    errors: dict[str, str] = field(default_factory=dict)
    spec: RetentionSpec | None = None

    def query(self) -> str:
        f = self.filters
        return str(
            QueryParams(
                {
                    "start": self.start,
                    "return": self.back,
                    "period": self.period,
                    "periods": self.periods,
                    "returning": self.returning,
                    **({"from": f.first.isoformat()} if f.first else {}),
                    **({"to": f.last.isoformat()} if f.last else {}),
                }
            )
        )


def parse_form(params: QueryParams, filters: Filters) -> RetentionForm:
    """The form's state; opened bare, the demo's buyers coming back to the product."""
    form = RetentionForm(filters=filters)
    form.errors.update({k: v for k, v in filters.errors.items() if k in ("from", "to")})
    if "period" in params:
        form.start = str(params.get("start", "")).strip()[:200]
        form.back = str(params.get("return", "")).strip()[:200]
    period = str(params.get("period", "month"))
    form.period = period if period in PERIODS else "month"
    form.periods = str(params.get("periods", "8")).strip()[:4]
    returning = str(params.get("returning", "on"))
    form.returning = returning if returning in RETURNING else "on"
    if not form.periods.isdigit() or not 1 <= int(form.periods) <= 60:
        form.errors["periods"] = "give a whole number from 1 to 60"
    if form.errors:
        return form
    try:
        form.spec = RetentionSpec(
            start_event=FunnelStep(event=form.start) if form.start else None,
            return_event=FunnelStep(event=form.back) if form.back else None,
            period=cast(Interval, form.period),
            periods=int(form.periods),
            returning="on_or_after" if form.returning == "on_or_after" else "on",
            date_from=filters.first.isoformat() if filters.first else None,
            date_to=filters.last.isoformat() if filters.last else None,
        )
    except ValidationError as exc:
        for problem in exc.errors():
            form.errors.setdefault(_field(str(problem["loc"][0])), problem["msg"])
    return form


def _field(spec_field: str) -> str:
    return {
        "start_event": "start",
        "return_event": "return",
        "date_from": "from",
        "date_to": "to",
    }.get(spec_field.split(".", 1)[0], spec_field)


def _heatmap(cohorts: list[dict[str, Any]], form: RetentionForm) -> dict[str, Any]:
    """Shares of each cohort (0-100) by period; the table beside it has the counts."""
    label = PERIODS[form.period]
    periods = int(form.periods)
    data = [
        [k, n, round(100 * v / c["size"], 1) if c["size"] else 0]
        for n, c in enumerate(cohorts)
        for k, v in enumerate(c["values"])
    ]
    return {
        "animation": False,  # drawn at once: no motion, and screenshots show it whole
        "grid": {"left": 8, "right": 8, "top": 8, "bottom": 56, "containLabel": True},
        "tooltip": {"position": "top"},
        "xAxis": {
            "type": "category",
            "data": [f"{label} {k}" for k in range(periods)],
            "splitArea": {"show": True},
        },
        "yAxis": {
            "type": "category",
            "inverse": True,
            "data": [c["start"] for c in cohorts],
            "splitArea": {"show": True},
        },
        "visualMap": {
            "min": 0,
            "max": 100,
            "calculable": True,
            "orient": "horizontal",
            "left": "center",
            "bottom": 0,
            "text": ["100 %", "0 %"],
            "inRange": {"color": ["#eef4fb", "#0b5cad"]},
        },
        "series": [
            {
                "type": "heatmap",
                "name": "returned (%)",
                "data": data,
                "label": {"show": len(cohorts) <= 24 and periods <= 12, "fontSize": 11},
            }
        ],
    }


@router.get("/retention", response_class=HTMLResponse)
def retention_page(page: PageCtx) -> HTMLResponse:
    params = page.request.query_params
    form = parse_form(params, Filters.parse(page.request))
    project = page.state.project
    result: dict[str, Any] | None = None
    if form.spec is not None:
        try:
            result = run_retention(form.spec, project.events, project.engine, page.zone)
        except SpecRejected as exc:
            for problem in exc.problems:
                form.errors.setdefault(_field(problem.field), problem.message)
        except EngineUnsupported as exc:
            form.errors["start"] = str(exc)
    cohorts = (result or {}).get("cohorts", [])
    shown = cohorts[-MAX_COHORTS:]
    return page.render(
        "pages/retention.html",
        form=form,
        result=result,
        cohorts=shown,
        hidden=len(cohorts) - len(shown),
        heatmap=_heatmap(shown, form) if shown else None,
        names=event_names(project.events),
        period_names=PERIODS,
        returning=RETURNING,
        max_cohorts=MAX_COHORTS,
    )
