"""Retargeting: who converts and who does not, attribute by attribute.

The *targeted* are the customers who entered a lifecycle model in the window (its first
stage, or a later one when an entry rule skips the first). The *converted* are those of
them who reached the goal: a stage (or one after it), or leaving the lifecycle, for a model
whose exits are what you want to understand (churn). For every attribute (profile fields
and traits with a handful of values) and each of its values:

* the value's share among the targeted and among the converted;
* its conversion rate, and the lift: that rate over everyone's rate (equivalently, the
  share among the converted over the share among the targeted);
* a chi-square test of the value against all other values, with the p-values of all
  values adjusted together (Benjamini-Hochberg), since testing fifty values at 5 % finds
  two or three "significant" ones by chance alone.

Each attribute also gets a chi-square test of independence and Cramér's V (0: the
attribute says nothing about converting, 1: it decides it), which orders them. The values
that convert best and worst, significant and on enough customers, are the suggested
segments. A value on fewer customers than ``min_sample`` is shown without a test.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, select

from cxloop.customers.service import FILTER_FIELDS, customers_t
from cxloop.domain.lifecycle import Condition
from cxloop.insights.filters import in_window, segment_members
from cxloop.lifecycle.report import transitions_t
from cxloop.lifecycle.service import get_model

EXIT = "exit"  # the goal "left the lifecycle"
MIN_SAMPLE = 30
MAX_VALUES = 20  # attributes with more values (ids, amounts) are not segments
SUGGESTED = 5
ALPHA = 0.05
MISSING = "(none)"
# The fields of each value of an attribute, in order (also a CSV's header when there are none).
VALUE_FIELDS = ("value", "targeted", "converted", "share_targeted", "share_converted",
                "conversion_rate", "lift", "p_value", "p_adjusted", "significant")  # fmt: skip


def _goal_position(model: Any, goal: str | None) -> int | None:
    """The goal stage's position, None for the goal "exit"."""
    keys = [s.key for s in model.stages]
    if goal is None:
        return len(keys) - 1
    if goal == EXIT:
        return None
    if goal not in keys:
        raise ValueError(
            f"goal: {goal!r} is not a stage of {model.key} (stages: {', '.join(keys)}; or exit)"
        )
    return keys.index(goal)


def _rule_traits(conditions: tuple[Condition, ...]) -> set[str]:
    return {c.field for c in conditions}


def _goal_traits(model: Any, position: int | None) -> set[str]:
    """Traits the goal is decided by (a churn flag, a plan): comparing on them would only
    restate the definition."""
    if position is None:
        return set().union(*(_rule_traits(e.traits) for e in model.exits))
    found: set[str] = set()
    for stage in model.stages[position:]:
        for rule in stage.enter:
            found |= _rule_traits(rule.traits)
    return found


def _groups(
    conn: Connection,
    model_key: str,
    position: int | None,
    start: datetime | None,
    end: datetime | None,
) -> tuple[set[int], set[int]]:
    """(targeted, converted) customer ids."""
    model_id, model, _version = get_model(conn, model_key)
    goal_stages = {s.key for s in model.stages[position:]} if position is not None else set()
    t = transitions_t.c
    targeted = set(
        conn.execute(
            select(t.customer_id)
            .where(t.model_id == model_id, t.kind == "enter", *in_window(t.at, start, end))
            .distinct()
        ).scalars()
    )
    reached = (
        t.kind == EXIT if position is None else t.to_stage.in_(sorted(goal_stages))
    )  # a move into the goal (or a later stage), or an exit
    converted = set(
        conn.execute(
            select(t.customer_id)
            .where(t.model_id == model_id, reached, *in_window(t.at, start, None))
            .where(*([t.at < end] if end is not None else []))
            .distinct()
        ).scalars()
    )
    return targeted, converted & targeted


def _attributes(
    conn: Connection, customers: set[int], left_out: set[str]
) -> dict[str, dict[int, str]]:
    """Each profile field and trait with at most MAX_VALUES values among the customers:
    {attribute: {customer: value as text}}; a customer without it has MISSING."""
    c = customers_t.c
    fields = [f for f in FILTER_FIELDS if f != "birth_year"]
    out: dict[str, dict[int, str]] = {f: {} for f in fields}
    traits: dict[str, dict[int, str]] = {}
    rows = conn.execute(select(c.id, c.traits, *[c[f] for f in fields])).all()
    for row in rows:
        customer = int(row.id)
        if customer not in customers:
            continue
        for f in fields:
            value = getattr(row, f)
            out[f][customer] = MISSING if value in (None, "") else str(value)
        for name, value in (row.traits or {}).items():
            if name in left_out or isinstance(value, dict | list) or value in (None, ""):
                continue
            traits.setdefault(name, {})[customer] = str(value)
    for name, values in traits.items():
        if name not in out:
            out[f"trait:{name}"] = {k: values.get(k, MISSING) for k in customers}
    kept = {}
    for name, values in out.items():
        distinct = set(values.values())
        if 2 <= len(distinct) <= MAX_VALUES and distinct != {MISSING}:
            kept[name] = values
    return kept


