"""Running rules: the ``automation.run`` job checks the conditions when the delay is over,
and each action is then an ``automation.step`` job of its own.

Every step is keyed by (run, position), and each kind of action is made safe to repeat,
so a worker killed at any point leaves nothing lost (the lease runs out and the job runs
again) and nothing doubled:

* follow-ups and cases carry ``automation:RUN:POSITION`` as their unique source, traits
  and segment additions are idempotent, and a webhook delivery is unique per source; the
  change and the step's ``done`` are one transaction;
* a survey keeps the invite it created in the job, so a retry sends the same link;
* an e-mail handed to the mail server just before a crash is sent again by the retry,
  with the same ``Message-ID`` (``<automation-RUN-POSITION@…>``), which mail systems use
  to drop the copy. This is the one at-least-once edge, and it is documented.

A failure that cannot get better (a template naming a missing property, a customer
without an e-mail address) ends the step at once with the reason; one that can (the mail
server is down) is retried with the queue's backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cxloop import mail, segments
from cxloop.automations import context, templates, webhooks
from cxloop.automations.firing import RUN_JOB, rules_t, runs_t
from cxloop.domain.automations import (
    CaseAction,
    EmailAction,
    FollowUpAction,
    RuleDefinition,
    SegmentAction,
    SurveyAction,
    TraitAction,
    WebhookAction,
)
from cxloop.domain.traits import TYPED_FIELDS, split_traits
from cxloop.feedback.invites import create_invite, get_invite, mark_sent
from cxloop.feedback.surveys import get_survey
from cxloop.feedback.triggers import Sender, survey_email
from cxloop.service import cases, followups
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.store.models import AutomationStep, StaffMember

steps_t = cast(Table, AutomationStep.__table__)
staff_t = cast(Table, StaffMember.__table__)
STEP_JOB = "automation.step"
PHOTO_CID = "staff-photo@cxloop"


class Final(Exception):
    """An action that cannot succeed by trying again; the step ends with this reason."""


def _rule(conn: Connection, rule_id: int) -> tuple[Any, RuleDefinition] | None:
    row = conn.execute(select(rules_t).where(rules_t.c.id == rule_id)).first()
    return None if row is None else (row, RuleDefinition.model_validate(row.definition))


def _finish_run(conn: Connection, run_id: int, status: str, outcome: str) -> None:
    conn.execute(
        update(runs_t)
        .where(runs_t.c.id == run_id)
        .values(status=status, outcome=outcome[:2000], finished_at=datetime.now(UTC))
    )


def run_rule(engine: Engine, job: jobs.ClaimedJob) -> tuple[str, dict[str, Any]]:
    """The ``automation.run`` job: conditions, frequency cap, then one step per action,
    queued in one transaction with the run's new status."""
    run_id = int(job.payload["run_id"])
    with engine.begin() as conn:
        run = conn.execute(select(runs_t).where(runs_t.c.id == run_id)).first()
        if run is None:
            return "skipped: the run was deleted with its rule", job.payload
        if run.status != "scheduled":
            return f"run {run_id} is {run.status} already", job.payload
        found = _rule(conn, int(run.automation_id))
        if found is None or not found[0].enabled:
            _finish_run(conn, run_id, "skipped", "skipped: the rule was disabled before it ran")
            return "skipped: rule disabled", job.payload
        row, definition = found
        try:
            customer = context.customer_context(conn, int(run.customer_id))
        except context.CustomerGone as exc:
            _finish_run(conn, run_id, "skipped", f"skipped: {exc}")
            return f"skipped: {exc}", job.payload
        why_not = context.holds(conn, definition.conditions, customer)
        if why_not is None and definition.once_per_customer_days:
            why_not = _capped(conn, row, customer["id"], definition.once_per_customer_days, run_id)
        if why_not is not None:
            _finish_run(conn, run_id, "skipped", why_not)
            return why_not, job.payload
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        for position, action in enumerate(definition.actions):
            conn.execute(
                dialect.insert(steps_t)
                .values(run_id=run_id, position=position, action=action.type, status="queued")
                .on_conflict_do_nothing(index_elements=["run_id", "position"])
            )
            jobs.enqueue(
                conn,
                STEP_JOB,
                {"run_id": run_id, "position": position},
                key=f"{STEP_JOB}:{run_id}:{position}",
            )
        conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(status="running"))
    return f"run {run_id}: {len(definition.actions)} actions queued", job.payload


