"""The stage engine on real stores: batches as they arrive give what a rebuild gives."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cxloop.domain.messages import from_dict, normalise
from cxloop.events.base import STAGE_MOVES_SCHEMA
from cxloop.lifecycle import engine as engine_module
from cxloop.lifecycle import service
from cxloop.lifecycle.spec import parse_model
from cxloop.project import Project, open_project
from cxloop.settings import Settings
from cxloop.store.models import CustomerIdentity, LifecycleState, StageTransition

NOW = datetime.now(UTC).replace(microsecond=0)
BASE = NOW - timedelta(days=200)
AS_OF = BASE + timedelta(days=120)

FORWARD = """
key: forward
name: Forward only
stages:
  - {key: aware, name: Aware, owner: marketing, enter: [{event: Ad}]}
  - {key: lead, name: Lead, owner: marketing, enter: [{page: Pricing}]}
  - key: client
    name: Client
    owner: sales
    enter:
      - {event: Order, where: [{field: total, op: gt, value: 10}]}
  - {key: fan, name: Fan, owner: marketing, enter: [{event: Referral}]}
exits:
  - {event: Cancelled, reason_property: reason}
  - {inactive_days: 10}
"""
ALLOW = """
key: allow
name: Both ways
backward: allow
stages:
  - {key: one, name: One, owner: product, enter: [{event: Ad}, {page: Pricing}]}
  - key: two
    name: Two
    owner: product
    enter: [{traits: [{field: plan, op: equals, value: pro}]}]
  - {key: three, name: Three, owner: support, enter: [{event: Order}]}
exits:
  - {event: Cancelled, reason: cancelled}
"""

BACK_AND_SILENT = """
key: back-and-silent
name: Both ways, with silences
backward: allow
stages:
  - {key: one, name: One, owner: product, enter: [{event: Ad}, {page: Pricing}]}
  - {key: two, name: Two, owner: product, enter: [{event: Referral}]}
  - key: three
    name: Three
    owner: support
    enter: [{event: Order, where: [{field: total, op: gte, value: 20}]}]
exits:
  - {event: Cancelled, reason_property: reason}
  - {inactive_days: 7}
