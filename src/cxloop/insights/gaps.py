"""Gap analysis: which stage of a lifecycle model fails its customers most, and who owns it.

Each stage gets the measurements its owner already sees (drop-off, time in stage against
the target, NPS or CSAT given at the stage, support cases and how they ended, why people
left) and one priority score that combines them. The score is a plain weighted mean of
gaps between 0 (nothing wrong) and 1 (as bad as it gets), so anyone can redo it by hand
from the figures beside it; the formula travels with every answer.

A part is counted only when it rests on enough customers or answers (``min_sample``):
a 100 % drop-off of three customers says little, and the answer says so instead of ranking
on it. Figures come from the same services as the stage-flow report and the feedback
scores, with the same window and segment, so the numbers agree with those reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, case, func, select

from cxloop.feedback.responses import stage_scores
from cxloop.insights.filters import in_window, segment_members
from cxloop.lifecycle.mirror import MovesStore
from cxloop.lifecycle.report import stage_flow, transitions_t
from cxloop.lifecycle.service import get_model
from cxloop.service.cases import cases_t

MIN_SAMPLE = 30  # customers entering a stage, or answers given at it, before a part counts
TOP_EXIT_REASONS = 5


@dataclass(frozen=True)
class Weights:
    """How much each gap weighs in the priority; losing customers weighs most."""

    drop_off: float = 3.0
    dissatisfaction: float = 2.0
    over_target: float = 1.0
    case_rate: float = 1.0
    unresolved: float = 1.0


PARTS = {
    "drop_off": "exited / entered",
    "dissatisfaction": "(100 - NPS) / 200, or (100 - CSAT %) / 100 where no NPS was given",
    "over_target": "share of stays longer than the stage's target time",
    "case_rate": "customers with a case opened at the stage / entered (at most 1)",
    "unresolved": "1 - positively resolved cases / resolved cases",
}


def formula(weights: Weights) -> str:
    """The priority's formula in words, with the weights in use."""
    terms = " + ".join(f"{w:g}*{name}" for name, w in asdict(weights).items())
    gaps = "; ".join(f"{name} = {how}" for name, how in PARTS.items())
    return (
        f"priority = 100 * ({terms}) / (sum of the weights of the parts measured); "
        f"a part is measured when it rests on at least min_sample customers or answers; {gaps}"
    )