def _capped(conn: Connection, rule: Any, customer_id: int, days: int, run_id: int) -> str | None:
    since = datetime.now(UTC) - timedelta(days=days)
    earlier = conn.execute(
        select(runs_t.c.id, runs_t.c.finished_at)
        .where(
            runs_t.c.automation_id == rule.id,
            runs_t.c.customer_id == customer_id,
            runs_t.c.status.in_(["running", "done"]),
            runs_t.c.id != run_id,
            runs_t.c.created_at >= since,
        )
        .limit(1)
    ).first()
    if earlier is None:
        return None
    return f"skipped: run {earlier.id} acted for this customer within {days} days"


def run_step(
    engine: Engine, settings: Settings, job: jobs.ClaimedJob, sender: Sender = mail.send
) -> tuple[str, dict[str, Any]]:
    """The ``automation.step`` job: one action of a run."""
    run_id, position = int(job.payload["run_id"]), int(job.payload["position"])
    with engine.connect() as conn:
        run = conn.execute(select(runs_t).where(runs_t.c.id == run_id)).first()
        step = conn.execute(
            select(steps_t).where(steps_t.c.run_id == run_id, steps_t.c.position == position)
        ).first()
        found = None if run is None else _rule(conn, int(run.automation_id))
    if run is None or step is None or found is None:
        return "skipped: the run was deleted with its rule", job.payload
    if step.status != "queued":
        return f"step {run_id}.{position} is {step.status} already", job.payload
    row, definition = found
    if position >= len(definition.actions):
        return _end_step(engine, run_id, position, "skipped", "the rule no longer has it"), {}
    action = definition.actions[position]
    try:
        with engine.connect() as conn:
            variables = _variables(conn, row, run, settings.timezone)
        outcome = _act(engine, settings, job, run, position, action, variables, sender)
    except (Final, templates.TemplateProblem, context.CustomerGone, ValueError) as exc:
        return _end_step(engine, run_id, position, "failed", str(exc)), job.payload
    except Exception as exc:
        if job.attempts >= job.max_attempts:
            _end_step(engine, run_id, position, "failed", f"gave up: {exc}")
        raise
    return outcome, job.payload


def _end_step(
    engine: Engine,
    run_id: int,
    position: int,
    status: str,
    outcome: str,
    conn: Connection | None = None,
) -> str:
    if conn is None:
        with engine.begin() as own:
            return _end_step(engine, run_id, position, status, outcome, own)
    conn.execute(
        update(steps_t)
        .where(steps_t.c.run_id == run_id, steps_t.c.position == position)
        .values(status=status, outcome=outcome[:2000], finished_at=datetime.now(UTC))
    )
    states = conn.execute(
        select(steps_t.c.status, steps_t.c.outcome)
        .where(steps_t.c.run_id == run_id)
        .order_by(steps_t.c.position)
    ).all()
    if all(s.status != "queued" for s in states):
        failed = [s.outcome or "" for s in states if s.status == "failed"]
        if failed:
            _finish_run(
                conn,
                run_id,
                "failed",
                f"{len(failed)} of {len(states)} actions failed: {failed[0]}",
            )
        else:
            _finish_run(conn, run_id, "done", f"{len(states)} actions done")
    return outcome


def _variables(conn: Connection, rule: Any, run: Any, timezone: str) -> dict[str, Any]:
    trigger = dict(run.trigger or {})
    found: dict[str, Any] = {
        "customer": context.customer_context(conn, int(run.customer_id)),
        "rule": {"name": rule.name, "id": int(rule.id)},
        "run": {"id": int(run.id), "occurrence": run.occurrence},
        "now": context.now_context(),
        "timezone": timezone,
    }
    for name in ("event", "stage", "response", "case", "followup"):
        if name in trigger:
            found[name] = trigger[name]
    return found


