"""`cxloop`: set up, serve, inspect and feed a cxloop project."""

from __future__ import annotations

import functools
import gc
import importlib
from collections.abc import Callable
from typing import Annotated, Any

import typer

from cxloop import __version__
from cxloop.cli.context import (
    CliError,
    cli_actor,
    handle_errors,
    load_settings,
    local_project,
    remote_server,
)
from cxloop.cli.lazy import LazyCommand, LazyGroup
from cxloop.cli.output import Format, console, err_console, key_values
from cxloop.store import audit


@functools.cache  # the tree is built anew for each invocation; register once
def _imports() -> typer.Typer:
    from cxloop.cli import exports, imports

    exports.register_import(imports.app)
    return imports.app


@functools.cache
def _exports() -> typer.Typer:
    from cxloop.cli import analytics, exports

    exports.register_export(analytics.export_app)
    return analytics.export_app


def _from(module: str, name: str) -> Callable[[], Any]:
    """A loader of ``name`` from ``cxloop.cli.<module>``."""

    def load() -> Any:
        return getattr(importlib.import_module(f"cxloop.cli.{module}"), name)

    return load


def _surveys() -> Any:
    """`cxloop surveys` is one group from two modules: `link` lives with the other commands
    that reach a running server (``cli/service``), which adds it to the group."""
    importlib.import_module("cxloop.cli.service")
    return _from("feedback", "surveys_app")()


def _audit() -> Callable[..., Any]:
    from cxloop.cli import automations

    return handle_errors(automations.audit_command)


# Each line is the first paragraph of the command's own help (tests/test_cli_lazy.py holds
# the two to each other).
LAZY_COMMANDS = [
    LazyCommand(
        "timeline",
        "A customer's events, stage changes, responses, cases, follow-ups and notes in one "
        "timeline, newest first.",
        _from("service", "timeline_command"),
    ),
    LazyCommand(
        "funnel",
        "Customers per step of a funnel, conversion, drop-off and time to convert.",
        _from("analytics", "funnel"),
    ),
    LazyCommand(
        "trends",
        "Events and unique customers per day, week or month.",
        _from("analytics", "trends"),
    ),
    LazyCommand(
        "retention",
        "Cohorts by their first start event, and who came back in each following period.",
        _from("analytics", "retention"),
    ),
    LazyCommand(
        "paths",
        "The most common paths after (or before) an event; $exit marks where customers left.",
        _from("analytics", "paths"),
    ),
    LazyCommand(
        "nps", "NPS with its 95% margin of error, overall or per group.", _from("feedback", "nps")
    ),
    LazyCommand(
        "enps",
        "eNPS per department beside the customer NPS of the stages it owns, and how the two "
        "correlate across departments.",
        _from("feedback", "enps"),
    ),
    LazyCommand(
        "csat",
        "CSAT with its 95% margin of error, overall or per group.",
        _from("feedback", "csat"),
    ),
    LazyCommand(
        "ces", "CES with its 95% margin of error, overall or per group.", _from("feedback", "ces")
    ),
    LazyCommand(
        "comments",
        "What the comments say: their sentiment (-1 to +1) overall, per NPS class and per "
        "group, with the most negative and most positive as examples.",
        _from("feedback", "comments"),
    ),
    LazyCommand(
        "themes",
        "What the comments keep coming back to: recurring phrases overall and per group, "
        "ranked by how much more that group says them, with recent comments as examples.",
        _from("feedback", "themes"),
    ),
    LazyCommand("stats", "Customers, events and events per day.", _from("data", "stats")),
    LazyCommand(
        "report",
        "Write the report: overview, stage flow, gaps, drivers of NPS, NPS against its "
        "benchmarks and the follow-ups' status, with charts, in one self-contained file.",
        _from("report", "report_command"),
    ),
    LazyCommand(
        "audit",
        "Who changed what and when (models, rules, users, keys, merges …), newest first.",
        _audit,
    ),
]
LAZY_GROUPS = [
    LazyCommand("keys", "Manage API keys (stored hashed; shown once).", _from("keys", "app")),
    LazyCommand(
        "users",
        "Users of the web app: admins, analysts, department members.",
        _from("users", "app"),
    ),
    LazyCommand("customers", "Search and show customer profiles.", _from("data", "customers_app")),
    LazyCommand("events", "Query the event stream.", _from("data", "events_app")),
    LazyCommand(
        "rejected", "Messages refused by ingestion or import.", _from("data", "rejected_app")
    ),
    LazyCommand(
        "import",
        "Import customers or events from CSV, JSONL or Parquet, or survey responses from "
        "CSV. Re-importing a file changes nothing; rejected rows go to FILE.rejects.csv with "
        "the reason.",
        _imports,
    ),
    LazyCommand(
        "lifecycle",
        "Lifecycle models, stage flows and stalled customers.",
        _from("lifecycle", "app"),
    ),
    LazyCommand(
        "departments",
        "Departments that own lifecycle stages.",
        _from("lifecycle", "departments_app"),
    ),
    LazyCommand(
        "insights",
        "Insights: gaps per stage, drivers of NPS and churn, retargeting, purchases, churn risk.",
        _from("insights", "app"),
    ),
    LazyCommand(
        "segments", "Saved segments: rules, members, CSV export.", _from("segments", "app")
    ),
    LazyCommand(
        "surveys",
        "Surveys (NPS, CSAT, CES, custom) tied to a stage and/or a touchpoint.",
        _surveys,
    ),
    LazyCommand(
        "benchmarks",
        "Published NPS/eNPS/CSAT/CES figures to read ours against (none are shipped).",
        _from("feedback", "benchmarks_app"),
    ),
    LazyCommand(
        "triggers",
        "Send a survey after an event, a stage entry or a resolved case.",
        _from("service", "triggers_app"),
    ),
    LazyCommand(
        "cases", "Support cases: open, assign, resolve, metrics.", _from("service", "cases_app")
    ),
    LazyCommand(
        "followups",
        "Follow-ups for the department that owns the stage.",
        _from("service", "followups_app"),
    ),
    LazyCommand("notes", "Notes on a customer's timeline.", _from("service", "notes_app")),
    LazyCommand(
        "jobs", "The durable job queue (survey e-mails, scans).", _from("service", "jobs_app")
    ),
    LazyCommand("export", "Write the data out for other engines.", _exports),
    LazyCommand(
        "report-schedules",
        "Weekly report e-mails per department (sent by the job queue).",
        _from("report", "schedules_app"),
    ),
    LazyCommand(
        "automations",
        "Rules: when something happens to a customer, do something.",
        _from("automations", "app"),
    ),
    LazyCommand(
        "webhooks",
        "Outgoing webhooks and their delivery log.",
        _from("automations", "webhooks_app"),
    ),
    LazyCommand(
        "staff",
        "Staff profiles (the people customers meet) for pre-visit notices.",
        _from("automations", "staff_app"),
    ),
]


