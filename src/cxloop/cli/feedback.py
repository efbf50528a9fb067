"""`cxloop surveys`: create, list and show surveys."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from cxloop.cli.context import (
    FILTER_OPTIONS,
    CliError,
    call_project,
    dashed,
    day_option,
    from_options,
    handle_errors,
    load_settings,
)
from cxloop.cli.output import Format, console, emit, err_console, key_values, percent
from cxloop.domain.values import parse_pairs
from cxloop.feedback.benchmarks import import_benchmarks, list_benchmarks
from cxloop.feedback.responses import (
    Measure,
    comments_report,
    days_window,
    enps_beside_stages,
    score_report,
)
from cxloop.feedback.surveys import (
    SurveyIn,
    SurveyUpdate,
    create_survey,
    get_survey,
    list_surveys,
    update_survey,
)
from cxloop.feedback.themes import MAX_TOP, THEME_GROUPS, themes_report
from cxloop.project import Project, open_database

surveys_app = typer.Typer(
    help="Surveys (NPS, CSAT, CES, custom) tied to a stage and/or a touchpoint.",
    no_args_is_help=True,
)
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
COLUMNS = ("id", "kind", "name", "audience", "stage", "touchpoint", "department")
SurveyOpt = Annotated[int | None, typer.Option("--survey", help="One survey's id")]
ByOpt = Annotated[str | None, typer.Option("--by", help="touchpoint, stage, department or month")]
ScoreByOpt = Annotated[
    str | None,
    typer.Option("--by", help="touchpoint, stage, department, month or segment (with --segment)"),
]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD (inclusive)")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day (inclusive)")]


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
        type=kind,
        name=name,
        question=question,
        stage=stage,
        touchpoint=touchpoint,
        audience=audience,
        department=department,
        scale=scale,
        choices=choices,
        ask_why=ask_why,
    )

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return create_survey(conn, body)

    data = call_project("POST", "/api/v1/surveys", local, body=body.model_dump(mode="json"))
    sys.stdout.write(f"{data['id']}\n")


@surveys_app.command("update")
@handle_errors
def update(
    survey_id: Annotated[int, typer.Argument(help="The survey's id")],
    name: Annotated[str | None, typer.Option("--name", help="A new unique name")] = None,
    question: Annotated[str | None, typer.Option("--question", help="The new question")] = None,
    stage: Annotated[
        str | None, typer.Option("--stage", help="MODEL:STAGE the answers will describe")
    ] = None,
    no_stage: Annotated[bool, typer.Option("--no-stage", help="Tie it to no stage")] = False,
    touchpoint: Annotated[
        str | None, typer.Option("--touchpoint", help="The event the answers will describe")
    ] = None,
    no_touchpoint: Annotated[
        bool, typer.Option("--no-touchpoint", help="Tie it to no touchpoint")
    ] = False,
    fmt: FormatOpt = Format.table,
) -> None:
    """Rename a survey, reword it, or tie it to another stage or touchpoint.

    Answers given before keep the stage and touchpoint they had."""
    body: dict[str, Any] = {
        k: v for k, v in (("name", name), ("question", question)) if v is not None
    }
    for field, value, none in (("stage", stage, no_stage), ("touchpoint", touchpoint,
                                                           no_touchpoint)):  # fmt: skip
        if value is not None and none:
            raise CliError(f"--no-{field}: give --{field} or --no-{field}, not both", 2)
        if value is not None or none:
            body[field] = value
    change = from_options(SurveyUpdate, UPDATE_OPTIONS, **body)

    def local(project: Project) -> Any:
        with project.engine.begin() as conn:
            return update_survey(conn, survey_id, change)

    data = call_project(
        "PATCH",
        f"/api/v1/surveys/{survey_id}",
        local,
        body=change.model_dump(exclude_unset=True),
        options=UPDATE_OPTIONS,
    )
    key_values(data, fmt, title="survey")


# A survey's fields as the options of `surveys update` that give them.
UPDATE_OPTIONS = dashed("name", "question", "stage", "touchpoint")


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


def _report(measure: Measure, title: str) -> Any:
    """The command for one measure: they differ only in what they count."""

    @handle_errors
    def command(
        survey: SurveyOpt = None,
        by: ScoreByOpt = None,
        start: FromOpt = None,
        end: ToOpt = None,
        benchmark: Annotated[
            int | None, typer.Option("--benchmark", help="A benchmark's id to read against")
        ] = None,
        segment: Annotated[
            str | None,
            typer.Option("--segment", help="--by segment: a customer field or trait (channel…)"),
        ] = None,
        where: Annotated[
            list[str] | None,
            typer.Option("--where", help="only customers with FIELD=VALUE (repeatable)"),
        ] = None,
        fmt: FormatOpt = Format.table,
    ) -> None:
        group, first, last = _checked(by, start, end, SCORE_GROUPS)
        segment_of = parse_pairs(where, "--where")

        def local(project: Project) -> Any:
            zone = project.settings.zone
            with project.engine.connect() as conn:
                from cxloop.segments import check_where  # loaded only for a local answer

                check_where(conn, segment_of, "--where")
                since, until = days_window(first, last, zone)
                return score_report(
                    conn,
                    measure,
                    survey_id=survey,
                    zone=zone,
                    start=since,
                    end=until,
                    by=group,
                    benchmark_id=benchmark,
                    segment=segment,
                    where=segment_of,
                )

        params = {
            "survey": survey,
            "by": by,
            "from": start,
            "to": end,
            "benchmark": benchmark,
            "segment": segment,
            "where": where,
        }
        data = call_project(
            "GET", f"/api/v1/feedback/{measure}", local, params=params, options=FILTER_OPTIONS
        )
        columns = ("key", measure, "responses", "margin_of_error")
        if fmt is not Format.table:
            emit(data, fmt, rows=data.get("groups") or [data], columns=columns, title=title)
            return
        key_values(
            {k: v for k, v in data.items() if k not in ("groups", "benchmark")}, fmt, title=title
        )
        if data.get("benchmark"):
            key_values(data["benchmark"], fmt, title="against the benchmark")
        if data.get("groups"):
            emit(
                data["groups"], fmt, rows=data["groups"], columns=columns, title=f"{title} by {by}"
            )

    command.__doc__ = f"{title} with its 95% margin of error, overall or per group."
    return command


nps = _report("nps", "NPS")


@handle_errors
def enps(
    start: FromOpt = None,
    end: ToOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """eNPS per department beside the customer NPS of the stages it owns, and how the two
    correlate across departments."""
    first, last = day_option(start, "--from"), day_option(end, "--to")

    def local(project: Project) -> Any:
        zone = project.settings.zone
        with project.engine.connect() as conn:
            since, until = days_window(first, last, zone)
            return enps_beside_stages(conn, zone=zone, start=since, end=until)

    params = {"from": start, "to": end}
    data = call_project("GET", "/api/v1/feedback/enps/departments", local, params=params)
    rows = [{**d, "stages": ", ".join(d["stages"])} for d in data["departments"]]
    columns = (
        "department",
        "enps",
        "responses",
        "margin_of_error",
        "customer_nps",
        "customer_responses",
        "stages",
    )
    if fmt is not Format.table:
        emit(data, fmt, rows=rows, columns=columns, title="eNPS by department")
        return
    emit(rows, fmt, rows=rows, columns=columns, title="eNPS by department")
    r, n = data["correlation"], data["correlated_departments"]
    shown = "needs three departments with both" if r is None else f"{r:+.2f}"
    console.print(f"correlation of eNPS and customer NPS: {shown} (departments: {n})")


csat = _report("csat", "CSAT")
ces = _report("ces", "CES")
GROUPS = ("touchpoint", "stage", "department", "month")
SCORE_GROUPS = (*GROUPS, "segment")


def _checked(
    by: str | None, start: str | None, end: str | None, groups: tuple[str, ...] = GROUPS
) -> tuple[Any, date | None, date | None]:
    """A report's --by, --from and --to, or an error naming the option."""
    if by is not None and by not in groups:
        raise ValueError(f"--by: must be one of {', '.join(groups)}, not {by!r}")
    return by, day_option(start, "--from"), day_option(end, "--to")