def _act(
    engine: Engine,
    settings: Settings,
    job: jobs.ClaimedJob,
    run: Any,
    position: int,
    action: Any,
    variables: dict[str, Any],
    sender: Sender,
) -> str:
    run_id = int(run.id)
    source = f"automation:{run_id}:{position}"
    chain = list(run.chain or [])
    where = f"actions.{position}"
    customer = variables["customer"]
    if isinstance(action, EmailAction):
        return _email(engine, settings, run_id, position, action, variables, sender)
    if isinstance(action, SurveyAction):
        return _survey(engine, settings, job, run_id, position, action, customer, sender)
    with engine.begin() as conn:
        if isinstance(action, FollowUpAction):
            summary = templates.render(action.summary, variables, f"{where}.summary")
            made = followups.for_automation(
                conn,
                customer_id=customer["id"],
                source_key=source,
                summary=summary,
                department=action.department,
                chain=chain,
            )
            said = f"follow-up {made} opened" if made else "the follow-up exists already"
        elif isinstance(action, CaseAction):
            subject = templates.one_line(
                templates.render(action.subject, variables, f"{where}.subject"), 200
            )
            case = cases.open_case(
                conn,
                cases.CaseIn(
                    customer=str(customer["id"]),
                    subject=subject,
                    category=action.category,
                    department=action.department,
                    model=action.model,
                ),
                source="rule",
                message_id=source,
                customer_id=customer["id"],
                chain=chain,
            )
            said = f"case {case['id']} opened"
        elif isinstance(action, TraitAction):
            value = action.value
            if isinstance(value, str):
                value = templates.render(value, variables, f"{where}.value")
            _set_trait(conn, customer["id"], action.trait, value, where)
            said = f"trait {action.trait} set to {value!r}"
        elif isinstance(action, SegmentAction):
            fresh = segments.add_member(conn, action.segment, customer["id"], source)
            said = f"added to {action.segment}" if fresh else f"in {action.segment} already"
        elif isinstance(action, WebhookAction):
            payload = webhooks.envelope(
                "automation.action",
                {
                    "rule": variables["rule"],
                    "run": variables["run"],
                    "customer": customer,
                    **{
                        k: variables[k]
                        for k in ("event", "stage", "response", "case", "followup")
                        if k in variables
                    },
                },
            )
            said = webhooks.deliver_to(conn, action.endpoint, source, payload)
        else:  # pragma: no cover - the discriminated union has no other member
            raise Final(f"{where}: unknown action {action!r}")
        return _end_step(engine, run_id, position, "done", said, conn)


def _set_trait(conn: Connection, customer_id: int, trait: str, value: Any, where: str) -> None:
    """Like an identify message's trait: a profile field's name sets that field (checked the
    same way), any other name a free trait."""
    from cxloop.customers.service import customers_t

    typed, free, problems = split_traits({trait: value})
    if problems:
        raise Final(f"{where}.value: {problems[0][1]}")
    changes: dict[str, Any] = {**typed, "updated_at": datetime.now(UTC)}
    if value is None and trait in TYPED_FIELDS:
        changes[trait] = None  # a rule may clear a field, where identify leaves it alone
    elif free or value is None:
        traits = conn.execute(
            select(customers_t.c.traits).where(customers_t.c.id == customer_id)
        ).scalar_one()
        changes["traits"] = {**(traits or {}), **(free or {trait: None})}
    conn.execute(update(customers_t).where(customers_t.c.id == customer_id).values(**changes))


def _email(
    engine: Engine,
    settings: Settings,
    run_id: int,
    position: int,
    action: EmailAction,
    variables: dict[str, Any],
    sender: Sender,
) -> str:
    message = build_email(engine, settings, action, variables, f"actions.{position}")
    domain = settings.smtp_from.rpartition("@")[2].strip("> ") or "cxloop"
    del message["Message-ID"]
    message["Message-ID"] = f"<automation-{run_id}-{position}@{domain}>"
    sender(settings, message)  # a MailError is retried by the queue
    return _end_step(
        engine, run_id, position, "done", f"e-mail sent to {variables['customer']['email']}"
    )