class CxloopGroup(LazyGroup):
    lazy = {command.name: command for command in [*LAZY_COMMANDS, *LAZY_GROUPS]}
    order = [
        *(c.name for c in LAZY_COMMANDS),
        *("init", "serve", "demo", "config"),
        *(c.name for c in LAZY_GROUPS),
    ]


app = typer.Typer(
    name="cxloop",
    help="cxloop: follow every customer through the lifecycle and close the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CxloopGroup,
)
config_app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]


def _version(value: bool) -> None:
    if value:
        console.print(f"cxloop {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Settings come from CXLOOP_* environment variables (see `cxloop config show`)."""
    audit.ACTOR.set(cli_actor())  # what this command changes is audited as cli:USER


@config_app.command("show")
@handle_errors
def config_show(fmt: FormatOpt = Format.table) -> None:
    """Print the effective settings, secrets masked."""
    settings = load_settings()
    key_values(settings.public_view(), fmt, title="cxloop settings")


@app.command()
@handle_errors
def init() -> None:
    """Create or upgrade the project's stores (safe to run again)."""
    settings = load_settings()
    with local_project(settings) as project:
        events = project.events.count()
    console.print(f"app database: {settings.public_view()['database_url']}")
    console.print(f"event store:  {settings.public_view()['events_url']} ({events:,} events)")
    console.print("[green]ready[/green]")


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (CXLOOP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CXLOOP_PORT)", min=1, max=65535)] = None,
) -> None:
    """Serve the tracking API, REST API and docs (migrates the stores first)."""
    settings = load_settings()
    run_server(settings.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v}))


def run_server(settings: Any) -> None:
    import uvicorn

    from cxloop.project import read_server
    from cxloop.web.app import create_app

    running = read_server(settings)
    if running is not None:
        raise CliError(
            f"a server already runs for this project at {running.url} (pid {running.pid})"
        )
    # Open (and migrate) the stores once here, so that a store in use by another process
    # is reported in one line instead of a start-up traceback.
    with local_project(settings):
        pass
    local_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{local_host}:{settings.port}"
    app_ = create_app(settings, public_url=url)
    # Ingestion allocates many short-lived containers; the default collector thresholds
    # make it scan the long-lived caches over and over. Collect far less often.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    err_console.print(
        f"cxloop {__version__} serving on {url} (API docs: {url}/docs)", soft_wrap=True
    )
    uvicorn.run(
        app_,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )


@app.command()
@handle_errors
def demo(
    customers: Annotated[int, typer.Option(min=1, max=1_000_000, help="How many customers")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data)")] = 7,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the app when the data is loaded")
    ] = True,
    reset: Annotated[
        bool, typer.Option(help="Reload the demo even if it was loaded before")
    ] = False,
) -> None:
    """Load a deterministic demo history, create demo keys, and serve the app."""
    from cxloop.demo.loader import load_demo

    settings = load_settings()
    with remote_server(settings) as remote:
        if remote is not None:
            raise CliError(
                f"a server runs for this project at {remote.info.url}; stop it before `cxloop demo`"
            )
    with local_project(settings) as project:
        summary = load_demo(project, customers=customers, seed=seed, reset=reset)
    url = f"http://{settings.host}:{settings.port}"
    console.print()
    console.print(
        f"[bold]cxloop demo[/bold]: {summary.customers:,} customers, {summary.events:,} events"
    )
    console.print(f"  web app:    {url}   (API docs: {url}/docs)")
    console.print(f"  write key:  {summary.write_key}")
    console.print(f"  secret key: {summary.secret_key}")
    console.print(f"  sign in:    {summary.admin_email} / {summary.admin_password}  ({url}/login)")
    console.print(
        f"  try:        curl -H 'Authorization: Bearer {summary.secret_key}' {url}/api/v1/stats",
        soft_wrap=True,
    )
    if summary.survey_token:
        console.print(f"  a survey:   {settings.effective_public_url}/s/{summary.survey_token}")
    if not settings.smtp_host:
        console.print(
            "  e-mail:     not set up: survey and automation e-mails wait in the job queue "
            "until CXLOOP_SMTP_HOST is set (see docs/feedback.md)",
            soft_wrap=True,
        )
    if serve_after:
        run_server(settings)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
