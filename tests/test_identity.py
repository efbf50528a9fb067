"""Identity resolution: anonymous history joins the known customer; merges move events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from cxloop.customers import service
from cxloop.domain.messages import from_dict, normalise
from cxloop.events.base import EventQuery
from cxloop.ingest.identity import (
    ANON,
    USER,
    IdentityClaim,
    IdentityPlanner,
    Key,
    plan_single_keys,
)
from cxloop.project import Project
from cxloop.store.models import Customer, CustomerIdentity, CustomerMerge

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def msg(kind: str, mid: str, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": mid,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        **fields,
    }


def ingest(project: Project, *messages: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    project.pipeline.ingest(
        [normalise(from_dict(m), received_at=now) for m in messages],
        source="test",
    )


def customer_of(project: Project, ref: str) -> int:
    with project.engine.connect() as conn:
        return service.resolve_customer_id(conn, ref)


def events_of(project: Project, customer_id: int) -> set[str]:
    rows = project.events.query(EventQuery(customer_ids=(customer_id,), limit=1000))
    return {r["message_id"] for r in rows}


def assert_no_orphans(project: Project) -> None:
    """Every stored event names a live (not merged-away) customer."""
    with project.engine.connect() as conn:
        live = set(
            conn.execute(select(Customer.id).where(Customer.merged_into_id.is_(None))).scalars()
        )
    bounds = project.events.customer_bounds()
    owners = set(bounds["customer_id"].to_pylist())
    assert owners <= live, f"events on missing or merged customers: {owners - live}"


def test_anonymous_history_lands_on_identified_customer(project: Project) -> None:
    ingest(
        project,
        msg("track", "a1", 0, anonymousId="anon-1", event="Ad Clicked"),
        msg("page", "a2", 1, anonymousId="anon-1", name="Pricing"),
    )
    ingest(
        project,
        msg(
            "identify",
            "a3",
            2,
            userId="u-1",
            anonymousId="anon-1",
            traits={"email": "Ann@Example.com", "gender": "F", "birth_year": 1984},
        ),
    )
    ingest(project, msg("track", "a4", 3, userId="u-1", event="Order Completed"))
    customer = customer_of(project, "u-1")
    assert customer == customer_of(project, "anon-1") == customer_of(project, "ann@example.com")
    assert events_of(project, customer) == {"a1", "a2", "a3", "a4"}
    with project.engine.connect() as conn:
        row = conn.execute(select(Customer).where(Customer.id == customer)).one()
    assert (row.gender, row.birth_year, row.email) == ("female", 1984, "ann@example.com")
    with project.engine.connect() as conn:
        profile = service.get_customer(conn, project.events, customer)
    assert profile.first_seen == T0
    assert profile.last_seen == T0 + timedelta(minutes=3)
    assert_no_orphans(project)


def test_identify_merges_an_existing_anonymous_customer_and_keeps_an_audit(
    project: Project,
) -> None:
    ingest(project, msg("identify", "b1", 0, userId="u-2", traits={"name": "Bo"}))
    ingest(project, msg("track", "b2", 1, anonymousId="anon-2", event="Product Used"))
    anonymous = customer_of(project, "anon-2")
    known = customer_of(project, "u-2")
    assert anonymous != known
    ingest(project, msg("identify", "b3", 2, userId="u-2", anonymousId="anon-2"))
    assert customer_of(project, "anon-2") == known
    assert events_of(project, known) == {"b1", "b2", "b3"}
    assert events_of(project, anonymous) == set()
    with project.engine.connect() as conn:
        merge = conn.execute(select(CustomerMerge)).one()
        loser = conn.execute(select(Customer).where(Customer.id == anonymous)).one()
    assert (merge.from_customer_id, merge.into_customer_id, merge.reason) == (
        anonymous,
        known,
        "identify",
    )
    assert merge.events_moved and merge.events_moved_count == 1
    assert loser.merged_into_id == known
    assert_no_orphans(project)


def test_two_identified_customers_are_not_fused_by_a_shared_device(project: Project) -> None:
    ingest(project, msg("identify", "c1", 0, userId="u-a", anonymousId="tablet"))
    ingest(project, msg("identify", "c2", 1, userId="u-b", anonymousId="tablet"))
    assert customer_of(project, "u-a") != customer_of(project, "u-b")
    assert "c2" in events_of(project, customer_of(project, "u-b"))
    with project.engine.connect() as conn:
        assert conn.execute(select(CustomerMerge)).first() is None


def test_alias_merges_even_identified_customers(project: Project) -> None:
    ingest(
        project,
        msg("identify", "d1", 0, userId="old-id"),
        msg("track", "d2", 1, userId="old-id", event="Signed Up"),
        msg("identify", "d3", 2, userId="new-id"),
    )
    old, new = customer_of(project, "old-id"), customer_of(project, "new-id")
    assert old != new
    ingest(project, msg("alias", "d4", 3, previousId="old-id", userId="new-id"))
    assert customer_of(project, "old-id") == new
    assert events_of(project, new) == {"d1", "d2", "d3", "d4"}
    assert_no_orphans(project)


def test_merges_inside_one_batch_create_no_phantom_customers(project: Project) -> None:
    ingest(
        project,
        msg("track", "e1", 0, anonymousId="x1", event="Ad Clicked"),
        msg("track", "e2", 1, anonymousId="x2", event="Ad Clicked"),
        msg("identify", "e3", 2, userId="u-e", anonymousId="x1"),
        msg("identify", "e4", 3, userId="u-e", anonymousId="x2"),
    )
    customer = customer_of(project, "u-e")
    assert events_of(project, customer) == {"e1", "e2", "e3", "e4"}
    with project.engine.connect() as conn:
        customers = conn.execute(select(Customer.id)).scalars().all()
        identities = conn.execute(
            select(CustomerIdentity.kind, CustomerIdentity.value).where(
                CustomerIdentity.customer_id == customer
            )
        ).all()
    assert customers == [customer]
    assert set(identities) == {("anonymous_id", "x1"), ("anonymous_id", "x2"), ("user_id", "u-e")}


def test_interrupted_merge_moves_events_at_next_open(project: Project) -> None:
    """A crash between the merge commit and the event move is finished on start-up."""
    ingest(project, msg("identify", "f1", 0, userId="u-f"))
    ingest(project, msg("track", "f2", 1, anonymousId="anon-f", event="Visit"))
    loser = customer_of(project, "anon-f")
    survivor = customer_of(project, "u-f")
    original = project.events.move_customers
    project.events.move_customers = lambda moves: 0  # type: ignore[method-assign]
    ingest(project, msg("identify", "f3", 2, userId="u-f", anonymousId="anon-f"))
    project.events.move_customers = original  # type: ignore[method-assign]
    assert "f2" in events_of(project, loser)
    with project.engine.begin() as conn:
        conn.execute(CustomerMerge.__table__.update().values(events_moved=False))
    assert project.pipeline.recover() == 1
    assert events_of(project, survivor) == {"f1", "f2", "f3"}
    assert_no_orphans(project)


def track_rows(rows: list[tuple[str, str | None, str | None, int]]) -> pa.Table:
    """Imported track rows as the bulk path takes them: (message id, userId, anonymousId,
    minutes after T0)."""
    return pa.table(
        {
            "message_id": [r[0] for r in rows],
            "type": ["track"] * len(rows),
            "event": ["Order Completed"] * len(rows),
            "user_id": pa.array([r[1] for r in rows], pa.string()),
            "anonymous_id": pa.array([r[2] for r in rows], pa.string()),
            "timestamp": pa.array(
                [T0 + timedelta(minutes=r[3]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
            "channel": pa.nulls(len(rows), pa.string()),
            "properties": ["{}"] * len(rows),
        }
    )


def test_imported_rows_widen_first_and_last_seen(project: Project) -> None:
    def rows(user: str, minutes: list[int]) -> pa.Table:
        return track_rows([(f"{user}-{m}", user, None, m) for m in minutes])

    project.pipeline.ingest_table(rows("g-1", [10, 20]), source="test")
    project.pipeline.ingest_table(rows("g-1", [5]), source="test")
    project.pipeline.ingest_table(rows("g-1", [15, 30]), source="test")
    with project.engine.connect() as conn:
        profile = service.get_customer(conn, project.events, "g-1")
    assert (profile.first_seen, profile.last_seen) == (
        T0 + timedelta(minutes=5),
        T0 + timedelta(minutes=30),
    )
    assert profile.event_count == 5


def test_an_imported_table_creates_each_customer_once_with_its_bounds(project: Project) -> None:
    """The bulk path: a customer met through several (userId, anonymousId) pairs gets the
    first and last time over all of them, one row, and each identity once."""
    rows = [  # (message id, userId, anonymousId, minutes after T0)
        # The device's customer and h-1's are planned apart, then merged by the pair.
        ("b3", None, "dev-1", 50),
        ("b1", "h-1", None, 30),
        ("b2", "h-1", "dev-1", 5),
        ("b4", "h-2", None, 12),
        ("b5", None, "dev-9", 7),
        ("b6", None, "dev-9", 3),
    ]
    result = project.pipeline.ingest_table(track_rows(rows), source="test")
    with project.engine.connect() as conn:
        found = {
            ref: service.get_customer(conn, project.events, ref) for ref in ("h-1", "h-2", "dev-9")
        }
        identities = conn.execute(select(CustomerIdentity.kind, CustomerIdentity.value)).all()
        customers = conn.execute(select(Customer.id)).all()
    bounds = {ref: (p.first_seen, p.last_seen, p.created_at) for ref, p in found.items()}
    assert bounds == {
        "h-1": (T0 + timedelta(minutes=5), T0 + timedelta(minutes=50), T0 + timedelta(minutes=5)),
        "h-2": (T0 + timedelta(minutes=12),) * 3,
        "dev-9": (T0 + timedelta(minutes=3), T0 + timedelta(minutes=7), T0 + timedelta(minutes=3)),
    }
    assert {p.event_count for p in found.values()} == {3, 1, 2}
    assert len(customers) == result.customers_created == 3
    assert sorted(identities) == [
        ("anonymous_id", "dev-1"),
        ("anonymous_id", "dev-9"),
        ("user_id", "h-1"),
        ("user_id", "h-2"),
    ]
    assert customer_of(project, "dev-1") == customer_of(project, "h-1")
    assert_no_orphans(project)


def test_demo_scale_history_has_no_orphans(project: Project) -> None:
    from cxloop.demo.generator import generate_messages

    messages = generate_messages(customers=400, seed=3)
    for start in range(0, len(messages), 2500):
        ingest(project, *messages[start : start + 2500])
    assert project.events.count() == len(messages)
    assert_no_orphans(project)
    with project.engine.connect() as conn:
        users = conn.execute(
            select(CustomerIdentity.value, CustomerIdentity.customer_id).where(
                CustomerIdentity.kind == "user_id"
            )
        ).all()
    assert len({u for u, _ in users}) == len(users)


def test_last_seen_is_kept_to_the_minute(project: Project) -> None:
    """Each batch of an active customer does not rewrite the row: last seen may lag by up
    to a minute, never more, and first seen is exact."""
    seconds = [0, 30, 300, 330, 400]
    for n, second in enumerate(seconds):
        ts = (T0 + timedelta(seconds=second)).isoformat()
        ingest(project, {"type": "track", "messageId": f"s{n}", "timestamp": ts,
                         "userId": "u-s", "event": "Product Used"})  # fmt: skip
        with project.engine.connect() as conn:
            profile = service.get_customer(conn, project.events, "u-s", timeline=0)
        assert profile.first_seen == T0
        newest = T0 + timedelta(seconds=second)
        assert profile.last_seen is not None
        assert newest - timedelta(minutes=1) <= profile.last_seen <= newest
    assert profile.last_seen == T0 + timedelta(seconds=400)


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(
        st.tuples(st.sampled_from([USER, ANON]), st.sampled_from([f"v{i}" for i in range(12)])),
        unique=True,
    ),
    owned=st.lists(st.booleans()),
)
def test_single_key_plans_equal_the_planners(keys: list[Key], owned: list[bool]) -> None:
    """The bulk shortcut for imported rows gives exactly what the planner gives."""
    shared = zip(keys, owned, strict=False)  # some customers own several keys
    owner = {key: 100 + n % 3 for n, (key, mine) in enumerate(shared) if mine}
    planner = IdentityPlanner(dict(owner), set())
    for index, (kind, value) in enumerate(keys):
        planner.add(index, IdentityClaim("track", **{kind: value}))
    expected = planner.finish()
    got = plan_single_keys(keys, owner)
    assert got.customer_of == expected.customer_of
    assert got.new_customers == expected.new_customers
    assert got.new_identities == expected.new_identities
    assert got.identified == expected.identified
    assert got.merges == expected.merges == []


def test_imported_ids_holding_any_character_keep_their_own_customers(project: Project) -> None:
    """Rows are grouped by (userId, anonymousId): no two different pairs may be confused,
    whatever characters the ids hold."""
    rows: list[tuple[str, str | None, str | None, int]] = [
        ("sep-1", "a\x1f", None, 0),
        ("sep-2", "a", "\x1f", 0),
        ("sep-3", "a:", None, 0),
        ("sep-4", "a", ":", 0),
    ]
    result = project.pipeline.ingest_table(track_rows(rows), source="test")
    assert result.stored == 4 and result.customers_created == 3
    with project.engine.connect() as conn:  # by identity: references are stripped
        owners = dict(
            conn.execute(select(CustomerIdentity.value, CustomerIdentity.customer_id)).all()
        )
    assert sorted(owners) == sorted(["a\x1f", "a", "a:", "\x1f", ":"])
    assert len({owners["a\x1f"], owners["a"], owners["a:"]}) == 3
    assert owners["\x1f"] == owners[":"] == owners["a"]
    assert_no_orphans(project)