"""

_counter = itertools.count()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    home = tmp_path_factory.mktemp("lifecycle")
    opened = open_project(Settings(home=home))
    with opened.engine.begin() as conn:
        for text in (FORWARD, ALLOW, BACK_AND_SILENT):
            service.apply_model(conn, parse_model(text, "test"))
    opened.stages.forget_models()
    yield opened
    opened.close()


# -- random journeys ------------------------------------------------------------------------

EVENTS = ["Ad", "Order", "Referral", "Cancelled", "Noise"]


@st.composite
def journeys(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[int]]:
    """Messages of a few people (some anonymous first, some aliased) and a split of them
    into batches that arrive shuffled."""
    run = next(_counter)
    users = [f"r{run}-u{i}" for i in range(draw(st.integers(1, 3)))]
    devices = [f"r{run}-a{i}" for i in range(draw(st.integers(0, 2)))]
    people = [{"userId": u} for u in users] + [{"anonymousId": a} for a in devices]
    messages: list[dict[str, Any]] = []
    for n in range(draw(st.integers(1, 25))):
        who = dict(draw(st.sampled_from(people)))
        day = draw(st.floats(0, 60, allow_nan=False))
        ts = (BASE + timedelta(days=day)).isoformat()
        kind = draw(st.sampled_from(["track", "track", "track", "page", "identify", "alias"]))
        mid = f"r{run}-{n}"
        if kind == "track":
            event = draw(st.sampled_from(EVENTS))
            props: dict[str, Any] = {}
            if event == "Order":
                props["total"] = draw(st.sampled_from([5, 20, "30"]))
            if event == "Cancelled":
                props["reason"] = draw(st.sampled_from(["price", "moved"]))
            msg = {"type": "track", "event": event, "properties": props, **who}
        elif kind == "page":
            msg = {"type": "page", "name": draw(st.sampled_from(["Pricing", "Home"])), **who}
        elif kind == "identify":
            traits = {"plan": draw(st.sampled_from(["free", "pro"]))}
            link = {"userId": draw(st.sampled_from(users))}
            if devices and draw(st.booleans()):
                link["anonymousId"] = draw(st.sampled_from(devices))
            msg = {"type": "identify", "traits": traits, **link}
        else:
            if len(users) < 2:
                continue
            previous, user = draw(st.permutations(users))[:2]
            msg = {"type": "alias", "previousId": previous, "userId": user}
        messages.append({**msg, "messageId": mid, "timestamp": ts})
    order = draw(st.permutations(range(len(messages))))
    shuffled = [messages[i] for i in order]
    cuts = sorted(draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    # A replayed batch (the same messages again) must change nothing either.
    if shuffled and draw(st.booleans()):
        shuffled.append(shuffled[0])
        sizes.append(1)
    return shuffled, sizes


def snapshot(project: Project, prefix: str) -> dict[str, Any]:
    with project.engine.connect() as conn:
        ids = {
            row.customer_id
            for row in conn.execute(
                select(CustomerIdentity.customer_id).where(
                    CustomerIdentity.value.like(f"{prefix}%")
                )
            )
        }
        transitions_t, states_t = StageTransition.__table__, LifecycleState.__table__
        transitions = conn.execute(
            select(transitions_t).where(transitions_t.c.customer_id.in_(ids))
        ).all()
        states = conn.execute(select(states_t).where(states_t.c.customer_id.in_(ids))).all()
        return {
            "transitions": sorted(
                (
                    t.model_id,
                    t.customer_id,
                    t.seq,
                    t.cycle,
                    t.kind,
                    t.from_stage,
                    t.to_stage,
                    t.at,
                    t.message_id,
                    t.event,
                    t.reason,
                    tuple(t.skipped),
                )
                for t in transitions
            ),
            "states": sorted(
                (
                    s.model_id,
                    s.customer_id,
                    s.cycle,
                    s.stage,
                    s.entered_at,
                    s.next_seq,
                    s.last_activity,
                    s.last_ts,
                    s.last_message_id,
                    s.swept_at,
                    s.traits,
                    s.inactive_exits,
                )
                for s in states
            ),
        }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(journey=journeys())
def test_incremental_batches_give_the_same_history_as_a_rebuild(
    project: Project, journey: tuple[list[dict[str, Any]], list[int]]
) -> None:
    messages, sizes = journey
    if not messages:
        return
    prefix = str(messages[0]["messageId"]).split("-")[0] + "-"
    start = 0
    for size in sizes:
        part = messages[start : start + size]
        start += size
        valid = [normalise(from_dict(m), received_at=NOW) for m in part]
        project.pipeline.ingest(valid, source="test")
    project.stages.sweep(AS_OF)
    incremental = snapshot(project, prefix)

    project.stages.rebuild(as_of=AS_OF)
    rebuilt = snapshot(project, prefix)
    assert incremental == rebuilt
    assert incremental["states"], "every customer with events has a state"


def ingest(project: Project, *batches: list[dict[str, Any]]) -> None:
    for batch in batches:
        project.pipeline.ingest(
            [normalise(from_dict(m), received_at=NOW) for m in batch], source="t"
        )


def day(n: float) -> str:
    return (BASE + timedelta(days=n)).isoformat()


def stages_of(project: Project, user: str) -> dict[str, list[tuple[Any, ...]]]:
    with project.engine.connect() as conn:
        customer = conn.execute(
            select(CustomerIdentity.customer_id).where(CustomerIdentity.value == user)
        ).scalar_one()
        return {
            entry["model"]: [(h["kind"], h["to_stage"], h["event"]) for h in entry["history"]]
            for entry in service.customer_stages(conn, customer)
        }


def test_a_merge_brings_the_anonymous_history_into_the_known_customer(project: Project) -> None:
    ingest(
        project,
        [
            {
                "type": "track",
                "event": "Noise",
                "userId": "mg-u",
                "messageId": "mg-1",
                "timestamp": day(0),
            },
            {
                "type": "track",
                "event": "Ad",
                "anonymousId": "mg-a",
                "messageId": "mg-2",
                "timestamp": day(1),
            },
        ],
        [
            {
                "type": "identify",
                "userId": "mg-u",
                "anonymousId": "mg-a",
                "messageId": "mg-3",
                "timestamp": day(2),
            },
        ],
    )
    assert stages_of(project, "mg-u")["forward"] == [("enter", "aware", "Ad")]
    assert stages_of(project, "mg-a")["allow"] == [("enter", "one", "Ad")]


def test_a_late_event_rewrites_the_history_it_belongs_to(project: Project) -> None:
    ingest(
        project,
        [
            {
                "type": "track",
                "event": "Referral",
                "userId": "late-u",
                "messageId": "late-2",
                "timestamp": day(5),
            }
        ],
        [
            {
                "type": "track",
                "event": "Ad",
                "userId": "late-u",
                "messageId": "late-1",
                "timestamp": day(4),
            }
        ],
    )
    assert stages_of(project, "late-u")["forward"][:2] == [
        ("enter", "aware", "Ad"),
        ("progress", "fan", "Referral"),
    ]


def test_a_late_event_inside_a_silent_spell_moves_the_inactivity_exit(project: Project) -> None:
    """Ad on day 0, silence, Noise on day 20: an inactivity exit on day 10. A Noise event of
    day 5 that arrives late means the silence began on day 5: the exit moves to day 15."""
    ingest(
        project,
        [
            {
                "type": "track",
                "event": "Ad",
                "userId": "gap-u",
                "messageId": "gap-1",
                "timestamp": day(0),
            },
            {
                "type": "track",
                "event": "Noise",
                "userId": "gap-u",
                "messageId": "gap-3",
                "timestamp": day(20),
            },
        ],
    )
    with project.engine.connect() as conn:
        customer = conn.execute(
            select(CustomerIdentity.customer_id).where(CustomerIdentity.value == "gap-u")
        ).scalar_one()

        def exits() -> list[Any]:
            [entry] = [
                e for e in service.customer_stages(conn, customer) if e["model"] == "forward"
            ]
            return [h["at"] for h in entry["history"] if h["kind"] == "exit"]

        assert exits() == [BASE + timedelta(days=10)]
    ingest(
        project,
        [
            {
                "type": "track",
                "event": "Noise",
                "userId": "gap-u",
                "messageId": "gap-2",
                "timestamp": day(5),
            }
        ],
    )
    with project.engine.connect() as conn:
        assert exits() == [BASE + timedelta(days=15)]


def test_the_engine_on_both_backends(settings: Settings) -> None:
    """Merges, late events and a rebuild on the parametrised backend (PostgreSQL reads a
    customer's stored events back for a refold just as DuckDB does)."""
    opened = open_project(settings)
    try:
        with opened.engine.begin() as conn:
            for text in (FORWARD, ALLOW):
                service.apply_model(conn, parse_model(text, "test"))
        opened.stages.forget_models()
        ingest(
            opened,
            [
                {
                    "type": "track",
                    "event": "Noise",
                    "userId": "b-u",
                    "messageId": "b-1",
                    "timestamp": day(0),
                },
                {
                    "type": "track",
                    "event": "Ad",
                    "anonymousId": "b-a",
                    "messageId": "b-2",
                    "timestamp": day(1),
                },
                {
                    "type": "page",
                    "name": "Pricing",
                    "userId": "b-v",
                    "messageId": "b-5",
                    "timestamp": day(3),
                },
            ],
            [
                {
                    "type": "identify",
                    "userId": "b-u",
                    "anonymousId": "b-a",
                    "messageId": "b-3",
                    "timestamp": day(2),
                    "traits": {"plan": "pro"},
                },
                {
                    "type": "track",
                    "event": "Ad",
                    "userId": "b-v",
                    "messageId": "b-4",
                    "timestamp": day(2),
                },
            ],
        )
        assert stages_of(opened, "b-u") == {
            "forward": [("enter", "aware", "Ad")],
            "allow": [("enter", "one", "Ad"), ("progress", "two", None)],
        }
        assert stages_of(opened, "b-v")["forward"] == [
            ("enter", "aware", "Ad"),
            ("progress", "lead", "Pricing"),
        ]
        before = snapshot(opened, "b-")
        opened.stages.rebuild(as_of=NOW - timedelta(days=300))  # nothing is due yet
        assert snapshot(opened, "b-") == before
    finally:
        opened.close()


@pytest.mark.parametrize("model", ["forward", "allow"])
def test_the_columnar_report_equals_the_app_database_report(project: Project, model: str) -> None:
    """The report over the event store's copy of the moves (DuckDB) and the one over the
    app database give the same numbers, for any range; a lost copy is restored on open."""
    from cxloop.lifecycle import report
    from cxloop.lifecycle.mirror import moves_store

    ingest(
        project,
        [
            {"type": "track", "event": "Ad", "userId": f"rep-{n}", "messageId": f"rep-{n}-1",
             "timestamp": day(n % 7)}
            for n in range(30)
        ]
        + [
            {"type": "page", "name": "Pricing", "userId": f"rep-{n}", "messageId": f"rep-{n}-2",
             "timestamp": day(n % 7 + n % 3)}
            for n in range(0, 30, 2)
        ]
        + [
            {"type": "track", "event": "Cancelled", "userId": f"rep-{n}",
             "messageId": f"rep-{n}-3", "timestamp": day(9), "properties": {"reason": "price"}}
            for n in range(0, 30, 5)
        ],
    )  # fmt: skip
    store = moves_store(project.events)
    assert store is not None
    ranges = [(None, AS_OF), (BASE + timedelta(days=3), AS_OF), (None, BASE + timedelta(days=8))]
    with project.engine.connect() as conn:
        for start, end in ranges:
            plain = report.stage_flow(conn, model, start=start, end=end)
            columnar = report.stage_flow(conn, model, start=start, end=end, store=store)
            assert columnar == plain
        assert plain["stages"][0]["entered"] > 0
    # The copy is rebuilt from the app database when it disagrees.
    model_id = next(m.id for m in project.stages.models() if m.model.key == model)
    store.write_stage_moves(model_id, None, STAGE_MOVES_SCHEMA.empty_table())
    assert project.stages.mirror.resync() == 1
    with project.engine.connect() as conn:
        again = report.stage_flow(conn, model, end=AS_OF, store=store)
        assert again == report.stage_flow(conn, model, end=AS_OF)


def test_a_large_rebuild_stores_through_the_writer_process_the_same_history(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rebuilds of many events fold in parts and store them from a second process; the
    history must be the one an in-process rebuild stores."""
    ingest(
        project,
        [
            {
                "type": "track",
                "event": event,
                "userId": f"wp-{n % 7}",
                "messageId": f"wp-{n}",
                "timestamp": day(n / 3),
                "properties": {"total": 50, "reason": "price"},
            }
            for n, event in enumerate(["Ad", "Order", "Referral", "Cancelled", "Noise"] * 12)
        ],
    )
    project.stages.rebuild(as_of=AS_OF)
    in_process = snapshot(project, "wp-")
    started: list[object] = []
    original = engine_module.HistoryWriter

    def counted(url: str) -> object:
        started.append(url)
        return original(url)

    monkeypatch.setattr(engine_module, "_FOLD_ROWS", 8)
    monkeypatch.setattr(engine_module, "HistoryWriter", counted)
    project.stages.rebuild(as_of=AS_OF)
    assert started, "the rebuild used the writer process"
    assert snapshot(project, "wp-") == in_process
    assert in_process["transitions"]
