"""Cases and follow-ups: each department's work list, the figures that say how well the
loop is closed, and the actions that close it (assign, change status, resolve with a note).

Reads and writes go through the same services as ``/api/v1/followups`` and
``/api/v1/cases``, with the same department rule: everyone reads every department's
items, a member changes only its own department's (checked on the server; the page also
hides the controls), analysts and admins change any.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pydantic
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from cxloop.customers.service import customer_labels
from cxloop.lifecycle import service as lifecycle
from cxloop.service import cases, followups
from cxloop.web.pages.base import PAGE_SIZE, Page, PageCtx, PageForbidden
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)

TABS = {"followups": "Follow-ups", "cases": "Cases"}
ACTIVE = "active"  # open and in progress: what still needs someone


def _status_labels(statuses: tuple[str, ...]) -> dict[str, str]:
    return {
        ACTIVE: "Open or in progress",
        **{s: s.replace("_", " ") for s in statuses},
        "all": "Any status",
    }


FOLLOWUP_STATUSES = _status_labels(followups.STATUSES)
CASE_STATUSES = _status_labels(cases.STATUSES)
ALL = "all"
KEPT = ("tab", "department", "status", "overdue", "offset")  # the inbox's own query string


def _statuses(tab: str, chosen: str) -> tuple[str, ...]:
    known = followups.STATUSES if tab == "followups" else cases.STATUSES
    if chosen == ALL:
        return known
    if chosen == ACTIVE:
        return tuple(s for s in known if s in ("open", "in_progress"))
    return (chosen,)


def _params(raw: Mapping[str, str], page: Page, departments: list[str]) -> dict[str, Any]:
    """The inbox's filters from a query string, each one checked; the department defaults
    to the user's own, else every department."""
    tab = raw.get("tab", "followups")
    tab = tab if tab in TABS else "followups"
    names = {d.lower(): d for d in departments}
    mine = names.get((page.user.department or "").lower())
    department = raw.get("department", "").strip()
    if department != ALL:
        department = names.get(department.lower(), "") or (mine or ALL)
    statuses = FOLLOWUP_STATUSES if tab == "followups" else CASE_STATUSES
    status = raw.get("status", ACTIVE)
    status = status if status in statuses else ACTIVE
    try:
        offset = max(0, int(raw.get("offset", "0") or 0))
    except ValueError:
        offset = 0
    overdue = tab == "followups" and raw.get("overdue", "") in ("1", "on", "true")
    return {
        "tab": tab,
        "department": department,
        "status": status,
        "overdue": overdue,
        "offset": offset,
    }


