"""The stage fold: entries, skips, returns, exits and the backward policy, on plain data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxloop.domain.lifecycle import LifecycleModel, StageState, Touch, advance, fold, sweep

T0 = datetime(2026, 1, 1, tzinfo=UTC)

MODEL = LifecycleModel.model_validate(
    {
        "key": "m",
        "name": "M",
        "stages": [
            {"key": "aware", "name": "Aware", "owner": "marketing", "enter": [{"event": "Ad"}]},
            {"key": "lead", "name": "Lead", "owner": "marketing", "enter": [{"page": "Pricing"}]},
            {
                "key": "client",
                "name": "Client",
                "owner": "sales",
                "enter": [
                    {"event": "Order", "where": [{"field": "total", "op": "gt", "value": 0}]},
                    {"traits": [{"field": "plan", "op": "in", "value": ["pro", "team"]}]},
                ],
            },
            {"key": "fan", "name": "Fan", "owner": "marketing", "enter": [{"event": "Referral"}]},
        ],
        "exits": [
            {"event": "Cancelled", "reason_property": "reason"},
            {"inactive_days": 30},
        ],
    }
)


def touch(day: float, kind: str, name: str | None = None, **fields: Any) -> Touch:
    return Touch(
        timestamp=T0 + timedelta(days=day),
        message_id=f"m{day}-{name}",
        type=kind,
        event=name,
        properties=fields.get("properties", {}),
        traits=fields.get("traits", {}),
    )


def moves(touches: list[Touch], model: LifecycleModel = MODEL, **kw: Any) -> list[tuple[Any, ...]]:
    _state, out = fold(model, touches, **kw)
    return [(t.kind, t.from_stage, t.to_stage, t.cycle, t.skipped, t.reason) for t in out]


def test_forward_moves_and_skips_are_recorded() -> None:
    assert moves(
        [
            touch(0, "track", "Ad"),
            touch(1, "track", "Order", properties={"total": "12.5"}),
            touch(2, "page", "Pricing"),  # backward: ignored by default
            touch(3, "track", "Referral"),
        ]
    ) == [
        ("enter", None, "aware", 1, (), None),
        ("progress", "aware", "client", 1, ("lead",), None),
        ("progress", "client", "fan", 1, (), None),
    ]


def test_entering_later_than_the_first_stage_skips_the_earlier_ones() -> None:
    assert moves([touch(0, "page", "Pricing")]) == [
        ("enter", None, "lead", 1, ("aware",), None),
    ]


def test_conditions_decide_whether_an_event_counts() -> None:
    assert moves([touch(0, "track", "Order", properties={"total": 0})]) == []
    assert moves([touch(0, "track", "Order", properties={"total": "n/a"})]) == []


def test_an_exit_keeps_its_reason_and_a_comeback_is_a_new_cycle() -> None:
    out = moves(
        [
            touch(0, "track", "Ad"),
            touch(1, "track", "Cancelled", properties={"reason": "price"}),
            touch(2, "track", "Cancelled"),  # not in the lifecycle any more: nothing
            touch(3, "page", "Pricing"),
        ]
    )
    assert out == [
        ("enter", None, "aware", 1, (), None),
        ("exit", "aware", None, 1, (), "price"),
        ("enter", None, "lead", 2, ("aware",), None),
    ]


def test_inactivity_exits_at_the_last_activity_plus_the_limit() -> None:
    state, out = fold(MODEL, [touch(0, "track", "Ad"), touch(45, "track", "Ad")])
    assert [(t.kind, t.at, t.reason, t.cycle) for t in out] == [
        ("enter", T0, None, 1),
        ("exit", T0 + timedelta(days=30), "inactive", 1),
        ("enter", T0 + timedelta(days=45), None, 2),
    ]
    assert state.stage == "aware" and state.cycle == 2


def test_a_sweep_finds_the_same_exit_as_the_next_event_would() -> None:
    state = StageState()
    advance(MODEL, state, [touch(0, "track", "Ad")])
    assert sweep(MODEL, state, T0 + timedelta(days=29)) == []
    [exit_] = sweep(MODEL, state, T0 + timedelta(days=31))
    assert (exit_.kind, exit_.at) == ("exit", T0 + timedelta(days=30))
    assert state.stage is None
    # A later event starts a new cycle, exactly as folding both events at once does.
    later = advance(MODEL, state, [touch(40, "track", "Ad")])
    assert [(t.kind, t.cycle) for t in later] == [("enter", 2)]


def test_trait_rules_fire_when_an_identify_sets_the_trait() -> None:
    assert moves(
        [
            touch(0, "track", "Ad"),
            touch(1, "identify", traits={"plan": "free", "name": "Ann"}),
            touch(2, "identify", traits={"name": "Ann B"}),
            touch(3, "identify", traits={"plan": "PRO"}),
        ]
    ) == [
        ("enter", None, "aware", 1, (), None),
        ("progress", "aware", "client", 1, ("lead",), None),
    ]


def test_backward_moves_when_the_model_allows_them() -> None:
    allow = MODEL.model_copy(update={"backward": "allow"})
    assert moves([touch(0, "track", "Referral"), touch(1, "track", "Ad")], allow) == [
        ("enter", None, "fan", 1, ("aware", "lead", "client"), None),
        ("back", "fan", "aware", 1, (), None),
    ]


def test_events_are_folded_in_time_order_whatever_order_they_come_in() -> None:
    events = [touch(5, "track", "Referral"), touch(0, "track", "Ad"), touch(2, "page", "Pricing")]
    assert moves(events) == moves(sorted(events, key=lambda t: t.order))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stages": []}, "at least two stages"),
        ({"backward": "sometimes"}, "backward"),
        ({"colour": "red"}, "colour"),
        (
            {
                "stages": [
                    {"key": "a", "name": "A", "owner": "x", "enter": [{"event": "E"}]},
                    {"key": "b", "name": "B", "owner": "x", "enter": [{"event": "E"}]},
                ]
            },
            "no customer could ever stand here",
        ),
    ],
)
def test_invalid_models_are_refused(change: dict[str, Any], message: str) -> None:
    data = MODEL.model_dump(mode="json") | change
    with pytest.raises(ValueError, match=message):
        LifecycleModel.model_validate(data)


def test_the_documented_model_file_is_valid() -> None:
    """docs/lifecycle.md shows the file format: its example must install as written."""
    from pathlib import Path

    from cxloop.lifecycle.spec import parse_model

    text = (Path(__file__).parent.parent / "docs" / "lifecycle.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    model = parse_model(example, "docs/lifecycle.md")
    assert [s.key for s in model.stages] == ["signed", "enterprise", "live"]
    assert model.inactive_after == timedelta(days=90)
