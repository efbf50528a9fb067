"""Surveys: what is asked, of whom, and where in the journey.

A survey is tied to the place its answers describe, a lifecycle stage and/or a touchpoint
(an event name), so that scores can later be read per stage and routed to the department
that owns it. Everything a user gives is checked here, once, for the CLI and the API
alike; an error names the field and the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from cxloop.domain.scores import CES_RANGE, CSAT_RANGE, NPS_RANGE
from cxloop.lifecycle.service import Conflict, NotFound, get_model
from cxloop.store.models import Department, Survey

surveys_t = cast(Table, Survey.__table__)
departments_t = cast(Table, Department.__table__)

Kind = Literal["nps", "csat", "ces", "custom"]
Audience = Literal["customers", "employees"]
KINDS: tuple[Kind, ...] = ("nps", "csat", "ces", "custom")
AUDIENCES: tuple[Audience, ...] = ("customers", "employees")
MAX_CHOICES = 20
QUESTIONS = {
    "nps": "How likely are you to recommend us to a friend or colleague?",
    "csat": "How satisfied are you with your experience?",
    "ces": "How easy was it to get what you needed?",
}
EMPLOYEE_NPS = "How likely are you to recommend working here to a friend?"
SCALES = {"nps": NPS_RANGE, "csat": CSAT_RANGE, "ces": CES_RANGE}


class SurveyIn(BaseModel):
    """A new survey, as the API and the CLI take it: ``stage`` is ``MODEL:STAGE``; custom
    surveys give a rating ``scale`` [low, high] or ``choices``. Shape is checked here,
    meaning (the stage exists, the scale fits the type) by ``create_survey``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="nps, csat, ces or custom")
    name: str = Field(max_length=200)
    question: str | None = Field(default=None, max_length=1000)
    stage: str | None = Field(default=None, max_length=127, description="MODEL:STAGE")
    touchpoint: str | None = Field(default=None, max_length=200, description="an event name")
    audience: str = Field(default="customers", description="customers or employees")
    department: str | None = Field(default=None, max_length=120)
    ask_why: bool = True
    scale: tuple[int, int] | None = None
    choices: list[str] | None = Field(default=None, max_length=50)

    @classmethod
    def from_cli(cls, *, scale: str | None, **fields: Any) -> SurveyIn:
        """The CLI's options; ``--scale`` is ``LOW-HIGH``."""
        parsed = None
        if scale is not None:
            low, sep, high = scale.partition("-")
            if not sep or not low.strip().isdigit() or not high.strip().isdigit():
                raise ValueError(f"--scale: give LOW-HIGH, e.g. 1-10, not {scale!r}")
            parsed = (int(low), int(high))
        try:
            return cls(scale=parsed, **fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "survey"
            raise ValueError(f"{where}: {first['msg']}") from None


class SurveyUpdate(BaseModel):
    """A change to a survey: only the fields given change; ``stage`` or ``touchpoint``
    given as null takes it away. Answers given before keep the stage and touchpoint they
    were given with, so reports of the past do not move."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    question: str | None = Field(default=None, max_length=1000)
    stage: str | None = Field(default=None, max_length=127, description="MODEL:STAGE, or null")
    touchpoint: str | None = Field(default=None, max_length=200, description="or null")


def update_survey(conn: Connection, survey_id: int, change: SurveyUpdate) -> dict[str, Any]:
    """Rename a survey, reword its question, or tie it to another stage or touchpoint (a
    model's stage that goes away must be untied first; see ``automations.usage``)."""
    current = get_survey(conn, survey_id)
    given = change.model_fields_set
    if not given:
        raise ValueError("survey: give a name, a question, a stage or a touchpoint")
    values: dict[str, Any] = {}
    if "name" in given:
        name = (change.name or "").strip()
        if not 1 <= len(name) <= 200:
            raise ValueError("name: give a name of 1 to 200 characters")
        values["name"] = name
    if "question" in given:
        question = (change.question or "").strip()
        if not question:
            raise ValueError("question: give the question the survey asks")
        values["question"] = question
    if "stage" in given:
        if change.stage is None:
            values.update(stage_model=None, stage=None)
        else:
            values.update(_stage(conn, change.stage, current["audience"]))
    if "touchpoint" in given:
        touchpoint = (change.touchpoint or "").strip() if change.touchpoint is not None else None
        if touchpoint == "":
            raise ValueError("touchpoint: give an event name, or null for none")
        values["touchpoint"] = touchpoint
    try:
        conn.execute(update(surveys_t).where(surveys_t.c.id == survey_id).values(**values))
    except IntegrityError as exc:
        raise Conflict("name", f"a survey named {values['name']!r} exists already") from exc
    return get_survey(conn, survey_id)


def create_survey(conn: Connection, new: SurveyIn) -> dict[str, Any]:
    """Store a checked survey and return it as ``get_survey`` does."""
    row = _checked(conn, new)
    try:
        found = conn.execute(insert(surveys_t).values(**row).returning(surveys_t.c.id)).one()
    except IntegrityError as exc:
        raise Conflict("name", f"a survey named {new.name!r} exists already") from exc
    return get_survey(conn, int(found.id))


def get_survey(conn: Connection, survey_id: int) -> dict[str, Any]:
    found = _surveys(conn, surveys_t.c.id == survey_id)
    if not found:
        raise NotFound("survey", f"no survey with id {survey_id}")
    return found[0]


def list_surveys(conn: Connection) -> list[dict[str, Any]]:
    return _surveys(conn, None)


def _surveys(conn: Connection, where: Any) -> list[dict[str, Any]]:
    query = (
        select(surveys_t, departments_t.c.name.label("department"))
        .select_from(surveys_t.outerjoin(departments_t))
        .order_by(surveys_t.c.id)
    )
    if where is not None:
        query = query.where(where)
    out = []
    for row in conn.execute(query).mappings():
        low, high = row["scale_low"], row["scale_high"]
        kind = row["kind"]
        if kind in SCALES:
            low, high = SCALES[kind]
        out.append(
            {
                "id": int(row["id"]),
                "kind": kind,
                "name": row["name"],
                "question": row["question"],
                "ask_why": bool(row["ask_why"]),
                "scale": None if low is None else [low, high],
                "choices": row["choices"],
                "stage": f"{row['stage_model']}:{row['stage']}" if row["stage_model"] else None,
                "touchpoint": row["touchpoint"],
                "audience": row["audience"],
                "department": row["department"],
                "created_at": _utc(row["created_at"]).isoformat(),
            }
        )
    return out


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _checked(conn: Connection, new: SurveyIn) -> dict[str, Any]:
    """The row to store, or a ``ValueError``/``LookupError`` naming the field."""
    if new.type not in KINDS:
        raise ValueError(f"type: must be one of {', '.join(KINDS)}, not {new.type!r}")
    name = new.name.strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("name: give a name of 1 to 200 characters")
    if new.audience not in AUDIENCES:
        raise ValueError(f"audience: must be customers or employees, not {new.audience!r}")
    question = (new.question or "").strip()
    if not question:
        if new.type == "custom":
            raise ValueError("question: a custom survey needs its question")
        question = EMPLOYEE_NPS if (new.type, new.audience) == ("nps", "employees") else ""
        question = question or QUESTIONS[new.type]
    if len(question) > 1000:
        raise ValueError("question: at most 1000 characters")
    row: dict[str, Any] = {
        "kind": new.type,
        "name": name,
        "question": question,
        "ask_why": new.ask_why,
        "audience": new.audience,
        "scale_low": None,
        "scale_high": None,
        "choices": None,
        "stage_model": None,
        "stage": None,
        "touchpoint": None,
        "department_id": None,
        "created_at": datetime.now(UTC),
    }
    row.update(_answers(new))
    if new.stage is not None:
        row.update(_stage(conn, new.stage, new.audience))
    if new.touchpoint is not None:
        touchpoint = new.touchpoint.strip()
        if not 1 <= len(touchpoint) <= 200:
            raise ValueError("touchpoint: give an event name of 1 to 200 characters")
        row["touchpoint"] = touchpoint
    if new.department is not None:
        if new.audience != "employees":
            raise ValueError("department: only employee surveys name a department")
        found = conn.execute(
            select(departments_t.c.id).where(departments_t.c.name == new.department)
        ).first()
        if found is None:
            raise NotFound("department", f"no department named {new.department!r}")
        row["department_id"] = int(found.id)
    return row


def _answers(new: SurveyIn) -> dict[str, Any]:
    """How a custom survey is answered: a rating scale or one of its choices."""
    if new.type != "custom":
        if new.scale is not None or new.choices is not None:
            raise ValueError(f"scale: a {new.type} survey has its own scale")
        return {}
    if (new.scale is None) == (new.choices is None):
        raise ValueError("scale: a custom survey takes either a rating scale or choices")
    if new.scale is not None:
        low, high = new.scale
        if not 0 <= low < high <= 100:
            raise ValueError(f"scale: give LOW-HIGH with 0 <= LOW < HIGH <= 100, not {low}-{high}")
        return {"scale_low": low, "scale_high": high}
    choices = [c.strip() for c in new.choices or ()]
    if not 2 <= len(choices) <= MAX_CHOICES:
        raise ValueError(f"choices: give 2 to {MAX_CHOICES} choices")
    if any(not c or len(c) > 200 for c in choices):
        raise ValueError("choices: each choice needs 1 to 200 characters")
    if len(set(choices)) != len(choices):
        raise ValueError("choices: each choice must be different")
    return {"choices": choices}


def _stage(conn: Connection, stage: str, audience: str) -> dict[str, Any]:
    if audience != "customers":
        raise ValueError("stage: employee surveys are not tied to a customer stage")
    model_key, _, stage_key = stage.partition(":")
    if not model_key or not stage_key:
        raise ValueError(f"stage: give MODEL:STAGE, not {stage!r}")
    try:
        _id, model, _version = get_model(conn, model_key)
    except NotFound as exc:
        raise NotFound("stage", exc.reason) from None
    if stage_key not in {s.key for s in model.stages}:
        known = ", ".join(s.key for s in model.stages)
        raise NotFound("stage", f"{model_key} has no stage {stage_key!r} (it has: {known})")
    return {"stage_model": model_key, "stage": stage_key}