def _chi_square(table: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of a contingency table; (0, 1) when a margin is empty."""
    from scipy.stats import chi2_contingency  # loads in most of a second: only when testing

    table = table[(table.sum(axis=1) > 0)]
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return 0.0, 1.0
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def retarget(
    conn: Connection,
    model_key: str,
    *,
    goal: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    where: Mapping[str, str] | None = None,
    min_sample: int = MIN_SAMPLE,
) -> dict[str, Any]:
    """Attributes ordered by how strongly they go with converting, each value with its
    shares, conversion rate, lift and adjusted significance; the best and worst segments."""
    if min_sample < 5:
        raise ValueError("min_sample: must be at least 5")
    _model_id, model, _version = get_model(conn, model_key)
    position = _goal_position(model, goal)
    goal_name = "left the lifecycle" if position is None else model.stages[position].name
    goal_is = (
        "left the lifecycle"
        if position is None
        else f"reached {goal_name}"
        + ("" if position == len(model.stages) - 1 else " or a later stage")
    )
    targeted, converted = _groups(conn, model_key, position, start, end)
    segment = dict(where or {})
    if segment:
        members = set(conn.execute(segment_members(segment)).scalars())
        targeted &= members
        converted &= members
    answer: dict[str, Any] = {
        "model": model.key,
        "model_name": model.name,
        "goal": EXIT if position is None else model.stages[position].key,
        "goal_name": goal_name,
        "goal_is": goal_is,
        "from": start,
        "to": end,
        "segment": segment,
        "targeted": len(targeted),
        "converted": len(converted),
        "conversion_rate": len(converted) / len(targeted) if targeted else None,
        "min_sample": min_sample,
        "alpha": ALPHA,
        "attributes": [],
        "best": [],
        "worst": [],
        "note": None,
    }
    if len(targeted) < min_sample or not converted or converted == targeted:
        answer["note"] = (
            f"too few customers to compare: {len(targeted)} targeted, {len(converted)} "
            f"converted (at least {min_sample} targeted, and some but not all converted)"
        )
        return answer
    overall = len(converted) / len(targeted)
    attributes = _attributes(conn, targeted, _goal_traits(model, position))
    tests: list[tuple[dict[str, Any], float]] = []
    for name, values in attributes.items():
        per_value = Counter(values.values())
        won = Counter(values[c] for c in converted)
        table = np.array([[won[v], per_value[v] - won[v]] for v in per_value], dtype=float)
        statistic, p_value = _chi_square(table)
        n = table.sum()
        cramers_v = math.sqrt(statistic / n) if n else 0.0  # two columns: min(r, c) - 1 = 1
        rows = []
        for value, count in sorted(per_value.items(), key=lambda item: (-item[1], item[0])):
            hits = won[value]
            row: dict[str, Any] = {
                "value": value,
                "targeted": count,
                "converted": hits,
                "share_targeted": count / len(targeted),
                "share_converted": hits / len(converted),
                "conversion_rate": hits / count,
                "lift": (hits / count) / overall,
                "p_value": None,
                "p_adjusted": None,
                "significant": None,
            }
            if count >= min_sample and len(targeted) - count >= min_sample:
                rest = np.array(
                    [[hits, count - hits],
                     [len(converted) - hits, len(targeted) - count - (len(converted) - hits)]],
                    dtype=float,
                )  # fmt: skip
                _stat, p = _chi_square(rest)
                row["p_value"] = p
                tests.append((row, p))
            rows.append(row)
        answer["attributes"].append(
            {"attribute": name, "values": rows, "chi_square": statistic,
             "p_value": p_value, "cramers_v": cramers_v}
        )  # fmt: skip
    if tests:
        from scipy.stats import false_discovery_control

        adjusted = false_discovery_control([p for _, p in tests], method="bh")
        for (row, _p), q in zip(tests, adjusted, strict=True):
            row["p_adjusted"] = float(q)
            row["significant"] = bool(q < ALPHA)
    answer["attributes"].sort(key=lambda a: (-a["cramers_v"], a["attribute"]))
    chosen = [
        {"attribute": a["attribute"], **v}
        for a in answer["attributes"]
        for v in a["values"]
        if v["significant"] and v["value"] != MISSING
    ]
    answer["best"] = sorted(chosen, key=lambda v: -v["lift"])[:SUGGESTED]
    answer["best"] = [v for v in answer["best"] if v["lift"] > 1]
    answer["worst"] = [v for v in sorted(chosen, key=lambda v: v["lift"]) if v["lift"] < 1][
        :SUGGESTED
    ]
    return answer
