"""The customer list and the customer profile: who the customers are, where each stands in
every lifecycle, what they said, and one timeline of everything that happened to them,
where any department leaves a note.

The list and the profile read the same services as ``GET /api/v1/customers``,
``GET /api/v1/customers/{ref}`` and ``GET /api/v1/customers/{ref}/timeline``, so a
person and a script see the same customer. Every list is one page (50 rows) with a count.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pydantic
from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import QueryParams

from cxloop.customers import service
from cxloop.customers.schemas import CustomerPage
from cxloop.domain.values import parse_pairs
from cxloop.lifecycle import service as lifecycle
from cxloop.lifecycle.schemas import with_stages
from cxloop.service.timeline import KINDS, NoteIn, add_note, customer_scores, timeline
from cxloop.web.pages.base import PAGE_SIZE, PageCtx
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)

SORT_LABELS = {
    "-last_seen": "Last seen, newest first",
    "last_seen": "Last seen, oldest first",
    "-first_seen": "First seen, newest first",
    "first_seen": "First seen, oldest first",
    "id": "Id, lowest first",
    "-id": "Id, highest first",
}
# Fields offered as pick lists (few values each); ``city`` is typed; the rest of
# ``service.FILTER_FIELDS`` work from the address bar, as on the API.
PICKED = ("country", "channel", "gender", "income_band", "age_band")
TYPED = ("city",)
KIND_LABELS = {
    "event": "Events",
    "stage": "Stage changes",
    "response": "Survey answers",
    "case": "Cases",
    "followup": "Follow-ups",
    "note": "Notes",
}
PROFILE_FIELDS = (
    "gender",
    "birth_year",
    "age_band",
    "education",
    "profession",
    "relationship_status",
    "income_band",
    "city",
    "region",
    "country",
    "channel",
)


def _offset(text: str | None) -> int:
    try:
        return max(0, int(text or 0))
    except ValueError:
        return 0


@router.get("/customers", response_class=HTMLResponse)
def customers_page(page: PageCtx) -> HTMLResponse:
    q = page.request.query_params
    errors: dict[str, str] = {}
    search = q.get("q", "").strip()[:200]
    filters = {f: q[f].strip()[:200] for f in service.FILTER_FIELDS if q.get(f, "").strip()}
    if "birth_year" in filters and not filters["birth_year"].isdigit():
        errors["birth_year"] = f"{filters.pop('birth_year')!r} is not a year"
    trait_text = q.get("trait", "").strip()[:300]
    traits: dict[str, str] = {}
    if trait_text:
        try:
            traits = parse_pairs([trait_text], "trait")
        except ValueError as exc:
            errors["trait"] = str(exc).partition(": ")[2]
    sort = q.get("sort", "-last_seen")
    if sort not in SORT_LABELS:
        errors["sort"] = f"choose one of the listed orders, not {sort!r}"
        sort = "-last_seen"
    offset = _offset(q.get("offset"))
    stage_text = q.get("stage", "").strip()
    with page.state.project.engine.connect() as conn:
        installed = lifecycle.installed_with_ids(conn)
        model_ids = {m.key: (i, m) for i, m in installed}
        chosen_stage: tuple[int, str] | None = None
        if stage_text:
            key, _, stage = stage_text.partition(":")
            found = model_ids.get(key)
            if found is None or stage not in {s.key for s in found[1].stages}:
                errors["stage"] = f"no stage {stage_text!r} in the installed lifecycles"
            else:
                chosen_stage = (found[0], stage)
        show = q.get("show", "")
        if show not in model_ids and show != "all":
            show = stage_text.partition(":")[0] if chosen_stage else ""
            show = show or (installed[0][1].key if installed else "all")
        result = _list(conn, chosen_stage, search, filters, traits, sort, offset, errors)
        ids = [c.id for c in result.items]
        stages = lifecycle.current_stages(conn, ids)
        choices = {f: service.field_values(conn, f, limit=200) for f in PICKED}
    kept = {
        "q": search,
        **filters,
        "trait": trait_text,
        "stage": stage_text if chosen_stage else "",
        "sort": sort if sort != "-last_seen" else "",
        "show": show,
    }
    query = urlencode({k: v for k, v in kept.items() if v})
    hidden = {f: v for f, v in filters.items() if f not in PICKED and f not in TYPED}
    return page.render(
        "pages/customers.html",
        status_code=422 if errors else 200,
        result=result,
        stages=stages,
        installed=[m for _, m in installed],
        show=show,
        search=search,
        filters=filters,
        hidden=hidden,
        trait=trait_text,
        stage=stage_text,
        sort=sort,
        sorts=SORT_LABELS,
        picked=PICKED,
        choices=choices,
        errors=errors,
        query=query,
        filtered=bool(search or filters or traits or chosen_stage),
    )


def _list(
    conn: Any,
    stage: tuple[int, str] | None,
    search: str,
    filters: dict[str, str],
    traits: dict[str, str],
    sort: str,
    offset: int,
    errors: dict[str, str],
) -> CustomerPage:
    """One page of customers; a filter the service refuses is named next to its field
    and the list shows nothing rather than a page that ignores it."""
    try:
        return service.list_customers(
            conn, search=search or None, filters=filters, traits=traits, at_stage=stage,
            sort=sort, limit=PAGE_SIZE, offset=offset,
        )  # fmt: skip
    except ValueError as exc:
        field, _, message = str(exc).partition(": ")
        errors[field if field in (*service.FILTER_FIELDS, "sort") else "q"] = message or str(exc)
        return CustomerPage(items=[], total=0, limit=PAGE_SIZE, offset=offset)


# -- one customer ------------------------------------------------------------------------------


def _kinds(q: QueryParams) -> tuple[str, ...]:
    chosen = tuple(k for k in KINDS if k in q.getlist("kind"))
    return chosen or KINDS


def _profile(
    page: PageCtx,
    ref: str,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    q = page.request.query_params
    errors = dict(errors or {})
    kinds = _kinds(q)
    before: datetime | None = None
    if q.get("before"):
        try:
            before = datetime.fromisoformat(q["before"])
        except ValueError:
            errors["before"] = f"{q['before']!r} is not a time; showing the newest items"
    project = page.state.project
    with project.engine.connect() as conn:
        try:
            detail = with_stages(conn, service.get_customer(conn, project.events, ref, timeline=0))
        except service.NotFound:
            return page.render(
                "pages/error.html", status_code=404, title="Customer not found",
                message=f"There is no customer {ref!r}. Search for them on the Customers page.",
            )  # fmt: skip
        if str(detail.id) != ref:  # a userId, an e-mail or a merged id: the survivor's page
            return RedirectResponse(f"/customers/{detail.id}", status_code=303)
        story = timeline(
            conn, project.events, detail.id, before=before, limit=PAGE_SIZE, kinds=kinds
        )
        scores = customer_scores(conn, detail.id)
        departments = [d["name"] for d in lifecycle.list_departments(conn)]
    kind_query = [("kind", k) for k in kinds] if kinds != KINDS else []
    older = (
        urlencode([*kind_query, ("before", story["next_before"])]) if story["next_before"] else None
    )
    typed = typed or {}
    department = typed.get("department", page.user.department or "")
    return page.render(
        "pages/customer.html",
        status_code=status_code,
        customer=detail,
        profile_fields=PROFILE_FIELDS,
        stages=detail.stages,
        scores=scores,
        items=story["items"],
        older=older,
        newest=urlencode(kind_query),
        paged=before is not None,
        kinds=kinds,
        all_kinds=KIND_LABELS,
        departments=departments,
        note_body=typed.get("body", ""),
        note_department=department,
        errors=errors,
        noted=q.get("noted") == "1",
    )


@router.get("/customers/{ref}", response_class=HTMLResponse)
def customer_page(page: PageCtx, ref: str) -> Response:
    return _profile(page, ref)


@router.post("/customers/{ref}/notes", response_class=HTMLResponse)
async def add_note_page(page: PageCtx, ref: str) -> Response:
    """A note from the signed-in user (by name, else e-mail), for its department unless
    it picks another; the timeline shows it at the top afterwards."""
    data = await page.form()
    body = data.get("body", "")
    department = data.get("department", "").strip() or None
    errors: dict[str, str] = {}
    try:
        note = NoteIn(body=body, author=page.user.name or page.user.email, department=department)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "body"
        errors[name if name in ("body", "department") else "body"] = first["msg"]
    if not errors:
        try:
            await written(page.state, lambda conn: add_note(conn, ref, note))
        except service.NotFound:
            return _profile(page, ref)  # the 404 page
        except (lifecycle.NotFound, ValueError) as exc:
            field, _, message = str(exc).partition(": ")
            errors[field if field in ("body", "department") else "body"] = message or str(exc)
    if errors:
        typed = {"body": body, "department": department or ""}
        return _profile(page, ref, errors=errors, typed=typed, status_code=422)
    return RedirectResponse(f"/customers/{ref}?noted=1#timeline", status_code=303)
