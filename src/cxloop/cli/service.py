"""`cxloop cases|followups|notes|timeline|triggers|jobs` and `cxloop surveys link`:
closing the loop from the command line. With a server running, the server does the work
(the API's JSON is printed as it comes); otherwise this process does."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from cxloop.cli.context import (
    call_project,
    dashed,
    from_options,
    handle_errors,
    load_settings,
    local_project,
)
from cxloop.cli.feedback import surveys_app
from cxloop.cli.output import Format, console, emit, key_values
from cxloop.customers.service import resolve_customer_id
from cxloop.feedback.invites import create_invite
from cxloop.feedback.triggers import (
    TRIGGER_FIELDS,
    TriggerIn,
    create_trigger,
    list_triggers,
    set_active,
)
from cxloop.project import Project, open_database, read_server
from cxloop.service import cases, followups
from cxloop.service.timeline import KINDS, NoteIn, add_note, timeline
from cxloop.service.worker import Worker
from cxloop.store import jobs

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many rows (1-1000)")]
cases_app = typer.Typer(help="Support cases: open, assign, resolve, metrics.", no_args_is_help=True)
followups_app = typer.Typer(
    help="Follow-ups for the department that owns the stage.", no_args_is_help=True
)
triggers_app = typer.Typer(
    help="Send a survey after an event, a stage entry or a resolved case.", no_args_is_help=True
)
jobs_app = typer.Typer(help="The durable job queue (survey e-mails, scans).", no_args_is_help=True)
notes_app = typer.Typer(help="Notes on a customer's timeline.", no_args_is_help=True)
CASE_COLUMNS = (
    "id",
    "customer_id",
    "subject",
    "status",
    "stage",
    "department",
    "assignee",
    "outcome",
    "opened_at",
)
FOLLOWUP_COLUMNS = (
    "id",
    "customer_id",
    "department",
    "reason",
    "status",
    "assignee",
    "due_at",
    "overdue",
    "summary",
)


def _write(project: Project, fn: Any) -> Any:
    with project.engine.begin() as conn:
        return fn(conn)


def _read(project: Project, fn: Any) -> Any:
    with project.engine.connect() as conn:
        return fn(conn)


# -- surveys link --------------------------------------------------------------------------


@surveys_app.command("link")
@handle_errors
def survey_link(
    survey_id: Annotated[int, typer.Argument(help="The survey's id")],
    customer: Annotated[
        str | None, typer.Option("--customer", help="id, userId or e-mail of who answers")
    ] = None,
    expires_days: Annotated[int, typer.Option("--expires-days", help="1-365")] = 14,
    touchpoint: Annotated[str | None, typer.Option("--touchpoint")] = None,
) -> None:
    """Create a single-use link to the survey and print its URL alone on stdout."""
    body = {"customer": customer, "expires_days": expires_days, "touchpoint": touchpoint}
    base = load_settings().effective_public_url

    def local(project: Project) -> Any:
        def make(conn: Any) -> Any:
            who = None if customer is None else resolve_customer_id(conn, customer)
            found, token = create_invite(
                conn, survey_id, customer_id=who, expires_days=expires_days, touchpoint=touchpoint
            )
            return {**found, "url": f"{base}/s/{token}"}

        return _write(project, make)

    data = call_project("POST", f"/api/v1/surveys/{survey_id}/invites", local, body=body)
    sys.stdout.write(f"{data['url']}\n")


# -- triggers ------------------------------------------------------------------------------


@triggers_app.command("create")
@handle_errors
def trigger_create(
    survey: Annotated[int, typer.Option("--survey", help="The survey's id")],
    on: Annotated[str, typer.Option("--on", help="event, stage or case_resolved")],
    event: Annotated[str | None, typer.Option("--event", help="--on event: its name")] = None,
    stage: Annotated[str | None, typer.Option("--stage", help="--on stage: MODEL:STAGE")] = None,
    delay: Annotated[str, typer.Option("--delay", help="after 90m, 24h, 3d …")] = "0m",
    cap_days: Annotated[
        int, typer.Option("--cap-days", help="no customer asked more than once per N days")
    ] = 30,
    channel: Annotated[str, typer.Option("--channel", help="email or in_app")] = "email",
    expires_days: Annotated[int, typer.Option("--expires-days", help="link valid for N days")] = 14,
) -> None:
    """Create a trigger and print its id alone on stdout."""
    body = from_options(
        TriggerIn,
        None,
        survey=survey,
        on=on,
        event=event,
        stage=stage,
        delay=delay,
        cap_days=cap_days,
        channel=channel,
        expires_days=expires_days,
    )
    data = call_project(
        "POST",
        "/api/v1/survey-triggers",
        lambda p: _write(p, lambda c: create_trigger(c, body)),
        body=body.model_dump(),
    )
    sys.stdout.write(f"{data['id']}\n")


@triggers_app.command("list")
@handle_errors
def trigger_list(fmt: FormatOpt = Format.table) -> None:
    """Every survey trigger."""
    data = call_project("GET", "/api/v1/survey-triggers", lambda p: _read(p, list_triggers))
    emit(data, fmt, rows=data, fields=TRIGGER_FIELDS, title="survey triggers")


def _toggle(trigger_id: int, active: bool) -> None:
    call_project(
        "PATCH",
        f"/api/v1/survey-triggers/{trigger_id}",
        lambda p: _write(p, lambda c: set_active(c, trigger_id, active)),
        body={"active": active},
    )


@triggers_app.command("enable")
@handle_errors
def trigger_enable(trigger_id: Annotated[int, typer.Argument()]) -> None:
    """Let a trigger fire again."""
    _toggle(trigger_id, True)


@triggers_app.command("disable")
@handle_errors
def trigger_disable(trigger_id: Annotated[int, typer.Argument()]) -> None:
    """Stop a trigger from firing (queued sends still run)."""
    _toggle(trigger_id, False)


# -- cases ---------------------------------------------------------------------------------


@cases_app.command("open")
@handle_errors
def case_open(
    customer: Annotated[str, typer.Option("--customer", help="id, userId or e-mail")],
    subject: Annotated[str, typer.Option("--subject")],
    channel: Annotated[str | None, typer.Option("--channel", help="email, phone, chat…")] = None,
    category: Annotated[str | None, typer.Option("--category")] = None,
    model: Annotated[str | None, typer.Option("--model", help="lifecycle model for the stage")] = (
        None
    ),
    department: Annotated[str | None, typer.Option("--department")] = None,
) -> None:
    """Open a case and print its id alone on stdout."""
    body = from_options(
        cases.CaseIn,
        None,
        customer=customer,
        subject=subject,
        channel=channel,
        category=category,
        model=model,
        department=department,
    )
    data = call_project(
        "POST",
        "/api/v1/cases",
        lambda p: _write(p, lambda c: cases.open_case(c, body, source="cli")),
        body=body.model_dump(mode="json"),
    )
    sys.stdout.write(f"{data['id']}\n")


@cases_app.command("list")
@handle_errors
def case_list(
    department: Annotated[str | None, typer.Option("--department")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open, in_progress, resolved")] = (
        None
    ),
    limit: LimitOpt = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Cases, newest first."""
    params = {"department": department, "status": status, "limit": limit}
    data = call_project(
        "GET",
        "/api/v1/cases",
        lambda p: _read(
            p, lambda c: cases.list_cases(c, department=department, status=status, limit=limit)
        ),
        params=params,
    )
    emit(data, fmt, rows=data, columns=CASE_COLUMNS, title="cases")


