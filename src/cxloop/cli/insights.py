"""`cxloop insights`: where the journey fails its customers, ranked, with the owners.

Runs in the project's server when one is running (it owns the event store) and in this
process otherwise; both print the same JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import typer
from sqlalchemy import Connection

from cxloop.cli.context import (
    FILTER_OPTIONS,
    CliError,
    call_project,
    day_option,
    handle_errors,
)
from cxloop.cli.output import Format, emit, err_console, key_values, percent
from cxloop.domain.values import parse_pairs
from cxloop.feedback.responses import days_window
from cxloop.insights.churn import AT_RISK_FIELDS, HORIZON_DAYS, churn_risk, follow_up_at_risk
from cxloop.insights.drivers import DRIVER_FIELDS, RESAMPLES, Outcome, key_drivers
from cxloop.insights.drivers import MIN_SAMPLE as DRIVERS_MIN_SAMPLE
from cxloop.insights.filters import segment_members
from cxloop.insights.gaps import MIN_SAMPLE, stage_gaps
from cxloop.insights.purchases import AMOUNT, MONTHS, RFM_SEGMENT_FIELDS, purchase_behaviour
from cxloop.insights.purchases import EVENT as PURCHASE_EVENT
from cxloop.insights.retarget import MIN_SAMPLE as RETARGET_MIN_SAMPLE
from cxloop.insights.retarget import VALUE_FIELDS, retarget
from cxloop.lifecycle.mirror import moves_store
from cxloop.project import Project
from cxloop.segments import check_where

app = typer.Typer(
    help="Insights: gaps per stage, drivers of NPS and churn, retargeting, purchases, churn risk.",
    no_args_is_help=True,
)

FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or csv")]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="First day, YYYY-MM-DD (project time zone)")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day (included), YYYY-MM-DD")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option("--where", help="Segment: profile field or trait NAME=VALUE (repeatable)"),
]


Compute = Callable[[Project, Connection, datetime | None, datetime | None], Any]


def _ask(
    path: str,
    start: str | None,
    end: str | None,
    where: list[str] | None,
    params: dict[str, Any],
    compute: Compute,
) -> Any:
    """An insight from the running server, or computed here: the filters checked, the
    days turned into the project's window, and ``compute(project, conn, since, until)``
    called with them; the segment goes to both as ``where``."""
    first, last = day_option(start, "--from"), day_option(end, "--to")
    segment = parse_pairs(where, "--where")

    def local(project: Project) -> Any:
        since, until = days_window(first, last, project.settings.zone)
        with project.engine.connect() as conn:
            check_where(conn, segment, "--where")
            return compute(project, conn, since, until)

    filters = {
        "from": first.isoformat() if first else None,
        "to": last.isoformat() if last else None,
        "where": [f"{k}={v}" for k, v in segment.items()] or None,
    }
    return call_project("GET", path, local, params={**filters, **params}, options=FILTER_OPTIONS)


def _score(value: float | None, sample: int) -> str:
    return "" if value is None else f"{value:.0f} (n={sample})"


@app.command("gaps")
@handle_errors
def gaps(
    model: Annotated[str, typer.Argument(help="Lifecycle model key")],
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
    min_sample: Annotated[
        int,
        typer.Option("--min-sample", min=1, help="Customers or answers a part needs to count"),
    ] = MIN_SAMPLE,
    fmt: FormatOpt = Format.table,
) -> None:
    """Stages ranked by a priority score: drop-off, time vs target, NPS/CSAT, cases."""
    segment = parse_pairs(where, "--where")
    data = _ask(
        f"/api/v1/insights/gaps/{model}", start, end, where, {"min_sample": min_sample},
        lambda project, conn, since, until: stage_gaps(
            conn, model, start=since, end=until, where=segment, zone=project.settings.zone,
            store=moves_store(project.events), min_sample=min_sample,
        ),
    )  # fmt: skip
    if fmt is Format.csv:
        flat = [{k: v for k, v in s.items() if k != "parts"} for s in data["stages"]]
        emit(flat, fmt, rows=flat)
        return
    rows = [
        {
            "#": s["rank"] or "",
            "stage": s["name"],
            "owner": s["owner"],
            "priority": "" if s["priority"] is None else f"{s['priority']:.1f}",
            "in": s["entered"],
            "drop": percent(s["drop_off_rate"]),
            ">target": percent(s["over_target"]),
            "NPS": _score(s["nps"], s["nps_responses"]),
            "CSAT": _score(s["csat"], s["csat_responses"]),
            "cases": percent(s["case_rate"]),
            "top exit": next(iter(s["exits_by_reason"]), ""),
        }
        for s in data["stages"]
    ]
    emit(data, fmt, rows=rows, title=f"gaps: {data['model_name']}")
    if fmt is Format.table:
        err_console.print(data["formula"], highlight=False)
        for s in data["stages"]:
            left_out = [f"{p['part']} ({p['why_not']})" for p in s["parts"] if not p["counted"]]
            why = s["note"] or (f"not counted: {', '.join(left_out)}" if left_out else "")
            if why:
                err_console.print(f"{s['name']}: {why}", highlight=False)


@app.command("drivers")
@handle_errors
def drivers(
    outcome: Annotated[
        Outcome, typer.Option("--outcome", help="nps (overall NPS) or churn (needs --model)")
    ] = "nps",
    model: Annotated[
        str | None, typer.Option("--model", help="Lifecycle model whose exits are churn")
    ] = None,
    survey: Annotated[
        int | None, typer.Option("--survey", min=1, help="The NPS survey that is the outcome")
    ] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
    min_sample: Annotated[
        int, typer.Option("--min-sample", min=3, help="Customers a driver must be measured for")
    ] = DRIVERS_MIN_SAMPLE,
    resamples: Annotated[
        int, typer.Option("--resamples", min=20, max=2000, help="Bootstrap resamples")
    ] = RESAMPLES,
    fmt: FormatOpt = Format.table,
) -> None:
    """What most moves NPS or churn: importance with 95% intervals, direction, performance."""
    segment = parse_pairs(where, "--where")
    params = {
        "outcome": outcome,
        "model": model,
        "survey": survey,
        "min_sample": min_sample,
        "resamples": resamples,
    }
    data = _ask(
        "/api/v1/insights/drivers", start, end, where, params,
        lambda project, conn, since, until: key_drivers(
            conn, project.events, outcome=outcome, model=model, survey_id=survey,
            start=since, end=until, where=segment, min_sample=min_sample, resamples=resamples,
        ),
    )  # fmt: skip
    if fmt is Format.csv:
        emit(data["drivers"], fmt, rows=data["drivers"], fields=DRIVER_FIELDS)
        return
    rows = [
        {
            "#": d["rank"],
            "driver": d["label"],
            "n": d["measured"],
            "importance": f"{d['importance']:.1f}%",
            "95% interval": f"{d['importance_ci'][0]:.1f}-{d['importance_ci'][1]:.1f}",
            "effect": d["direction"] + ("" if d["significant"] else " (not significant)"),
            "performance": f"{d['performance']:.0f}",
            "quadrant": d["quadrant"],
        }
        for d in data["drivers"]
    ]
    emit(data, fmt, rows=rows, title=f"drivers of {data['outcome']}")
    if fmt is not Format.table:
        return
    who = f"outcome: {data['outcome_is']}; {data['customers']:,} customers"
    err_console.print(who, highlight=False)
    if data["note"]:
        err_console.print(data["note"], highlight=False)
    else:
        low, high = data["r_squared_ci"]
        err_console.print(
            f"R² {data['r_squared']:.3f} (95% {low:.3f}-{high:.3f}, adjusted "
            f"{data['r_squared_adjusted']}); {data['method']}",
            highlight=False,
        )
    for left in data["left_out"]:
        err_console.print(f"left out: {left['label']} ({left['why']})", highlight=False)


def _segment_rows(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "attribute": v["attribute"].removeprefix("trait:"),
            "value": v["value"],
            "customers": v["targeted"],
            "converted": v["converted"],
            "rate": percent(v["conversion_rate"]),
            "lift": f"{v['lift']:.2f}",
            "p (adjusted)": f"{v['p_adjusted']:.2g}",
        }
        for v in values
    ]


@app.command("retarget")
@handle_errors
def retarget_command(
    model: Annotated[str, typer.Argument(help="Lifecycle model key")],
    goal: Annotated[
        str | None,
        typer.Option("--goal", help="Stage reached (or a later one), or 'exit'; default last"),
    ] = None,
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
    min_sample: Annotated[
        int, typer.Option("--min-sample", min=5, help="Customers a value needs to be tested")
    ] = RETARGET_MIN_SAMPLE,
    fmt: FormatOpt = Format.table,
) -> None:
    """Who converts: each attribute's values among the targeted and the converted, lift."""
    segment = parse_pairs(where, "--where")
    data = _ask(
        f"/api/v1/insights/retarget/{model}", start, end, where,
        {"goal": goal, "min_sample": min_sample},
        lambda _project, conn, since, until: retarget(
            conn, model, goal=goal, start=since, end=until, where=segment,
            min_sample=min_sample,
        ),
    )  # fmt: skip
    if fmt is Format.csv:
        flat = [{"attribute": a["attribute"], **v} for a in data["attributes"] for v in a["values"]]
        emit(flat, fmt, rows=flat, fields=("attribute", *VALUE_FIELDS))
        return
    rows = [
        {
            "attribute": a["attribute"].removeprefix("trait:"),
            "Cramér's V": f"{a['cramers_v']:.3f}",
            "p": f"{a['p_value']:.2g}",
            "values": len(a["values"]),
            "converts best": max(a["values"], key=lambda v: v["lift"])["value"],
        }
        for a in data["attributes"]
    ]
    title = f"{data['model_name']}: who {data['goal_is']}"
    emit(data, fmt, rows=rows, title=title)
    if fmt is not Format.table:
        return
    rate = percent(data["conversion_rate"])
    err_console.print(
        f"{data['targeted']:,} targeted, {data['converted']:,} {data['goal_is']} ({rate})",
        highlight=False,
    )
    if data["note"]:
        err_console.print(data["note"], highlight=False)
        return
    emit(_segment_rows(data["best"]), fmt, title="converts best (significant)")
    emit(_segment_rows(data["worst"]), fmt, title="converts worst (significant)")