@handle_errors
def comments(
    survey: SurveyOpt = None,
    by: ByOpt = None,
    start: FromOpt = None,
    end: ToOpt = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """What the comments say: their sentiment (-1 to +1) overall, per NPS class and per
    group, with the most negative and most positive as examples."""
    group, first, last = _checked(by, start, end)

    def local(project: Project) -> Any:
        zone = project.settings.zone
        with project.engine.connect() as conn:
            since, until = days_window(first, last, zone)
            return comments_report(
                conn, survey_id=survey, zone=zone, start=since, end=until, by=group
            )

    params = {"survey": survey, "by": by, "from": start, "to": end}
    data = call_project("GET", "/api/v1/feedback/comments", local, params=params)
    if fmt is not Format.table:
        emit(
            data,
            fmt,
            rows=data.get("groups") or [data],
            title="comments",
            columns=("key", "comments", "mean_sentiment"),
        )
        return
    classes = [{"class": k, **v} for k, v in data["by_nps_class"].items()]
    key_values(
        {"comments": data["comments"], "mean_sentiment": data["mean_sentiment"]},
        fmt,
        title="comments",
    )
    emit(
        classes,
        fmt,
        rows=classes,
        columns=("class", "comments", "mean_sentiment"),
        title="sentiment by NPS class",
    )
    for group in data.get("groups") or []:
        rows = [{"example": c, "tone": "negative"} for c in group["most_negative"]] + [
            {"example": c, "tone": "positive"} for c in group["most_positive"]
        ]
        emit(
            rows,
            fmt,
            rows=rows,
            columns=("tone", "example"),
            title=f"{group['key']}: {group['comments']} comments, "
            f"mean sentiment {group['mean_sentiment']}",
        )


@handle_errors
def themes(
    survey: SurveyOpt = None,
    by: Annotated[str | None, typer.Option("--by", help="touchpoint or stage")] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    top: Annotated[int, typer.Option("--top", help=f"Themes per group, 1 to {MAX_TOP}")] = 10,
    fmt: FormatOpt = Format.table,
) -> None:
    """What the comments keep coming back to: recurring phrases overall and per group,
    ranked by how much more that group says them, with recent comments as examples."""
    if by is not None and by not in THEME_GROUPS:
        raise ValueError(f"--by: must be one of {', '.join(THEME_GROUPS)}, not {by!r}")
    if not 1 <= top <= MAX_TOP:
        raise ValueError(f"--top: give 1 to {MAX_TOP}, not {top}")
    first, last = day_option(start, "--from"), day_option(end, "--to")

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            since, until = days_window(first, last, project.settings.zone)
            return themes_report(conn, survey_id=survey, by=by, start=since, end=until, top=top)

    params = {"survey": survey, "by": by, "from": start, "to": end, "top": top}
    data = call_project("GET", "/api/v1/feedback/themes", local, params=params)
    groups = [{"key": "(all)", **data}, *data.get("groups", [])]
    rows = [
        {
            "group": g["key"],
            "group_comments": g["comments"],
            "phrase": t["phrase"],
            "comments": t["comments"],
            "share": t["share"],
            "sentiment": t["mean_sentiment"],
            "score": t["mean_score"],
            "example": t["examples"][0]["comment"] if t["examples"] else None,
        }
        for g in groups
        for t in g["themes"]
    ]
    if fmt is Format.json:
        emit(data, fmt)
        return
    columns = ("group", "phrase", "comments", "share", "sentiment", "score", "example")
    if fmt is Format.csv:
        emit(rows, fmt, rows=rows, columns=("group", "group_comments", *columns[1:]))
        return
    shown = [
        {**r, "share": percent(r["share"]), "example": _clipped(r["example"], 80)} for r in rows
    ]
    emit(
        shown,
        fmt,
        rows=shown,
        columns=columns,
        title=f"themes of {data['comments']} comments" + (f" by {by}" if by else ""),
    )


def _clipped(text: str | None, width: int) -> str | None:
    """A comment cut to fit a table's cell: the whole one is in the JSON."""
    if text is None or len(text) <= width:
        return text
    return text[: width - 1].rstrip() + "…"


benchmarks_app = typer.Typer(
    help="Published NPS/eNPS/CSAT/CES figures to read ours against (none are shipped).",
    no_args_is_help=True,
)


@benchmarks_app.command("list")
@handle_errors
def benchmarks_list(
    measure: Annotated[str | None, typer.Option("--measure", help="nps, enps, csat or ces")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Every benchmark, with its source."""

    def local(project: Project) -> Any:
        with project.engine.connect() as conn:
            return list_benchmarks(conn, measure)

    data = call_project("GET", "/api/v1/feedback/benchmarks", local, params={"measure": measure})
    columns = ("id", "measure", "scope", "name", "value", "as_of", "source")
    emit(data, fmt, rows=data, columns=columns, title="benchmarks")


@benchmarks_app.command("import")
@handle_errors
def benchmarks_import(
    path: Annotated[Path, typer.Argument(help="CSV: measure,scope,name,value,source[,as_of]")],
    encoding: Annotated[
        str | None,
        typer.Option(help="e.g. cp1252 or utf-16 (default: UTF-8, or UTF-16 by its BOM)"),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Import benchmarks; rows that fail a check are reported by line and reason.

    A row for an existing measure, scope and name replaces it."""
    settings = load_settings()
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            summary = import_benchmarks(conn, path, encoding)
    finally:
        engine.dispose()
    key_values(
        {k: v for k, v in summary.items() if k != "rejects"} if fmt is Format.table else summary,
        fmt,
        title="import benchmarks",
    )
    for reject in summary["rejects"][:5] if fmt is Format.table else []:
        err_console.print(f"line {reject['line']}: {reject['reason']}", highlight=False)
