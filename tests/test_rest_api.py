"""The REST API under /api/v1, fed through the Tracking API, on both backends."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys

# Five days ago at noon UTC: inside the default 90-day window of /stats.
BASE = (datetime.now(UTC) - timedelta(days=5)).replace(hour=12, minute=0, second=0, microsecond=0)
STEP = timedelta(minutes=50)

PEOPLE: dict[str, dict[str, Any]] = {
    "ann": {
        "name": "Ann Archer",
        "email": "Ann@Example.com",
        "country": "FR",
        "gender": "F",
        "channel": "email",
        "birth_year": 1984,
        "plan": "pro",
    },
    "bob": {
        "name": "Bob Baker",
        "email": "bob@example.com",
        "country": "DE",
        "gender": "male",
        "channel": "ads",
        "birth_year": 1990,
        "plan": "free",
    },
    "cy": {
        "name": "Cy Cole",
        "email": "cy_cole@shop.org",
        "country": "FR",
        "gender": "M",
        "channel": "ads",
        "birth_year": 1975,
        "plan": "pro",
        "seats": 3,
    },
}
# Each person's journey: (start hour, steps STEP apart). "/path" is a page view, "identify"
# sends the person's traits (linking the anonymous history), anything else is a track event.
# dee never identifies herself.
JOURNEYS: dict[str, tuple[int, list[str]]] = {
    "ann": (0, ["/home", "identify", "Product Viewed", "Order Completed"]),
    "bob": (1, ["identify", "Product Viewed"]),
    "cy": (2, ["/pricing", "identify", "Order Completed", "Order Completed", "/home"]),
    "dee": (3, ["/home", "Product Viewed"]),
}
# first_seen: ann < bob < cy < dee; last_seen: bob < ann < dee < cy.
TOTAL_EVENTS = sum(len(steps) for _, steps in JOURNEYS.values())


def at(person: str, step: int) -> datetime:
    start, _ = JOURNEYS[person]
    return BASE + timedelta(hours=start) + step * STEP


def journey(person: str) -> list[dict[str, Any]]:
    _, steps = JOURNEYS[person]
    messages: list[dict[str, Any]] = []
    who: dict[str, str] = {"anonymousId": f"anon-{person}"}
    for i, step in enumerate(steps):
        base = {"messageId": f"{person}-{i}", "timestamp": at(person, i).isoformat()}
        if step == "identify":
            who = {"userId": f"u-{person}"}
            ids = {"userId": f"u-{person}", "anonymousId": f"anon-{person}"}
            messages.append({**base, **ids, "type": "identify", "traits": PEOPLE[person]})
        elif step.startswith("/"):
            messages.append({**base, **who, "type": "page", "name": step})
        else:
            messages.append({**base, **who, "type": "track", "event": step})
    return messages


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(api: ApiClient, *messages: dict[str, Any]) -> dict[str, Any]:
    response = api.http.post(
        "/v1/batch", json={"batch": list(messages)}, headers=basic(api.write_key)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["rejected"] == [], body
    return body


def get(api: ApiClient, path: str, **params: Any) -> httpx.Response:
    return api.http.get(path, params=params, headers=api.auth)


def ok(api: ApiClient, path: str, **params: Any) -> Any:
    response = get(api, path, **params)
    assert response.status_code == 200, response.text
    return response.json()


def people(page: dict[str, Any]) -> list[str]:
    """Who is on a page of customers, in order (by the identity of each journey)."""
    return [(c["user_id"] or "u-dee").removeprefix("u-") for c in page["items"]]


def event_ids(page: dict[str, Any]) -> list[str]:
    return [e["message_id"] for e in page["items"]]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def invalid(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error


@pytest.fixture
def loaded(api: ApiClient) -> dict[str, int]:
    """The journeys, one batch per person; returns each person's customer id."""
    for person in JOURNEYS:
        track(api, *journey(person))
    return {p: ok(api, f"/api/v1/customers/anon-{p}")["id"] for p in JOURNEYS}


# -- authentication ----------------------------------------------------------------------------