def stage_gaps(
    conn: Connection,
    model_key: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
    zone: ZoneInfo = ZoneInfo("UTC"),
    store: MovesStore | None = None,
    min_sample: int = MIN_SAMPLE,
    weights: Weights | None = None,
    flow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model's stages ranked by priority, worst first, each with its figures, the
    parts of its score (gap, weight, sample, counted or why not) and its owner;
    ``flow``, the model's stage flow over the same window and segment when the caller has
    it already (it is the costly read)."""
    if min_sample < 1:
        raise ValueError("min_sample: must be at least 1")
    weights = weights or Weights()
    segment = dict(where or {})
    if flow is None or flow["model"] != model_key:
        flow = stage_flow(conn, model_key, start=start, end=end, where=segment, store=store)
    scores = stage_scores(conn, model_key, zone=zone, start=start, end=end, where=segment)
    cases = _cases_by_stage(conn, model_key, start, end, segment)
    exits = _exits_by_stage(conn, model_key, start, end, segment)
    stages = [
        _stage(s, scores, cases.get(s["key"], {}), exits.get(s["key"], {}), min_sample, weights)
        for s in flow["stages"]
    ]
    ranked = sorted(
        stages,
        key=lambda s: (s["priority"] is None, -(s["priority"] or 0.0), -s["entered"], s["key"]),
    )
    for rank, stage in enumerate(ranked, start=1):
        stage["rank"] = rank if stage["priority"] is not None else None
    return {
        "model": flow["model"],
        "model_name": flow["model_name"],
        "from": flow["from"],
        "to": flow["to"],
        "segment": segment,
        "min_sample": min_sample,
        "weights": asdict(weights),
        "formula": formula(weights),
        "stages": ranked,
    }


def _cases_by_stage(
    conn: Connection,
    model_key: str,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str],
) -> dict[str, dict[str, int]]:
    """Cases opened at each stage within the window: how many, by how many customers,
    how many are resolved and how many of those ended well."""
    c = cases_t.c
    query = (
        select(
            c.stage,
            func.count().label("opened"),
            func.count(func.distinct(c.customer_id)).label("customers"),
            func.sum(case((c.status == "resolved", 1), else_=0)).label("resolved"),
            func.sum(
                case(((c.status == "resolved") & (c.outcome == "positive"), 1), else_=0)
            ).label("positive"),
        )
        .where(c.stage_model == model_key, c.stage.is_not(None))
        .where(*in_window(c.opened_at, start, end))
        .group_by(c.stage)
    )
    if where:
        query = query.where(c.customer_id.in_(segment_members(where)))
    return {
        str(row.stage): {
            "opened": int(row.opened),
            "customers": int(row.customers),
            "resolved": int(row.resolved or 0),
            "positive": int(row.positive or 0),
        }
        for row in conn.execute(query)
    }


def _exits_by_stage(
    conn: Connection,
    model_key: str,
    start: datetime | None,
    end: datetime | None,
    where: dict[str, str],
) -> dict[str, dict[str, int]]:
    """Exits within the window by the stage left and the reason recorded."""
    model_id, _model, _version = get_model(conn, model_key)
    t = transitions_t.c
    reason = func.coalesce(t.reason, "unknown")
    query = (
        select(t.from_stage, reason.label("reason"), func.count().label("exits"))
        .where(t.model_id == model_id, t.kind == "exit", *in_window(t.at, start, end))
        .group_by(t.from_stage, reason)
    )
    if where:
        query = query.where(t.customer_id.in_(segment_members(where)))
    out: dict[str, dict[str, int]] = {}
    for row in conn.execute(query):
        if row.from_stage is not None:
            out.setdefault(str(row.from_stage), {})[str(row.reason)] = int(row.exits)
    return out


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _stage(
    flow: dict[str, Any],
    scores: dict[str, dict[str, Any]],
    cases: dict[str, int],
    exits: dict[str, int],
    min_sample: int,
    weights: Weights,
) -> dict[str, Any]:
    key, entered = flow["key"], int(flow["entered"])
    nps = scores.get(key, {}).get("nps", {})
    csat = scores.get(key, {}).get("csat", {})
    case_customers = cases.get("customers", 0)
    resolved, positive = cases.get("resolved", 0), cases.get("positive", 0)
    median_s = flow["median_time_in_stage_s"]
    target_days = flow["target_days"]
    figures: dict[str, Any] = {
        "key": key,
        "name": flow["name"],
        "owner": flow["owner"],
        "entered": entered,
        "exited": int(flow["exited"]),
        "drop_off_rate": flow["drop_off_rate"],
        "median_time_in_stage_s": median_s,
        "target_days": target_days,
        "time_vs_target": (median_s / (target_days * 86400))
        if median_s is not None and target_days
        else None,
        "over_target": flow["over_target"],
        "nps": nps.get("nps"),
        "nps_responses": int(nps.get("responses", 0)),
        "nps_margin_of_error": nps.get("margin_of_error"),
        "csat": csat.get("csat"),
        "csat_responses": int(csat.get("responses", 0)),
        "cases_opened": cases.get("opened", 0),
        "case_customers": case_customers,
        "case_rate": _rate(case_customers, entered),
        "cases_resolved": resolved,
        "positive_resolutions": positive,
        "positive_resolution_rate": _rate(positive, resolved),
        "exits_by_reason": dict(
            sorted(exits.items(), key=lambda item: (-item[1], item[0]))[:TOP_EXIT_REASONS]
        ),
    }
    parts = _parts(figures, min_sample, weights)
    counted = [p for p in parts if p["counted"]]
    total_weight = sum(p["weight"] for p in counted)
    priority = (
        round(100.0 * sum(p["weight"] * p["gap"] for p in counted) / total_weight, 1)
        if counted and total_weight > 0
        else None
    )
    figures["parts"] = parts
    figures["priority"] = priority
    figures["note"] = (
        None
        if priority is not None
        else f"not ranked: no part rests on {min_sample} or more customers or answers"
    )
    return figures


def _parts(f: dict[str, Any], min_sample: int, weights: Weights) -> list[dict[str, Any]]:
    """Each part of the priority: its gap (0 good … 1 bad), weight, the sample it rests on,
    and whether it counts (or why not)."""
    entered = f["entered"]
    parts: list[dict[str, Any]] = []

    def add(name: str, gap: float | None, sample: int, unit: str, missing: str) -> None:
        weight = float(getattr(weights, name))
        why = None
        if gap is None:
            why = missing
        elif sample < min_sample:
            why = f"{sample} {unit}, fewer than {min_sample}"
        elif weight <= 0:
            why = "weight 0"
        parts.append(
            {
                "part": name,
                "gap": None if gap is None else round(min(max(gap, 0.0), 1.0), 4),
                "weight": weight,
                "sample": sample,
                "counted": why is None,
                "why_not": why,
            }
        )

    add("drop_off", f["drop_off_rate"], entered, "customers", "no customer entered")
    if f["nps"] is not None:
        add("dissatisfaction", (100.0 - f["nps"]) / 200.0, f["nps_responses"], "answers", "")
    elif f["csat"] is not None:
        add("dissatisfaction", (100.0 - f["csat"]) / 100.0, f["csat_responses"], "answers", "")
    else:
        add("dissatisfaction", None, 0, "answers", "no NPS or CSAT answer at this stage")
    add("over_target", f["over_target"], entered, "customers", "the stage has no target time")
    add("case_rate", f["case_rate"], entered, "customers", "no customer entered")
    add(
        "unresolved",
        None if f["positive_resolution_rate"] is None else 1.0 - f["positive_resolution_rate"],
        f["cases_resolved"],
        "resolved cases",
        "no case resolved yet" if f["cases_opened"] else "no case opened at this stage",
    )
    return parts
