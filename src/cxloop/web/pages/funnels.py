"""The funnel builder: a GET form (so a funnel is a link to share) that runs the same
``FunnelSpec`` as ``POST /api/v1/analytics/funnel``, the customers who dropped off after a
step, and follow-ups for them.

Rows are added and removed by submitting the form with an ``add``/``remove`` button: the
page re-renders with the rows changed, so no script is needed; the canonical address
(without the button) is what the browser keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import QueryParams

from cxloop.analytics.explore import event_names, segment_customers
from cxloop.analytics.funnel import funnel_customers, run_funnel
from cxloop.analytics.funnel_spec import (
    Attribution,
    Breakdown,
    Exclusion,
    FunnelSpec,
    FunnelStep,
    Order,
    SpecRejected,
)
from cxloop.analytics.sql import EngineUnsupported
from cxloop.lifecycle.service import NotFound, list_departments
from cxloop.service.followups import FollowUpIn, create_followup
from cxloop.web.pages.base import PAGE_SIZE, Filters, Page, PageCtx, PageForbidden
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)

DEFAULT_STEPS = ("Sales Call", "Quote Sent", "Order Completed", "Installation Completed")
DEFAULT_WINDOW = "30"
UNITS = {"m": ("minutes", 60), "h": ("hours", 3600), "d": ("days", 86400)}
ORDERS = {
    "ordered": "In order (other events may come between)",
    "strict": "Strictly in order (nothing in between)",
    "unordered": "In any order",
}
ATTRIBUTIONS = {"first_touch": "first touch", "last_touch": "last touch"}
MAX_STEPS = 10
MAX_EXCLUSIONS = 3
MAX_FOLLOWUPS = 200  # follow-ups one submission may create
SEGMENT_FIELDS = (
    "country", "city", "channel", "gender", "age_band", "income_band", "education",
    "profession", "relationship_status", "plan",
)  # fmt: skip


@dataclass
class ExclusionRow:
    event: str = ""
    first: int = 1  # steps numbered from 1, as people count them
    last: int = 0  # 0: the last step


@dataclass
class FunnelForm:
    """What the builder shows and what it asks: the rows as typed (empty ones kept, so
    an added row stays), the spec built from them, and the problems found."""

    steps: list[str]
    window: str = DEFAULT_WINDOW
    unit: str = "d"
    order: str = "ordered"
    exclusions: list[ExclusionRow] = field(default_factory=list)
    breakdown: str = ""
    breakdown_by: str = "property"
    attribution: str = "first_touch"
    filters: Filters = field(default_factory=Filters)
    errors: dict[str, str] = field(default_factory=dict)
    changed: bool = False  # a row was added or removed: the address is not canonical
    spec: FunnelSpec | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """The form as query parameters, in the order the form sends them."""
        out: list[tuple[str, str]] = [("step", s) for s in self.steps]
        out += [("window", self.window), ("unit", self.unit), ("order", self.order)]
        for row in self.exclusions:
            out += [("exclude", row.event), ("exclude_from", str(row.first)),
                    ("exclude_to", str(row.last))]  # fmt: skip
        if self.breakdown:
            out += [("breakdown", self.breakdown), ("breakdown_by", self.breakdown_by),
                    ("attribution", self.attribution)]  # fmt: skip
        f = self.filters
        for name, value in (
            ("from", f.first.isoformat() if f.first else ""),
            ("to", f.last.isoformat() if f.last else ""),
            ("segment", f.segment_field),
            ("value", f.segment_value),
        ):
            if value:
                out.append((name, value))
        return out

    def query(self, **extra: Any) -> str:
        more = [(k, str(v)) for k, v in extra.items() if v is not None and v != ""]
        return urlencode(self.pairs() + more)


def parse_form(params: QueryParams, request_filters: Filters) -> FunnelForm:
    """The builder's state from a query string; with no steps at all, the defaults (so the
    page opened bare shows a funnel of the demo's sales)."""
    fresh = "step" not in params
    steps = list(DEFAULT_STEPS) if fresh else [s.strip()[:200] for s in params.getlist("step")]
    form = FunnelForm(steps=steps[:MAX_STEPS], filters=request_filters)
    form.errors.update(request_filters.errors)
    if not fresh:
        form.window = str(params.get("window", "")).strip()[:12]
    unit = str(params.get("unit", "d"))
    form.unit = unit if unit in UNITS else "d"
    order = str(params.get("order", "ordered"))
    form.order = order if order in ORDERS else "ordered"
    events = params.getlist("exclude")[:MAX_EXCLUSIONS]
    firsts, lasts = params.getlist("exclude_from"), params.getlist("exclude_to")
    for n, event in enumerate(events):
        form.exclusions.append(
            ExclusionRow(event.strip()[:200], _int(firsts, n, 1), _int(lasts, n, 0))
        )
    form.breakdown = str(params.get("breakdown", "")).strip()[:200]
    by = str(params.get("breakdown_by", "property"))
    form.breakdown_by = by if by in ("property", "trait", "segment") else "property"
    attribution = str(params.get("attribution", "first_touch"))
    form.attribution = attribution if attribution in ATTRIBUTIONS else "first_touch"
    _apply_buttons(form, params)
    form.spec = _spec(form)
    return form


