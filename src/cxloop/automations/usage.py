"""Who still uses a segment, a lifecycle model or a webhook endpoint.

Rules, survey triggers, surveys, segments and report schedules name these by key, not by a
foreign key, so deleting one would leave a rule that fails on every run, a trigger that
never fires again, a survey whose detractors reach no department, or a segment that
matches nobody, and nobody would be told. Deleting is refused instead, with
the users named, so that one changes or removes them first. The same holds for a stage that
a new version of its lifecycle model leaves out.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, select

from cxloop.domain.automations import (
    CaseAction,
    InSegment,
    RuleDefinition,
    SegmentAction,
    WebhookAction,
)
from cxloop.domain.segments import SegmentDefinition, StageRule
from cxloop.lifecycle.service import Conflict
from cxloop.store.models import (
    Automation,
    Department,
    ReportSchedule,
    Segment,
    Survey,
    SurveyTrigger,
)

Kind = Literal["segment", "model", "webhook"]

rules_t = cast(Table, Automation.__table__)
segments_t = cast(Table, Segment.__table__)
triggers_t = cast(Table, SurveyTrigger.__table__)
schedules_t = cast(Table, ReportSchedule.__table__)
surveys_t = cast(Table, Survey.__table__)
departments_t = cast(Table, Department.__table__)


def rule_names(definition: RuleDefinition) -> dict[Kind, list[str]]:
    """The segments, lifecycle models and webhook endpoints a rule names, in the order
    the rule names them (trigger, conditions, actions)."""
    named: dict[Kind, list[str]] = {"segment": [], "model": [], "webhook": []}
    trigger = definition.trigger
    if trigger.segment:
        named["segment"].append(trigger.segment)
    if trigger.model:
        named["model"].append(trigger.model)
    for check in definition.conditions.rules if definition.conditions else ():
        if isinstance(check, InSegment):
            named["segment"].append(check.segment)
        elif isinstance(check, StageRule):
            named["model"].append(check.model)
    for action in definition.actions:
        if isinstance(action, SegmentAction):
            named["segment"].append(action.segment)
        elif isinstance(action, WebhookAction):
            named["webhook"].append(action.endpoint)
        elif isinstance(action, CaseAction) and action.model:
            named["model"].append(action.model)
    return named


def rule_stages(definition: RuleDefinition) -> list[tuple[str, str]]:
    """The (model, stage) pairs a rule names: its stage trigger and its stage conditions."""
    pairs = []
    trigger = definition.trigger
    if trigger.model and trigger.stage:
        pairs.append((trigger.model, trigger.stage))
    for check in definition.conditions.rules if definition.conditions else ():
        if isinstance(check, StageRule):
            pairs.append((check.model, check.stage))
    return pairs


def users_of(conn: Connection, kind: Kind, name: str) -> list[str]:
    """What uses ``name``, each as people would look it up: ``rule NAME``, ``survey
    trigger ID`` (an active one: a paused trigger checks its stage again when resumed),
    ``segment NAME``, ``survey ID (NAME)``, ``the report schedule of DEPARTMENT``."""
    found = []
    for rule, definition in conn.execute(select(rules_t.c.name, rules_t.c.definition)):
        if name in rule_names(RuleDefinition.model_validate(definition))[kind]:
            found.append(f"rule {rule!r}")
    if kind == "model":
        active = conn.execute(
            select(triggers_t.c.id)
            .where(triggers_t.c.stage_model == name, triggers_t.c.active.is_(True))
            .order_by(triggers_t.c.id)
        ).scalars()
        found += [f"survey trigger {trigger_id}" for trigger_id in active]
        found += [f"survey {s.id} ({s.name!r})" for s in _surveys_on(conn, name)]
        for segment, definition in conn.execute(select(segments_t.c.name, segments_t.c.definition)):
            rules = SegmentDefinition.model_validate(definition).rules
            if any(isinstance(r, StageRule) and r.model == name for r in rules):
                found.append(f"segment {segment!r}")
        reports = conn.execute(
            select(departments_t.c.name)
            .join(schedules_t, schedules_t.c.department_id == departments_t.c.id)
            .where(schedules_t.c.model == name)
            .order_by(departments_t.c.name)
        ).scalars()
        found += [f"the report schedule of {department!r}" for department in reports]
    return found


def _surveys_on(conn: Connection, model: str) -> list[Any]:
    """Surveys whose answers are given in a stage of ``model`` (``surveys update`` ties
    one elsewhere, or to none)."""
    return list(
        conn.execute(
            select(surveys_t.c.id, surveys_t.c.name, surveys_t.c.stage)
            .where(surveys_t.c.stage_model == model)
            .order_by(surveys_t.c.id)
        )
    )


def refuse_if_used(conn: Connection, kind: Kind, name: str) -> None:
    """Raise :class:`Conflict` (409 in the API) naming every user of ``name``."""
    users = users_of(conn, kind, name)
    if users:
        raise Conflict(
            kind,
            f"{name!r} is still used by {', '.join(users)}; change or delete "
            f"{'it' if len(users) == 1 else 'them'} first",
        )


def stage_users(conn: Connection, model: str, stages: Collection[str]) -> list[str]:
    """What names one of ``stages`` of ``model``, each with the stage it names."""
    wanted = set(stages)
    found = []
    for rule, definition in conn.execute(
        select(rules_t.c.name, rules_t.c.definition).order_by(rules_t.c.name)
    ):
        pairs = rule_stages(RuleDefinition.model_validate(definition))
        named = sorted({stage for key, stage in pairs if key == model and stage in wanted})
        found += [f"rule {rule!r} (stage {stage!r})" for stage in named]
    active = conn.execute(
        select(triggers_t.c.id, triggers_t.c.stage)
        .where(triggers_t.c.stage_model == model, triggers_t.c.active.is_(True))
        .order_by(triggers_t.c.id)
    ).all()
    found += [f"survey trigger {t.id} (stage {t.stage!r})" for t in active if t.stage in wanted]
    found += [
        f"survey {s.id} ({s.name!r}, stage {s.stage!r})"
        for s in _surveys_on(conn, model)
        if s.stage in wanted
    ]
    for segment, definition in conn.execute(
        select(segments_t.c.name, segments_t.c.definition).order_by(segments_t.c.name)
    ):
        rules = SegmentDefinition.model_validate(definition).rules
        named = sorted(
            {r.stage for r in rules if isinstance(r, StageRule) and r.model == model} & wanted
        )
        found += [f"segment {segment!r} (stage {stage!r})" for stage in named]
    return found


def refuse_dropping_stages(conn: Connection, model: str, dropped: Collection[str]) -> None:
    """Raise :class:`Conflict` on ``stages`` when a new version of ``model`` leaves out a
    stage that something still names: it would never match or fire again."""
    users = stage_users(conn, model, dropped) if dropped else []
    if users:
        raise Conflict(
            "stages",
            f"this version of {model!r} leaves out a stage still used by {', '.join(users)}; "
            "keep the stage, or change or delete "
            f"{'it' if len(users) == 1 else 'them'} first",
        )
