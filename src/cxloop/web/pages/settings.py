"""The settings pages (admins only): lifecycle models, departments, users, API keys,
survey triggers and score benchmarks (automations, webhooks, staff and the audit log are
in ``pages.automations``).

Every change is a POST form with the session's CSRF token, checked with the same models
and services as the REST API (``ApplyIn``/``validate_model``, ``TriggerIn``,
``BenchmarkIn``, ``create_key``…), and written on the one writer thread. A refused input
comes back with the message next to its field and what was typed kept (status 422); a
change that worked redirects (Post/Redirect/Get) with ``?done=…`` for the notice. Secrets
(a new key, a new user's password) are shown in the answer to the POST itself, once, and
never put in a URL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import Connection

from cxloop.automations.rules import automation_counts
from cxloop.domain.lifecycle import LifecycleModel, Rule
from cxloop.feedback.benchmarks import RANGES, BenchmarkIn, list_benchmarks, save_benchmark
from cxloop.feedback.surveys import list_surveys
from cxloop.feedback.triggers import TriggerIn, create_trigger, list_triggers, set_active
from cxloop.lifecycle import service
from cxloop.lifecycle.spec import (
    ModelFileError,
    Preset,
    model_to_yaml,
    parse_model,
    presets,
    validate_model,
)
from cxloop.store.database import session_scope
from cxloop.store.keys import KEY_KINDS, KeyInfo, KeyKind, create_key, list_keys, revoke_key
from cxloop.store.users import (
    ROLES,
    count_users,
    create_user,
    list_users,
    new_password,
    set_disabled,
    set_role,
)
from cxloop.web.pages.base import PAGE_SIZE, Page, PageCtx
from cxloop.web.pages.feedback import delay_text, error_fields, record_id, stage_names
from cxloop.web.state import written

router = APIRouter(include_in_schema=False)

SECTIONS: tuple[tuple[str, str], ...] = (
    ("models", "Lifecycle models"),
    ("departments", "Departments"),
    ("users", "Users"),
    ("keys", "API keys"),
    ("triggers", "Survey triggers"),
    ("benchmarks", "Benchmarks"),
    ("automations", "Automations"),
    ("webhooks", "Webhooks"),
    ("staff", "Staff"),
    ("audit", "Audit log"),
)
DONE = {
    "model-installed": "The lifecycle model is installed and its stage histories rebuilt.",
    "department-created": "Department created.",
    "department-renamed": "Department renamed; the stages it owns follow the new name.",
    "sla-changed": "Follow-up SLA changed; new follow-ups are due after it.",
    "role-changed": "Role changed; it applies from the user's next click.",
    "user-disabled": "User disabled and signed out everywhere.",
    "user-enabled": "User enabled; they can sign in again.",
    "key-revoked": "Key revoked; it stops working within a few seconds.",
    "trigger-created": "Trigger created; it fires from now on.",
    "trigger-changed": "Trigger changed.",
    "benchmark-saved": "Benchmark saved.",
    "rule-saved": "Rule saved; it acts on what happens from now on.",
    "rule-enabled": "Rule enabled; what happened while it was off does not fire it.",
    "rule-disabled": "Rule disabled; its runs still waiting are skipped.",
    "rule-deleted": "Rule deleted with its run history.",
    "webhook-changed": "Webhook changed.",
    "webhook-deleted": "Webhook deleted.",
    "delivery-queued": "Delivery queued again; the worker sends it within seconds.",
    "staff-saved": "Staff member saved.",
    "staff-deleted": "Staff member deleted.",
}


@cache
def shipped_presets() -> tuple[Preset, ...]:
    """The presets, read once: they are files shipped with cxloop, and parsing their YAML
    takes longer than the rest of the page."""
    return tuple(presets())


def _done(page: Page) -> str | None:
    return DONE.get(page.request.query_params.get("done", ""))


def _offset(page: Page) -> int:
    text = page.request.query_params.get("offset", "0")
    return max(int(text), 0) if text.isdigit() else 0


def _render(page: Page, section: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return page.render(
        f"pages/settings_{section}.html",
        status_code=status_code,
        sections=SECTIONS,
        section=section,
        done=_done(page),
        **context,
    )


def _back(section: str, done: str, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/settings/{section}?done={done}{anchor}", status_code=303)


# -- the overview --------------------------------------------------------------------------


@router.get("/settings", response_class=HTMLResponse)
def settings_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    project = page.state.project
    with project.engine.connect() as conn:
        counts = {
            "models": len(service.installed_models(conn)),
            "departments": len(service.list_departments(conn)),
            "users": count_users(conn),
            "triggers": len(list_triggers(conn)),
            "benchmarks": len(list_benchmarks(conn)),
            **automation_counts(conn),
        }
    with session_scope(project.sessions) as session:
        counts["keys"] = len(list_keys(session))
    return _render(page, "index", counts=counts)


# -- lifecycle models ----------------------------------------------------------------------


def rule_text(rule: Rule) -> str:
    """An entry rule in a few words: the event or page, and how many conditions."""
    if rule.event is not None:
        head = f"event {rule.event}"
    elif rule.page is not None:
        head = f"page {rule.page}"
    else:
        head = "traits " + ", ".join(c.field for c in rule.traits)
    if rule.where:
        head += f" (+{len(rule.where)} condition{'s' if len(rule.where) > 1 else ''})"
    return head


def _model_errors(exc: ModelFileError) -> list[str]:
    return [
        f"line {line}: {where}: {reason}" if line else f"{where}: {reason}"
        for where, line, reason in exc.problems
    ]


async def _install(page: Page, model: LifecycleModel) -> dict[str, Any]:
    project = page.state.project
    installed: dict[str, Any] = await page.state.writer.call(
        lambda: service.install_model(project.engine, project.stages, model)
    )
    return installed


@router.get("/settings/models", response_class=HTMLResponse)
def models_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _models(page)


def _models(
    page: Page, *, errors: dict[str, str] | None = None, status_code: int = 200
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        models = service.list_models(conn)
    return _render(
        page,
        "models",
        status_code=status_code,
        models=models,
        presets=shipped_presets(),
        errors=errors or {},
    )


@router.post("/settings/models/preset", response_class=HTMLResponse)
async def install_preset(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    found = next((p for p in shipped_presets() if p.key == data.get("preset")), None)
    if found is None:
        known = ", ".join(p.key for p in shipped_presets())
        return _models(page, errors={"preset": f"choose one of {known}"}, status_code=422)
    try:
        await _install(page, found.model)
    except service.Conflict as exc:  # installed already, with a stage in use it lacks
        return _models(page, errors={"preset": str(exc)}, status_code=409)
    return RedirectResponse(f"/settings/models/{found.key}?done=model-installed", status_code=303)


def _model_page(
    page: Page,
    key: str | None,
    *,
    definition: str | None = None,
    problems: list[str] | None = None,
    stage_values: dict[str, str] | None = None,
    stage_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    model: LifecycleModel | None = None
    version = None
    with page.state.project.engine.connect() as conn:
        if key is not None:
            try:
                _id, model, version = service.get_model(conn, key)
            except service.NotFound:
                raise HTTPException(404, f"no lifecycle model {key!r}") from None
        departments = [d["name"] for d in service.list_departments(conn)]
    if definition is None:
        definition = model_to_yaml(model) if model is not None else _NEW_MODEL
    return _render(
        page,
        "model",
        status_code=status_code,
        model=model,
        version=version,
        definition=definition,
        problems=problems or [],
        stage_values=stage_values or {},
        stage_errors=stage_errors or {},
        departments=departments,
        rule_text=rule_text,
    )


_NEW_MODEL = """\
key: my-lifecycle
name: My lifecycle
description: What the stages mean.
backward: forward_only
stages:
  - key: aware
    name: Aware
    owner: marketing
    target_days: 30
    enter:
      - page: Home
  - key: customer
    name: Customer
    owner: sales
    enter:
      - event: Order Completed
