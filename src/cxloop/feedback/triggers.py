"""Survey triggers: ask at the right moment, and never too often.

A trigger fires on an event (a touchpoint), on entering a lifecycle stage, or on a
support case being resolved; it queues a ``survey.send`` job to run after its delay. The
job is keyed by trigger and occurrence (a stage entry by what the move is, not its row, so
a rebuilt history asks nobody again), so a replayed batch or a rescanned stage entry never
asks twice. An occurrence from before the trigger existed (less ``LATE_GRACE``, for
events that reach cxloop late) asks nobody: importing last year's orders must not survey
every customer about them. When the job runs it applies the frequency cap (no customer asked more
than once per ``cap_days``, whatever the survey), creates the single-use invite, and sends
it by e-mail (or leaves it for the app to show).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, Table, func, insert, select, update

from cxloop.domain.values import MAX_INT, utc
from cxloop.feedback.invites import create_invite, get_invite, invites_t, mark_sent
from cxloop.feedback.surveys import get_survey
from cxloop.lifecycle.service import NotFound, get_model, move_key
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.store.models import Customer, StageTransition, SurveyTrigger

triggers_t = cast(Table, SurveyTrigger.__table__)
customers_t = cast(Table, Customer.__table__)
transitions_t = cast(Table, StageTransition.__table__)
SEND_JOB = "survey.send"
FiresOn = Literal["event", "stage", "case_resolved"]
_DELAY = re.compile(r"^\s*(\d+)\s*(m|min|h|d)\s*$")
_UNIT_MINUTES = {"m": 1, "min": 1, "h": 60, "d": 1440}
MAX_DELAY_DAYS = 365
LATE_GRACE = timedelta(days=1)


class TriggerIn(BaseModel):
    """When to send which survey: ``on`` event (with ``event``), stage (with ``stage`` as
    MODEL:STAGE) or case_resolved; ``delay`` like 90m, 24h or 3d."""

    model_config = ConfigDict(extra="forbid")

    survey: int = Field(ge=1, le=MAX_INT, description="a survey's id")
    on: str = Field(description="event, stage or case_resolved")
    event: str | None = Field(default=None, max_length=200)
    stage: str | None = Field(default=None, max_length=127)
    delay: str = Field(default="0m", description="90m, 24h, 3d …")
    cap_days: int = Field(default=30, description="no customer asked more than once per N days")
    channel: str = Field(default="email", description="email or in_app")
    expires_days: int = Field(default=14, description="how long the link can be answered")


def parse_delay(text: str) -> int:
    """Minutes in ``90m``, ``24h`` or ``3d``."""
    found = _DELAY.match(text)
    if found is None:
        raise ValueError(f"delay: give a number with m, h or d (90m, 24h, 3d), not {text!r}")
    minutes = int(found.group(1)) * _UNIT_MINUTES[found.group(2)]
    if minutes > MAX_DELAY_DAYS * 1440:
        raise ValueError(f"delay: at most {MAX_DELAY_DAYS} days")
    return minutes


def create_trigger(conn: Connection, new: TriggerIn) -> dict[str, Any]:
    survey = get_survey(conn, new.survey)
    if survey["audience"] != "customers":
        raise ValueError(
            "survey: triggers send customer surveys; employee surveys are sent as links"
        )
    row: dict[str, Any] = {
        "survey_id": new.survey,
        "event": None,
        "stage_model": None,
        "stage": None,
        "active": True,
        "created_at": datetime.now(UTC),
    }
    if new.on == "event":
        event = (new.event or "").strip()
        if not event:
            raise ValueError("event: a trigger on an event names the event")
        row["event"] = event
    elif new.on == "stage":
        model_key, _, stage = (new.stage or "").partition(":")
        if not model_key or not stage:
            raise ValueError(f"stage: give MODEL:STAGE, not {new.stage!r}")
        _check_stage(conn, model_key, stage)
        row["stage_model"], row["stage"] = model_key, stage
    elif new.on != "case_resolved":
        raise ValueError(f"on: must be event, stage or case_resolved, not {new.on!r}")
    if new.on != "event" and new.event is not None:
        raise ValueError("event: only a trigger on an event names one")
    if new.on != "stage" and new.stage is not None:
        raise ValueError("stage: only a trigger on a stage names one")
    if not 0 <= new.cap_days <= 3650:
        raise ValueError("cap_days: must be 0 to 3650")
    if new.channel not in ("email", "in_app"):
        raise ValueError(f"channel: must be email or in_app, not {new.channel!r}")
    if not 1 <= new.expires_days <= 365:
        raise ValueError("expires_days: must be 1 to 365")
    row.update(
        fires_on=new.on,
        delay_minutes=parse_delay(new.delay),
        cap_days=new.cap_days,
        channel=new.channel,
        expires_days=new.expires_days,
    )
    new_id = conn.execute(insert(triggers_t).values(**row).returning(triggers_t.c.id)).scalar_one()
    if new.on == "stage":  # entries from now on, not the whole history
        jobs.skip_to_end(conn, f"trigger:{new_id}", transitions_t)
    return get_trigger(conn, int(new_id))


def _check_stage(conn: Connection, model_key: str, stage: str) -> None:
    try:
        _id, model, _v = get_model(conn, model_key)
    except NotFound:
        raise NotFound("stage", f"no lifecycle model {model_key!r}") from None
    if stage not in {s.key for s in model.stages}:
        raise NotFound("stage", f"{model_key} has no stage {stage!r}")


def get_trigger(conn: Connection, trigger_id: int) -> dict[str, Any]:
    found = [t for t in list_triggers(conn) if t["id"] == trigger_id]
    if not found:
        raise NotFound("trigger", f"no trigger with id {trigger_id}")
    return found[0]


# The fields of a listed trigger, in order (the CLI's CSV header, also when there are none).
TRIGGER_FIELDS = ("id", "survey_id", "on", "event", "stage", "delay_minutes", "cap_days",
                  "channel", "expires_days", "active")  # fmt: skip


def list_triggers(conn: Connection) -> list[dict[str, Any]]:
    return [
        {
            "id": int(r.id),
            "survey_id": int(r.survey_id),
            "on": r.fires_on,
            "event": r.event,
            "stage": f"{r.stage_model}:{r.stage}" if r.stage_model else None,
            "delay_minutes": r.delay_minutes,
            "cap_days": r.cap_days,
            "channel": r.channel,
            "expires_days": r.expires_days,
            "active": bool(r.active),
        }
        for r in conn.execute(select(triggers_t).order_by(triggers_t.c.id))
    ]


def set_active(conn: Connection, trigger_id: int, active: bool) -> dict[str, Any]:
    """Pause or resume. A resumed stage trigger starts from now, as an event trigger does
    (events while it was paused asked nobody): the stage entries of the pause ask nobody.
    Its model and stage are checked again on resuming: they may have gone while it was
    paused (a deleted model refuses only its active triggers)."""
    found = get_trigger(conn, trigger_id)
    if active and not found["active"] and found["on"] == "stage":
        model_key, _, stage = found["stage"].partition(":")
        _check_stage(conn, model_key, stage)
    conn.execute(update(triggers_t).where(triggers_t.c.id == trigger_id).values(active=active))
    if active and not found["active"] and found["on"] == "stage":
        jobs.skip_to_end(conn, f"trigger:{trigger_id}", transitions_t)
    return get_trigger(conn, trigger_id)


# -- firing ------------------------------------------------------------------------------


def _queue(
    conn: Connection,
    trigger: Any,
    customer_id: int,
    occurrence: str,
    moment: datetime,
    touchpoint: str | None,
    case_id: int | None = None,
) -> bool:
    if utc(moment) < utc(trigger.created_at) - LATE_GRACE:
        return False
    payload = {
        "trigger_id": int(trigger.id),
        "survey_id": int(trigger.survey_id),
        "customer_id": customer_id,
        "touchpoint": touchpoint,
        "case_id": case_id,
    }
    run_at = utc(moment) + timedelta(minutes=trigger.delay_minutes)
    key = f"{SEND_JOB}:{trigger.id}:{occurrence}"
    return jobs.enqueue(conn, SEND_JOB, payload, run_at=run_at, key=key) is not None


def on_events(engine: Engine, rows: pa.Table) -> int:
    """Queue the sends of event triggers for a stored batch (the ingestion listener)."""
    if rows.num_rows == 0:
        return 0
    with engine.connect() as conn:
        triggers = conn.execute(
            select(triggers_t).where(triggers_t.c.fires_on == "event", triggers_t.c.active)
        ).all()
    if not triggers:
        return 0
    names = pa.array(sorted({t.event for t in triggers}), pa.string())
    hits = rows.filter(pc.is_in(rows["event"], value_set=names))
    if hits.num_rows == 0:
        return 0
    queued = 0
    with engine.begin() as conn:
        for row in hits.select(["customer_id", "timestamp", "message_id", "event"]).to_pylist():
            for trigger in triggers:
                if trigger.event == row["event"] and row["customer_id"] is not None:
                    queued += _queue(
                        conn,
                        trigger,
                        int(row["customer_id"]),
                        row["message_id"],
                        row["timestamp"],
                        row["event"],
                    )
    return queued


def scan_stage_entries(conn: Connection, *, batch: int = 5000) -> int:
    """Queue the sends of stage triggers for entries recorded since the last scan."""
    queued = 0
    for trigger in conn.execute(
        select(triggers_t).where(triggers_t.c.fires_on == "stage", triggers_t.c.active)
    ).all():
        name = f"trigger:{trigger.id}"
        position = jobs.read_cursor(conn, name)
        model_id, _model, _v = get_model(conn, trigger.stage_model)
        rows = conn.execute(
            select(
                transitions_t.c.id,
                transitions_t.c.customer_id,
                transitions_t.c.at,
                transitions_t.c.event,
                transitions_t.c.cycle,
                transitions_t.c.kind,
                transitions_t.c.to_stage,
            )
            .where(
                transitions_t.c.id > position,
                transitions_t.c.model_id == model_id,
                transitions_t.c.to_stage == trigger.stage,
                transitions_t.c.kind != "exit",
            )
            .order_by(transitions_t.c.id)
            .limit(batch)
        ).all()
        for row in rows:
            occurrence = move_key(trigger.stage_model, row)
            queued += _queue(conn, trigger, int(row.customer_id), occurrence, row.at, row.event)
        if rows:
            jobs.save_cursor(conn, name, int(rows[-1].id))
    return queued


def on_case_resolved(conn: Connection, case: dict[str, Any]) -> int:
    """Queue the CSAT (or other) survey that follows a resolved case."""
    triggers = conn.execute(
        select(triggers_t).where(triggers_t.c.fires_on == "case_resolved", triggers_t.c.active)
    ).all()
    moment = datetime.fromisoformat(case["resolved_at"])
    return sum(
        _queue(
            conn,
            t,
            int(case["customer_id"]),
            f"case:{case['id']}",
            moment,
            "Support Case Resolved",
            case_id=int(case["id"]),
        )
        for t in triggers
    )


# -- sending -----------------------------------------------------------------------------

Sender = Callable[[Settings, EmailMessage], None]


def run_send(
    engine: Engine, settings: Settings, job: jobs.ClaimedJob, sender: Sender
) -> tuple[str, dict[str, Any]]:
    """The ``survey.send`` job: cap, invite, e-mail. Returns the outcome and the payload to
    keep. A retry after a failed send reuses the invite it created (its token is kept in
    the job until the e-mail is out, then dropped)."""
    from cxloop.mail import compose

    payload = dict(job.payload)
    with engine.begin() as conn:
        trigger = conn.execute(
            select(triggers_t).where(triggers_t.c.id == payload["trigger_id"])
        ).first()
        customer = conn.execute(
            select(customers_t.c.id, customers_t.c.email, customers_t.c.name).where(
                customers_t.c.id == payload["customer_id"]
            )
        ).first()
        if trigger is None or customer is None:
            return "skipped: the trigger or the customer no longer exists", payload
        invite_id = payload.get("invite_id")
        if invite_id is None:
            skipped = _capped(conn, int(customer.id), trigger.cap_days)
            if skipped:
                return skipped, payload
            if trigger.channel == "email" and not customer.email:
                return "skipped: the customer has no e-mail address", payload
            invite, token = create_invite(
                conn,
                int(trigger.survey_id),
                channel=trigger.channel,
                customer_id=int(customer.id),
                email=customer.email,
                expires_days=trigger.expires_days,
                trigger_id=int(trigger.id),
                case_id=payload.get("case_id"),
                touchpoint=payload.get("touchpoint"),
            )
            payload.update(invite_id=invite["id"], token=token)
            jobs.save_payload(conn, job.id, payload)
        survey = get_survey(conn, int(trigger.survey_id))
        invite = get_invite(conn, int(payload["invite_id"]))
    if invite["sent_at"] is not None or trigger.channel == "in_app":
        with engine.begin() as conn:
            mark_sent(conn, invite["id"])
        payload.pop("token", None)
        return f"invite {invite['id']} ready in the app" if trigger.channel == "in_app" else (
            f"invite {invite['id']} was sent already"
        ), payload
    link = f"{settings.effective_public_url}/s/{payload['token']}"
    name = " ".join((customer.name or "").split()) or None  # one line, whatever was stored
    text, page = survey_email(survey, link, name)
    sender(
        settings,
        compose(
            settings, to=customer.email, subject=survey["question"][:150], text=text, html=page
        ),
    )
    with engine.begin() as conn:
        mark_sent(conn, invite["id"])
    payload.pop("token", None)
    return f"sent invite {invite['id']} to customer {customer.id}", payload


def _capped(conn: Connection, customer_id: int, cap_days: int) -> str | None:
    if cap_days <= 0:
        return None
    since = datetime.now(UTC) - timedelta(days=cap_days)
    last = conn.execute(
        select(func.max(invites_t.c.created_at)).where(
            invites_t.c.customer_id == customer_id, invites_t.c.created_at >= since
        )
    ).scalar_one()
    if last is None:
        return None
    return (
        f"skipped: customer {customer_id} was asked on {utc(last):%Y-%m-%d} (cap {cap_days} days)"
    )


def survey_email(survey: dict[str, Any], link: str, name: str | None) -> tuple[str, str]:
    """The plain-text and HTML bodies: the question, and for rating surveys one link per
    score (which opens the page with that score chosen), so answering takes one tap."""
    hello = f"Hello {name}," if name else "Hello,"
    text = f"{hello}\n\n{survey['question']}\n\nAnswer here (one minute): {link}\n"
    buttons = ""
    if survey["scale"] is not None:
        low, high = survey["scale"]
        cells = "".join(
            f'<a href="{html.escape(link)}?score={n}" style="display:inline-block;min-width:28px;'
            f"padding:8px;margin:2px;border:1px solid #345;border-radius:4px;"
            f'color:#123;text-decoration:none">{n}</a>'
            for n in range(low, high + 1)
        )
        buttons = f"<p>{cells}</p>"
    page = (
        f'<html><body style="font-family:sans-serif"><p>{html.escape(hello)}</p>'
        f"<p><strong>{html.escape(survey['question'])}</strong></p>{buttons}"
        f'<p><a href="{html.escape(link)}">Answer the survey</a></p></body></html>'
    )
    return text, page