@cases_app.command("show")
@handle_errors
def case_show(case_id: Annotated[int, typer.Argument()], fmt: FormatOpt = Format.table) -> None:
    """One case, whole."""
    data = call_project(
        "GET", f"/api/v1/cases/{case_id}", lambda p: _read(p, lambda c: cases.get_case(c, case_id))
    )
    key_values(data, fmt, title="case")


# The fields of a case change as the options that give them.
CASE_OPTIONS = {"assignee": "--to", "outcome": "--outcome", "note": "--note"}


def _case_change(case_id: int, change: cases.CaseUpdate, fmt: Format) -> None:
    data = call_project(
        "PATCH",
        f"/api/v1/cases/{case_id}",
        lambda p: _write(p, lambda c: cases.update_case(c, case_id, change)),
        body=change.model_dump(exclude_defaults=True),
        options=CASE_OPTIONS,
    )
    key_values(data, fmt, title="case")


@cases_app.command("assign")
@handle_errors
def case_assign(
    case_id: Annotated[int, typer.Argument()],
    assignee: Annotated[str, typer.Option("--to", help="who takes the case")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Give the case to someone (it moves to in_progress)."""
    change = from_options(cases.CaseUpdate, CASE_OPTIONS, assignee=assignee)
    _case_change(case_id, change, fmt)


@cases_app.command("unassign")
@handle_errors
def case_unassign(case_id: Annotated[int, typer.Argument()], fmt: FormatOpt = Format.table) -> None:
    """Give the case back: nobody has it. One taken but not yet answered is open again."""
    _case_change(case_id, cases.CaseUpdate(unassign=True), fmt)


@cases_app.command("respond")
@handle_errors
def case_respond(case_id: Annotated[int, typer.Argument()], fmt: FormatOpt = Format.table) -> None:
    """Record the first response to the customer, now."""
    _case_change(case_id, cases.CaseUpdate(responded=True), fmt)


@cases_app.command("resolve")
@handle_errors
def case_resolve(
    case_id: Annotated[int, typer.Argument()],
    outcome: Annotated[str, typer.Option("--outcome", help="positive or negative")],
    note: Annotated[str | None, typer.Option("--note", help="what was done")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Resolve the case; a negative outcome opens a follow-up.

    Survey triggers on case_resolved queue their survey."""
    _case_change(
        case_id, from_options(cases.CaseUpdate, CASE_OPTIONS, outcome=outcome, note=note), fmt
    )


@cases_app.command("metrics")
@handle_errors
def case_metrics(fmt: FormatOpt = Format.table) -> None:
    """Cases per stage: response and resolution times, outcomes, NPS and churn after.

    NPS and churn after a case are set against customers without one."""
    data = call_project("GET", "/api/v1/cases/metrics", lambda p: _read(p, cases.case_metrics))
    if fmt is Format.json:
        emit(data, fmt)
        return
    emit(
        data,
        fmt,
        rows=[{"stage": "(all)", **{k: v for k, v in data.items() if k != "stages"}}]
        + data["stages"],
        columns=(
            "stage",
            "cases",
            "open",
            "resolved",
            "positive_resolution_rate",
            "median_hours_to_first_response",
            "median_hours_to_resolution",
        ),
        title="cases per stage",
    )
    if fmt is Format.table:
        for side in ("after_case", "without_case"):
            s = data[side]
            console.print(
                f"{side.replace('_', ' ')}: NPS {s['nps']} ± {s['margin_of_error']} "
                f"({s['responses']} answers), churn {s['churn_rate']}% of "
                f"{s['customers']} customers"
            )


# -- follow-ups ----------------------------------------------------------------------------


@followups_app.command("list")
@handle_errors
def followup_list(
    department: Annotated[str | None, typer.Option("--department")] = None,
    status: Annotated[str | None, typer.Option("--status", help="open, in_progress or done")] = (
        None
    ),
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="detractor, negative_case, stalled, churn_risk, manual"),
    ] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="only those past due")] = False,
    limit: LimitOpt = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Follow-ups, earliest due first."""
    params = {
        "department": department,
        "status": status,
        "reason": reason,
        "overdue": overdue or None,
        "limit": limit,
    }
    data = call_project(
        "GET",
        "/api/v1/followups",
        lambda p: _read(
            p,
            lambda c: followups.list_followups(
                c, department=department, status=status, reason=reason, overdue=overdue, limit=limit
            ),
        ),
        params=params,
    )
    emit(data, fmt, rows=data, columns=FOLLOWUP_COLUMNS, title="follow-ups")


@followups_app.command("show")
@handle_errors
def followup_show(
    followup_id: Annotated[int, typer.Argument()], fmt: FormatOpt = Format.table
) -> None:
    """One follow-up, whole."""
    data = call_project(
        "GET",
        f"/api/v1/followups/{followup_id}",
        lambda p: _read(p, lambda c: followups.get_followup(c, followup_id)),
    )
    key_values(data, fmt, title="follow-up")


# The fields of a follow-up change as the options that give them.
FOLLOWUP_OPTIONS = dashed("status", "assignee", "unassign", "note")


@followups_app.command("update")
@handle_errors
def followup_update(
    followup_id: Annotated[int, typer.Argument()],
    status: Annotated[str | None, typer.Option("--status", help="open, in_progress or done")] = (
        None
    ),
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
    unassign: Annotated[bool, typer.Option("--unassign", help="nobody has it any more")] = False,
    note: Annotated[str | None, typer.Option("--note", help="the resolution note")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Change a follow-up's status or assignee; closing (done) needs a note."""
    change = from_options(
        followups.FollowUpUpdate,
        FOLLOWUP_OPTIONS,
        status=status,
        assignee=assignee,
        unassign=unassign,
        note=note,
    )
    data = call_project(
        "PATCH",
        f"/api/v1/followups/{followup_id}",
        lambda p: _write(p, lambda c: followups.update_followup(c, followup_id, change)),
        body=change.model_dump(exclude_defaults=True),
        options=FOLLOWUP_OPTIONS,
    )
    key_values(data, fmt, title="follow-up")