@app.command("purchases")
@handle_errors
def purchases_command(
    event: Annotated[str, typer.Option("--event", help="The purchase event")] = PURCHASE_EVENT,
    amount: Annotated[str, typer.Option("--amount", help="The amount's property")] = AMOUNT,
    start: FromOpt = None,
    end: ToOpt = None,
    where: WhereOpt = None,
    months: Annotated[
        int, typer.Option("--months", min=1, max=60, help="Months of repeat curves")
    ] = MONTHS,
    fmt: FormatOpt = Format.table,
) -> None:
    """How customers buy: frequency, spend, channels, RFM segments, lifetime value."""
    segment = parse_pairs(where, "--where")

    def compute(project: Project, conn: Connection, since: Any, until: Any) -> Any:
        among = set(conn.execute(segment_members(segment)).scalars()) if segment else None
        return purchase_behaviour(
            project.events, event=event, amount=amount, start=since, end=until, among=among,
            months=months,
        )  # fmt: skip

    params = {"event": event, "amount": amount, "months": months}
    data = _ask("/api/v1/insights/purchases", start, end, where, params, compute)
    if fmt is Format.csv:
        emit(data.get("rfm", {}).get("segments", []), fmt, fields=RFM_SEGMENT_FIELDS)
        return
    if fmt is Format.json or "buyers" not in data:
        key_values(data, fmt, title="purchases")
        return
    summary = {k: data[k] for k in ("buyers", "purchases", "revenue", "average_order_value",
                                    "purchases_per_buyer", "median_days_between")}  # fmt: skip
    summary["repeat_rate"] = percent(data["repeat_rate"])
    key_values(summary, fmt, title=f"{event} purchases")
    emit(data["frequency"], fmt, title="buyers by number of purchases")
    channels = [{**c, "share": percent(c["share"])} for c in data["channels"]]
    emit(channels, fmt, title="channel mix")
    segments = [
        {**s, "share": percent(s["share"]), "revenue_share": percent(s["revenue_share"])}
        for s in data["rfm"]["segments"]
    ]
    emit(segments, fmt, title="RFM segments")
    value = data["lifetime_value"]
    key_values({k: v for k, v in value.items() if v is not None}, fmt, title="lifetime value")
    curves = [
        {"cohort": c["cohort"], "buyers": c["buyers"],
         **{f"m{k}": percent(v) for k, v in enumerate(c["repeat_by_month"]) if k % 3 == 0}}
        for c in data["repeat_curves"]
    ]  # fmt: skip
    emit(curves, fmt, title="bought again by month m after the first (share of the cohort)")


