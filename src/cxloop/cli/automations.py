"""`cxloop automations`, `cxloop webhooks`, `cxloop staff` and `cxloop audit`.

Each command goes to the project's server when one runs (so the server's single writer
makes the change) and otherwise opens the project itself. Changes made here are audited
as ``cli:USER``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cxloop.automations import presets, rules, staff, webhooks
from cxloop.cli.context import (
    call_project,
    cli_actor,
    from_options,
    handle_errors,
    load_settings,
    local_project,
    read_database,
    read_mapping,
    remote_server,
)
from cxloop.cli.output import Format, console, emit, key_values
from cxloop.domain.automations import RuleIn
from cxloop.project import Project
from cxloop.store import audit

app = typer.Typer(
    help="Rules: when something happens to a customer, do something.", no_args_is_help=True
)
webhooks_app = typer.Typer(help="Outgoing webhooks and their delivery log.", no_args_is_help=True)
staff_app = typer.Typer(
    help="Staff profiles (the people customers meet) for pre-visit notices.",
    no_args_is_help=True,
)
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
NameArg = Annotated[str, typer.Argument(help="The rule's name")]
RULE_COLUMNS = ("id", "name", "enabled", "on", "actions", "done", "skipped", "failed", "waiting")
RUN_COLUMNS = ("id", "rule", "customer_id", "status", "due_at", "occurrence", "outcome")


def _read_rule(path: Path) -> RuleIn:
    return rules.parse(read_mapping(path, "name, trigger and actions"))


def _rule_row(rule: dict[str, Any]) -> dict[str, Any]:
    runs = rule.get("runs") or {}
    return {
        "id": rule["id"],
        "name": rule["name"],
        "enabled": rule["enabled"],
        "on": rule["trigger"]["on"],
        "actions": ", ".join(a["type"] for a in rule["actions"]),
        "done": runs.get("done", 0),
        "skipped": runs.get("skipped", 0),
        "failed": runs.get("failed", 0),
        "waiting": runs.get("scheduled", 0) + runs.get("running", 0),
    }


def _show_rule(rule: dict[str, Any], fmt: Format) -> None:
    if fmt is not Format.table:
        emit(rule, fmt, rows=[rule])
        return
    # The rule as YAML, its state in comments: redirected to a file, it is what
    # `cxloop automations update NAME --file` takes.
    row = _rule_row(rule)
    header = (
        f"# rule {row['id']}, {'enabled' if row['enabled'] else 'disabled'}, version "
        f"{rule.get('version')}; runs: {row['done']} done, {row['skipped']} skipped, "
        f"{row['failed']} failed, {row['waiting']} waiting\n"
        f"# created by {rule.get('created_by') or '?'}, changed {rule.get('updated_at')}\n"
    )
    console.print(
        header + rules.rule_yaml(rule), markup=False, highlight=False, soft_wrap=True, end=""
    )


def _save(body: RuleIn, replace: str | None, customer: str | None, fmt: Format) -> None:
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return rules.save_rule(
                conn,
                project.events,
                body,
                actor,
                replace=replace,
                preview_customer=customer,
                timezone=project.settings.timezone,
            )

    payload = json.loads(body.model_dump_json())
    params = {"preview_customer": customer}
    if replace is None:
        data = call_project("POST", "/api/v1/automations", local, params=params, body=payload)
    else:
        data = call_project(
            "PUT", f"/api/v1/automations/{replace}", local, params=params, body=payload
        )
    _show_rule(data, fmt)


@app.command("create")
@handle_errors
def create(
    path: Annotated[Path, typer.Option("--file", help="The rule: YAML or JSON")],
    customer: Annotated[
        str | None, typer.Option("--preview-customer", help="Check the templates on this one")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Save a rule (docs/automations.md shows the format).

    What it names must exist, and its templates must render for a real customer."""
    _save(_read_rule(path), None, customer, fmt)


