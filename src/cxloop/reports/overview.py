"""The morning overview: how many customers, how many active, how well one lifecycle
converts and how many leave it, NPS with its margin and benchmark, follow-ups waiting, and
the three stages that lose or disappoint the most. The web page and
``GET /api/v1/overview`` both answer from here, so they always agree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table, func, select

from cxloop.customers.service import segment_conditions
from cxloop.feedback.benchmarks import list_benchmarks
from cxloop.feedback.responses import score_report
from cxloop.lifecycle import report
from cxloop.lifecycle.mirror import MovesStore
from cxloop.service.followups import followup_metrics
from cxloop.store.models import Customer, LifecycleModelRow

customers_t = cast(Table, Customer.__table__)
models_t = cast(Table, LifecycleModelRow.__table__)
ACTIVE_DAYS = 30  # without a date range, "active" means seen in the last 30 days
MIN_STAGE_ANSWERS = 30  # fewer answers give an NPS too uncertain to rank stages by


def first_model(conn: Connection) -> str | None:
    found = conn.execute(select(models_t.c.key).order_by(models_t.c.key).limit(1)).scalar()
    return None if found is None else str(found)


def overview(
    conn: Connection,
    *,
    zone: ZoneInfo,
    model: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: dict[str, str] | None = None,
    store: MovesStore | None = None,
    now: datetime | None = None,
    flow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Figures over ``start``..``end`` (UTC instants, end exclusive) for the customers of
    the segment ``where``. Conversion is the share of those who entered the model's first
    stage in the window and reached its last; churn the share who exited the lifecycle.
    ``flow`` is the model's stage flow over the same window and segment when the caller
    has it already (it is the costly read)."""
    now = now or datetime.now(UTC)
    where = where or {}
    segment = segment_conditions(where)
    until = end or now
    since = start or until - timedelta(days=ACTIVE_DAYS)
    customers = conn.execute(
        select(func.count())
        .select_from(customers_t)
        .where(*segment, customers_t.c.first_seen < until)
    ).scalar_one()
    active = conn.execute(
        select(func.count())
        .select_from(customers_t)
        .where(*segment, customers_t.c.last_seen >= since, customers_t.c.last_seen < until)
    ).scalar_one()
    model = model or first_model(conn)
    lifecycle: dict[str, Any] | None = None
    worst_drop: list[dict[str, Any]] = []
    if model is not None:
        if flow is None or flow["model"] != model:
            flow = report.stage_flow(conn, model, start=start, end=end, where=where, store=store)
        stages = flow["stages"]
        entered = stages[0]["entered"] if stages else 0
        exited = sum(s["exited"] for s in stages)
        reached = stages[-1]["entered"] if stages else 0
        lifecycle = {
            "model": flow["model"],
            "model_name": flow["model_name"],
            "entered": entered,
            "reached_last_stage": reached,
            "exited": exited,
            "conversion_rate": _share(reached, entered),
            "churn_rate": _share(exited, entered),
        }
        ranked = [s for s in stages if s["drop_off_rate"] is not None and s["entered"]]
        ranked.sort(key=lambda s: -s["drop_off_rate"])
        worst_drop = [
            {
                "stage": f"{flow['model']}:{s['key']}",
                "name": s["name"],
                "owner": s["owner"],
                "drop_off_rate": s["drop_off_rate"],
                "entered": s["entered"],
            }
            for s in ranked[:3]
        ]
    benchmarks = list_benchmarks(conn, "nps")
    nps = score_report(
        conn,
        "nps",
        by="stage",
        zone=zone,
        start=start,
        end=end,
        where=where,
        benchmark_id=benchmarks[0]["id"] if benchmarks else None,
    )
    groups = [g for g in nps.pop("groups", []) if g["responses"] >= MIN_STAGE_ANSWERS]
    groups.sort(key=lambda g: g["nps"])
    followups = followup_metrics(conn, now=now)
    return {
        "from": None if start is None else start.isoformat(),
        "to": None if end is None else end.isoformat(),
        "segment": where,
        "customers": int(customers),
        "active_customers": int(active),
        "active_since": since.isoformat(),
        "lifecycle": lifecycle,
        "nps": nps,
        "followups": {
            "open": followups["open"] + followups["in_progress"],
            "overdue": followups["overdue"],
        },
        "worst_stages": {
            "by_drop_off": worst_drop,
            "by_satisfaction": [
                {k: g[k] for k in ("nps", "responses", "margin_of_error")} | {"stage": g["key"]}
                for g in groups[:3]
            ],
        },
    }


def _share(part: int, whole: int) -> float | None:
    return None if not whole else round(part / whole, 4)