def build_email(
    engine: Engine, settings: Settings, action: EmailAction, variables: dict[str, Any], where: str
) -> EmailMessage:
    """The message of an e-mail action: plain text, HTML alternative, the staff photo
    inline (``cid:staff-photo@cxloop``, also ``staff.photo_src``)."""
    customer = variables["customer"]
    if not customer.get("email"):
        raise Final("skipped: the customer has no e-mail address")
    ctx = dict(variables)
    photo: tuple[bytes, str] | None = None
    if action.staff_from is not None:
        ref = ((ctx.get("event") or {}).get("properties") or {}).get(action.staff_from)
        if ref is None:
            raise Final(f"{where}.staff_from: the event has no property {action.staff_from!r}")
        with engine.connect() as conn:
            staff = context.staff_context(conn, str(ref))
            if staff is None:
                raise Final(f"{where}.staff_from: no staff member with ref {ref!r}")
            if staff["has_photo"]:
                got = conn.execute(
                    select(staff_t.c.photo, staff_t.c.photo_type).where(staff_t.c.ref == str(ref))
                ).one()
                photo = (bytes(got.photo), str(got.photo_type))
        staff["photo_src"] = f"cid:{PHOTO_CID}" if photo else ""
        ctx["staff"] = staff
    subject = templates.one_line(templates.render(action.subject, ctx, f"{where}.subject"))
    text = templates.render(action.text, ctx, f"{where}.text")
    page = (
        None
        if action.html is None
        else templates.render(action.html, ctx, f"{where}.html", html=True)
    )
    name = customer.get("name") or ""
    to = f'"{name}" <{customer["email"]}>' if name else str(customer["email"])
    message = mail.compose(settings, to=to, subject=subject, text=text, html=page)
    if photo is not None and page is not None:
        html_part = message.get_body(("html",))
        assert html_part is not None
        maintype, _, subtype = photo[1].partition("/")
        html_part.add_related(
            photo[0],
            maintype=maintype,
            subtype=subtype,
            cid=f"<{PHOTO_CID}>",
            filename=f"staff.{subtype}",
        )
    return message


def _survey(
    engine: Engine,
    settings: Settings,
    job: jobs.ClaimedJob,
    run_id: int,
    position: int,
    action: SurveyAction,
    customer: dict[str, Any],
    sender: Sender,
) -> str:
    payload = dict(job.payload)
    with engine.begin() as conn:
        if payload.get("invite_id") is None:
            if action.channel == "email" and not customer.get("email"):
                raise Final("skipped: the customer has no e-mail address")
            invite, token = create_invite(
                conn,
                action.survey,
                channel=action.channel,
                customer_id=customer["id"],
                email=customer.get("email"),
                expires_days=action.expires_days,
                touchpoint=None,
            )
            payload.update(invite_id=invite["id"], token=token)
            jobs.save_payload(conn, job.id, payload)
        survey = get_survey(conn, action.survey)
        invite = get_invite(conn, int(payload["invite_id"]))
    if action.channel == "email" and invite["sent_at"] is None:
        link = f"{settings.effective_public_url}/s/{payload['token']}"
        text, page = survey_email(survey, link, customer.get("name") or None)
        sender(
            settings,
            mail.compose(
                settings,
                to=str(customer["email"]),
                subject=templates.one_line(survey["question"], 150),
                text=text,
                html=page,
            ),
        )
    with engine.begin() as conn:
        mark_sent(conn, invite["id"])
        jobs.save_payload(conn, job.id, {k: v for k, v in payload.items() if k != "token"})
        return _end_step(
            engine,
            run_id,
            position,
            "done",
            f"survey invite {invite['id']} "
            + ("sent" if action.channel == "email" else "ready in the app"),
            conn,
        )


__all__ = ["RUN_JOB", "STEP_JOB", "build_email", "run_rule", "run_step"]