def _query(params: Mapping[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    pairs = {
        "tab": merged["tab"],
        "department": merged["department"],
        "status": merged["status"] if merged["status"] != ACTIVE else "",
        "overdue": "1" if merged["overdue"] else "",
        "offset": merged["offset"] or "",
    }
    return urlencode({k: v for k, v in pairs.items() if v not in ("", None)})


NO_FOLLOWUPS = {"open": 0, "in_progress": 0, "done": 0, "overdue": 0, "median_hours_to_close": None}
NO_CASES = {
    "cases": 0,
    "open": 0,
    "resolved": 0,
    "positive_resolution_rate": None,
    "median_hours_to_resolution": None,
}
NO_DETRACTORS = {"detractors": 0, "detractors_followed_up": 0, "detractors_followed_up_share": None}


def _metrics(conn: Connection, departments: list[str]) -> list[dict[str, Any]]:
    """One row per department (and one for items with no department, when there are
    any): follow-up and case figures side by side."""
    shown = followups.followup_metrics(conn)
    by_followups = {d["department"]: d for d in shown["departments"]}
    case_figures = cases.case_figures_by_department(conn)
    by_cases = {d["department"]: d for d in case_figures["departments"]}
    detractors = followups.detractors_by_department(conn)
    names: list[str | None] = list(departments)
    if None in by_followups or None in by_cases:
        names.append(None)
    return [
        {
            "department": name,
            "followups": by_followups.get(name, NO_FOLLOWUPS),
            "cases": by_cases.get(name, NO_CASES),
            "detractors": detractors.get(name, NO_DETRACTORS),
        }
        for name in names
    ] + [
        {
            "department": ALL,
            "followups": shown,
            "cases": case_figures,
            "detractors": shown,
        }
    ]


def _inbox(
    page: Page,
    raw: Mapping[str, str],
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    open_item: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        known = lifecycle.list_departments(conn)
        departments = [d["name"] for d in known]
        params = _params(raw, page, departments)
        department = None if params["department"] == ALL else params["department"]
        statuses = _statuses(params["tab"], params["status"])
        if params["tab"] == "followups":
            items, total = followups.followups_page(
                conn, statuses=statuses, department=department, overdue=params["overdue"],
                limit=PAGE_SIZE, offset=params["offset"],
            )  # fmt: skip
        else:
            items, total = cases.cases_page(
                conn, statuses=statuses, department=department,
                limit=PAGE_SIZE, offset=params["offset"],
            )  # fmt: skip
        labels = customer_labels(conn, [i["customer_id"] for i in items])
        metrics = _metrics(conn, departments)
    for item in items:
        item["customer"] = labels.get(item["customer_id"], f"#{item['customer_id']}")
        item["may_work"] = page.principal.may_work(item["department"])
    chosen = next(m for m in metrics if m["department"] == params["department"])
    short = "fu" if params["tab"] == "followups" else "case"
    alert = None
    if errors and not any(open_item == f"{short}{i['id']}-" for i in items):
        alert = "Not saved: " + "; ".join(errors.values())  # the item is not on this page
    return page.render(
        "pages/inbox.html",
        status_code=status_code,
        params=params,
        tabs=TABS,
        statuses=FOLLOWUP_STATUSES if params["tab"] == "followups" else CASE_STATUSES,
        followup_statuses=followups.STATUSES,
        departments=departments,
        sla={d["name"]: d["followup_sla_hours"] for d in known},
        items=items,
        total=total,
        limit=PAGE_SIZE,
        metrics=metrics,
        chosen=chosen,
        query=_query(params, offset=0),
        back=_query(params),
        tab_query={t: _query(params, tab=t, status=ACTIVE, offset=0) for t in TABS},
        errors=errors or {},
        typed=typed or {},
        open_item=open_item,
        notice=notice,
        alert=alert,
        me=page.user.name or page.user.email,
    )


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(page: PageCtx) -> HTMLResponse:
    q = page.request.query_params
    saved = q.get("saved", "")
    kind, _, number = saved.partition("-")
    notice = None
    if kind in ("followup", "case") and number.isdigit():
        notice = f"{'Follow-up' if kind == 'followup' else 'Case'} #{number} saved."
    return _inbox(page, dict(q), notice=notice)


def _back(data: Mapping[str, str]) -> dict[str, str]:
    """The inbox filters the form was posted from (only the inbox's own parameters)."""
    return {k: v for k, v in parse_qsl(data.get("back", "")) if k in KEPT}


def _field(exc: Exception, known: tuple[str, ...], fallback: str) -> tuple[str, str]:
    """The form field a service's message is about (``field: message``) and the message."""
    if isinstance(exc, pydantic.ValidationError):
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else fallback
        return (name if name in known else fallback), str(first["msg"])
    name, _, message = str(exc).partition(": ")
    return (name, message) if name in known and message else (fallback, str(exc))


async def _act(
    page: Page,
    kind: str,
    item_id: int,
    data: dict[str, str],
    fields: Callable[[], dict[str, Any]],
    known: tuple[str, ...],
    fallback: str,
) -> Response:
    """Check the department, apply the change on the one writer, and go back to the
    inbox (303); a refused change shows the inbox again with the message at the field."""
    principal = page.principal
    back = _back(data)
    prefix = f"{'fu' if kind == 'followup' else 'case'}{item_id}-"
    getter: Callable[[Connection, int], dict[str, Any]]
    getter = followups.get_followup if kind == "followup" else cases.get_case

    def write(conn: Connection) -> dict[str, Any]:
        department = getter(conn, item_id)["department"]
        if not principal.may_work(department):
            raise PageForbidden(
                f"A member changes only the cases and follow-ups of its own department "
                f"({principal.department or 'none'}); this one belongs to "
                f"{department or 'no department'}."
            )
        if kind == "followup":
            return followups.update_followup(conn, item_id, followups.FollowUpUpdate(**fields()))
        return cases.update_case(conn, item_id, cases.CaseUpdate(**fields()))

    try:
        await written(page.state, write)
    except lifecycle.NotFound as exc:
        if exc.field in ("followup", "case"):
            return page.render(
                "pages/error.html", status_code=404, title="Not found", message=str(exc.reason)
            )
        return _refused(page, back, prefix, data, *_field(exc, known, fallback))
    except (pydantic.ValidationError, ValueError) as exc:
        return _refused(page, back, prefix, data, *_field(exc, known, fallback))
    target = urlencode({**back, "saved": f"{kind}-{item_id}"})
    return RedirectResponse(f"/inbox?{target}#{prefix}item", status_code=303)


def _refused(
    page: Page, back: dict[str, str], prefix: str, data: Mapping[str, str], name: str, text: str
) -> HTMLResponse:
    """The inbox again, the item's form open with what was typed and the message at the
    field it is about."""
    typed = {
        prefix + k: v for k, v in data.items() if k in ("assignee", "status", "note", "outcome")
    }
    return _inbox(page, back, errors={prefix + name: text}, typed=typed, open_item=prefix,
                  status_code=422)  # fmt: skip


def _assignee(data: Mapping[str, str]) -> str:
    """Who to assign to; assigning nobody is refused here, since the services would read
    it as taking the assignee away (and a case would still move to in progress)."""
    name = data.get("assignee", "").strip()
    if not name:
        raise _Refused("assignee", "give the name or e-mail of who takes this on")
    return name


class _Refused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")


@router.post("/inbox/followups/{followup_id}", response_class=HTMLResponse)
async def work_followup(page: PageCtx, followup_id: int) -> Response:
    """``action=assign`` (assignee), ``action=unassign`` or ``action=status`` (status, and
    the resolution note that ``done`` needs)."""
    data = await page.form()
    action = data.get("action")
    assign = action in ("assign", "unassign")

    def fields() -> dict[str, Any]:
        if action == "unassign":
            return {"unassign": True}
        if assign:
            return {"assignee": _assignee(data)}
        note = data.get("note", "").strip()
        return {"status": data.get("status", ""), **({"note": note} if note else {})}

    known = ("assignee", "status", "note")
    return await _act(
        page, "followup", followup_id, data, fields, known, "assignee" if assign else "status"
    )


@router.post("/inbox/cases/{case_id}", response_class=HTMLResponse)
async def work_case(page: PageCtx, case_id: int) -> Response:
    """``action=assign`` (assignee), ``action=unassign``, ``action=respond`` (first
    response now) or ``action=resolve`` (outcome, and a resolution note)."""
    data = await page.form()
    action = data.get("action", "assign")

    def fields() -> dict[str, Any]:
        if action == "unassign":
            return {"unassign": True}
        if action == "respond":
            return {"responded": True}
        if action == "resolve":
            if not data.get("outcome"):
                raise _Refused("outcome", "choose whether the case ended positive or negative")
            note = data.get("note", "").strip()
            return {"outcome": data.get("outcome", ""), **({"note": note} if note else {})}
        return {"assignee": _assignee(data)}

    known = ("assignee", "outcome", "note")
    return await _act(
        page, "case", case_id, data, fields, known, "outcome" if action == "resolve" else "assignee"
    )