@followups_app.command("create")
@handle_errors
def followup_create(
    customer: Annotated[str, typer.Option("--customer", help="id, userId or e-mail")],
    summary: Annotated[str, typer.Option("--summary", help="what needs doing")],
    department: Annotated[str | None, typer.Option("--department")] = None,
    assignee: Annotated[str | None, typer.Option("--assignee")] = None,
) -> None:
    """Ask a department to act on a customer; prints the new id alone on stdout."""
    body = from_options(
        followups.FollowUpIn,
        None,
        customer=customer,
        summary=summary,
        department=department,
        assignee=assignee,
    )
    data = call_project(
        "POST",
        "/api/v1/followups",
        lambda p: _write(p, lambda c: followups.create_followup(c, body)),
        body=body.model_dump(),
    )
    sys.stdout.write(f"{data['id']}\n")


@followups_app.command("metrics")
@handle_errors
def followup_metrics(fmt: FormatOpt = Format.table) -> None:
    """Share of detractors followed up, median hours to close, overdue, per department."""
    data = call_project(
        "GET", "/api/v1/followups/metrics", lambda p: _read(p, followups.followup_metrics)
    )
    if fmt is Format.json:
        emit(data, fmt)
        return
    rows = [{"department": "(all)", **data}, *data["departments"]]
    emit(
        data,
        fmt,
        rows=rows,
        columns=(
            "department",
            "followups",
            "open",
            "in_progress",
            "done",
            "overdue",
            "median_hours_to_close",
        ),
        title="follow-ups",
    )
    if fmt is Format.table:
        console.print(
            f"detractors followed up: {data['detractors_followed_up']} of "
            f"{data['detractors']} ({data['detractors_followed_up_share']}%)"
        )