def _int(values: list[str], n: int, default: int) -> int:
    try:
        return int(values[n])
    except (IndexError, ValueError):
        return default


def _apply_buttons(form: FunnelForm, params: QueryParams) -> None:
    add, remove = str(params.get("add", "")), str(params.get("remove", ""))
    if add == "step" and len(form.steps) < MAX_STEPS:
        form.steps.append("")
    elif add == "exclusion" and len(form.exclusions) < MAX_EXCLUSIONS:
        form.exclusions.append(ExclusionRow())
    elif remove.startswith("step-") and remove[5:].isdigit():
        k = int(remove[5:])
        if 0 <= k < len(form.steps):
            del form.steps[k]
    elif remove.startswith("exclusion-") and remove[10:].isdigit():
        k = int(remove[10:])
        if 0 <= k < len(form.exclusions):
            del form.exclusions[k]
    form.changed = bool(add or remove)


def _spec(form: FunnelForm) -> FunnelSpec | None:
    """The spec the form asks for, or None with the problems in ``form.errors``."""
    window_seconds: int | None = None
    if form.window:
        if not form.window.isdigit() or int(form.window) < 1:
            form.errors["window"] = "give a whole number of at least 1"
        else:
            window_seconds = int(form.window) * UNITS[form.unit][1]
    if form.errors:
        return None
    steps = [s for s in form.steps if s]
    f = form.filters
    try:
        exclusions = []
        for row in form.exclusions:
            if row.event:
                last = (row.last if row.last > 0 else len(steps)) - 1
                first, to = max(row.first - 1, 0), last if last >= 1 else None
                exclusions.append(Exclusion(event=row.event, from_step=first, to_step=to))
        breakdown = None
        if form.breakdown and form.breakdown_by == "property":
            attribution = cast(Attribution, form.attribution)
            breakdown = Breakdown(property=form.breakdown, attribution=attribution)
        elif form.breakdown and form.breakdown_by == "segment":
            breakdown = Breakdown(segment=form.breakdown)
        elif form.breakdown:
            breakdown = Breakdown(trait=form.breakdown)
        return FunnelSpec(
            steps=tuple(FunnelStep(event=s) for s in steps),
            window_seconds=window_seconds,
            order=cast(Order, form.order),
            exclusions=tuple(exclusions),
            breakdown=breakdown,
            date_from=f.first.isoformat() if f.first else None,
            date_to=f.last.isoformat() if f.last else None,
        )
    except ValidationError as exc:
        # Shapes the form cannot send (it caps lengths); said next to the nearest field.
        for problem in exc.errors():
            loc = [str(part) for part in problem["loc"]] or ["steps"]
            owner = {"FunnelStep": "steps", "Exclusion": "exclude", "Breakdown": "breakdown"}
            form.errors.setdefault(_field(owner.get(exc.title, loc[0])), problem["msg"])
        return None


def _field(spec_field: str) -> str:
    """The form field a spec's field stands for."""
    head = spec_field.split(".", 1)[0].split("[", 1)[0]
    return {
        "window_seconds": "window",
        "date_from": "from",
        "date_to": "to",
        "exclusions": "exclude",
    }.get(head, head)


def _rejected(form: FunnelForm, exc: SpecRejected) -> None:
    for problem in exc.problems:
        form.errors.setdefault(_field(problem.field), problem.message)