@app.command("update")
@handle_errors
def update(
    name: NameArg,
    path: Annotated[Path, typer.Option("--file", help="The rule: YAML or JSON")],
    customer: Annotated[str | None, typer.Option("--preview-customer")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Replace a rule's definition (its runs stay)."""
    _save(_read_rule(path), name, customer, fmt)


@app.command("preview")
@handle_errors
def preview(
    path: Annotated[Path, typer.Option("--file", help="The rule: YAML or JSON")],
    customer: Annotated[str | None, typer.Option("--customer", help="id, userId or e-mail")] = None,
) -> None:
    """Show what a rule's actions would send to a real customer, without saving it."""
    body = _read_rule(path)

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return rules.preview(
                conn, project.events, body, customer, timezone=project.settings.timezone
            )

    data = call_project(
        "POST",
        "/api/v1/automations/preview",
        local,
        params={"customer": customer},
        body=json.loads(body.model_dump_json()),
    )
    emit(data, Format.json)


@app.command("preset")
@handle_errors
def preset(
    which: Annotated[str, typer.Argument(help="pre-visit, detractor-callback or win-back")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="win-back: the model left; detractor-callback: the cases' model"
        ),
    ] = None,
    lead: Annotated[str | None, typer.Option("--lead", help="pre-visit: 24h, 2d …")] = None,
    event: Annotated[str | None, typer.Option("--event", help="pre-visit: the event")] = None,
    department: Annotated[str | None, typer.Option("--department")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Install a ready-made rule; change it afterwards like any other."""
    actor = cli_actor()
    params = {"model": model, "lead": lead, "event": event, "department": department}

    def local(project: Project) -> Any:
        body = presets.build(which, model=model, lead=lead, event=event, department=department)
        with project.engine.begin() as conn:
            return rules.save_rule(
                conn, project.events, body, actor, timezone=project.settings.timezone
            )

    _show_rule(
        call_project("POST", f"/api/v1/automations/presets/{which}", local, params=params), fmt
    )


@app.command("list")
@handle_errors
def list_(fmt: FormatOpt = Format.table) -> None:
    """Every rule: its trigger, actions and how its runs went."""

    data = read_database(lambda conn: rules.list_rules(conn))
    emit(data, fmt, rows=[_rule_row(r) for r in data], columns=RULE_COLUMNS, title="rules")


@app.command("show")
@handle_errors
def show(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """One rule, whole, with how its runs went."""
    _show_rule(read_database(lambda conn: rules.get_rule(conn, name)), fmt)


def _toggle(name: str, enabled: bool, fmt: Format) -> None:
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return rules.set_enabled(conn, name, enabled, actor)

    verb = "enable" if enabled else "disable"
    _show_rule(call_project("POST", f"/api/v1/automations/{name}/{verb}", local), fmt)


@app.command("enable")
@handle_errors
def enable(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Turn a rule on; what happened while it was off does not fire it."""
    _toggle(name, True, fmt)


@app.command("disable")
@handle_errors
def disable(name: NameArg, fmt: FormatOpt = Format.table) -> None:
    """Turn a rule off; its runs still waiting are skipped when due."""
    _toggle(name, False, fmt)


@app.command("delete")
@handle_errors
def delete(name: NameArg) -> None:
    """Delete a rule and its run history."""
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            rules.delete_rule(conn, name, actor)

    call_project("DELETE", f"/api/v1/automations/{name}", local)
    typer.echo(f"rule {name} deleted")


@app.command("runs")
@handle_errors
def runs(
    rule: Annotated[str | None, typer.Argument(help="One rule's runs (default: all)")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="scheduled, running, done, skipped, failed")
    ] = None,
    customer: Annotated[str | None, typer.Option("--customer", help="id, userId or e-mail")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """Runs, newest first: trigger, customer, outcome (JSON shows each action)."""

    data = read_database(
        lambda conn: rules.list_runs(conn, rule=rule, status=status, customer=customer, limit=limit)
    )
    emit(data, fmt, rows=data, columns=RUN_COLUMNS, title="rule runs")


# -- webhooks -----------------------------------------------------------------------------

HookArg = Annotated[str, typer.Argument(help="The webhook's name")]
HOOK_COLUMNS = ("id", "name", "url", "topics", "enabled", "failures_in_row", "disabled_reason")
DELIVERY_COLUMNS = (
    "id",
    "endpoint",
    "type",
    "status",
    "attempts",
    "last_status",
    "last_error",
    "created_at",
)


def _hook_rows(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**d, "topics": ", ".join(d["topics"])} for d in data]


# The fields of a webhook as the options that give them.
HOOK_OPTIONS = {"name": "NAME", "url": "--url", "topics": "--topic", "events": "--event"}


@webhooks_app.command("create")
@handle_errors
def hook_create(
    name: HookArg,
    url: Annotated[str, typer.Option("--url", help="http(s) address to POST to")],
    topics: Annotated[
        list[str], typer.Option("--topic", help=f"one of {', '.join(webhooks.TOPICS)}; repeat")
    ],
    events: Annotated[
        list[str] | None, typer.Option("--event", help="topic event: only these; repeat")
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Register an endpoint; prints its signing secret (keep it: receivers verify with it)."""
    body = from_options(
        webhooks.WebhookIn,
        HOOK_OPTIONS,
        name=name,
        url=url,
        topics=topics,
        events=events or None,
    )
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return webhooks.create_endpoint(conn, body, project.settings, actor)

    data = call_project(
        "POST", "/api/v1/webhooks", local, body=body.model_dump(), options=HOOK_OPTIONS
    )
    key_values(_hook_rows([data])[0], fmt, title=f"webhook {name}")


@webhooks_app.command("list")
@handle_errors
def hook_list(fmt: FormatOpt = Format.table) -> None:
    """Every webhook endpoint: URL, topics, failures in a row, state."""
    data = read_database(lambda conn: webhooks.list_endpoints(conn))
    emit(data, fmt, rows=_hook_rows(data), columns=HOOK_COLUMNS, title="webhooks")


def _hook_call(name: str, verb: str, fmt: Format) -> None:
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            if verb == "rotate-secret":
                return webhooks.rotate_secret(conn, name, actor)
            return webhooks.set_enabled(conn, name, verb == "enable", actor)

    data = call_project("POST", f"/api/v1/webhooks/{name}/{verb}", local)
    key_values(_hook_rows([data])[0], fmt, title=f"webhook {name}")


@webhooks_app.command("enable")
@handle_errors
def hook_enable(name: HookArg, fmt: FormatOpt = Format.table) -> None:
    """Enable an endpoint again (after it was disabled for failing)."""
    _hook_call(name, "enable", fmt)


@webhooks_app.command("disable")
@handle_errors
def hook_disable(name: HookArg, fmt: FormatOpt = Format.table) -> None:
    """Stop posting to an endpoint; its deliveries are skipped (and logged) until enabled."""
    _hook_call(name, "disable", fmt)


@webhooks_app.command("rotate-secret")
@handle_errors
def hook_rotate(name: HookArg, fmt: FormatOpt = Format.table) -> None:
    """Give the endpoint a new signing secret (the old one stops at once)."""
    _hook_call(name, "rotate-secret", fmt)


@webhooks_app.command("delete")
@handle_errors
def hook_delete(name: HookArg) -> None:
    """Delete an endpoint (refused while a rule still posts to it)."""
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            webhooks.delete_endpoint(conn, name, actor)

    call_project("DELETE", f"/api/v1/webhooks/{name}", local)
    typer.echo(f"webhook {name} deleted")


@webhooks_app.command("deliveries")
@handle_errors
def hook_deliveries(
    webhook: Annotated[str | None, typer.Argument(help="One endpoint's (default: all)")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending, delivered, failed or skipped")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    fmt: FormatOpt = Format.table,
) -> None:
    """The delivery log, newest first (JSON shows every attempt)."""

    data = read_database(
        lambda conn: webhooks.list_deliveries(conn, endpoint=webhook, status=status, limit=limit)
    )
    emit(data, fmt, rows=data, columns=DELIVERY_COLUMNS, title="webhook deliveries")


@webhooks_app.command("resend")
@handle_errors
def hook_resend(delivery_id: Annotated[int, typer.Argument(min=1)]) -> None:
    """Send a delivery again (the same webhook-id, so a receiver can drop a repeat)."""
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return webhooks.resend(conn, delivery_id, actor)

    call_project("POST", f"/api/v1/webhook-deliveries/{delivery_id}/resend", local)
    typer.echo(f"delivery {delivery_id} queued again")


# -- staff ----------------------------------------------------------------------------------

STAFF_COLUMNS = ("ref", "name", "department", "has_photo", "bio")


@staff_app.command("add")
@handle_errors
def staff_add(
    ref: Annotated[str, typer.Argument(help="The id events carry (technician_id)")],
    name: Annotated[str, typer.Option("--name")],
    bio: Annotated[str | None, typer.Option("--bio", help="A sentence or two")] = None,
    department: Annotated[str | None, typer.Option("--department")] = None,
    photo: Annotated[Path | None, typer.Option("--photo", help="JPEG, PNG, GIF or WebP")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Create or change a staff member (and upload their photo)."""
    body = from_options(
        staff.StaffIn, {"ref": "REF"}, ref=ref, name=name, bio=bio, department=department
    )
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return staff.save_staff(conn, body, actor)

    data = call_project("POST", "/api/v1/staff", local, body=body.model_dump())
    if photo is not None:
        data = _upload(ref, photo)
    key_values(data, fmt, title=f"staff {ref}")


def _upload(ref: str, path: Path) -> Any:
    if not path.is_file():
        raise ValueError(f"--photo: no file {str(path)!r}")
    content = path.read_bytes()
    settings = load_settings()
    with remote_server(settings) as remote:
        if remote is not None:
            return remote.request("PUT", f"/api/v1/staff/{ref}/photo", content=content)
    with local_project(settings) as project, project.engine.begin() as conn:
        return staff.set_photo(conn, ref, content, cli_actor())


@staff_app.command("photo")
@handle_errors
def staff_photo(
    ref: Annotated[str, typer.Argument()],
    path: Annotated[Path, typer.Argument(help="JPEG, PNG, GIF or WebP")],
    fmt: FormatOpt = Format.table,
) -> None:
    """Upload a staff member's photo (scaled to 512 px, metadata removed)."""
    key_values(_upload(ref, path), fmt, title=f"staff {ref}")


@staff_app.command("list")
@handle_errors
def staff_list(fmt: FormatOpt = Format.table) -> None:
    """Every staff member rules can introduce to customers."""
    data = read_database(lambda conn: staff.list_staff(conn))
    emit(data, fmt, rows=data, columns=STAFF_COLUMNS, title="staff")


@staff_app.command("delete")
@handle_errors
def staff_delete(
    ref: Annotated[str, typer.Argument(help="The staff member's ref")],
) -> None:
    """Delete a staff member and their photo."""
    actor = cli_actor()

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            staff.delete_staff(conn, ref, actor)

    call_project("DELETE", f"/api/v1/staff/{ref}", local)
    typer.echo(f"staff member {ref} deleted")


# -- audit --------------------------------------------------------------------------------


def audit_command(
    entity: Annotated[str | None, typer.Option("--entity", help=", ".join(audit.ENTITIES))] = None,
    actor: Annotated[str | None, typer.Option("--actor")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
    fmt: FormatOpt = Format.table,
) -> None:
    """Who changed what and when (models, rules, users, keys, merges …), newest first."""

    data = read_database(lambda conn: audit.entries(conn, entity=entity, actor=actor, limit=limit))
    emit(
        data,
        fmt,
        rows=data,
        columns=("id", "at", "actor", "action", "entity", "entity_id", "summary"),
        title="audit log",
    )
