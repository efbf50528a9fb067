"""The column fold used by rebuilds gives what the one-touch-at-a-time fold gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxloop.domain.lifecycle import LifecycleModel, Touch, fold
from cxloop.events.base import TOUCH_SCHEMA
from cxloop.lifecycle.columnar import (
    MOVE_COLUMNS,
    STATE_COLUMNS,
    fold_columns,
    watching_customers,
)
from cxloop.lifecycle.spec import parse_model

BASE = datetime(2026, 1, 1, tzinfo=UTC)
AS_OF = BASE + timedelta(days=70)

MODELS = {
    "forward": """
key: forward
name: Forward only
stages:
  - {key: aware, name: Aware, owner: marketing, enter: [{event: Ad}, {page: Home}]}
  - key: lead
    name: Lead
    owner: marketing
    enter:
      - {page: Pricing}
      - {event: Ad, where: [{field: paid, op: equals, value: true}]}
  - key: client
    name: Client
    owner: sales
    enter:
      - {event: Order, where: [{field: total, op: gt, value: 10}]}
  - {key: fan, name: Fan, owner: marketing, enter: [{event: Referral}]}
exits:
  - {event: Cancelled, reason_property: reason}
  - {event: Order, where: [{field: refund, op: exists}], reason: refunded}
  - {inactive_days: 10}
""",
    "allow": """
key: allow
name: Both ways
backward: allow
stages:
  - {key: one, name: One, owner: product, enter: [{event: Ad}, {page: Pricing}]}
  - {key: two, name: Two, owner: product, enter: [{event: Referral}]}
  - {key: three, name: Three, owner: support, enter: [{event: Order}]}
exits:
  - {event: Cancelled, reason: cancelled}
  - {inactive_days: 7.5}
""",
    "traits": """
key: traits
name: With traits
stages:
  - {key: one, name: One, owner: product, enter: [{event: Ad}]}
  - key: two
    name: Two
    owner: product
    enter: [{traits: [{field: plan, op: equals, value: pro}]}]
exits:
  - {event: Cancelled}
""",
}


def touch_strategy() -> st.SearchStrategy[dict[str, Any]]:
    track = st.fixed_dictionaries(
        {
            "type": st.just("track"),
            "name": st.sampled_from(["Ad", "Order", "Referral", "Cancelled", "Noise"]),
            "properties": st.dictionaries(
                st.sampled_from(["total", "reason", "paid", "refund"]),
                st.sampled_from([5, 20, "30", True, None, "", "price"]),
                max_size=3,
            ),
        }
    )
    page = st.fixed_dictionaries(
        {"type": st.just("page"), "name": st.sampled_from(["Pricing", "Home", "Blog"])}
    )
    identify = st.fixed_dictionaries(
        {"type": st.just("identify"), "traits": st.sampled_from([{}, {"plan": "pro"}, {"x": 1}])}
    )
    return st.one_of(track, page, identify)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, Touch]]:
    found: list[tuple[int, Touch]] = []
    for customer in range(1, draw(st.integers(1, 5)) + 1):
        for n in range(draw(st.integers(1, 20))):
            raw = draw(touch_strategy())
            # Whole hours and repeated times: ties and silences right at the limit.
            hours = draw(st.sampled_from([0, 1, 24, 7.5 * 24, 10 * 24, 11 * 24, 30 * 24]))
            found.append(
                (
                    customer,
                    Touch(
                        timestamp=BASE + timedelta(hours=hours * draw(st.integers(0, 6)) / 2),
                        message_id=f"m{customer}-{n:02d}",
                        type=raw["type"],
                        event=raw.get("name"),
                        properties=raw.get("properties", {}),
                        traits=raw.get("traits", {}),
                    ),
                )
            )
    return sorted(found, key=lambda item: (item[0], item[1].order))


def as_rows(history: list[tuple[int, Touch]]) -> pa.Table:
    encode = msgspec.json.encode
    return pa.table(
        {
            "customer_id": [c for c, _ in history],
            "timestamp": [t.timestamp for _, t in history],
            "message_id": [t.message_id for _, t in history],
            "type": [t.type for _, t in history],
            "event": [t.event if t.type == "track" else None for _, t in history],
            "name": [t.event if t.type != "track" else None for _, t in history],
            "properties": [
                encode(t.properties).decode() if t.properties else None for _, t in history
            ],
            "traits": [encode(t.traits).decode() if t.traits else None for _, t in history],
        },
        schema=TOUCH_SCHEMA,
    )


def reference(
    model: LifecycleModel, history: list[tuple[int, Touch]]
) -> tuple[list[Any], list[Any]]:
    moves: list[Any] = []
    states: list[Any] = []
    for customer in sorted({c for c, _ in history}):
        state, transitions = fold(model, [t for c, t in history if c == customer], AS_OF)
        for seq, t in enumerate(transitions):
            moves.append(
                (
                    customer,
                    seq,
                    t.cycle,
                    t.kind,
                    t.from_stage,
                    t.to_stage,
                    t.at,
                    t.message_id,
                    t.event,
                    t.reason,
                    list(t.skipped),
                )
            )
        last = state.last_order
        assert last is not None
        states.append(
            (
                customer,
                state.cycle,
                state.stage,
                state.entered_at,
                state.last_activity,
                last[0],
                last[1],
                state.swept_at,
                len(transitions),
                state.inactive_exits,
            )
        )
    return moves, states


@pytest.mark.parametrize("key", ["forward", "allow", "traits"])
@settings(max_examples=150, deadline=None)
@given(history=histories())
def test_the_column_fold_agrees_with_the_fold(key: str, history: list[tuple[int, Touch]]) -> None:
    model = parse_model(MODELS[key], "test")
    rows = as_rows(history)
    watching = set(watching_customers(model, rows).to_pylist())
    assert (
        watching == {c for c, t in history if t.type == "identify" and "plan" in t.traits}
        if key == "traits"
        else not watching
    )
    kept = [(c, t) for c, t in history if c not in watching]
    if not kept:
        return
    folded = fold_columns(model, as_rows(kept), AS_OF)
    assert folded.moves.column_names == list(MOVE_COLUMNS)
    assert folded.states.column_names == list(STATE_COLUMNS)
    moves, states = reference(model, kept)
    assert [tuple(r.values()) for r in folded.moves.to_pylist()] == moves
    assert [tuple(r.values()) for r in folded.states.to_pylist()] == states


def test_a_customer_is_outside_after_an_exit_and_returns_in_a_new_cycle() -> None:
    model = parse_model(MODELS["forward"], "test")
    day = timedelta(days=1)
    history = [
        (7, Touch(BASE, "a", "track", "Ad", {}, {})),
        (7, Touch(BASE + day, "b", "track", "Order", {"total": 50}, {})),
        (7, Touch(BASE + 2 * day, "c", "track", "Cancelled", {"reason": "price"}, {})),
        (7, Touch(BASE + 3 * day, "d", "page", "Pricing", {}, {})),
        (7, Touch(BASE + 30 * day, "e", "track", "Noise", {}, {})),
    ]
    folded = fold_columns(model, as_rows(history), AS_OF).moves.to_pylist()
    assert [(m["kind"], m["to_stage"], m["cycle"], m["reason"], m["skipped"]) for m in folded] == [
        ("enter", "aware", 1, None, []),
        ("progress", "client", 1, None, ["lead"]),
        ("exit", None, 1, "price", []),
        ("enter", "lead", 2, None, ["aware"]),
        ("exit", None, 2, "inactive", []),
    ]
    assert folded[-1]["at"] == BASE + 13 * day
