"""The demo feed must stay reproducible, valid Segment and full of the patterns demos show."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxloop.demo.catalog import (
    DEMO_CHANNELS,
    DEMO_DEPARTMENTS,
    DEMO_EVENT_NAMES,
    DEMO_PAGE_NAMES,
    DEMO_TOUCHPOINTS,
    touchpoint,
)
from cxloop.demo.generator import generate_messages

END = datetime(2025, 1, 1, tzinfo=UTC)
ACQUISITION_CHANNELS = {"web", "store", "phone", "referral", "email", "on-site"}
CANCEL_REASONS = {
    "price",
    "missing feature",
    "poor support",
    "moved to competitor",
    "no longer needed",
}
Message = dict[str, Any]


@pytest.fixture(scope="module")
def messages() -> list[Message]:
    return generate_messages(customers=1500, seed=11, end=END)


@pytest.fixture(scope="module")
def by_user(messages: list[Message]) -> dict[str, list[Message]]:
    grouped: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        if "userId" in message:
            grouped[message["userId"]].append(message)
    return grouped


@pytest.fixture(scope="module")
def traits(messages: list[Message]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = defaultdict(dict)
    for message in messages:
        if message["type"] == "identify":
            merged[message["userId"]].update(message["traits"])
    return merged


def _events(history: list[Message], name: str) -> list[Message]:
    return [m for m in history if m["type"] == "track" and m["event"] == name]


def _rate(users: list[str], outcome: Callable[[str], bool]) -> float:
    assert users, "empty group: the demo lost a segment"
    return sum(outcome(user) for user in users) / len(users)


# --- reproducibility and size ---------------------------------------------------------------


def test_same_arguments_give_byte_identical_output() -> None:
    first = generate_messages(customers=300, seed=3, end=END)
    second = generate_messages(customers=300, seed=3, end=END)
    assert json.dumps(first, sort_keys=False) == json.dumps(second, sort_keys=False)


def test_different_seed_gives_different_output() -> None:
    first = generate_messages(customers=300, seed=3, end=END)
    other = generate_messages(customers=300, seed=4, end=END)
    assert first != other
    assert {m["messageId"] for m in first}.isdisjoint(m["messageId"] for m in other)


def test_a_person_does_not_depend_on_how_many_customers_are_generated() -> None:
    small = generate_messages(customers=40, seed=5, end=END)
    large = generate_messages(customers=80, seed=5, end=END)
    first_forty = [m for m in large if int(m["messageId"].split("-")[2]) <= 40]
    assert small == first_forty


def test_default_size_gives_a_large_feed() -> None:
    feed = generate_messages(end=END)
    assert len(feed) >= 200_000
    assert len({m["userId"] for m in feed if m["type"] == "identify"}) > 2000


def test_default_end_is_today_at_midnight_utc() -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    feed = generate_messages(customers=60, seed=1)
    if datetime.now(UTC) >= midnight + timedelta(days=1):
        pytest.skip("the date changed while generating")
    assert feed == generate_messages(customers=60, seed=1, end=midnight)


def test_naive_end_is_rejected() -> None:
    with pytest.raises(ValueError):
        generate_messages(customers=1, end=datetime(2025, 1, 1))


def test_zero_customers_gives_no_messages() -> None:
    assert generate_messages(customers=0, end=END) == []


# --- Segment validity -----------------------------------------------------------------------


def test_timestamps_are_sorted_and_inside_the_year_before_end(messages: list[Message]) -> None:
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in messages]
    assert all(m["timestamp"].endswith("Z") for m in messages)
    assert stamps == sorted(stamps)
    assert stamps[0] >= END - timedelta(days=365)
    assert stamps[-1] < END


def test_message_ids_are_unique(messages: list[Message]) -> None:
    ids = [m["messageId"] for m in messages]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("demo-") for i in ids)


def test_every_message_is_valid_segment(messages: list[Message]) -> None:
    json.dumps(messages)
    for m in messages:
        assert m["type"] in {"track", "identify", "page", "alias"}
        assert isinstance(m.get("userId") or m.get("anonymousId"), str)
        if m["type"] == "track":
            assert isinstance(m["event"], str) and m["event"]
            assert m["properties"]["channel"] in DEMO_CHANNELS
        elif m["type"] == "page":
            assert m["name"] and m["properties"]["channel"] == "web"
        elif m["type"] == "identify":
            assert m["userId"].startswith("cust-")
            assert isinstance(m["traits"], dict) and m["traits"]
        else:
            assert m["userId"].startswith("cust-")
            assert m["previousId"].startswith("anon-")


def test_first_identify_carries_typed_demographics(
    messages: list[Message], traits: dict[str, dict[str, Any]]
) -> None:
    for user, known in traits.items():
        assert known["gender"] in {"female", "male", "non-binary"}, user
        assert isinstance(known["birth_year"], int) and 1940 < known["birth_year"] < 2008
        assert known["education"] in {"secondary", "vocational", "bachelor", "master", "doctorate"}
        assert known["relationship_status"] in {
            "single",
            "married",
            "partnered",
            "divorced",
            "widowed",
        }
        assert known["income_band"] in {"<25k", "25-50k", "50-100k", "100-200k", "200k+"}
        assert known["channel"] in ACQUISITION_CHANNELS
        assert "@" in known["email"] and known["city"] and known["country"]
    genders = {t["gender"] for t in traits.values()}
    assert genders == {"female", "male", "non-binary"}


def test_cities_belong_to_their_country(traits: dict[str, dict[str, Any]]) -> None:
    countries_of: dict[str, set[str]] = defaultdict(set)
    for known in traits.values():
        countries_of[known["city"]].add(known["country"])
    assert len(countries_of) >= 10
    assert all(len(countries) == 1 for countries in countries_of.values())


def test_orders_have_revenue_in_euro(by_user: dict[str, list[Message]]) -> None:
    orders = [o for history in by_user.values() for o in _events(history, "Order Completed")]
    assert orders
    for order in orders:
        props = order["properties"]
        assert isinstance(props["revenue"], float) and props["revenue"] > 0
        assert props["currency"] == "EUR"
        assert props["channel"] in {"web", "store", "phone"}
        assert props["order_id"] and props["product"] and props["quantity"] >= 1
    repeat_buyers = [h for h in by_user.values() if len(_events(h, "Order Completed")) > 1]
    assert repeat_buyers


def test_visits_name_a_technician(by_user: dict[str, list[Message]]) -> None:
    visits = [v for h in by_user.values() for v in _events(h, "Visit Scheduled")]
    assert visits
    for visit in visits:
        assert visit["properties"]["technician_id"].startswith("tech-")
        assert visit["properties"]["scheduled_at"] > visit["timestamp"]


# --- identity ------------------------------------------------------------------------------


def test_anonymous_ids_are_linked_before_they_appear_with_a_user(
    messages: list[Message],
) -> None:
    owner: dict[str, str] = {}
    for m in messages:
        if m["type"] == "alias":
            assert owner.setdefault(m["previousId"], m["userId"]) == m["userId"]
        elif m["type"] == "identify" and "anonymousId" in m:
            assert owner.setdefault(m["anonymousId"], m["userId"]) == m["userId"]
        elif "userId" in m and "anonymousId" in m:
            assert owner.get(m["anonymousId"]) == m["userId"], m
    assert len(owner) > 500


def test_identity_flows_are_all_present(
    messages: list[Message], by_user: dict[str, list[Message]]
) -> None:
    linked = {
        m["anonymousId"] for m in messages if m["type"] == "identify" and "anonymousId" in m
    } | {m["previousId"] for m in messages if m["type"] == "alias"}
    anonymous = {m["anonymousId"] for m in messages if "anonymousId" in m}
    assert len(anonymous - linked) > 300, "prospects who never identify"
    devices: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        if "userId" in m and "anonymousId" in m:
            devices[m["userId"]].add(m["anonymousId"])
    assert sum(len(d) > 1 for d in devices.values()) > 30, "customers with a second device"
    assert any(m["type"] == "alias" for m in messages)
    known_first = [
        h for h in by_user.values() if h[0]["type"] == "identify" and "anonymousId" not in h[0]
    ]
    assert len(known_first) > 200, "customers known from the start (store, phone, ...)"
    anonymous_first = {
        m["anonymousId"] for m in messages if m["type"] == "track" and m["event"] == "Ad Clicked"
    } & linked
    assert anonymous_first, "ad clickers who later identify"


# --- catalogue ------------------------------------------------------------------------------


def test_only_catalogued_names_are_used(messages: list[Message]) -> None:
    events = {m["event"] for m in messages if m["type"] == "track"}
    pages = {m["name"] for m in messages if m["type"] == "page"}
    assert events <= DEMO_EVENT_NAMES
    assert pages <= DEMO_PAGE_NAMES
    assert len(events) >= 25


def test_catalogue_is_consistent() -> None:
    names = [t.name for t in DEMO_TOUCHPOINTS]
    assert len(names) == len(set(names))
    assert set(DEMO_DEPARTMENTS) == {
        "marketing",
        "sales",
        "delivery",
        "product",
        "customer service",
    }
    assert {t.department for t in DEMO_TOUCHPOINTS} == set(DEMO_DEPARTMENTS)
    assert {t.channel for t in DEMO_TOUCHPOINTS} == set(DEMO_CHANNELS)
    assert touchpoint("Order Completed").stage_hint == "purchase"
    with pytest.raises(KeyError):
        touchpoint("Teleported")


def test_all_six_channels_are_used(messages: list[Message]) -> None:
    used = {m["properties"]["channel"] for m in messages if m["type"] in {"track", "page"}}
    assert used == set(DEMO_CHANNELS)


# --- planted effects -----------------------------------------------------------------------


def test_referral_and_store_leads_buy_far_more_often_than_email_leads(
    by_user: dict[str, list[Message]], traits: dict[str, dict[str, Any]]
) -> None:
    def bought(user: str) -> bool:
        return bool(_events(by_user[user], "Order Completed"))

    def rate(channel: str) -> float:
        return _rate([u for u, t in traits.items() if t["channel"] == channel], bought)

    assert rate("referral") > rate("email") + 0.3
    assert rate("store") > 2 * rate("email")
    assert rate("referral") > rate("web") + 0.2


def test_higher_income_converts_better(
    by_user: dict[str, list[Message]], traits: dict[str, dict[str, Any]]
) -> None:
    def rate(bands: set[str]) -> float:
        users = [u for u, t in traits.items() if t["income_band"] in bands]
        return _rate(users, lambda u: bool(_events(by_user[u], "Order Completed")))

    assert rate({"100-200k", "200k+"}) > rate({"<25k"}) + 0.08


def test_bad_support_makes_customers_cancel(by_user: dict[str, list[Message]]) -> None:
    def negative(user: str) -> bool:
        return any(
            c["properties"]["resolution"] == "negative"
            for c in _events(by_user[user], "Case Resolved")
        )

    def cancelled(user: str) -> bool:
        return bool(_events(by_user[user], "Subscription Cancelled"))

    installed = [u for u, h in by_user.items() if _events(h, "Installation Completed")]
    unhappy = [u for u in installed if negative(u)]
    others = [u for u in installed if not negative(u)]
    assert _rate(unhappy, cancelled) > 2 * _rate(others, cancelled)


def test_younger_customers_use_more_features(
    by_user: dict[str, list[Message]], traits: dict[str, dict[str, Any]]
) -> None:
    def features_per_session(users: list[str]) -> float:
        sessions = sum(len(_events(by_user[u], "Product Used")) for u in users)
        features = sum(len(_events(by_user[u], "Feature Used")) for u in users)
        return features / sessions

    young = [u for u, t in traits.items() if t["birth_year"] > END.year - 35]
    old = [u for u, t in traits.items() if t["birth_year"] <= END.year - 55]
    assert features_per_session(young) > 2 * features_per_session(old)


def test_cancellations_carry_reasons(by_user: dict[str, list[Message]]) -> None:
    cancels = [c for h in by_user.values() for c in _events(h, "Subscription Cancelled")]
    assert len(cancels) > 20
    reasons = {c["properties"]["reason"] for c in cancels}
    assert reasons <= CANCEL_REASONS
    assert len(reasons) >= 4
    stages = {c["properties"]["stage"] for c in cancels}
    assert stages == {"before delivery", "use"}
