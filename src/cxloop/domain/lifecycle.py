"""Lifecycle models and the stage fold: where a customer stands, from their events alone.

A model is data (ordered stages with entry rules, exit rules, a backward policy). A
customer's stage history is a pure function of the model and the customer's events in
(timestamp, message id) order, so folding events one batch at a time and folding them all
at once give the same history. The engine relies on that: it folds forward while events
arrive in order and folds a customer again from the start when an older event arrives late
or two customers merge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

Op = Literal["equals", "not_equals", "contains", "gt", "gte", "lt", "lte", "in", "exists"]
Backward = Literal["forward_only", "allow"]
Kind = Literal["enter", "progress", "back", "exit"]

_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_NUMERIC_OPS = {"gt", "gte", "lt", "lte"}
INACTIVE_REASON = "inactive"  # the reason recorded for an exit by inactivity


def _key_shape(value: str) -> str:
    if not _KEY.match(value):
        raise ValueError("use lower-case letters, digits, - and _ (at most 63)")
    return value


Key = Annotated[str, AfterValidator(_key_shape)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Condition(_Strict):
    """One test on a property of the event (or on a trait of the customer)."""

    field: Annotated[str, Field(min_length=1, max_length=200)]
    op: Op = "equals"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        if self.op in _NUMERIC_OPS and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"op {self.op} compares numbers: value must be a number")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError("op in needs a list as value")
        if self.op == "contains" and not isinstance(self.value, str):
            raise ValueError("op contains needs a text value")
        if self.op in ("equals", "not_equals") and self.value is None:
            raise ValueError(f"op {self.op} needs a value")
        return self

    def holds(self, values: Mapping[str, Any]) -> bool:
        found, actual = _lookup(values, self.field)
        if self.op == "exists":
            return found and actual is not None and actual != ""
        if not found or actual is None:
            return self.op == "not_equals"
        if self.op == "equals":
            return _same(actual, self.value)
        if self.op == "not_equals":
            return not _same(actual, self.value)
        if self.op == "contains":
            return isinstance(actual, str) and self.value.lower() in actual.lower()
        if self.op == "in":
            return any(_same(actual, v) for v in self.value)
        number = _number(actual)
        if number is None:
            return False
        if self.op == "gt":
            return bool(number > self.value)
        if self.op == "gte":
            return bool(number >= self.value)
        if self.op == "lt":
            return bool(number < self.value)
        return bool(number <= self.value)


class Rule(_Strict):
    """An event (track name or page name), with conditions on its properties, or a set of
    conditions on the customer's traits (checked when an identify sets one of them)."""

    event: str | None = None
    page: str | None = None
    where: tuple[Condition, ...] = ()
    traits: tuple[Condition, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> Rule:
        kinds = [k for k in ("event", "page") if getattr(self, k)] + (
            ["traits"] if self.traits else []
        )
        if len(kinds) != 1:
            raise ValueError("a rule names exactly one of event, page or traits")
        if self.traits and self.where:
            raise ValueError("where applies to event and page rules; trait rules list traits")
        return self

    def matches(self, touch: Touch, traits: Mapping[str, Any]) -> bool:
        if self.event is not None:
            return (
                touch.type == "track"
                and touch.event == self.event
                and all(c.holds(touch.properties) for c in self.where)
            )
        if self.page is not None:
            return (
                touch.type in ("page", "screen")
                and touch.event == self.page
                and all(c.holds(touch.properties) for c in self.where)
            )
        return (
            touch.type == "identify"
            and any(c.field in touch.traits for c in self.traits)
            and all(c.holds(traits) for c in self.traits)
        )


class ExitRule(_Strict):
    """Leaving the lifecycle: an event or traits (like an entry rule), or inactivity."""

    event: str | None = None
    page: str | None = None
    where: tuple[Condition, ...] = ()
    traits: tuple[Condition, ...] = ()
    inactive_days: Annotated[float, Field(gt=0)] | None = None
    reason: str | None = None
    reason_property: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ExitRule:
        if self.inactive_days is not None:
            if self.event or self.page or self.where or self.traits or self.reason_property:
                raise ValueError("an inactivity exit takes only inactive_days and reason")
            return self
        Rule(event=self.event, page=self.page, where=self.where, traits=self.traits)
        if self.reason_property and self.traits:
            raise ValueError("reason_property reads an event property; trait exits use reason")
        return self

    @property
    def as_rule(self) -> Rule:
        return Rule(event=self.event, page=self.page, where=self.where, traits=self.traits)

    def reason_for(self, touch: Touch) -> str:
        if self.reason_property:
            found, value = _lookup(touch.properties, self.reason_property)
            if found and value not in (None, ""):
                return str(value)
        if self.reason:
            return self.reason
        return self.event or self.page or "traits"


class Stage(_Strict):
    key: Key
    name: Annotated[str, Field(min_length=1, max_length=200)]
    owner: Annotated[str, Field(min_length=1, max_length=120)]  # a department name
    target_days: Annotated[float, Field(gt=0)] | None = None
    enter: tuple[Rule, ...]

    @field_validator("enter")
    @classmethod
    def _reachable(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not value:
            raise ValueError("a stage needs at least one entry rule, or no customer can reach it")
        return value


class LifecycleModel(_Strict):
    key: Key
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    backward: Backward = "forward_only"
    stages: tuple[Stage, ...]
    exits: tuple[ExitRule, ...] = ()

    @model_validator(mode="after")
    def _stages(self) -> LifecycleModel:
        if len(self.stages) < 2:
            raise ValueError("stages: a lifecycle needs at least two stages")
        seen: set[str] = set()
        for stage in self.stages:
            if stage.key in seen:
                raise ValueError(f"stages: the key {stage.key!r} is used twice")
            seen.add(stage.key)
        if sum(1 for e in self.exits if e.inactive_days is not None) > 1:
            raise ValueError("exits: at most one inactivity exit")
        # An event matching several stages moves the customer to the furthest, so a stage
        # whose every rule also belongs to a later stage could never hold anyone.
        later: set[str] = set()
        for index in range(len(self.stages) - 1, -1, -1):
            rules = {r.model_dump_json() for r in self.stages[index].enter}
            if rules <= later:
                raise ValueError(
                    f"stages[{index}] ({self.stages[index].key}): every entry rule also enters "
                    "a later stage, which wins, so no customer could ever stand here"
                )
            later |= rules
        return self

    @property
    def inactive_after(self) -> timedelta | None:
        return rule_index(self).inactive_after

    @property
    def trait_names(self) -> frozenset[str]:
        """The traits any rule reads: the only ones the fold has to remember."""
        return rule_index(self).trait_names

    def position(self, key: str) -> int:
        return rule_index(self).positions[key]


# -- the fold -------------------------------------------------------------------------------


class Touch(NamedTuple):
    """An event as the stage fold needs it (``event`` holds the page name for pages).

    A named tuple: the engine builds one per stored event, and a frozen dataclass costs
    several times as much to create.
    """

    timestamp: datetime
    message_id: str
    type: str
    event: str | None
    properties: Mapping[str, Any]
    traits: Mapping[str, Any]

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.timestamp, self.message_id)


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of a customer in a model. ``to_stage`` is None for an exit."""

    cycle: int
    kind: Kind
    from_stage: str | None
    to_stage: str | None
    at: datetime
    message_id: str | None
    event: str | None
    reason: str | None = None
    skipped: tuple[str, ...] = ()

    @property
    def is_return(self) -> bool:
        return self.kind == "enter" and self.cycle > 1


@dataclass
class StageState:
    """Where the fold stands for one customer in one model."""

    cycle: int = 0
    stage: str | None = None
    entered_at: datetime | None = None
    last_activity: datetime | None = None
    last_order: tuple[datetime, str] | None = None
    swept_at: datetime | None = None  # an inactivity exit found by a sweep, not by an event
    traits: dict[str, Any] = field(default_factory=dict)
    inactive_exits: int = 0

    def accepts(self, first: Touch) -> bool:
        """True when ``first`` (the oldest new touch) comes after everything folded so far,
        so folding forward gives what a fold from scratch would."""
        if self.last_order is not None and first.order <= self.last_order:
            return False
        return self.swept_at is None or first.timestamp >= self.swept_at


@dataclass(frozen=True)
class RuleIndex:
    """A model's rules by what they look at, so a touch meets only the rules it could match."""

    entries: dict[tuple[str, str], tuple[tuple[int, Rule], ...]]  # (type, name) -> rules
    trait_entries: tuple[tuple[int, Rule], ...]
    exits: dict[tuple[str, str], tuple[tuple[ExitRule, Rule], ...]]
    trait_exits: tuple[tuple[ExitRule, Rule], ...]
    positions: dict[str, int]
    inactive_after: timedelta | None
    trait_names: frozenset[str]


_INDEXES: dict[int, tuple[LifecycleModel, RuleIndex]] = {}


def rule_index(model: LifecycleModel) -> RuleIndex:
    cached = _INDEXES.get(id(model))
    if cached is not None and cached[0] is model:
        return cached[1]
    entries: dict[tuple[str, str], list[tuple[int, Rule]]] = {}
    trait_entries: list[tuple[int, Rule]] = []
    for position, stage in enumerate(model.stages):
        for rule in stage.enter:
            for key in _keys(rule.event, rule.page):
                entries.setdefault(key, []).append((position, rule))
            if rule.traits:
                trait_entries.append((position, rule))
    exits: dict[tuple[str, str], list[tuple[ExitRule, Rule]]] = {}
    trait_exits: list[tuple[ExitRule, Rule]] = []
    for exit_rule in model.exits:
        if exit_rule.inactive_days is not None:
            continue
        pair = (exit_rule, exit_rule.as_rule)
        for key in _keys(exit_rule.event, exit_rule.page):
            exits.setdefault(key, []).append(pair)
        if exit_rule.traits:
            trait_exits.append(pair)
    index = RuleIndex(
        entries={k: tuple(v) for k, v in entries.items()},
        trait_entries=tuple(trait_entries),
        exits={k: tuple(v) for k, v in exits.items()},
        trait_exits=tuple(trait_exits),
        positions={stage.key: n for n, stage in enumerate(model.stages)},
        inactive_after=next(
            (timedelta(days=e.inactive_days) for e in model.exits if e.inactive_days), None
        ),
        trait_names=frozenset(
            {c.field for s in model.stages for r in s.enter for c in r.traits}
            | {c.field for e in model.exits for c in e.traits}
        ),
    )
    if len(_INDEXES) > 256:
        _INDEXES.clear()
    _INDEXES[id(model)] = (model, index)
    return index


def _keys(event: str | None, page: str | None) -> list[tuple[str, str]]:
    if event is not None:
        return [("track", event)]
    if page is not None:
        return [("page", page), ("screen", page)]
    return []


def advance(model: LifecycleModel, state: StageState, touches: Iterable[Touch]) -> list[Transition]:
    """Fold ``touches`` (in (timestamp, message id) order, all after ``state``) into state."""
    out: list[Transition] = []
    inactive_after = model.inactive_after
    watched = model.trait_names
    index = rule_index(model)
    for touch in touches:
        if (
            inactive_after is not None
            and state.stage is not None
            and state.last_activity is not None
            and touch.timestamp >= state.last_activity + inactive_after
        ):
            out.append(
                _exit(state, state.last_activity + inactive_after, None, None, INACTIVE_REASON)
            )
        if touch.type == "identify" and watched:
            for name in watched & touch.traits.keys():
                state.traits[name] = touch.traits[name]
        target = entry_target(index, touch, state.traits)
        if target is not None and (state.stage is None or target != index.positions[state.stage]):
            moved = _move(model, state, target, touch)
            if moved is not None:
                out.append(moved)
        if state.stage is not None:
            reason = exit_reason(index, touch, state.traits)
            if reason is not None:
                out.append(_exit(state, touch.timestamp, touch.message_id, touch.event, reason))
        state.last_activity = touch.timestamp
        state.last_order = touch.order
        state.swept_at = None
    return out


def entry_target(index: RuleIndex, touch: Touch, traits: Mapping[str, Any]) -> int | None:
    """The furthest stage whose entry rule the touch meets (None when it meets none)."""
    candidates = index.entries.get((touch.type, touch.event or ""), ())
    if touch.type == "identify" and index.trait_entries:
        candidates = (*candidates, *index.trait_entries)
    target = None
    for position, rule in candidates:
        # Candidates come by (type, name): a rule without conditions already matches.
        if (target is None or position > target) and (
            not (rule.where or rule.traits) or rule.matches(touch, traits)
        ):
            target = position
    return target


def exit_reason(index: RuleIndex, touch: Touch, traits: Mapping[str, Any]) -> str | None:
    """The reason of the first exit rule the touch meets (None when it meets none)."""
    exits = index.exits.get((touch.type, touch.event or ""), ())
    if touch.type == "identify" and index.trait_exits:
        exits = (*exits, *index.trait_exits)
    for exit_rule, rule in exits:
        if rule.matches(touch, traits):
            return exit_rule.reason_for(touch)
    return None


def could_change_history(model: LifecycleModel, state: StageState, touch: Touch) -> bool:
    """Whether a touch older than what was folded could change the customer's history.

    One that no rule reads (not an entry or exit event, no trait a rule watches) only moves
    the last activity, and only between events already folded, so it changes nothing,
    unless the customer has left by inactivity before: a late activity inside that silent
    spell would have kept them in.
    """
    index = rule_index(model)
    key = (touch.type, touch.event or "")
    if key in index.entries or key in index.exits:
        return True
    if touch.type == "identify" and not model.trait_names.isdisjoint(touch.traits):
        return True
    return model.inactive_after is not None and state.inactive_exits > 0


def sweep(model: LifecycleModel, state: StageState, as_of: datetime) -> list[Transition]:
    """Inactivity exits due by ``as_of`` for a customer with no newer event."""
    inactive_after = model.inactive_after
    if inactive_after is None or state.stage is None or state.last_activity is None:
        return []
    due = state.last_activity + inactive_after
    if as_of < due:
        return []
    state.swept_at = due
    return [_exit(state, due, None, None, INACTIVE_REASON)]


def fold(
    model: LifecycleModel, touches: Sequence[Touch], as_of: datetime | None = None
) -> tuple[StageState, list[Transition]]:
    """A customer's whole history from scratch (the reference the engine must agree with)."""
    state = StageState()
    ordered = sorted(touches, key=lambda t: t.order)
    out = advance(model, state, ordered)
    if as_of is not None:
        out += sweep(model, state, as_of)
    return state, out


def _move(model: LifecycleModel, state: StageState, target: int, touch: Touch) -> Transition | None:
    stages = model.stages
    key = stages[target].key
    if state.stage is None:
        state.cycle += 1
        kind: Kind = "enter"
        skipped = tuple(s.key for s in stages[:target])
        previous = None
    else:
        current = model.position(state.stage)
        if target == current:
            return None
        if target < current and model.backward == "forward_only":
            return None
        kind = "progress" if target > current else "back"
        skipped = tuple(s.key for s in stages[current + 1 : target]) if target > current else ()
        previous = state.stage
    state.stage = key
    state.entered_at = touch.timestamp
    return Transition(
        cycle=state.cycle,
        kind=kind,
        from_stage=previous,
        to_stage=key,
        at=touch.timestamp,
        message_id=touch.message_id,
        event=touch.event,
        skipped=skipped,
    )


def _exit(
    state: StageState, at: datetime, message_id: str | None, event: str | None, reason: str
) -> Transition:
    transition = Transition(
        cycle=state.cycle,
        kind="exit",
        from_stage=state.stage,
        to_stage=None,
        at=at,
        message_id=message_id,
        event=event,
        reason=reason,
    )
    state.stage = None
    state.entered_at = None
    if message_id is None:
        state.inactive_exits += 1
    return transition


def _lookup(values: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """A key, or a dotted path into nested objects (``address.city``)."""
    if path in values:
        return True, values[path]
    current: Any = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _same(actual: Any, expected: Any) -> bool:
    """Equal as given, or as numbers ("42" equals 42), or as text ignoring case."""
    if actual == expected:
        return True
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b
    if isinstance(actual, str | bool | int | float) and isinstance(
        expected, str | bool | int | float
    ):
        return str(actual).strip().lower() == str(expected).strip().lower()
    return False
