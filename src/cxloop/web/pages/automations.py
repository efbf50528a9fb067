"""The settings pages of automations (admins only): rules with their runs, presets and a
preview on a real customer; webhook endpoints with their delivery log and re-send; staff
profiles with photo upload; and the audit log.

They call the services the REST API calls (``automations.rules``, ``webhooks``,
``staff``), on the writer thread, and write the same audit entries under the signed-in
user's e-mail. A rule is written as YAML in a text area, the format of
``cxloop automations create --file``; "Preview" renders its templates for a real
customer without saving, "Save" checks and saves.
"""

from __future__ import annotations

from typing import Any

import yaml
from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from cxloop import yamltext
from cxloop.automations import presets, rules, staff, webhooks
from cxloop.lifecycle import service
from cxloop.store import audit
from cxloop.web.pages.base import Page, PageCtx
from cxloop.web.pages.feedback import error_fields, record_id
from cxloop.web.pages.settings import _render
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)
EXAMPLE = """name: Review request
description: Three days after a delivery, ask how it went.
trigger:
  on: event
  event: Order Delivered
  where:
    - {field: total, op: gte, value: 50}
timing:
  delay: 3d
conditions:
  rules:
    - {kind: trait, field: email, op: exists}
actions:
  - type: email
    subject: "How is your order, {{ customer.first_name or 'there' }}?"
    text: |
      Hello {{ customer.first_name or "there" }},
      your order arrived on {{ event.timestamp[:10] }}. How did it go?
"""


def _back(section: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"/settings/{section}?done={done}", status_code=303)


def _name(page: Page, name: str) -> str:
    if not 1 <= len(name) <= 120:
        raise HTTPException(404, "no such rule")
    return name


# -- rules -----------------------------------------------------------------------------------