@dataclass
class FollowUpForm:
    department: str = ""
    summary: str = ""
    assignee: str = ""
    scope: str = "page"
    errors: dict[str, str] = field(default_factory=dict)


def _dropped_step(params: QueryParams, form: FunnelForm) -> tuple[int | None, str]:
    """The step (numbered from 1) whose drop-offs are listed, if one was asked for, or
    why the one asked for is not a step to drop off after."""
    text = str(params.get("dropped", "")).strip()
    if not text:
        return None, ""
    n_steps = len(form.spec.steps) if form.spec else 0
    if not text.isdigit() or not 1 <= int(text) < n_steps:
        return None, f"choose a step between 1 and {max(n_steps - 1, 1)} to list who dropped off"
    return int(text), ""


def _offset(params: QueryParams) -> int:
    text = str(params.get("offset", "0"))
    return max(int(text), 0) if text.isdigit() else 0


def _funnel_page(
    page: Page,
    params: QueryParams,
    followup: FollowUpForm | None = None,
    status_code: int = 200,
) -> Response:
    form = parse_form(params, _filters(params))
    project = page.state.project
    result: dict[str, Any] | None = None
    dropped, dropped_error = _dropped_step(params, form)
    offset = _offset(params)
    people: dict[str, Any] | None = None
    among = None
    if form.spec is not None:
        try:
            among = segment_customers(project.engine, form.filters.where)
        except ValueError as exc:
            form.errors["value"] = str(exc).split(": ", 1)[-1]
    if form.spec is not None and not form.errors:
        try:
            result = run_funnel(form.spec, project.events, project.engine, page.zone, among=among)
            if dropped is not None:
                people = funnel_customers(
                    form.spec, project.events, project.engine, page.zone, among=among,
                    step=dropped - 1, outcome="dropped", limit=PAGE_SIZE, offset=offset,
                )  # fmt: skip
        except SpecRejected as exc:
            _rejected(form, exc)
            result = people = None
        except EngineUnsupported as exc:
            form.errors["steps"] = str(exc)
    departments: list[dict[str, Any]] = []
    if people is not None:
        with project.engine.connect() as conn:
            departments = list_departments(conn)
    workable = [d["name"] for d in departments if page.principal.may_work(d["name"])]
    if followup is None and dropped is not None and form.spec is not None:
        steps = form.spec.steps
        followup = FollowUpForm(
            department=page.principal.department or (workable[0] if workable else ""),
            summary=(
                f"Funnel drop-off: reached step {dropped} ({steps[dropped - 1].event}) "
                f"but not step {dropped + 1} ({steps[dropped].event})"
            ),
        )
    response = page.render(
        "pages/funnels.html",
        status_code=status_code,
        form=form,
        result=result,
        chart_option=_chart(result) if result else None,
        names=event_names(project.events),
        orders=ORDERS,
        units=UNITS,
        attributions=ATTRIBUTIONS,
        segment_fields=SEGMENT_FIELDS,
        max_steps=MAX_STEPS,
        max_exclusions=MAX_EXCLUSIONS,
        max_followups=MAX_FOLLOWUPS,
        dropped=dropped,
        dropped_error=dropped_error,
        offset=offset,
        people=people,
        page_size=PAGE_SIZE,
        workable=workable,
        followup=followup,
        created=str(params.get("created", "")),
        created_for=str(params.get("for", "")),
    )
    if form.changed:
        # The rows changed: the address to keep is the form's, not the button's.
        response.headers["HX-Push-Url"] = f"/funnels?{form.query()}"
    return response


def _filters(params: QueryParams) -> Filters:
    """The date range and segment, read as ``Filters.parse`` reads a request's (a posted
    form carries the funnel's query string in a field)."""
    scope = {"type": "http", "query_string": str(params).encode(), "headers": []}
    return Filters.parse(Request(scope))