def api_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the app, through included routers."""
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router, kept as one entry
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from api_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute):
            for method in sorted(route.methods):
                yield method, prefix + route.path


def test_every_api_route_requires_the_secret_key(api: ApiClient) -> None:
    routes = [
        (method, path)
        for method, path in api_routes(api.http.app.routes)  # type: ignore[attr-defined]
        if path.startswith("/api/v1/")
    ]
    gets = {path for method, path in routes if method == "GET"}
    assert {
        "/api/v1/customers",
        "/api/v1/customers/{ref}",
        "/api/v1/customers/{ref}/events",
        "/api/v1/events",
        "/api/v1/stats",
        "/api/v1/rejected-messages",
        "/api/v1/keys",
    } <= gets
    assert {m for m, _ in routes} >= {"GET", "POST", "DELETE"}
    refused = [
        {},
        {"Authorization": "Bearer cxs_wrong-key"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {api.write_key}"},  # a write key is not a secret key
        basic(api.secret_key),  # the secret key only counts as a bearer token
        {"Authorization": api.secret_key},
    ]
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "1", template)
        for headers in refused:
            response = api.http.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    samples = {"{measure}": "nps"}  # path parameters that are names, not ids
    for path in gets:
        filled = re.sub(r"\{[^}]+\}", lambda m: samples.get(m.group(0), "1"), path)
        response = get(api, filled)
        assert response.status_code in (200, 404), (path, response.text)


# -- customers -------------------------------------------------------------------------------


def test_customer_search_filters_and_traits(api: ApiClient, loaded: dict[str, int]) -> None:
    def who(**params: Any) -> set[str]:
        return set(people(ok(api, "/api/v1/customers", **params)))

    assert who() == {"ann", "bob", "cy", "dee"}
    assert who(search="archer") == {"ann"}
    assert who(search="ANN@EXAMPLE") == {"ann"}
    assert who(search="example.com") == {"ann", "bob"}
    assert who(search="u-bob") == {"bob"}
    assert who(search="anon-dee") == {"dee"}
    assert who(search="nobody") == set()
    # LIKE wildcards in the search are plain characters.
    assert who(search="cy_cole") == {"cy"}
    assert who(search="b_b") == set()
    assert who(search="%") == set()

    assert who(country="FR") == {"ann", "cy"}
    assert who(gender="male") == {"bob", "cy"}
    assert who(gender="female") == {"ann"}
    assert who(channel="ads") == {"bob", "cy"}
    assert who(country="FR", gender="male") == {"cy"}
    assert who(birth_year=1990) == {"bob"}
    assert who(country="FR", search="example") == {"ann"}

    assert who(trait="plan=pro") == {"ann", "cy"}
    assert who(trait=["plan=pro", "seats=3"]) == {"cy"}
    assert who(trait="plan=enterprise") == set()
    assert who(trait="plan=pro", channel="email") == {"ann"}

    page = ok(api, "/api/v1/customers", country="FR")
    assert page["total"] == 2
    ann = next(c for c in page["items"] if c["user_id"] == "u-ann")
    assert ann["id"] == loaded["ann"]
    assert (ann["name"], ann["email"], ann["gender"]) == ("Ann Archer", "ann@example.com", "female")
    assert ann["traits"] == {"plan": "pro"}


def test_customer_sort_and_paging(api: ApiClient, loaded: dict[str, int]) -> None:
    def order(**params: Any) -> list[str]:
        return people(ok(api, "/api/v1/customers", **params))

    assert order(sort="first_seen") == ["ann", "bob", "cy", "dee"]
    assert order(sort="-first_seen") == ["dee", "cy", "bob", "ann"]
    assert order(sort="last_seen") == ["bob", "ann", "dee", "cy"]
    assert order() == ["cy", "dee", "ann", "bob"]  # default: most recently seen first
    by_id = sorted(loaded, key=loaded.__getitem__)
    assert order(sort="id") == by_id
    assert order(sort="-id") == by_id[::-1]

    first = ok(api, "/api/v1/customers", sort="first_seen", limit=3)
    rest = ok(api, "/api/v1/customers", sort="first_seen", limit=3, offset=3)
    assert (first["total"], first["limit"], first["offset"]) == (4, 3, 0)
    assert (rest["total"], rest["limit"], rest["offset"]) == (4, 3, 3)
    assert people(first) == ["ann", "bob", "cy"]
    assert people(rest) == ["dee"]
    beyond = ok(api, "/api/v1/customers", offset=10)
    assert (beyond["items"], beyond["total"]) == ([], 4)
    filtered = ok(api, "/api/v1/customers", gender="male", sort="-first_seen", limit=1)
    assert (people(filtered), filtered["total"]) == (["cy"], 2)

    ann = ok(api, "/api/v1/customers", search="u-ann")["items"][0]
    assert parse(ann["first_seen"]) == at("ann", 0)
    assert parse(ann["last_seen"]) == at("ann", 3)


def test_bad_query_parameters_are_422_naming_the_field(api: ApiClient) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/api/v1/customers", {"limit": 0}, "limit"),
        ("/api/v1/customers", {"limit": 100_000}, "limit"),
        ("/api/v1/customers", {"offset": -1}, "offset"),
        ("/api/v1/customers", {"sort": "bogus"}, "sort"),
        ("/api/v1/customers", {"trait": "plan"}, "trait"),
        ("/api/v1/customers", {"birth_year": "soon"}, "birth_year"),
        ("/api/v1/events", {"limit": 0}, "limit"),
        ("/api/v1/events", {"type": "purchase"}, "type"),
        ("/api/v1/events", {"from": "yesterday"}, "from"),
        ("/api/v1/events", {"from": BASE.isoformat(), "to": BASE.isoformat()}, "from"),
        (
            "/api/v1/events",
            {"from": BASE.isoformat(), "to": (BASE - timedelta(days=1)).isoformat()},
            "from",
        ),
        ("/api/v1/customers/1", {"timeline": -1}, "timeline"),
        ("/api/v1/stats", {"days": 0}, "days"),
        ("/api/v1/rejected-messages", {"limit": 0}, "limit"),
    ]
    for path, params, field in cases:
        invalid(get(api, path, **params), field)


def test_one_customer_by_any_reference(api: ApiClient, loaded: dict[str, int]) -> None:
    ann = loaded["ann"]
    refs = [str(ann), "u-ann", "anon-ann", "ann@example.com", "Ann@Example.com"]
    for ref in refs:
        detail = ok(api, f"/api/v1/customers/{ref}")
        assert detail["id"] == ann, ref
    assert {(i["kind"], i["value"]) for i in detail["identities"]} == {
        ("anonymous_id", "anon-ann"),
        ("user_id", "u-ann"),
        ("email", "ann@example.com"),
    }
    assert (detail["user_id"], detail["country"], detail["birth_year"]) == ("u-ann", "FR", 1984)
    assert detail["event_count"] == 4
    assert detail["merged_from"] == []
    timeline = detail["timeline"]
    assert [e["message_id"] for e in timeline] == ["ann-3", "ann-2", "ann-1", "ann-0"]
    assert [e["type"] for e in timeline] == ["track", "track", "identify", "page"]
    assert all(e["customer_id"] == ann for e in timeline)
    stamps = [parse(e["timestamp"]) for e in timeline]
    assert stamps == sorted(stamps, reverse=True)

    short = ok(api, "/api/v1/customers/u-ann", timeline=2)
    assert [e["message_id"] for e in short["timeline"]] == ["ann-3", "ann-2"]
    assert short["event_count"] == 4

    dee = ok(api, "/api/v1/customers/anon-dee")
    assert (dee["id"], dee["user_id"], dee["event_count"]) == (loaded["dee"], None, 2)
    assert dee["identities"] == [{"kind": "anonymous_id", "value": "anon-dee"}]

    events = ok(api, "/api/v1/customers/anon-ann/events", limit=3)
    assert (event_ids(events), events["total"]) == (["ann-3", "ann-2", "ann-1"], 4)


def test_a_merged_away_id_resolves_to_the_survivor(api: ApiClient) -> None:
    track(api, {"type": "identify", "messageId": "e1", "userId": "u-eve", "traits": {"a": 1}})
    track(
        api,
        {"type": "track", "messageId": "e2", "anonymousId": "anon-eve", "event": "Ad Clicked"},
        {"type": "page", "messageId": "e3", "anonymousId": "anon-eve", "name": "/home"},
    )
    known = ok(api, "/api/v1/customers/u-eve")["id"]
    anonymous = ok(api, "/api/v1/customers/anon-eve")["id"]
    assert known != anonymous
    track(
        api, {"type": "identify", "messageId": "e4", "userId": "u-eve", "anonymousId": "anon-eve"}
    )

    for ref in (str(anonymous), "anon-eve"):
        detail = ok(api, f"/api/v1/customers/{ref}")
        assert detail["id"] == known, ref
    assert detail["event_count"] == 4
    assert [(m["from_customer_id"], m["reason"]) for m in detail["merged_from"]] == [
        (anonymous, "identify")
    ]
    assert detail["merged_from"][0]["message_id"] == "e4"
    listed = ok(api, "/api/v1/customers")
    assert [c["id"] for c in listed["items"]] == [known]
    assert listed["total"] == 1
    by_old_id = ok(api, "/api/v1/events", customer=str(anonymous))
    assert sorted(event_ids(by_old_id)) == ["e1", "e2", "e3", "e4"]
    assert {e["customer_id"] for e in by_old_id["items"]} == {known}


def test_unknown_customers_are_404_with_a_clear_message(
    api: ApiClient, loaded: dict[str, int]
) -> None:
    missing: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/api/v1/customers/nobody", None),
        ("GET", "/api/v1/customers/999999", None),
        ("GET", "/api/v1/customers/nobody/events", None),
        ("GET", "/api/v1/events?customer=nobody", None),
        ("POST", "/api/v1/customers/nobody/merge", {"from_customer": "u-ann"}),
        ("POST", "/api/v1/customers/u-ann/merge", {"from_customer": "nobody"}),
    ]
    for method, path, body in missing:
        response = api.http.request(method, path, json=body, headers=api.auth)
        assert response.status_code == 404, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert "no customer" in error["message"]
        assert ("999999" if "999999" in path else "nobody") in error["message"]
    assert ok(api, "/api/v1/stats")["merges"] == 0


# -- events ------------------------------------------------------------------------------------


def test_event_queries(api: ApiClient, loaded: dict[str, int]) -> None:
    def ids(**params: Any) -> list[str]:
        return event_ids(ok(api, "/api/v1/events", limit=1000, **params))

    everything = ids()
    assert len(everything) == TOTAL_EVENTS
    assert everything[0] == "cy-4" and everything[-1] == "ann-0"

    assert ids(customer="u-cy") == ["cy-4", "cy-3", "cy-2", "cy-1", "cy-0"]
    assert ids(customer="anon-ann") == ["ann-3", "ann-2", "ann-1", "ann-0"]
    assert ids(customer=str(loaded["dee"])) == ["dee-1", "dee-0"]
    assert ids(customer="bob@example.com") == ["bob-1", "bob-0"]
    assert ids(event="Order Completed") == ["cy-3", "cy-2", "ann-3"]
    assert ids(event="Order Completed", customer="u-cy") == ["cy-3", "cy-2"]
    assert ids(type="page") == ["cy-4", "dee-0", "cy-0", "ann-0"]
    assert ids(type="identify") == ["cy-1", "bob-0", "ann-1"]
    assert ids(type="track", event="Product Viewed") == ["dee-1", "bob-1", "ann-2"]

    hour = BASE + timedelta(hours=1)
    assert ids(**{"from": hour.isoformat(), "to": (hour + timedelta(hours=1)).isoformat()}) == [
        "bob-1",
        "ann-2",
        "bob-0",
    ]
    # [from, to): an event exactly at `to` is left out, one exactly at `from` is in.
    assert ids(**{"from": hour.isoformat(), "to": at("bob", 1).isoformat()}) == ["ann-2", "bob-0"]
    assert ids(**{"from": at("cy", 4).isoformat()}) == ["cy-4"]
    assert ids(to=BASE.isoformat()) == []
    naive = at("cy", 4).replace(tzinfo=None).isoformat()
    assert ids(**{"from": naive}) == ["cy-4"]  # a time without zone is UTC

    pages = [ok(api, "/api/v1/events", limit=5, offset=o) for o in (0, 5, 10)]
    assert [p["total"] for p in pages] == [TOTAL_EVENTS] * 3
    assert [len(p["items"]) for p in pages] == [5, 5, 3]
    assert [e for p in pages for e in event_ids(p)] == everything
    typed = ok(api, "/api/v1/events", type="page", limit=1, offset=1)
    assert (event_ids(typed), typed["total"]) == (["dee-0"], 4)

    first = ok(api, "/api/v1/events", customer="u-ann", limit=1)["items"][0]
    assert first["properties"] == {} and first["event"] == "Order Completed"
    assert (first["user_id"], first["source"]) == ("u-ann", "tests")
    assert parse(first["timestamp"]) == at("ann", 3)


# -- stats -------------------------------------------------------------------------------------


def test_stats(api: ApiClient, loaded: dict[str, int]) -> None:
    stats = ok(api, "/api/v1/stats")
    assert stats["customers"] == 4
    assert stats["events"] == TOTAL_EVENTS
    assert (stats["identified_customers"], stats["anonymous_customers"]) == (3, 1)
    assert (stats["rejected_messages"], stats["merges"]) == (0, 0)
    assert stats["events_per_day"] == [{"day": BASE.date().isoformat(), "events": TOTAL_EVENTS}]

    # Only the last `days` days are counted per day; the totals stay whole.
    recent = ok(api, "/api/v1/stats", days=2)
    assert (recent["events_per_day"], recent["events"]) == ([], TOTAL_EVENTS)

    track(api, {"type": "track", "messageId": "now", "userId": "u-ann", "event": "Came Back"})
    response = api.http.post(
        "/v1/track", json={"userId": "u-ann"}, headers=basic(api.write_key)
    )  # refused: no event
    assert response.status_code == 400
    after = ok(api, "/api/v1/stats")
    assert (after["events"], after["rejected_messages"], after["customers"]) == (
        TOTAL_EVENTS + 1,
        1,
        4,
    )
    came_back = ok(api, "/api/v1/events", event="Came Back")["items"][0]
    day = parse(came_back["timestamp"]).date().isoformat()
    assert ok(api, "/api/v1/stats", days=2)["events_per_day"] == [{"day": day, "events": 1}]


def test_events_per_day_use_the_project_time_zone(settings: Settings) -> None:
    """03:00 UTC is the evening before in New York; noon and 23:30 UTC are the same day."""
    zoned = Settings(
        home=settings.home,
        database_url=settings.database_url,
        events_url=settings.events_url,
        timezone="America/New_York",
    )
    write_key, secret_key = make_keys(zoned)
    day = (datetime.now(UTC) - timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    times = [day + timedelta(hours=3), day + timedelta(hours=12), day + timedelta(hours=23.5)]
    batch = [
        {"type": "track", "messageId": f"tz-{i}", "userId": "u-1", "event": "A", "timestamp": t}
        for i, t in enumerate(t.isoformat() for t in times)
    ]
    with TestClient(create_app(zoned)) as http:
        response = http.post("/v1/batch", json={"batch": batch}, headers=basic(write_key))
        assert response.status_code == 200, response.text
        stats = http.get("/api/v1/stats", headers={"Authorization": f"Bearer {secret_key}"})
    assert stats.status_code == 200, stats.text
    previous = (day - timedelta(days=1)).date().isoformat()
    assert stats.json()["events_per_day"] == [
        {"day": previous, "events": 1},
        {"day": day.date().isoformat(), "events": 2},
    ]


# -- merges ------------------------------------------------------------------------------------


def test_manual_merge_moves_events_and_is_recorded(api: ApiClient, loaded: dict[str, int]) -> None:
    ann, bob = loaded["ann"], loaded["bob"]
    response = api.http.post(
        "/api/v1/customers/u-ann/merge", json={"from_customer": "bob@example.com"}, headers=api.auth
    )
    assert response.status_code == 200, response.text
    merge = response.json()
    assert (merge["from_customer_id"], merge["into_customer_id"]) == (bob, ann)
    assert (merge["reason"], merge["message_id"], merge["events_moved"]) == ("manual", None, True)
    assert set(merge["identities"]) == {
        "user_id:u-bob",
        "anonymous_id:anon-bob",
        "email:bob@example.com",
    }

    survivor = ok(api, "/api/v1/customers/u-bob")
    assert survivor["id"] == ann
    assert survivor["event_count"] == 6
    assert survivor["merged_from"] == [merge]
    # The survivor keeps its own values.
    assert (survivor["name"], survivor["country"], survivor["traits"]) == (
        "Ann Archer",
        "FR",
        {"plan": "pro"},
    )
    assert sorted(event_ids(ok(api, "/api/v1/events", customer="u-ann"))) == [
        "ann-0",
        "ann-1",
        "ann-2",
        "ann-3",
        "bob-0",
        "bob-1",
    ]
    assert ok(api, "/api/v1/events", customer=str(bob))["total"] == 6
    assert people(ok(api, "/api/v1/customers", sort="first_seen")) == ["ann", "cy", "dee"]
    stats = ok(api, "/api/v1/stats")
    assert (stats["customers"], stats["merges"], stats["events"]) == (3, 1, TOTAL_EVENTS)

    # New messages of the merged-away identities land on the survivor.
    track(api, {"type": "track", "messageId": "bob-2", "userId": "u-bob", "event": "Came Back"})
    latest = ok(api, "/api/v1/events", event="Came Back")["items"]
    assert [(e["message_id"], e["customer_id"]) for e in latest] == [("bob-2", ann)]

    for ref, other in (("u-ann", "anon-ann"), ("u-ann", "u-bob"), (str(ann), str(ann))):
        again = api.http.post(
            f"/api/v1/customers/{ref}/merge", json={"from_customer": other}, headers=api.auth
        )
        invalid(again, "from_customer")
    invalid(
        api.http.post("/api/v1/customers/u-ann/merge", json={}, headers=api.auth), "from_customer"
    )
    assert ok(api, "/api/v1/stats")["merges"] == 1


# -- keys --------------------------------------------------------------------------------------


def test_keys_are_created_listed_and_revoked(api: ApiClient) -> None:
    created = api.http.post("/api/v1/keys", json={"kind": "write", "name": "web"}, headers=api.auth)
    assert created.status_code == 201, created.text
    new = created.json()
    plain = new["key"]
    assert plain.startswith("cxw_") and len(plain) > 20
    assert (new["kind"], new["name"], new["prefix"], new["revoked_at"]) == (
        "write",
        "web",
        plain[:10],
        None,
    )

    listing = get(api, "/api/v1/keys")
    assert listing.status_code == 200
    assert plain not in listing.text
    assert api.write_key not in listing.text and api.secret_key not in listing.text
    keys = listing.json()
    assert all("key" not in k for k in keys)
    assert sorted((k["kind"], k["name"]) for k in keys) == [
        ("secret", "tests"),
        ("write", "tests"),
        ("write", "web"),
    ]

    message = {"type": "track", "userId": "u-1", "event": "A", "messageId": "k1"}
    assert api.http.post("/v1/track", json=message, headers=basic(plain)).status_code == 200

    deleted = api.http.delete(f"/api/v1/keys/{new['id']}", headers=api.auth)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["revoked_at"] is not None
    assert plain not in deleted.text
    assert new["id"] not in [k["id"] for k in ok(api, "/api/v1/keys")]
    with_revoked = ok(api, "/api/v1/keys", include_revoked="true")
    assert [k["revoked_at"] is not None for k in with_revoked if k["id"] == new["id"]] == [True]
    message["messageId"] = "k2"
    assert api.http.post("/v1/track", json=message, headers=basic(plain)).status_code == 401
    assert event_ids(ok(api, "/api/v1/events")) == ["k1"]

    secret = api.http.post(
        "/api/v1/keys", json={"kind": "secret", "name": "ops"}, headers=api.auth
    ).json()
    assert secret["key"].startswith("cxs_")
    bearer = {"Authorization": f"Bearer {secret['key']}"}
    assert api.http.get("/api/v1/stats", headers=bearer).status_code == 200
    assert api.http.delete(f"/api/v1/keys/{secret['id']}", headers=bearer).status_code == 200
    assert api.http.get("/api/v1/stats", headers=bearer).status_code == 401

    missing = api.http.delete("/api/v1/keys/999999", headers=api.auth)
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found"
    for body, field in (({"kind": "admin", "name": "x"}, "kind"), ({"kind": "write"}, "name")):
        invalid(api.http.post("/api/v1/keys", json=body, headers=api.auth), field)
    invalid(
        api.http.post("/api/v1/keys", json={"kind": "write", "name": ""}, headers=api.auth), "name"
    )


# -- documentation -----------------------------------------------------------------------------


def test_docs_and_openapi_are_served(api: ApiClient) -> None:
    docs = api.http.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text and "/openapi.json" in docs.text

    schema = api.http.get("/openapi.json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for kind in ("track", "identify", "page", "screen", "group", "alias", "batch", "import"):
        assert "post" in paths[f"/v1/{kind}"], kind
    expected = {
        "/api/v1/customers": "get",
        "/api/v1/customers/{ref}": "get",
        "/api/v1/customers/{ref}/events": "get",
        "/api/v1/customers/{ref}/merge": "post",
        "/api/v1/events": "get",
        "/api/v1/stats": "get",
        "/api/v1/rejected-messages": "get",
        "/api/v1/keys": "post",
        "/api/v1/keys/{key_id}": "delete",
    }
    for path, method in expected.items():
        assert method in paths[path], path
    assert "requestBody" in paths["/v1/batch"]["post"]
    params = {p["name"] for p in paths["/api/v1/events"]["get"]["parameters"]}
    assert {"customer", "event", "type", "from", "to", "limit", "offset"} <= params