# -- notes and the timeline ----------------------------------------------------------------


NOTE_OPTIONS = {"body": "--text"}


@notes_app.command("add")
@handle_errors
def note_add(
    customer: Annotated[str, typer.Argument(help="id, userId or e-mail")],
    body: Annotated[str, typer.Option("--text", help="the note")],
    author: Annotated[str, typer.Option("--author", help="who writes it")],
    department: Annotated[str | None, typer.Option("--department")] = None,
) -> None:
    """Add a note to a customer's timeline; prints the note's id alone on stdout."""
    note = from_options(NoteIn, NOTE_OPTIONS, body=body, author=author, department=department)
    data = call_project(
        "POST",
        f"/api/v1/customers/{customer}/notes",
        lambda p: _write(p, lambda c: add_note(c, customer, note)),
        body=note.model_dump(),
        options=NOTE_OPTIONS,
    )
    sys.stdout.write(f"{data['id']}\n")


@handle_errors
def timeline_command(
    customer: Annotated[str, typer.Argument(help="id, userId or e-mail")],
    before: Annotated[
        datetime | None, typer.Option("--before", help="only what happened before (ISO time)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="1-500")] = 50,
    kinds: Annotated[str | None, typer.Option("--kinds", help=", ".join(KINDS))] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """A customer's events, stage changes, responses, cases, follow-ups and notes in one
    timeline, newest first."""
    chosen = KINDS if not kinds else tuple(k.strip() for k in kinds.split(",") if k.strip())
    params = {"before": before.isoformat() if before else None, "limit": limit, "kinds": kinds}
    data = call_project(
        "GET",
        f"/api/v1/customers/{customer}/timeline",
        lambda p: _read(
            p, lambda c: timeline(c, p.events, customer, before=before, limit=limit, kinds=chosen)
        ),
        params=params,
    )
    emit(data, fmt, rows=data["items"], columns=("at", "kind", "title"), title="timeline")


# -- jobs ----------------------------------------------------------------------------------


@jobs_app.command("list")
@handle_errors
def job_list(
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, done, failed")
    ] = (None),
    limit: LimitOpt = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """The newest jobs, with their outcome or last error."""
    data = call_project(
        "GET",
        "/api/v1/jobs",
        lambda p: _read(
            p,
            lambda c: {
                "counts": jobs.counts(c),
                "jobs": jobs.list_jobs(c, status=status, limit=limit),
            },
        ),
        params={"status": status, "limit": limit},
    )
    emit(
        data,
        fmt,
        rows=data["jobs"],
        columns=("id", "kind", "status", "run_at", "attempts", "outcome", "last_error"),
        title="jobs",
    )


@jobs_app.command("run")
@handle_errors
def job_run(fmt: FormatOpt = Format.table) -> None:
    """Run one pass of the worker now: scans, then every job due.

    It scans for follow-ups, stage triggers, weekly reports and segment refreshes,
    then runs every job due. (A running server does this every few seconds by
    itself; beside it, the jobs that read events are left to it.)"""
    settings = load_settings()
    if read_server(settings) is None:
        with local_project(settings) as project:
            summary = Worker(project.engine, settings, events=project.events).run_once()
    else:
        engine = open_database(settings)  # the app database alone: works beside a server
        try:
            summary = Worker(engine, settings).run_once()
        finally:
            engine.dispose()
    data = {
        "scanned": summary.scanned,
        "done": summary.done,
        "retrying": summary.retrying,
        "failed": summary.failed,
        "outcomes": summary.outcomes,
    }
    if fmt is Format.json:
        emit(data, fmt)
        return
    emit(
        data,
        fmt,
        rows=summary.outcomes,
        columns=("id", "kind", "status", "outcome", "error"),
        title=f"jobs: {summary.done} done, {summary.retrying} to retry, {summary.failed} failed"
        f"; scans found {summary.scanned}",
    )


@jobs_app.command("retry")
@handle_errors
def job_retry(job_id: Annotated[int, typer.Argument()]) -> None:
    """Queue a failed job again, now."""

    def local(project: Project) -> Any:
        before = _write(project, lambda c: jobs.retry(c, job_id))
        if before is None:
            raise ValueError(f"job: no job with id {job_id}")
        if before != "failed":
            raise ValueError(f"job: only a failed job can be retried; job {job_id} is {before}")
        return {"id": job_id, "status": "queued"}

    call_project("POST", f"/api/v1/jobs/{job_id}/retry", local)
