"""Saving rules: checked against the project, templates previewed on a real customer.

A rule is refused when what it names does not exist (a survey, a segment, a webhook
endpoint, a lifecycle model or stage, a department), when it would trigger itself, or
when one of its templates does not render for a real customer: the customer of the most
recent occurrence of its trigger when one is stored (so ``event.properties.visit_at`` is
checked against a real ``Visit Scheduled``), else the most recently seen customer. Every
change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import yaml
from pydantic import ValidationError
from sqlalchemy import Connection, Table, func, insert, select, update

from cxloop.automations import context, templates
from cxloop.automations.firing import SAMPLES
from cxloop.automations.usage import rule_names
from cxloop.automations.webhooks import endpoints_t
from cxloop.customers.service import customers_t, resolve_customer_id
from cxloop.domain.automations import (
    CaseAction,
    EmailAction,
    FollowUpAction,
    RuleDefinition,
    RuleIn,
    SurveyAction,
    TraitAction,
    WebhookAction,
)
from cxloop.domain.segments import StageRule
from cxloop.domain.values import explain_error, iso_utc
from cxloop.events.base import EventQuery, EventStore
from cxloop.feedback.surveys import get_survey
from cxloop.lifecycle.service import NotFound, department_id, get_model
from cxloop.segments import segments_t
from cxloop.store import audit
from cxloop.store.models import Automation, AutomationRun, AutomationStep

rules_t = cast(Table, Automation.__table__)
runs_t = cast(Table, AutomationRun.__table__)
steps_t = cast(Table, AutomationStep.__table__)


def parse(data: Any) -> RuleIn:
    """A rule from JSON or YAML data, with pydantic's errors joined into one message that
    names each field."""
    try:
        rule = RuleIn.model_validate(data)
        rule.definition()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where, message = explain_error(error["loc"], str(error["msg"]))
            problems.append(f"{where}: {message}" if where else message)
        raise ValueError("; ".join(problems)) from None
    return rule


def _check_names(conn: Connection, definition: RuleDefinition) -> None:
    t = definition.trigger
    if t.model is not None:
        try:
            _id, model, _v = get_model(conn, t.model)
        except NotFound:
            raise ValueError(f"trigger.model: no lifecycle model {t.model!r}") from None
        if t.stage is not None and t.stage not in {s.key for s in model.stages}:
            raise ValueError(f"trigger.stage: {t.stage!r} is not a stage of {t.model}")
    if t.survey is not None:
        try:
            get_survey(conn, t.survey)
        except LookupError:
            raise ValueError(f"trigger.survey: no survey with id {t.survey}") from None
    if t.department is not None:
        department_id(conn, t.department, "trigger.department")
    if definition.conditions is not None:
        for index, rule in enumerate(definition.conditions.rules):
            if isinstance(rule, StageRule):
                try:
                    _id, model, _v = get_model(conn, rule.model)
                except NotFound:
                    raise ValueError(
                        f"conditions.rules.{index}.model: no lifecycle model {rule.model!r}"
                    ) from None
                if rule.stage not in {s.key for s in model.stages}:
                    raise ValueError(
                        f"conditions.rules.{index}.stage: {rule.stage!r} is not a stage of "
                        f"{rule.model}"
                    )
    for index, action in enumerate(definition.actions):
        where = f"actions.{index}"
        if isinstance(action, SurveyAction):
            try:
                survey = get_survey(conn, action.survey)
            except LookupError:
                raise ValueError(f"{where}.survey: no survey with id {action.survey}") from None
            if survey["audience"] != "customers":
                raise ValueError(f"{where}.survey: rules send customer surveys only")
        elif isinstance(action, WebhookAction):
            found = conn.execute(
                select(endpoints_t.c.id).where(endpoints_t.c.name == action.endpoint)
            ).first()
            if found is None:
                raise ValueError(f"{where}.endpoint: no webhook named {action.endpoint!r}")
        if isinstance(action, FollowUpAction | CaseAction) and action.department:
            department_id(conn, action.department, f"{where}.department")
        if isinstance(action, CaseAction) and action.model is not None:
            try:
                get_model(conn, action.model)
            except NotFound:
                raise ValueError(f"{where}.model: no lifecycle model {action.model!r}") from None
    for name in rule_names(definition)["segment"]:
        if conn.execute(select(segments_t.c.id).where(segments_t.c.name == name)).first() is None:
            raise ValueError(f"segment: no saved segment named {name!r}")


class Unchecked(dict[str, Any]):
    """The properties of an event none of which is stored yet: any name is accepted and
    shows as [name] in the preview, since there is nothing to check it against."""

    def __missing__(self, key: str) -> str:
        return f"[{key}]"


def sample_context(
    conn: Connection,
    events: EventStore | None,
    definition: RuleDefinition,
    customer_ref: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """The variables a run of this rule would have, for a real customer: the one asked
    for, or the customer of the latest stored occurrence of the trigger."""
    t = definition.trigger
    event: dict[str, Any] = {}
    customer_id: int | None = None
    if t.on == "event" and events is not None:
        found = events.query(EventQuery(event=t.event, type="track", limit=1))
        if found:
            row = found[0]
            customer_id = row.get("customer_id")
            event = {
                "name": row.get("event"),
                "properties": row.get("properties") or {},
                "timestamp": iso_utc(row.get("timestamp")),
                "message_id": row.get("message_id"),
            }
    if customer_ref is not None:
        customer_id = resolve_customer_id(conn, customer_ref)
    if customer_id is None:
        customer_id = conn.execute(
            select(customers_t.c.id)
            .where(customers_t.c.merged_into_id.is_(None))
            .order_by(customers_t.c.last_seen.desc().nulls_last(), customers_t.c.id.desc())
            .limit(1)
        ).scalar()
    if customer_id is None:
        raise ValueError("templates: there is no customer yet to preview the templates with")
    found_ctx: dict[str, Any] = {
        "customer": context.customer_context(conn, int(customer_id)),
        "rule": {"name": "preview"},
        "now": context.now_context(),
        "timezone": timezone,
    }
    if t.on == "event":
        found_ctx["event"] = event or {
            "name": t.event,
            "properties": Unchecked(),
            "timestamp": iso_utc(datetime.now(UTC)),
            "message_id": "preview",
        }
    kind = {
        "stage_entered": "stage",
        "stage_exited": "stage",
        "response": "response",
        "case_opened": "case",
        "case_resolved": "case",
        "followup_overdue": "followup",
    }.get(t.on)
    if kind is not None:
        found_ctx[kind] = dict(SAMPLES[kind])
        if kind == "stage":
            found_ctx[kind].update(model=t.model, stage=t.stage, to_stage=t.stage)
    return found_ctx


def render_actions(
    conn: Connection, definition: RuleDefinition, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every template of the rule rendered with ``variables`` (what the preview shows)."""
    shown: list[dict[str, Any]] = []
    for index, action in enumerate(definition.actions):
        where = f"actions.{index}"
        ctx = dict(variables)
        if isinstance(action, EmailAction):
            if action.staff_from is not None:
                ref = (ctx.get("event") or {}).get("properties", {}).get(action.staff_from)
                staff = None if ref is None else context.staff_context(conn, str(ref))
                ctx["staff"] = staff or {
                    "id": 0,
                    "ref": ref,
                    "name": "(staff member)",
                    "first_name": "(staff)",
                    "bio": "",
                    "has_photo": False,
                    "photo_src": "",
                }
            shown.append(
                {
                    "type": "email",
                    "subject": templates.one_line(
                        templates.render(action.subject, ctx, f"{where}.subject")
                    ),
                    "text": templates.render(action.text, ctx, f"{where}.text"),
                    "html": None
                    if action.html is None
                    else templates.render(action.html, ctx, f"{where}.html", html=True),
                }
            )
        elif isinstance(action, FollowUpAction):
            shown.append(
                {
                    "type": "followup",
                    "summary": templates.render(action.summary, ctx, f"{where}.summary"),
                }
            )
        elif isinstance(action, CaseAction):
            shown.append(
                {
                    "type": "case",
                    "subject": templates.render(action.subject, ctx, f"{where}.subject"),
                }
            )
        elif isinstance(action, TraitAction):
            value = action.value
            if isinstance(value, str):
                value = templates.render(value, ctx, f"{where}.value")
            shown.append({"type": "set_trait", "trait": action.trait, "value": value})
        else:
            shown.append(json.loads(action.model_dump_json()))
    return shown