def _rules(
    page: Page,
    *,
    text: str | None = None,
    error: str | None = None,
    preview: dict[str, Any] | None = None,
    customer: str | None = None,
    replace: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    chosen = page.request.query_params.get("rule") or None
    with page.state.project.engine.connect() as conn:
        found = rules.list_rules(conn)
        names = {r["name"] for r in found}
        runs = rules.list_runs(conn, rule=chosen if chosen in names else None, limit=50)
        models = service.installed_models(conn)
    if replace is None and page.request.query_params.get("edit") in names:
        replace = page.request.query_params["edit"]
        if text is None:
            text = rules.rule_yaml(next(r for r in found if r["name"] == replace))
    return _render(
        page,
        "automations",
        status_code=status_code,
        rules=found,
        runs=runs,
        chosen=chosen,
        models=models,
        text=text if text is not None else EXAMPLE,
        error=error,
        preview=preview,
        customer=customer or "",
        replace=replace,
    )


@router.get("/settings/automations", response_class=HTMLResponse)
def automations_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _rules(page)


def _parse(text: str) -> Any:
    try:
        data = yamltext.load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"rule: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("rule: give a mapping with name, trigger and actions")
    return rules.parse(data)


@router.post("/settings/automations", response_class=HTMLResponse)
async def save_rule(page: PageCtx) -> Response:
    """Preview (``action=preview``) or save the rule in the text area."""
    page.require("admin")
    data = await page.form()
    text = data.get("rule", "")
    customer = data.get("customer", "").strip() or None
    replace = data.get("replace", "").strip() or None  # the rule being changed
    project = page.state.project
    zone = project.settings.timezone
    try:
        body = _parse(text)
        if data.get("action") == "preview":
            shown = await written(
                page.state,
                lambda conn: rules.preview(conn, project.events, body, customer, timezone=zone),
            )
            return _rules(page, text=text, preview=shown, customer=customer, replace=replace)
        await written(
            page.state,
            lambda conn: rules.save_rule(
                conn, project.events, body, page.user.email, replace=replace,
                preview_customer=customer, timezone=zone,
            ),
        )  # fmt: skip
    except (ValidationError, ValueError, LookupError) as exc:
        return _rules(
            page, text=text, error=str(exc), customer=customer, replace=replace, status_code=422
        )
    return _back("automations", "rule-saved")


@router.post("/settings/automations/presets", response_class=HTMLResponse)
async def install_preset(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    project = page.state.project
    try:
        body = presets.build(
            data.get("preset", ""),
            model=data.get("model") or None,
            lead=data.get("lead") or None,
            department=data.get("department") or None,
        )
        await written(
            page.state,
            lambda conn: rules.save_rule(
                conn, project.events, body, page.user.email, timezone=project.settings.timezone
            ),
        )
    except (ValidationError, ValueError, LookupError) as exc:
        return _rules(page, error=str(exc), status_code=422)
    return _back("automations", "rule-saved")


@router.post("/settings/automations/{name}/{verb}", response_class=HTMLResponse)
async def change_rule(page: PageCtx, name: str, verb: str) -> Response:
    page.require("admin")
    await page.form()
    name = _name(page, name)
    who = page.user.email
    if verb not in ("enable", "disable", "delete"):
        raise HTTPException(404, "no such change")
    try:
        if verb == "delete":
            await written(page.state, lambda conn: rules.delete_rule(conn, name, who))
        else:
            await written(
                page.state, lambda conn: rules.set_enabled(conn, name, verb == "enable", who)
            )
    except LookupError:
        raise HTTPException(404, f"no rule named {name!r}") from None
    return _back("automations", {"enable": "rule-enabled", "disable": "rule-disabled",
                                 "delete": "rule-deleted"}[verb])  # fmt: skip


# -- webhooks --------------------------------------------------------------------------------

HOOK_FIELDS = {"name", "url", "topics", "events"}


def _hooks(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    created: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        endpoints = webhooks.list_endpoints(conn)
        deliveries = webhooks.list_deliveries(conn, limit=50)
    return _render(
        page,
        "webhooks",
        status_code=status_code,
        endpoints=endpoints,
        deliveries=deliveries,
        topics=webhooks.TOPICS,
        errors=errors or {},
        values=values or {"topics": []},
        created=created,
    )


@router.get("/settings/webhooks", response_class=HTMLResponse)
def webhooks_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _hooks(page)


@router.post("/settings/webhooks", response_class=HTMLResponse)
async def add_webhook(page: PageCtx) -> HTMLResponse:
    """A new endpoint; its signing secret is shown in this answer."""
    page.require("admin")
    await page.form()
    form = await page.request.form()
    topics = [str(t) for t in form.getlist("topics")]
    events = [e.strip() for e in str(form.get("events", "")).split(",") if e.strip()]
    values = {"name": str(form.get("name", "")), "url": str(form.get("url", "")),
              "topics": topics, "events": ", ".join(events)}  # fmt: skip
    settings = page.state.project.settings
    try:
        body = webhooks.WebhookIn(name=values["name"], url=values["url"], topics=topics,
                                  events=events or None)  # fmt: skip
        created = await written(
            page.state, lambda conn: webhooks.create_endpoint(conn, body, settings, page.user.email)
        )
    except (ValidationError, ValueError) as exc:
        errors = error_fields(exc, HOOK_FIELDS, "name")
        return _hooks(page, errors=errors, values=values, status_code=422)
    return _hooks(page, created=created)


@router.post("/settings/webhooks/{name}/{verb}", response_class=HTMLResponse)
async def change_webhook(page: PageCtx, name: str, verb: str) -> Response:
    page.require("admin")
    await page.form()
    who = page.user.email
    if verb not in ("enable", "disable", "delete"):
        raise HTTPException(404, "no such change")
    try:
        if verb == "delete":
            await written(page.state, lambda conn: webhooks.delete_endpoint(conn, name, who))
            return _back("webhooks", "webhook-deleted")
        await written(
            page.state, lambda conn: webhooks.set_enabled(conn, name, verb == "enable", who)
        )
    except LookupError:
        raise HTTPException(404, f"no webhook named {name!r}") from None
    except service.Conflict as exc:  # a rule still posts to it
        return _hooks(page, errors={"list": str(exc)}, status_code=409)
    return _back("webhooks", "webhook-changed")


@router.post("/settings/webhook-deliveries/{delivery_id}/resend", response_class=HTMLResponse)
async def resend(page: PageCtx, delivery_id: int) -> Response:
    page.require("admin")
    record_id(delivery_id, "delivery")
    await page.form()
    try:
        await written(page.state, lambda conn: webhooks.resend(conn, delivery_id, page.user.email))
    except LookupError:
        raise HTTPException(404, f"no delivery with id {delivery_id}") from None
    return _back("webhooks", "delivery-queued")


# -- staff -----------------------------------------------------------------------------------

STAFF_FIELDS = {"ref", "name", "bio", "department", "photo"}


def _staff(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        people = staff.list_staff(conn)
        departments = service.list_departments(conn)
    return _render(
        page,
        "staff",
        status_code=status_code,
        people=people,
        departments=departments,
        errors=errors or {},
        values=values or {},
    )


@router.get("/settings/staff", response_class=HTMLResponse)
def staff_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _staff(page)


@router.post("/settings/staff", response_class=HTMLResponse)
async def save_staff(page: PageCtx) -> Response:
    """Create or change a staff member; a photo chosen in the form is uploaded with it."""
    page.require("admin")
    data = await page.form()
    form = await page.request.form()
    upload = form.get("photo")
    photo = await upload.read() if upload is not None and not isinstance(upload, str) else b""
    values = {k: data.get(k, "").strip() for k in ("ref", "name", "bio", "department")}
    who = page.user.email
    try:
        body = staff.StaffIn(ref=values["ref"], name=values["name"], bio=values["bio"] or None,
                             department=values["department"] or None)  # fmt: skip

        def save(conn: Any) -> Any:
            saved = staff.save_staff(conn, body, who)
            return staff.set_photo(conn, body.ref, photo, who) if photo else saved

        await written(page.state, save)
    except (ValidationError, ValueError, LookupError) as exc:
        errors = error_fields(exc, STAFF_FIELDS, "name")
        return _staff(page, errors=errors, values=values, status_code=422)
    return _back("staff", "staff-saved")


@router.post("/settings/staff/{ref}/delete", response_class=HTMLResponse)
async def delete_staff(page: PageCtx, ref: str) -> Response:
    page.require("admin")
    await page.form()
    try:
        await written(page.state, lambda conn: staff.delete_staff(conn, ref, page.user.email))
    except LookupError:
        raise HTTPException(404, f"no staff member {ref!r}") from None
    return _back("staff", "staff-deleted")


# -- the audit log ---------------------------------------------------------------------------


@router.get("/settings/audit", response_class=HTMLResponse)
def audit_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    q = page.request.query_params
    entity = q.get("entity") or None
    if entity not in (None, *audit.ENTITIES):
        entity = None
    before_text = q.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 18 else None
    with page.state.project.engine.connect() as conn:
        entries = audit.entries(conn, entity=entity, limit=100, before=before)
    older = entries[-1]["id"] if len(entries) == 100 else None
    return _render(
        page, "audit", entries=entries, entity=entity, entities=audit.ENTITIES, older=older
    )
