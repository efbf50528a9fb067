"""Saved segments: a group of customers described by rules, so that marketing can name it
once ("Spanish pros who bought in the last 30 days") and every report can filter by it.

A rule is one of four kinds, and a segment keeps the customers matching all of its rules
(``match: all``) or any of them (``match: any``):

* ``trait``: a profile field (country, channel …) or a trait compared with a value;
* ``stage``: standing in a lifecycle stage now, or ever having entered it;
* ``event``: did (or did not do) a tracked event, at least N times, within a period;
* ``score``: the customer's latest NPS, CSAT or CES answer compared with a value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Op = Literal[
    "equals", "not_equals", "in", "not_in", "contains", "gt", "gte", "lt", "lte", "exists",
    "missing",
]  # fmt: skip
NUMERIC = {"gt", "gte", "lt", "lte"}
NAME_PATTERN = r"^[^\x00-\x1f]{1,120}$"


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TraitRule(_Rule):
    kind: Literal["trait"] = "trait"
    field: Annotated[str, Field(min_length=1, max_length=200)]
    op: Op = "equals"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits(self) -> TraitRule:
        if self.op in NUMERIC and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"value: {self.op} compares with a number")
        if self.op in ("in", "not_in") and not (
            isinstance(self.value, list) and 1 <= len(self.value) <= 1000
        ):
            raise ValueError(f"value: {self.op} takes a list of 1 to 1,000 values")
        if self.op in ("exists", "missing") and self.value is not None:
            raise ValueError(f"value: {self.op} takes no value")
        if self.op in ("equals", "not_equals", "contains") and self.value is None:
            raise ValueError(f"value: {self.op} needs a value")
        return self


class StageRule(_Rule):
    kind: Literal["stage"] = "stage"
    model: Annotated[str, Field(min_length=1, max_length=63)]
    stage: Annotated[str, Field(min_length=1, max_length=63)]
    ever: bool = False  # entered it at some time, rather than standing in it now


class EventRule(_Rule):
    kind: Literal["event"] = "event"
    event: Annotated[str, Field(min_length=1, max_length=200)]
    done: bool = True  # False: customers who did not
    min_count: Annotated[int, Field(ge=1, le=1_000_000)] = 1
    within_days: Annotated[int, Field(ge=1, le=36_500)] | None = None  # counted back from now


class ScoreRule(_Rule):
    kind: Literal["score"] = "score"
    measure: Literal["nps", "csat", "ces"] = "nps"
    op: Literal["equals", "gt", "gte", "lt", "lte"] = "gte"
    value: Annotated[float, Field(ge=0, le=10)]


Rule = Annotated[TraitRule | StageRule | EventRule | ScoreRule, Field(discriminator="kind")]


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Literal["all", "any"] = "all"
    rules: Annotated[list[Rule], Field(min_length=1, max_length=50)]


class SegmentIn(BaseModel):
    """A segment as it is saved: a name, what it is for, and its rules."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=120, pattern=NAME_PATTERN)]
    description: Annotated[str, Field(max_length=2000)] | None = None
    match: Literal["all", "any"] = "all"
    rules: Annotated[list[Rule], Field(min_length=1, max_length=50)]

    def definition(self) -> SegmentDefinition:
        return SegmentDefinition(match=self.match, rules=self.rules)
