"""`cxloop surveys`: create, list and show surveys."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cxloop.cli.context import call_project, handle_errors
from cxloop.cli.output import Format, emit, key_values
from cxloop.feedback.surveys import SurveyIn, create_survey, get_survey, list_surveys
from cxloop.project import Project

surveys_app = typer.Typer(
    help="Surveys (NPS, CSAT, CES, custom) tied to a stage and/or a touchpoint.",
    no_args_is_help=True,
)
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
COLUMNS = ("id", "kind", "name", "audience", "stage", "touchpoint", "department")


@surveys_app.command("create")
@handle_errors
def create(
    kind: Annotated[str, typer.Option("--type", help="nps, csat, ces or custom")],
    name: Annotated[str, typer.Option("--name", help="A unique name")],
    question: Annotated[
        str | None, typer.Option("--question", help="The question (each type has a default)")
    ] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", help="MODEL:STAGE the answers describe")
    ] = None,
    touchpoint: Annotated[
        str | None, typer.Option("--touchpoint", help="The event the answers describe")
    ] = None,
    audience: Annotated[str, typer.Option("--audience", help="customers or employees")] = (
        "customers"
    ),
    department: Annotated[
        str | None, typer.Option("--department", help="Employee surveys: the department")
    ] = None,
    scale: Annotated[
        str | None, typer.Option("--scale", help="Custom rating surveys: LOW-HIGH, e.g. 1-10")
    ] = None,
    choices: Annotated[
        list[str] | None, typer.Option("--choice", help="Custom choice surveys: one per choice")
    ] = None,
    ask_why: Annotated[
        bool, typer.Option("--why/--no-why", help="Ask an optional free-text why")
    ] = True,
) -> None:
    """Create a survey and print its id alone on stdout."""
    body = SurveyIn.from_cli(
        type=kind, name=name, question=question, stage=stage, touchpoint=touchpoint,
        audience=audience, department=department, scale=scale, choices=choices,
        ask_why=ask_why,
    )  # fmt: skip

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return create_survey(conn, body)

    data = call_project("POST", "/api/v1/surveys", local, body=body.model_dump(mode="json"))
    sys.stdout.write(f"{data['id']}\n")


@surveys_app.command("list")
@handle_errors
def list_(fmt: FormatOpt = Format.table) -> None:
    """Every survey, oldest first."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return list_surveys(conn)

    data = call_project("GET", "/api/v1/surveys", local)
    emit(data, fmt, rows=data, columns=COLUMNS, title="surveys")


@surveys_app.command("show")
@handle_errors
def show(
    survey_id: Annotated[int, typer.Argument(help="The survey's id")], fmt: FormatOpt = Format.table
) -> None:
    """One survey, whole."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return get_survey(conn, survey_id)

    data = call_project("GET", f"/api/v1/surveys/{survey_id}", local)
    key_values(data, fmt, title="survey")
