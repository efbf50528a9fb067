"""The report a manager forwards: one self-contained HTML or PDF document with the
overview, the stage flow, the gaps, the drivers of NPS, NPS against its benchmarks, and the
follow-ups' status, each with its chart.

It reads the same functions as the pages and the API (overview, stage flow, gaps, drivers,
follow-up metrics), so its numbers are theirs. For one department, the gaps and follow-ups
narrow to what that department owns; the rest is the company's picture it works within.
The HTML carries its charts inline as SVG and its style inline, so it opens anywhere
without the server; WeasyPrint lays the same HTML out as PDF pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from sqlalchemy import Connection

from cxloop import __version__
from cxloop.events.base import EventStore
from cxloop.feedback.benchmarks import against, list_benchmarks
from cxloop.feedback.responses import days_window
from cxloop.insights.drivers import key_drivers
from cxloop.insights.gaps import stage_gaps
from cxloop.lifecycle.mirror import MovesStore
from cxloop.lifecycle.report import stage_flow
from cxloop.lifecycle.service import NotFound, department_id, get_model
from cxloop.reports.overview import first_model, overview
from cxloop.service.followups import followup_metrics

Format = Literal["html", "pdf"]
TOP_GAPS = 8
TOP_DRIVERS = 8


@dataclass(frozen=True)
class ReportRequest:
    """What a report covers: a model (the first when none), whole days ``first``..``last``
    (both included, in the project's zone), and optionally one department's view."""

    model: str | None = None
    first: date | None = None
    last: date | None = None
    department: str | None = None


def gather(
    conn: Connection,
    events: EventStore,
    request: ReportRequest,
    *,
    zone: ZoneInfo,
    store: MovesStore | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every figure the document shows, as data (also what ``--format json`` prints)."""
    now = now or datetime.now(UTC)
    start, end = days_window(request.first, request.last, zone)
    if request.department is not None:
        department_id(conn, request.department)  # an unknown name is an error, named
    model = request.model or first_model(conn)
    if model is None:
        raise NotFound("model", "no lifecycle model is installed (cxloop lifecycle apply)")
    get_model(conn, model)  # an unknown key is an error naming the model
    flow = stage_flow(conn, model, start=start, end=end, store=store)  # read once, used thrice
    summary = overview(
        conn, zone=zone, model=model, start=start, end=end, store=store, now=now, flow=flow
    )
    gaps = stage_gaps(conn, model, start=start, end=end, zone=zone, store=store, flow=flow)
    drivers = key_drivers(conn, events, start=start, end=end)
    nps = summary["nps"]
    benchmarks = [
        against(conn, b["id"], nps, "nps") | {"name": b["name"]}
        for b in list_benchmarks(conn, "nps")
    ]
    followups = followup_metrics(conn, now=now)
    ranked = gaps["stages"]
    departments = followups["departments"]
    if request.department is not None:
        wanted = request.department.casefold()
        ranked = [s for s in ranked if (s["owner"] or "").casefold() == wanted]
        departments = [d for d in departments if (d["department"] or "").casefold() == wanted]
    return {
        "title": _title(flow["model_name"], request.department),
        "model": model,
        "model_name": flow["model_name"],
        "department": request.department,
        "from": None if request.first is None else request.first.isoformat(),
        "to": None if request.last is None else request.last.isoformat(),
        "generated_at": now.astimezone(zone).replace(microsecond=0).isoformat(),
        "overview": summary,
        "stages": flow["stages"],
        "exits": flow["exits_by_reason"],
        "gaps": {
            "formula": gaps["formula"],
            "min_sample": gaps["min_sample"],
            "stages": ranked[:TOP_GAPS],
            "more": max(0, len(ranked) - TOP_GAPS),
        },
        "drivers": {
            k: drivers.get(k)  # a model too small to fit leaves some out
            for k in ("customers", "r_squared", "note", "method", "quadrant_lines", "left_out")
        }
        | {"top": drivers.get("drivers", [])[:TOP_DRIVERS]},
        "nps": nps,
        "benchmarks": benchmarks,
        "followups": {
            k: followups[k]
            for k in (
                "followups",
                "open",
                "in_progress",
                "done",
                "overdue",
                "median_hours_to_close",
                "detractors",
                "detractors_followed_up_share",
            )
        }
        | {"departments": departments},
    }


def _title(model_name: str, department: str | None) -> str:
    name = f"{model_name} report"
    return f"{name} for {department}" if department else name


_TEMPLATES = Environment(
    loader=PackageLoader("cxloop.reports", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(data: dict[str, Any]) -> str:
    """The document as one HTML file: style and charts inline, nothing fetched."""
    from cxloop.reports import charts  # matplotlib loads on the first report, not at start

    nps = data["nps"]
    drawn = {
        "flow": Markup(charts.stage_flow(data["stages"])) if data["stages"] else None,
        "quadrant": (
            Markup(charts.quadrant(data["drivers"]["top"], data["drivers"]["quadrant_lines"]))
            if data["drivers"]["top"]
            else None
        ),
        "nps": (
            Markup(charts.score_against(nps["nps"], nps.get("margin_of_error"), data["benchmarks"]))
            if nps.get("nps") is not None
            else None
        ),
    }
    page = _TEMPLATES.get_template("report.html")
    return page.render(r=data, charts=drawn, version=__version__)


def render_pdf(html: str) -> bytes:
    """The same document laid out as A4 pages (WeasyPrint runs no script; none is needed)."""
    from weasyprint import HTML  # imported here: it loads Pango, which only the PDF needs

    pdf: bytes = HTML(string=html).write_pdf()
    return pdf


def format_for(path: Path) -> Format:
    """The document's format from the file's extension, or an error naming ``--out``."""
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        return "html"
    if suffix == ".pdf":
        return "pdf"
    raise ValueError(f"--out: {path.name!r} must end in .html or .pdf")


def write_report(data: dict[str, Any], path: Path) -> int:
    """Write the document to ``path`` (its format from the extension); the bytes written."""
    kind = format_for(path)
    html = render_html(data)
    body = html.encode() if kind == "html" else render_pdf(html)
    path.write_bytes(body)
    return len(body)