"""


@router.get("/settings/models/new", response_class=HTMLResponse)
def new_model_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _model_page(page, None)


@router.post("/settings/models/new", response_class=HTMLResponse)
async def new_model(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    text = data.get("definition", "")
    try:
        model = parse_model(text, "definition")
    except ModelFileError as exc:
        return _model_page(
            page, None, definition=text, problems=_model_errors(exc), status_code=422
        )
    with page.state.project.engine.connect() as conn:
        taken = model.key in {m.key for m in service.installed_models(conn)}
    if taken:
        problem = f"key: a model {model.key!r} is installed; edit it on its own page"
        return _model_page(page, None, definition=text, problems=[problem], status_code=422)
    await _install(page, model)
    return RedirectResponse(f"/settings/models/{model.key}?done=model-installed", status_code=303)


@router.get("/settings/models/{key}", response_class=HTMLResponse)
def model_page(page: PageCtx, key: str) -> HTMLResponse:
    page.require("admin")
    return _model_page(page, key)


@router.post("/settings/models/{key}", response_class=HTMLResponse)
async def edit_model(page: PageCtx, key: str) -> Response:
    """Replace a model by its full definition (YAML or JSON: JSON is YAML too)."""
    page.require("admin")
    data = await page.form()
    text = data.get("definition", "")
    try:
        model = parse_model(text, "definition")
        if model.key != key:
            raise ModelFileError(
                "definition",
                [("key", None, f"must stay {key!r}; a new key is a new model (New model)")],
            )
    except ModelFileError as exc:
        return _model_page(page, key, definition=text, problems=_model_errors(exc), status_code=422)
    try:
        await _install(page, model)
    except service.Conflict as exc:  # it leaves out a stage a rule or segment names
        return _model_page(page, key, definition=text, problems=[str(exc)], status_code=409)
    return RedirectResponse(f"/settings/models/{key}?done=model-installed", status_code=303)


_STAGE_LOC = re.compile(r"^stages\[(\d+)\]\.(name|owner|target_days)$")


@router.post("/settings/models/{key}/stages", response_class=HTMLResponse)
async def edit_stages(page: PageCtx, key: str) -> Response:
    """The stages' names, owners and target days from the structured form; entry rules
    and everything else stay as they are."""
    page.require("admin")
    data = await page.form()
    with page.state.project.engine.connect() as conn:
        try:
            _id, current, _version = service.get_model(conn, key)
        except service.NotFound:
            raise HTTPException(404, f"no lifecycle model {key!r}") from None
    definition = current.model_dump(mode="json")
    errors: dict[str, str] = {}
    for index, stage in enumerate(definition["stages"]):
        stage["name"] = data.get(f"name-{index}", stage["name"]).strip()
        stage["owner"] = " ".join(data.get(f"owner-{index}", stage["owner"]).split())
        days = data.get(f"target_days-{index}", "").strip()
        if not days:
            stage["target_days"] = None
        else:
            try:
                stage["target_days"] = float(days)
            except ValueError:
                errors[f"target_days-{index}"] = "give a number of days, or leave it empty"
    if not errors:
        try:
            model = validate_model(definition, "form")
        except ModelFileError as exc:
            for where, _line, reason in exc.problems:
                found = _STAGE_LOC.match(where)
                name = f"{found.group(2)}-{found.group(1)}" if found else "stages"
                errors.setdefault(name, reason)
    if errors:
        return _model_page(page, key, stage_values=data, stage_errors=errors, status_code=422)
    await _install(page, model)
    return RedirectResponse(f"/settings/models/{key}?done=model-installed", status_code=303)


# -- departments ---------------------------------------------------------------------------


def _departments(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        departments = service.list_departments(conn)
        names = stage_names(conn)
    return _render(
        page,
        "departments",
        status_code=status_code,
        departments=departments,
        stage_names=names,
        errors=errors or {},
        values=values or {},
    )


def _department_name(conn: Connection, department_id: int) -> str:
    for found in service.list_departments(conn):
        if int(found["id"]) == department_id:
            return str(found["name"])
    raise HTTPException(404, f"no department with id {department_id}")


@router.get("/settings/departments", response_class=HTMLResponse)
def departments_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _departments(page)


@router.post("/settings/departments", response_class=HTMLResponse)
async def create_department(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    name = data.get("name", "")
    try:
        await written(page.state, lambda conn: service.create_department(conn, name))
    except ValueError as exc:
        errors = error_fields(exc, {"name"}, "name")
        return _departments(page, errors=errors, values={"name": name}, status_code=422)
    return _back("departments", "department-created")


@router.post("/settings/departments/{department_id}/rename", response_class=HTMLResponse)
async def rename_department(page: PageCtx, department_id: int) -> Response:
    page.require("admin")
    record_id(department_id, "department")
    data = await page.form()
    new_name = data.get("new_name", "")
    project = page.state.project

    def run() -> dict[str, Any]:
        with project.engine.begin() as conn:
            renamed = service.rename_department(
                conn, _department_name(conn, department_id), new_name
            )
        project.stages.forget_models()
        return renamed

    field = f"new_name-{department_id}"
    try:
        await page.state.writer.call(run)
    except (ValueError, LookupError) as exc:
        reason = error_fields(exc, {"new_name", "name"}, "new_name")
        message = next(iter(reason.values()))
        return _departments(
            page, errors={field: message}, values={field: new_name}, status_code=422
        )
    return _back("departments", "department-renamed")


@router.post("/settings/departments/{department_id}/sla", response_class=HTMLResponse)
async def department_sla(page: PageCtx, department_id: int) -> Response:
    page.require("admin")
    record_id(department_id, "department")
    data = await page.form()
    text = data.get("hours", "").strip()
    field = f"hours-{department_id}"
    try:
        if not text.isdigit():
            raise ValueError("hours: give a whole number of hours")
        hours = int(text)
        await written(
            page.state,
            lambda conn: service.set_followup_sla(
                conn, _department_name(conn, department_id), hours
            ),
        )
    except ValueError as exc:
        message = next(iter(error_fields(exc, {"hours"}, "hours").values()))
        return _departments(page, errors={field: message}, values={field: text}, status_code=422)
    return _back("departments", "sla-changed")


# -- users ---------------------------------------------------------------------------------

USER_FIELDS = {"email", "name", "role", "department", "password"}


def _users(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, Any] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    offset = _offset(page)
    with page.state.project.engine.connect() as conn:
        users = list_users(conn, limit=PAGE_SIZE, offset=offset)
        total = count_users(conn)
        departments = [d["name"] for d in service.list_departments(conn)]
    return _render(
        page,
        "users",
        status_code=status_code,
        users=users,
        total=total,
        offset=offset,
        limit=PAGE_SIZE,
        roles=ROLES,
        departments=departments,
        errors=errors or {},
        values=values or {"role": "member"},
        created=created,
        me=page.user.user_id,
    )


@router.get("/settings/users", response_class=HTMLResponse)
def users_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _users(page)


@router.post("/settings/users", response_class=HTMLResponse)
async def add_user(page: PageCtx) -> HTMLResponse:
    """A new user; the password (typed, or generated when left empty) is shown in this
    answer only: it cannot be read back later, only replaced."""
    page.require("admin")
    data = await page.form()
    values = {k: data.get(k, "") for k in USER_FIELDS}
    password = values["password"] or new_password()
    try:
        user = await written(
            page.state,
            lambda conn: create_user(
                conn,
                email=values["email"],
                role=values["role"],
                password=password,
                department=values["department"].strip() or None,
                name=values["name"] or None,
            ),
        )
    except ValueError as exc:
        shown = {k: v for k, v in values.items() if k != "password"}
        errors = error_fields(exc, USER_FIELDS, "email")
        return _users(page, errors=errors, values=shown, status_code=422)
    created = {**user, "password": password, "generated": not values["password"]}
    return _users(page, created=created)


async def _user_change(
    page: Page, user_id: int, change: Callable[[Connection], Any], field: str, done: str
) -> Response:
    try:
        await written(page.state, change)
    except ValueError as exc:
        message = str(exc).partition(": ")[2] or str(exc)
        if message.startswith("no user with id"):
            raise HTTPException(404, message) from None
        return _users(page, errors={f"{field}-{user_id}": message}, status_code=422)
    return _back("users", done, f"#user-{user_id}")


@router.post("/settings/users/{user_id}/role", response_class=HTMLResponse)
async def change_role(page: PageCtx, user_id: int) -> Response:
    page.require("admin")
    record_id(user_id, "user")
    data = await page.form()
    role, department = data.get("role", ""), data.get("department", "").strip() or None
    return await _user_change(
        page,
        user_id,
        lambda conn: set_role(conn, user_id, role, department),
        "role",
        "role-changed",
    )


@router.post("/settings/users/{user_id}/disable", response_class=HTMLResponse)
async def disable_user(page: PageCtx, user_id: int) -> Response:
    page.require("admin")
    record_id(user_id, "user")
    await page.form()
    if user_id == page.user.user_id:
        return _users(
            page,
            errors={f"disabled-{user_id}": "you cannot disable yourself"},
            status_code=422,
        )
    return await _user_change(
        page, user_id, lambda conn: set_disabled(conn, user_id, True), "disabled", "user-disabled"
    )


@router.post("/settings/users/{user_id}/enable", response_class=HTMLResponse)
async def enable_user(page: PageCtx, user_id: int) -> Response:
    page.require("admin")
    record_id(user_id, "user")
    await page.form()
    return await _user_change(
        page, user_id, lambda conn: set_disabled(conn, user_id, False), "disabled", "user-enabled"
    )


# -- API keys ------------------------------------------------------------------------------


def _keys(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    created: tuple[str, KeyInfo] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    revoked = page.request.query_params.get("revoked") == "1"
    with session_scope(page.state.project.sessions) as session:
        keys = list_keys(session, include_revoked=revoked)
    return _render(
        page,
        "keys",
        status_code=status_code,
        keys=keys,
        kinds=KEY_KINDS,
        revoked=revoked,
        errors=errors or {},
        values=values or {"kind": "write"},
        created=created,
        public_url=page.state.project.settings.effective_public_url,
    )


@router.get("/settings/keys", response_class=HTMLResponse)
def keys_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _keys(page)


@router.post("/settings/keys", response_class=HTMLResponse)
async def add_key(page: PageCtx) -> HTMLResponse:
    """A new key, shown in full in this answer only (only its hash is kept)."""
    page.require("admin")
    data = await page.form()
    values = {"kind": data.get("kind", ""), "name": data.get("name", "")}
    sessions = page.state.project.sessions

    def run() -> tuple[str, KeyInfo]:
        with session_scope(sessions) as session:
            return create_key(session, cast(KeyKind, values["kind"]), values["name"])

    try:
        created = await page.state.writer.call(run)
    except ValueError as exc:
        errors = error_fields(exc, {"kind", "name"}, "name")
        return _keys(page, errors=errors, values=values, status_code=422)
    return _keys(page, created=created)


@router.post("/settings/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke(page: PageCtx, key_id: int) -> Response:
    page.require("admin")
    record_id(key_id, "key")
    await page.form()
    sessions = page.state.project.sessions

    def run() -> KeyInfo:
        with session_scope(sessions) as session:
            return revoke_key(session, key_id)

    try:
        await page.state.writer.call(run)
    except LookupError:
        raise HTTPException(404, f"no key with id {key_id}") from None
    page.state.keys.entries.clear()
    return _back("keys", "key-revoked")


# -- survey triggers -----------------------------------------------------------------------

TRIGGER_FIELDS = {"survey", "on", "event", "stage", "delay", "cap_days", "channel", "expires_days"}
TRIGGER_DEFAULTS = {"on": "event", "delay": "1h", "cap_days": "30", "channel": "email",
                    "expires_days": "14"}  # fmt: skip


def _triggers(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        triggers = list_triggers(conn)
        surveys = list_surveys(conn)
        models = service.installed_models(conn)
        names = stage_names(conn)
    chosen = page.request.query_params.get("survey", "")
    return _render(
        page,
        "triggers",
        status_code=status_code,
        triggers=triggers,
        surveys=surveys,
        survey_names={s["id"]: s["name"] for s in surveys},
        models=models,
        stage_names=names,
        delay_text=delay_text,
        errors=errors or {},
        values=values or {**TRIGGER_DEFAULTS, "survey": chosen},
    )


@router.get("/settings/triggers", response_class=HTMLResponse)
def triggers_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _triggers(page)


@router.post("/settings/triggers", response_class=HTMLResponse)
async def add_trigger(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    values = {k: data.get(k, "").strip() for k in TRIGGER_FIELDS}
    on = values["on"]
    fields: dict[str, Any] = {
        "survey": values["survey"] or None,
        "on": on,
        "event": (values["event"] or None) if on == "event" else None,
        "stage": (values["stage"] or None) if on == "stage" else None,
        "delay": values["delay"] or "0m",
        "cap_days": values["cap_days"] or "30",
        "channel": values["channel"] or "email",
        "expires_days": values["expires_days"] or "14",
    }
    try:
        body = TriggerIn.model_validate(fields)
        await written(page.state, lambda conn: create_trigger(conn, body))
    except (ValidationError, ValueError, LookupError) as exc:
        errors = error_fields(exc, TRIGGER_FIELDS, "survey")
        return _triggers(page, errors=errors, values=values, status_code=422)
    return _back("triggers", "trigger-created")


@router.post("/settings/triggers/{trigger_id}/active", response_class=HTMLResponse)
async def trigger_active(page: PageCtx, trigger_id: int) -> Response:
    page.require("admin")
    record_id(trigger_id, "trigger")
    data = await page.form()
    active = data.get("active") == "1"
    try:
        await written(page.state, lambda conn: set_active(conn, trigger_id, active))
    except LookupError:
        raise HTTPException(404, f"no trigger with id {trigger_id}") from None
    return _back("triggers", "trigger-changed", f"#trigger-{trigger_id}")


# -- benchmarks ----------------------------------------------------------------------------

BENCHMARK_FIELDS = {"measure", "scope", "name", "value", "source", "as_of"}


def _benchmarks(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with page.state.project.engine.connect() as conn:
        benchmarks = list_benchmarks(conn)
    return _render(
        page,
        "benchmarks",
        status_code=status_code,
        benchmarks=benchmarks,
        measures=list(RANGES),
        ranges=RANGES,
        errors=errors or {},
        values=values or {"measure": "nps", "scope": "industry"},
    )


@router.get("/settings/benchmarks", response_class=HTMLResponse)
def benchmarks_page(page: PageCtx) -> HTMLResponse:
    page.require("admin")
    return _benchmarks(page)


@router.post("/settings/benchmarks", response_class=HTMLResponse)
async def add_benchmark(page: PageCtx) -> Response:
    page.require("admin")
    data = await page.form()
    values = {k: data.get(k, "").strip() for k in BENCHMARK_FIELDS}
    fields = {k: v for k, v in values.items() if v or k in ("name", "source", "value")}
    try:
        body = BenchmarkIn.model_validate(fields)
        await written(page.state, lambda conn: save_benchmark(conn, body))
    except (ValidationError, ValueError) as exc:
        errors = error_fields(exc, BENCHMARK_FIELDS, "name")
        return _benchmarks(page, errors=errors, values=values, status_code=422)
    return _back("benchmarks", "benchmark-saved")
