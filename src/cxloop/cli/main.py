"""`cxloop`: set up, serve, inspect and feed a cxloop project."""

from __future__ import annotations

import gc
from typing import Annotated, Any

import typer

from cxloop import __version__
from cxloop.cli import (
    analytics,
    automations,
    data,
    exports,
    feedback,
    imports,
    insights,
    keys,
    lifecycle,
    report,
    segments,
    service,
    users,
)
from cxloop.cli.automations import cli_actor
from cxloop.cli.context import CliError, handle_errors, load_settings, local_project, remote_server
from cxloop.cli.output import Format, console, err_console, key_values
from cxloop.store import audit

app = typer.Typer(
    name="cxloop",
    help="cxloop: follow every customer through the lifecycle and close the loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(data.customers_app, name="customers")
app.add_typer(data.events_app, name="events")
app.add_typer(data.rejected_app, name="rejected")
app.add_typer(imports.app, name="import")
app.add_typer(lifecycle.app, name="lifecycle")
app.add_typer(lifecycle.departments_app, name="departments")
app.add_typer(insights.app, name="insights")
app.add_typer(segments.app, name="segments")
app.add_typer(feedback.surveys_app, name="surveys")
app.add_typer(feedback.benchmarks_app, name="benchmarks")
app.add_typer(service.triggers_app, name="triggers")
app.add_typer(service.cases_app, name="cases")
app.add_typer(service.followups_app, name="followups")
app.add_typer(service.notes_app, name="notes")
app.add_typer(service.jobs_app, name="jobs")
app.command("timeline")(service.timeline_command)
app.command("funnel")(analytics.funnel)
app.command("trends")(analytics.trends)
app.command("retention")(analytics.retention)
app.command("paths")(analytics.paths)
app.command("nps")(feedback.nps)
app.command("enps")(feedback.enps)
app.command("csat")(feedback.csat)
app.command("ces")(feedback.ces)
app.command("comments")(feedback.comments)
app.command("themes")(feedback.themes)
app.add_typer(analytics.export_app, name="export")
exports.register(analytics.export_app, imports.app)
app.command("stats")(data.stats)
app.command("report")(report.report_command)
app.add_typer(report.schedules_app, name="report-schedules")
app.add_typer(automations.app, name="automations")
app.add_typer(automations.webhooks_app, name="webhooks")
app.add_typer(automations.staff_app, name="staff")
app.command("audit")(handle_errors(automations.audit_command))

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
