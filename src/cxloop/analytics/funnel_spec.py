"""What a funnel query asks, and the rules a spec must pass before any SQL is built.

The spec is the one shape the CLI (``--steps`` flags or ``--spec FILE.json``) and the API
(``POST /api/v1/analytics/funnel``) take. Shape errors come from pydantic; the rules that
need the whole spec are small classes with a code each (as the best insight engines do), so
a client can tell "too few steps" from "a window over a year" without parsing prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cxloop.domain.values import FIRST_DAY, LAST_DAY

Op = Literal["eq", "neq", "contains", "gt", "lt", "in"]
Order = Literal["ordered", "strict", "unordered"]
Attribution = Literal["first_touch", "last_touch", "step"]

DEFAULT_WINDOW = timedelta(days=14)
MAX_WINDOW = timedelta(days=366)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PropertyFilter(_Strict):
    property: Name
    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> PropertyFilter:
        value = self.value
        if self.op in ("gt", "lt") and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise ValueError(f"op {self.op} compares numbers: value must be a number")
        if self.op == "in" and (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str | int | float | bool) for v in value)
        ):
            raise ValueError("op in needs a non-empty list of text, numbers or booleans")
        if self.op == "contains" and not isinstance(value, str):
            raise ValueError("op contains needs a text value")
        if self.op in ("eq", "neq") and not isinstance(value, str | int | float | bool):
            raise ValueError(f"op {self.op} needs a text, number or boolean value")
        return self


class FunnelStep(_Strict):
    event: Name
    filters: tuple[PropertyFilter, ...] = ()


class Exclusion(_Strict):
    """An event that must not happen between step ``from_step`` and ``to_step`` (numbered
    from 0; by default the whole funnel)."""

    event: Name
    filters: tuple[PropertyFilter, ...] = ()
    from_step: Annotated[int, Field(ge=0)] = 0
    to_step: Annotated[int, Field(ge=1)] | None = None


class Breakdown(_Strict):
    """Group by one of: an event property, a customer trait, or a saved segment (its
    members against everyone else)."""

    property: Name | None = None
    trait: Name | None = None
    segment: Name | None = None
    attribution: Attribution = "first_touch"
    step: Annotated[int, Field(ge=0)] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 25

    def names_one(self) -> bool:
        return sum(x is not None for x in (self.property, self.trait, self.segment)) == 1


ONE_BREAKDOWN = "name exactly one of property, trait or segment"


class FunnelSpec(_Strict):
    steps: tuple[FunnelStep, ...]
    window_seconds: int | None = None
    order: Order = "ordered"
    exclusions: tuple[Exclusion, ...] = ()
    breakdown: Breakdown | None = None
    date_from: str | None = None
    date_to: str | None = None

    @property
    def window(self) -> timedelta:
        """Zero, negative or missing means the default of 14 days."""
        if self.window_seconds is None or self.window_seconds <= 0:
            return DEFAULT_WINDOW
        return timedelta(seconds=self.window_seconds)

    def exclusion_range(self, exclusion: Exclusion) -> tuple[int, int]:
        last = len(self.steps) - 1
        return exclusion.from_step, last if exclusion.to_step is None else exclusion.to_step


@dataclass(frozen=True)
class SpecProblem:
    code: str
    field: str
    message: str


class SpecRejected(ValueError):
    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class _Rule:
    code: ClassVar[str]

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        raise NotImplementedError


class _TwoSteps(_Rule):
    code = "too_few_steps"

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        if len(spec.steps) >= 2:
            return []
        return [SpecProblem(self.code, "steps", "a funnel needs at least two steps")]


class _WindowAtMostAYear(_Rule):
    code = "window_too_long"

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        if spec.window <= MAX_WINDOW:
            return []
        return [
            SpecProblem(
                self.code,
                "window_seconds",
                f"the conversion window is at most {MAX_WINDOW.days} days "
                f"({int(MAX_WINDOW.total_seconds())} seconds)",
            )
        ]


class _ExclusionsFit(_Rule):
    code = "bad_exclusion"

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        problems: list[SpecProblem] = []
        last = len(spec.steps) - 1
        for n, exclusion in enumerate(spec.exclusions):
            start, end = spec.exclusion_range(exclusion)
            where = f"exclusions[{n}]"
            if spec.order == "unordered" and (start, end) != (0, last):
                # Unordered steps have no "between step a and step b" (as in PostHog).
                problems.append(
                    SpecProblem(
                        self.code,
                        where,
                        f"an unordered funnel takes exclusions over the whole funnel only "
                        f"(from_step 0, to_step {last})",
                    )
                )
                continue
            if end > len(spec.steps) - 1 or start >= end:
                problems.append(
                    SpecProblem(
                        self.code,
                        where,
                        f"from_step must come before to_step, both within 0..{len(spec.steps) - 1}",
                    )
                )
                continue
            for k in range(start, end + 1):
                step = spec.steps[k]
                if step.event == exclusion.event and set(step.filters) == set(exclusion.filters):
                    problems.append(
                        SpecProblem(
                            "exclusion_is_a_step",
                            where,
                            f"the exclusion is step {k} ({step.event!r}) itself: it would "
                            "exclude every customer who takes the step",
                        )
                    )
        return problems


class _BreakdownFits(_Rule):
    code = "bad_breakdown"

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        breakdown = spec.breakdown
        if breakdown is None:
            return []
        if not breakdown.names_one():
            return [SpecProblem(self.code, "breakdown", ONE_BREAKDOWN)]
        if breakdown.attribution == "step" and (
            breakdown.step is None or breakdown.step >= len(spec.steps)
        ):
            return [
                SpecProblem(
                    self.code,
                    "breakdown.step",
                    f"step attribution needs a step within 0..{len(spec.steps) - 1}",
                )
            ]
        return []


class _DatesRead(_Rule):
    code = "bad_date"

    def check(self, spec: FunnelSpec) -> list[SpecProblem]:
        return check_dates(spec.date_from, spec.date_to)


RULES: tuple[_Rule, ...] = (
    _TwoSteps(),
    _WindowAtMostAYear(),
    _ExclusionsFit(),
    _BreakdownFits(),
    _DatesRead(),
)


def refuse(problems: list[SpecProblem]) -> None:
    if problems:
        raise SpecRejected(problems)


def validate(spec: FunnelSpec) -> None:
    problems = [p for rule in RULES for p in rule.check(spec)]
    if problems:
        raise SpecRejected(problems)


def parse_window(text: str) -> int:
    """``7d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds, as seconds."""
    if text.strip().isdigit():
        return int(text)
    found = _DURATION.match(text)
    if not found:
        raise ValueError("use a number and a unit: 45s, 30m, 12h, 7d or 2w")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _parse_moment(text: str) -> datetime | date | None:
    try:
        if "T" in text or " " in text.strip():
            return datetime.fromisoformat(text)
        return date.fromisoformat(text)
    except ValueError:
        return None


def date_bounds(spec: FunnelSpec, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    return date_range(spec.date_from, spec.date_to, zone)


def date_range(
    date_from: str | None, date_to: str | None, zone: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    """The half-open range [start, end) of two bounds: a date means the whole day in the
    project's time zone (``date_to`` included); a time without a zone is read in it too."""

    def moment(text: str | None, end: bool) -> datetime | None:
        if text is None:
            return None
        parsed = _parse_moment(text)
        if parsed is None:
            return None
        if isinstance(parsed, datetime):
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)
        day = parsed + timedelta(days=1) if end else parsed
        return datetime.combine(day, time(), tzinfo=zone)

    start = moment(date_from, end=False)
    end = moment(date_to, end=True)
    if end is not None and date_to and isinstance(_parse_moment(date_to), datetime):
        end = end + timedelta(microseconds=1)  # a given instant is included
    return start, end


def check_dates(date_from: str | None, date_to: str | None) -> list[SpecProblem]:
    """Both bounds readable, and in order."""
    problems: list[SpecProblem] = []
    for name, text in (("date_from", date_from), ("date_to", date_to)):
        parsed = None if text is None else _parse_moment(text)
        if text is not None and parsed is None:
            problems.append(
                SpecProblem("bad_date", name, "use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]")
            )
        elif parsed is not None:
            day = parsed.date() if isinstance(parsed, datetime) else parsed
            if not FIRST_DAY <= day <= LAST_DAY:  # a zone or a day more would leave the calendar
                problems.append(
                    SpecProblem("bad_date", name, f"must be a day from {FIRST_DAY} to {LAST_DAY}")
                )
    if not problems and date_from and date_to:
        start, end = date_range(date_from, date_to, ZoneInfo("UTC"))
        if start is not None and end is not None and start >= end:
            problems.append(SpecProblem("bad_date", "date_to", "date_to comes before date_from"))
    return problems