@app.command("churn")
@handle_errors
def churn_command(
    model: Annotated[str, typer.Argument(help="Lifecycle model key")],
    end: Annotated[
        str | None, typer.Option("--to", help="The day scored (default today), YYYY-MM-DD")
    ] = None,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=7, max=730, help="Days ahead the risk is for")
    ] = HORIZON_DAYS,
    where: WhereOpt = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Customers listed")] = 20,
    follow_up: Annotated[
        float | None,
        typer.Option(
            "--follow-up",
            min=0.01,
            max=0.99,
            help="Open a follow-up for each listed customer at or above this risk",
        ),
    ] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """Who is about to leave: risk per customer with its top reasons.

    Also how good the model is (AUC, calibration on held-out customers)."""
    segment = parse_pairs(where, "--where")
    if follow_up is not None:
        body = {"threshold": follow_up, "limit": limit, "horizon_days": horizon_days,
                "where": [f"{k}={v}" for k, v in segment.items()] or None}  # fmt: skip

        def write(project: Project) -> Any:
            with project.engine.connect() as conn:
                found = churn_risk(conn, project.events, model, horizon_days=horizon_days,
                                   where=segment, limit=limit)  # fmt: skip
            if found["note"]:
                raise CliError(found["note"])
            with project.engine.begin() as conn:
                made = follow_up_at_risk(conn, found, threshold=follow_up)
            return {**made, "threshold": follow_up, "looked_at": len(found["at_risk"])}

        made = call_project("POST", f"/api/v1/insights/churn/{model}/followups", write, body=body)
        key_values(made, fmt, title="follow-ups for at-risk customers")
        return
    data = _ask(
        f"/api/v1/insights/churn/{model}", None, end, where,
        {"horizon_days": horizon_days, "limit": limit},
        lambda project, conn, _since, until: churn_risk(
            conn, project.events, model, end=until, horizon_days=horizon_days, where=segment,
            limit=limit,
        ),
    )  # fmt: skip
    if fmt is Format.csv:
        flat = [{**{k: v for k, v in r.items() if k != "reasons"},
                 "reasons": "; ".join(f"{x['label']}: {x['value']:g}" for x in r["reasons"])}
                for r in data["at_risk"]]  # fmt: skip
        emit(flat, fmt, rows=flat, fields=AT_RISK_FIELDS)
        return
    if fmt is Format.json:
        emit(data, fmt)
        return
    if data["note"]:
        err_console.print(data["note"], highlight=False)
        return
    ev = data["evaluation"]
    err_console.print(
        f"trained on {ev['train_customers']:,} customers in the lifecycle on "
        f"{str(data['cutoff'])[:10]}, tested on {ev['test_customers']:,}: AUC {ev['auc']:.3f}, "
        f"Brier {ev['brier']:.3f} (a constant guess: {ev['brier_if_constant']:.3f})",
        highlight=False,
    )
    rows = [
        {"customer": r["customer_id"], "risk": percent(r["risk"]), "stage": r["stage"],
         "owner": r["owner"],
         "top reasons": "; ".join(f"{x['label']}: {x['value']:g}" for x in r["reasons"])}
        for r in data["at_risk"]
    ]  # fmt: skip
    emit(rows, fmt, title=f"churn risk within {data['horizon_days']} days: {data['model_name']}")