def preview(
    conn: Connection,
    events: EventStore | None,
    new: RuleIn,
    customer: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """What the rule's actions would say for a real customer; raises on a name the
    project does not have or a template that does not render."""
    definition = new.definition()
    _check_names(conn, definition)
    variables = sample_context(conn, events, definition, customer, timezone)
    return {
        "customer": variables["customer"]["id"],
        "event_checked": not isinstance(
            (variables.get("event") or {}).get("properties"), Unchecked
        ),
        "variables": variables,
        "actions": render_actions(conn, definition, variables),
    }


def save_rule(
    conn: Connection,
    events: EventStore | None,
    new: RuleIn,
    actor: str,
    *,
    replace: str | None = None,
    preview_customer: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any]:
    """Create a rule (or change the one named ``replace``) once it checks out; the same
    transaction writes the audit entry."""
    definition = new.definition()
    preview(conn, events, new, preview_customer, timezone)
    now = datetime.now(UTC)
    name = new.name.strip()
    values = {
        "name": name,
        "description": (new.description or "").strip() or None,
        "definition": json.loads(definition.model_dump_json()),
        "enabled": new.enabled,
        "updated_at": now,
    }
    clash = conn.execute(select(rules_t.c.id).where(rules_t.c.name == name)).scalar()
    if replace is None:
        if clash is not None:
            raise ValueError(f"name: a rule named {name!r} exists already")
        rule_id = conn.execute(
            insert(rules_t)
            .values(**values, version=1, enabled_at=now, created_by=actor, created_at=now)
            .returning(rules_t.c.id)
        ).scalar_one()
        audit.record(
            conn,
            actor,
            "created",
            "rule",
            rule_id,
            f"rule {name} created",
            {"definition": values["definition"]},
        )
    else:
        old = _row(conn, replace)
        if clash is not None and clash != old.id:
            raise ValueError(f"name: a rule named {name!r} exists already")
        rule_id = old.id
        if new.enabled and not old.enabled:
            values["enabled_at"] = now
        conn.execute(
            update(rules_t).where(rules_t.c.id == old.id).values(**values, version=old.version + 1)
        )
        audit.record(
            conn,
            actor,
            "changed",
            "rule",
            rule_id,
            f"rule {replace} changed" + (f" (now {name})" if name != replace else ""),
            {"before": old.definition, "after": values["definition"]},
        )
    return get_rule(conn, name)


def _row(conn: Connection, name: str) -> Any:
    row = conn.execute(select(rules_t).where(rules_t.c.name == name)).first()
    if row is None:
        raise NotFound("rule", f"no rule named {name!r}")
    return row


RULE_FIELDS = (
    "name",
    "description",
    "trigger",
    "conditions",
    "timing",
    "actions",
    "once_per_customer_days",
)


def rule_yaml(rule: dict[str, Any]) -> str:
    """A rule as the YAML one writes (fields left at their defaults left out), to edit and
    save again with ``cxloop automations update`` or on the settings page."""

    def lean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: lean(v) for k, v in value.items() if v not in (None, [], (), {})}
        if isinstance(value, list | tuple):
            return [lean(v) for v in value]
        return value

    body = lean({k: rule.get(k) for k in RULE_FIELDS})
    if body.get("timing") == {"delay": "0m"}:
        del body["timing"]
    if body.get("once_per_customer_days") == 0:
        del body["once_per_customer_days"]
    return yaml.dump(body, Dumper=_RuleDumper, sort_keys=False, allow_unicode=True, width=100)


