"""One customer as rules see them: the variables of templates and the checks of conditions.

Both read the app database only (profile, traits, current stages, latest scores, segment
members), so a run needs no event store: the event that triggered it travels in the run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, select

from cxloop.customers.service import FILTER_FIELDS, customers_t
from cxloop.domain.automations import Conditions, InSegment
from cxloop.domain.segments import ScoreRule, StageRule, TraitRule
from cxloop.domain.values import iso_utc
from cxloop.feedback.responses import responses_t
from cxloop.feedback.surveys import surveys_t
from cxloop.lifecycle.service import models_t, states_t, transitions_t
from cxloop.segments import compare, members_t, segments_t
from cxloop.store.models import CustomerIdentity, StaffMember

identities_t = cast(Table, CustomerIdentity.__table__)
staff_t = cast(Table, StaffMember.__table__)


class CustomerGone(LookupError):
    """The customer was deleted or merged away before the run."""


def customer_context(conn: Connection, customer_id: int) -> dict[str, Any]:
    """``customer`` for templates: id, name, first_name, email, user_id, the profile
    fields, ``traits`` and ``stages`` (model key → current stage key)."""
    row = conn.execute(select(customers_t).where(customers_t.c.id == customer_id)).first()
    if row is None:
        raise CustomerGone(f"customer {customer_id} does not exist")
    if row.merged_into_id is not None:
        return customer_context(conn, int(row.merged_into_id))
    user_id = conn.execute(
        select(identities_t.c.value).where(
            identities_t.c.customer_id == customer_id, identities_t.c.kind == "user_id"
        )
    ).scalar()
    stages = {
        str(key): stage
        for key, stage in conn.execute(
            select(models_t.c.key, states_t.c.stage)
            .join(models_t, models_t.c.id == states_t.c.model_id)
            .where(states_t.c.customer_id == row.id)
        )
    }
    name = " ".join((row.name or "").split())
    found: dict[str, Any] = {
        "id": int(row.id),
        "name": name,
        "first_name": name.split(" ")[0] if name else "",
        "email": row.email,
        "user_id": user_id,
        "traits": dict(row.traits or {}),
        "stages": stages,
        "first_seen": iso_utc(row.first_seen),
        "last_seen": iso_utc(row.last_seen),
    }
    found.update({f: getattr(row, f) for f in FILTER_FIELDS})
    return found


def staff_context(conn: Connection, ref: str) -> dict[str, Any] | None:
    row = conn.execute(select(staff_t).where(staff_t.c.ref == ref)).first()
    if row is None:
        return None
    return {
        "id": int(row.id),
        "ref": row.ref,
        "name": row.name,
        "first_name": row.name.split(" ")[0],
        "bio": row.bio or "",
        "has_photo": row.photo is not None,
        "photo_src": f"/api/v1/staff/{row.ref}/photo" if row.photo is not None else "",
    }


def holds(conn: Connection, conditions: Conditions | None, customer: dict[str, Any]) -> str | None:
    """None when the customer meets the conditions, else why not (for the run's record)."""
    if conditions is None:
        return None
    misses = []
    for index, rule in enumerate(conditions.rules):
        if _one(conn, rule, customer):
            if conditions.match == "any":
                return None
        else:
            misses.append(f"rules.{index} ({_say(rule)})")
    if conditions.match == "all" and not misses:
        return None
    return "conditions not met: " + ", ".join(misses)


def _one(conn: Connection, rule: Any, customer: dict[str, Any]) -> bool:
    if isinstance(rule, TraitRule):
        profile = rule.field in customer and rule.field not in ("traits", "stages")
        value = customer[rule.field] if profile else customer["traits"].get(rule.field)
        return compare(value, rule.op, rule.value)
    if isinstance(rule, StageRule):
        if not rule.ever:
            return bool(customer["stages"].get(rule.model) == rule.stage)
        found = conn.execute(
            select(transitions_t.c.id)
            .join(models_t, models_t.c.id == transitions_t.c.model_id)
            .where(
                models_t.c.key == rule.model,
                transitions_t.c.customer_id == customer["id"],
                transitions_t.c.to_stage == rule.stage,
            )
            .limit(1)
        ).first()
        return found is not None
    if isinstance(rule, ScoreRule):
        r, s = responses_t.c, surveys_t.c
        score = conn.execute(
            select(r.score)
            .join(surveys_t, s.id == r.survey_id)
            .where(s.kind == rule.measure, r.customer_id == customer["id"], r.score.is_not(None))
            .order_by(r.submitted_at.desc(), r.id.desc())
            .limit(1)
        ).scalar()
        return score is not None and compare(float(score), rule.op, rule.value)
    assert isinstance(rule, InSegment)
    member = conn.execute(
        select(members_t.c.customer_id)
        .join(segments_t, segments_t.c.id == members_t.c.segment_id)
        .where(segments_t.c.name == rule.segment, members_t.c.customer_id == customer["id"])
    ).first()
    return (member is not None) == rule.member


def _say(rule: Any) -> str:
    if isinstance(rule, TraitRule):
        return (
            f"{rule.field} {rule.op} {rule.value!r}"
            if rule.value is not None
            else (f"{rule.field} {rule.op}")
        )
    if isinstance(rule, StageRule):
        return f"{'ever in' if rule.ever else 'in'} {rule.model}:{rule.stage}"
    if isinstance(rule, ScoreRule):
        return f"latest {rule.measure} {rule.op} {rule.value:g}"
    return f"{'in' if rule.member else 'not in'} segment {rule.segment}"


def now_context() -> str:
    return datetime.now(UTC).isoformat()
