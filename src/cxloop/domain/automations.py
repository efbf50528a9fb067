"""Rules that act on the journey: *when* something happens to a customer (the trigger),
*if* the customer meets the conditions, *after* a delay, *do* the actions.

This module is the shape of a rule and the checks that need no data: which fields each
trigger takes, that delays parse, and that a rule cannot trigger itself (a rule on cases
opened that opens a case would run for ever). What a rule names (a survey, a segment, a
webhook endpoint, a stage) is checked against the project when it is saved
(``cxloop.automations.rules``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxloop.domain.lifecycle import Condition
from cxloop.domain.segments import NAME_PATTERN, ScoreRule, StageRule, TraitRule

TriggerKind = Literal[
    "event",
    "stage_entered",
    "stage_exited",
    "response",
    "case_opened",
    "case_resolved",
    "followup_overdue",
    "schedule",
]
TRIGGER_KINDS: tuple[str, ...] = TriggerKind.__args__  # type: ignore[attr-defined]
_DURATION = re.compile(r"^\s*(\d+)\s*(m|min|h|d)\s*$")
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 1440}
MAX_DELAY_DAYS = 365
MAX_ACTIONS = 10
Name = Annotated[str, Field(min_length=1, max_length=120, pattern=NAME_PATTERN)]
Template = Annotated[str, Field(min_length=1, max_length=20_000)]


def minutes_in(text: str, field: str) -> int:
    """Minutes in ``90m``, ``24h`` or ``3d``."""
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(f"{field}: give a number with m, h or d (90m, 24h, 3d), not {text!r}")
    minutes = int(found.group(1)) * _UNIT_MINUTES[found.group(2)]
    if minutes > MAX_DELAY_DAYS * 1440:
        raise ValueError(f"{field}: at most {MAX_DELAY_DAYS} days")
    return minutes


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoreTest(_Strict):
    op: Literal["equals", "gt", "gte", "lt", "lte"] = "lte"
    value: Annotated[float, Field(ge=0, le=10)]

    def holds(self, score: float) -> bool:
        return {
            "equals": score == self.value,
            "gt": score > self.value,
            "gte": score >= self.value,
            "lt": score < self.value,
            "lte": score <= self.value,
        }[self.op]


class Trigger(_Strict):
    """What starts a run. Each kind takes its own fields:

    * ``event``: ``event`` (a track event's name) and ``where`` (conditions on its
      properties, as in lifecycle rules);
    * ``stage_entered`` / ``stage_exited``: ``model`` and ``stage`` (for an exit, without
      ``stage``: leaving the lifecycle from any stage);
    * ``response``: ``survey`` (an id) or ``measure`` (nps, csat, ces), and ``score``;
    * ``case_opened`` / ``case_resolved`` (``outcome`` positive or negative, optional);
    * ``followup_overdue``: optional ``department``;
    * ``schedule``: ``cron`` (five fields, the project's time zone) for the members of
      ``segment``.
    """

    on: TriggerKind
    event: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    where: Annotated[tuple[Condition, ...], Field(max_length=20)] = ()
    model: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    stage: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    survey: Annotated[int, Field(ge=1)] | None = None
    measure: Literal["nps", "csat", "ces"] | None = None
    score: ScoreTest | None = None
    outcome: Literal["positive", "negative"] | None = None
    department: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    cron: Annotated[str, Field(min_length=9, max_length=120)] | None = None
    segment: Name | None = None

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> Trigger:
        allowed = {
            "event": {"event", "where"},
            "stage_entered": {"model", "stage"},
            "stage_exited": {"model", "stage"},
            "response": {"survey", "measure", "score"},
            "case_opened": set(),
            "case_resolved": {"outcome"},
            "followup_overdue": {"department"},
            "schedule": {"cron", "segment"},
        }[self.on]
        for name in ("event", "where", "model", "stage", "survey", "measure", "score",
                     "outcome", "department", "cron", "segment"):  # fmt: skip
            given = getattr(self, name)
            if given not in (None, ()) and name not in allowed:
                raise ValueError(f"{name}: a trigger on {self.on} takes no {name}")
        needed = {
            "event": ("event",),
            "stage_entered": ("model", "stage"),
            "stage_exited": ("model",),
            "schedule": ("cron", "segment"),
        }.get(self.on, ())
        for name in needed:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: a trigger on {self.on} needs {name}")
        if self.on == "response" and self.survey is not None and self.measure is not None:
            raise ValueError("measure: name a survey or a measure, not both")
        if self.cron is not None:
            from croniter import croniter

            if len(self.cron.split()) != 5 or not croniter.is_valid(self.cron):
                raise ValueError(
                    f"cron: not a five-field cron expression (like '0 9 * * MON'): {self.cron!r}"
                )
        return self


class InSegment(_Strict):
    """Whether the customer is (or is not) a member of a saved segment."""

    kind: Literal["segment"] = "segment"
    segment: Name
    member: bool = True


Check = Annotated[TraitRule | StageRule | ScoreRule | InSegment, Field(discriminator="kind")]


class Conditions(_Strict):
    """Checked for the customer when the delay is over, just before the actions run, so a
    customer who no longer qualifies (came back, answered already) is skipped."""

    match: Literal["all", "any"] = "all"
    rules: Annotated[tuple[Check, ...], Field(min_length=1, max_length=50)]


class Timing(_Strict):
    """When the actions run: ``delay`` after the trigger (``3d``), or ``before`` a time
    carried by the trigger's event (``before: 24h`` of property ``of: scheduled_at``)."""

    delay: str = "0m"
    before: str | None = None
    of: Annotated[str, Field(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Timing:
        minutes_in(self.delay, "delay")
        if (self.before is None) != (self.of is None):
            raise ValueError("before: give both before (24h) and of (the property with the time)")
        if self.before is not None:
            minutes_in(self.before, "before")
            if minutes_in(self.delay, "delay"):
                raise ValueError("delay: give a delay after the trigger or a time before, not both")
        return self


class EmailAction(_Strict):
    """An e-mail to the customer from templates (subject, plain text, optional HTML). With
    ``staff_from``, the event property naming a staff member (a ``technician_id``): the
    templates get ``staff`` and the photo goes inline as ``cid:staff-photo``."""

    type: Literal["email"] = "email"
    subject: Annotated[str, Field(min_length=1, max_length=500)]
    text: Template
    html: Template | None = None
    staff_from: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class SurveyAction(_Strict):
    type: Literal["survey"] = "survey"
    survey: Annotated[int, Field(ge=1)]
    channel: Literal["email", "in_app"] = "email"
    expires_days: Annotated[int, Field(ge=1, le=365)] = 14


class WebhookAction(_Strict):
    """A signed POST to a registered webhook endpoint (its name), topic ``automation``."""

    type: Literal["webhook"] = "webhook"
    endpoint: Name


class FollowUpAction(_Strict):
    type: Literal["followup"] = "followup"
    summary: Annotated[str, Field(min_length=1, max_length=2000)]
    department: Annotated[str, Field(min_length=1, max_length=120)] | None = None


class CaseAction(_Strict):
    type: Literal["case"] = "case"
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    department: Annotated[str, Field(min_length=1, max_length=120)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    # The lifecycle model whose stage the case is filed under (default: the first the
    # customer is in).
    model: Annotated[str, Field(min_length=1, max_length=63)] | None = None


class TraitAction(_Strict):
    """Set a trait on the customer's profile; a text value is a template. A profile field's
    name (``city``, ``gender`` …) sets that field, as an identify message would; the e-mail
    address is refused, because identities hang on it and only identify changes them."""

    type: Literal["set_trait"] = "set_trait"
    trait: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f.]+$")]
    value: str | int | float | bool | None

    @model_validator(mode="after")
    def _not_an_identity(self) -> TraitAction:
        if self.trait == "email":
            raise ValueError(
                "trait: email is how customers are recognised; it changes only with an "
                "identify message, not a rule"
            )
        return self


class SegmentAction(_Strict):
    type: Literal["add_to_segment"] = "add_to_segment"
    segment: Name


Action = Annotated[
    EmailAction
    | SurveyAction
    | WebhookAction
    | FollowUpAction
    | CaseAction
    | TraitAction
    | SegmentAction,
    Field(discriminator="type"),
]

# What each action can cause, as the trigger kind it would start: a rule may not start
# itself. Rules that start each other are bounded at run time by the chain of causes.
CAUSES = {"survey": "response", "case": "case_opened", "followup": "followup_overdue"}
MAX_CHAIN = 3


class RuleDefinition(_Strict):
    trigger: Trigger
    conditions: Conditions | None = None
    timing: Timing = Timing()
    actions: Annotated[tuple[Action, ...], Field(min_length=1, max_length=MAX_ACTIONS)]
    # At most one run per customer in this many days (0: no limit).
    once_per_customer_days: Annotated[int, Field(ge=0, le=3650)] = 0

    @model_validator(mode="after")
    def _no_self_loop(self) -> RuleDefinition:
        check_loops(self.trigger, self.timing, self.actions)
        return self


def check_loops(trigger: Trigger, timing: Timing, actions: Sequence[Any]) -> None:
    for index, action in enumerate(actions):
        if CAUSES.get(action.type) == trigger.on:
            raise ValueError(
                f"actions.{index}: a {action.type} action would start this rule again "
                f"(it runs on {trigger.on}); the rule would loop"
            )
    if timing.before is not None and trigger.on != "event":
        raise ValueError("timing.before: only a rule on an event has a time to run before")


class RuleIn(BaseModel):
    """A rule as it is saved: a name, what it is for, whether it runs, and what it does."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=2000)] | None = None
    enabled: bool = True
    trigger: Trigger
    conditions: Conditions | None = None
    timing: Timing = Timing()
    actions: Annotated[list[Action], Field(min_length=1, max_length=MAX_ACTIONS)]
    once_per_customer_days: Annotated[int, Field(ge=0, le=3650)] = 0

    @model_validator(mode="after")
    def _no_self_loop(self) -> RuleIn:
        check_loops(self.trigger, self.timing, self.actions)
        return self

    def definition(self) -> RuleDefinition:
        return RuleDefinition(
            trigger=self.trigger,
            conditions=self.conditions,
            timing=self.timing,
            actions=tuple(self.actions),
            once_per_customer_days=self.once_per_customer_days,
        )