class _RuleDumper(yaml.SafeDumper):
    """Templates of several lines as YAML blocks (``|``), as people write them."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_RuleDumper.add_representer(str, _text)


def _shown(row: Any, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "name": row.name,
        "description": row.description,
        "enabled": bool(row.enabled),
        "version": row.version,
        **row.definition,
        "runs": counts or {},
        "created_by": row.created_by,
        "created_at": iso_utc(row.created_at),
        "updated_at": iso_utc(row.updated_at),
    }


def _counts(conn: Connection, rule_ids: list[int]) -> dict[int, dict[str, int]]:
    found: dict[int, dict[str, int]] = {i: {} for i in rule_ids}
    for rule_id, status, n in conn.execute(
        select(runs_t.c.automation_id, runs_t.c.status, func.count())
        .where(runs_t.c.automation_id.in_(rule_ids))
        .group_by(runs_t.c.automation_id, runs_t.c.status)
    ):
        found[int(rule_id)][status] = int(n)
    return found


def get_rule(conn: Connection, name: str) -> dict[str, Any]:
    row = _row(conn, name)
    return _shown(row, _counts(conn, [int(row.id)])[int(row.id)])


def list_rules(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(rules_t).order_by(rules_t.c.name)).all()
    counts = _counts(conn, [int(r.id) for r in rows])
    return [_shown(r, counts[int(r.id)]) for r in rows]


def set_enabled(conn: Connection, name: str, enabled: bool, actor: str) -> dict[str, Any]:
    """Enabling counts from now: what happened while a rule was off does not fire it."""
    row = _row(conn, name)
    values: dict[str, Any] = {"enabled": enabled, "updated_at": datetime.now(UTC)}
    if enabled and not row.enabled:
        values["enabled_at"] = datetime.now(UTC)
    conn.execute(update(rules_t).where(rules_t.c.id == row.id).values(**values))
    audit.record(
        conn,
        actor,
        "enabled" if enabled else "disabled",
        "rule",
        row.id,
        f"rule {name} {'enabled' if enabled else 'disabled'}",
    )
    return get_rule(conn, name)


def delete_rule(conn: Connection, name: str, actor: str) -> None:
    row = _row(conn, name)
    conn.execute(rules_t.delete().where(rules_t.c.id == row.id))
    audit.record(
        conn,
        actor,
        "deleted",
        "rule",
        row.id,
        f"rule {name} deleted",
        {"definition": row.definition},
    )


def list_runs(
    conn: Connection,
    *,
    rule: str | None = None,
    status: str | None = None,
    customer: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """A rule's runs (or every rule's), newest first: trigger, customer, each action's
    outcome."""
    if status is not None and status not in ("scheduled", "running", "done", "skipped", "failed"):
        raise ValueError(
            f"status: must be scheduled, running, done, skipped or failed, not {status!r}"
        )
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be between 1 and 1000")
    r = runs_t.c
    query = (
        select(runs_t, rules_t.c.name)
        .join(rules_t, rules_t.c.id == r.automation_id)
        .order_by(r.id.desc())
        .limit(limit)
    )
    if rule is not None:
        query = query.where(r.automation_id == _row(conn, rule).id)
    if status is not None:
        query = query.where(r.status == status)
    if customer is not None:
        query = query.where(r.customer_id == resolve_customer_id(conn, customer))
    if before is not None:
        query = query.where(r.id < before)
    rows = conn.execute(query).all()
    steps: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for s in conn.execute(
            select(steps_t)
            .where(steps_t.c.run_id.in_([int(x.id) for x in rows]))
            .order_by(steps_t.c.run_id, steps_t.c.position)
        ):
            steps.setdefault(int(s.run_id), []).append(
                {
                    "action": s.action,
                    "status": s.status,
                    "outcome": s.outcome,
                    "finished_at": iso_utc(s.finished_at),
                }
            )
    return [
        {
            "id": int(x.id),
            "rule": x.name,
            "customer_id": int(x.customer_id),
            "occurrence": x.occurrence,
            "trigger": x.trigger,
            "status": x.status,
            "outcome": x.outcome,
            "due_at": iso_utc(x.due_at),
            "created_at": iso_utc(x.created_at),
            "finished_at": iso_utc(x.finished_at),
            "actions": steps.get(int(x.id), []),
        }
        for x in rows
    ]


def automation_counts(conn: Connection) -> dict[str, int]:
    """What the settings overview counts: rules, webhook endpoints, staff, audit entries."""
    from cxloop.automations.webhooks import endpoints_t
    from cxloop.store.audit import audit_t
    from cxloop.store.models import StaffMember

    staff_t = cast(Table, StaffMember.__table__)
    return {
        name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
        for name, table in (
            ("automations", rules_t),
            ("webhooks", endpoints_t),
            ("staff", staff_t),
            ("audit", audit_t),
        )
    }