def _chart(result: dict[str, Any]) -> dict[str, Any]:
    """Horizontal bars, first step on top: long event names stay readable on a phone."""
    steps = result["steps"]
    return {
        "animation": False,  # drawn at once: no motion, and screenshots show it whole
        "grid": {"left": 8, "right": 56, "top": 8, "bottom": 8, "containLabel": True},
        "tooltip": {"trigger": "axis", "axisPointer": {"type": "shadow"}},
        "yAxis": {
            "type": "category",
            "inverse": True,
            "data": [f"{n + 1}. {s['name']}" for n, s in enumerate(steps)],
            "axisLabel": {"width": 150, "overflow": "truncate"},
        },
        "xAxis": {
            "type": "value",
            "name": "customers",
            "nameLocation": "middle",
            "nameGap": 24,
            "axisLabel": {"hideOverlap": True},
        },
        "series": [
            {
                "type": "bar",
                "name": "customers",
                "data": [s["count"] for s in steps],
                "itemStyle": {"color": "#0b5cad"},
                "label": {"show": True, "position": "right"},
                "barMaxWidth": 36,
            }
        ],
    }


@router.get("/funnels", response_class=HTMLResponse)
def funnels_page(page: PageCtx) -> Response:
    params = page.request.query_params
    if ("add" in params or "remove" in params) and not page.request.headers.get("HX-Request"):
        # Without htmx the button's page is served at the canonical address.
        form = parse_form(params, _filters(params))
        extra = {k: params.get(k) for k in ("dropped",) if params.get(k)}
        return RedirectResponse(f"/funnels?{form.query(**extra)}", status_code=303)
    return _funnel_page(page, params)


@router.post("/funnels/followups", response_class=HTMLResponse)
async def funnel_followups(page: PageCtx) -> Response:
    """Follow-ups for the customers who dropped off after a step: those on the page shown,
    or all of them up to ``MAX_FOLLOWUPS``."""
    data = await page.form()
    params = QueryParams(data.get("q", ""))
    department = data.get("department", "").strip()
    if not page.principal.may_work(department or None):
        raise PageForbidden(
            f"a member creates follow-ups only for its own department "
            f"({page.principal.department or 'none'}), not for {department or 'no department'}"
        )
    followup = FollowUpForm(
        department=department,
        summary=data.get("summary", ""),
        assignee=data.get("assignee", ""),
        scope="all" if data.get("scope") == "all" else "page",
    )
    form = parse_form(params, _filters(params))
    dropped, _ = _dropped_step(params, form)
    if not department:
        followup.errors["department"] = "choose the department that follows up"
    if not followup.summary.strip():
        followup.errors["summary"] = "say what needs doing"
    try:
        FollowUpIn(
            customer="0", summary=followup.summary, department=department or None,
            assignee=followup.assignee.strip() or None,
        )  # fmt: skip
    except ValidationError as exc:
        for problem in exc.errors():
            followup.errors.setdefault(str(problem["loc"][0]), problem["msg"])
    if form.spec is None or dropped is None:
        followup.errors.setdefault("form", "the funnel or its step is not valid any more")
    if followup.errors:
        return _funnel_page(page, params, followup, status_code=422)
    assert form.spec is not None and dropped is not None
    project = page.state.project
    among = segment_customers(project.engine, form.filters.where)
    limit, offset = (MAX_FOLLOWUPS, 0) if followup.scope == "all" else (PAGE_SIZE, _offset(params))
    try:
        people = funnel_customers(
            form.spec, project.events, project.engine, page.zone, among=among,
            step=dropped - 1, outcome="dropped", limit=limit, offset=offset,
        )  # fmt: skip
    except SpecRejected as exc:
        followup.errors["form"] = str(exc)
        return _funnel_page(page, params, followup, status_code=422)
    ids = [c["id"] for c in people["customers"]]
    summary, assignee = followup.summary.strip(), followup.assignee.strip() or None
    entries = [
        FollowUpIn(customer=str(c), summary=summary, department=department, assignee=assignee)
        for c in ids
    ]

    def write(conn: Any) -> int:
        for entry in entries:
            create_followup(conn, entry)
        return len(entries)

    try:
        made = await written(page.state, write)
    except NotFound as exc:
        followup.errors[exc.field] = exc.reason
        return _funnel_page(page, params, followup, status_code=422)
    except ValueError as exc:
        followup.errors["summary"] = str(exc).split(": ", 1)[-1]
        return _funnel_page(page, params, followup, status_code=422)
    back = form.query(dropped=dropped, offset=_offset(params) or None, created=made,
                      **{"for": department})  # fmt: skip
    return RedirectResponse(f"/funnels?{back}#dropped", status_code=303)
