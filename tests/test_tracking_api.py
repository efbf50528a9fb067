"""The Segment-compatible Tracking API under /v1, driven over HTTP on both backends."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cxloop.events.base import EventQuery
from cxloop.store.database import session_scope
from cxloop.store.keys import revoke_key
from cxloop.store.models import Customer
from tests.conftest import ApiClient

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
KB = 1024

# The smallest valid message of each type, as a client sends it to /v1/<type>.
MINIMAL: dict[str, dict[str, Any]] = {
    "track": {"userId": "u-1", "event": "Order Completed", "properties": {"total": 42}},
    "identify": {"userId": "u-1", "traits": {"name": "Ann"}},
    "page": {"anonymousId": "anon-1", "name": "Pricing"},
    "screen": {"anonymousId": "anon-1", "name": "Home"},
    "group": {"userId": "u-1", "groupId": "acme"},
    "alias": {"userId": "u-1", "previousId": "anon-1"},
}


def basic(key: str) -> dict[str, str]:
    """Segment's authentication: the write key as basic user, the password empty."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def msg(kind: str, mid: str, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": mid,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        **fields,
    }


def send(api: ApiClient, path: str, body: Any, **headers: str) -> httpx.Response:
    """POST a JSON body with the write key as basic user (unless headers say otherwise)."""
    return api.http.post(
        path, content=json.dumps(body), headers={**basic(api.write_key), **headers}
    )


def stored(api: ApiClient, **params: Any) -> list[dict[str, Any]]:
    response = api.http.get("/api/v1/events", params={"limit": 1000, **params}, headers=api.auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def stored_ids(api: ApiClient, **params: Any) -> list[str]:
    return sorted(e["message_id"] for e in stored(api, **params))


def rejected(api: ApiClient) -> list[dict[str, Any]]:
    response = api.http.get("/api/v1/rejected-messages", headers=api.auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def event_row(api: ApiClient, message_id: str) -> dict[str, Any]:
    """The stored row itself, with the columns the REST shape leaves out (integrations)."""
    api.http.get("/api/v1/stats", headers=api.auth)  # a read waits for acknowledged messages
    events = api.http.app.state.cxloop.project.events  # type: ignore[attr-defined]
    rows = [r for r in events.query(EventQuery(limit=1000)) if r["message_id"] == message_id]
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- every endpoint stores its type -------------------------------------------------------


@pytest.mark.parametrize("kind", list(MINIMAL))
def test_each_single_endpoint_stores_its_message_type(api: ApiClient, kind: str) -> None:
    body = {**MINIMAL[kind], "messageId": f"m-{kind}", "timestamp": T0.isoformat()}
    response = send(api, f"/v1/{kind}", body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "warnings": []}
    events = stored(api)
    assert [(e["message_id"], e["type"]) for e in events] == [(f"m-{kind}", kind)]
    assert parse(events[0]["timestamp"]) == T0
    if kind == "track":
        assert events[0]["event"] == "Order Completed"
        assert events[0]["properties"] == {"total": 42}
    if kind in ("page", "screen"):
        assert events[0]["name"] == MINIMAL[kind]["name"]


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
def test_batch_and_import_store_every_message_type(api: ApiClient, path: str) -> None:
    batch = [msg(kind, f"b-{kind}", i, **MINIMAL[kind]) for i, kind in enumerate(MINIMAL)]
    response = send(api, path, {"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 6, "rejected": [], "warnings": []}
    for kind in MINIMAL:
        assert stored_ids(api, type=kind) == [f"b-{kind}"]
    assert api.http.get("/api/v1/stats", headers=api.auth).json()["events"] == 6


def test_tracking_answers_carry_the_headers_and_routing_of_every_answer(api: ApiClient) -> None:
    """The tracking routes are answered ahead of FastAPI's routing: nothing else changes."""
    ok = send(api, "/v1/batch", {"batch": [msg("track", "h-1", userId="u-1", event="A")]})
    refused = api.http.post("/v1/track", content=b"{}")
    for response in (ok, refused):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["server-timing"].startswith("app;dur=")
        assert response.headers["content-type"] == "application/json"
    assert (ok.status_code, refused.status_code) == (200, 401)
    assert refused.json()["error"]["code"] == "unauthorized"
    # Other methods and paths still meet FastAPI's own answers.
    assert api.http.get("/v1/batch", headers=basic(api.write_key)).status_code == 405
    assert send(api, "/v1/nothing", {"batch": []}).status_code == 404
    assert api.http.get("/api/v1/stats", headers=api.auth).json()["events"] == 1


# -- write keys -----------------------------------------------------------------------------


def test_write_key_as_basic_user_or_in_the_body(api: ApiClient) -> None:
    as_user = send(api, "/v1/track", msg("track", "k1", userId="u-1", event="A"))
    assert as_user.status_code == 200, as_user.text

    no_auth = {"Content-Type": "application/json"}
    single = msg("track", "k2", userId="u-1", event="B", writeKey=api.write_key)
    in_body = api.http.post("/v1/track", content=json.dumps(single), headers=no_auth)
    assert in_body.status_code == 200, in_body.text

    batch = {"writeKey": api.write_key, "batch": [msg("page", "k3", anonymousId="a", name="P")]}
    batch_in_body = api.http.post("/v1/batch", content=json.dumps(batch), headers=no_auth)
    assert batch_in_body.status_code == 200, batch_in_body.text
    assert batch_in_body.json()["accepted"] == 1

    assert stored_ids(api) == ["k1", "k2", "k3"]


def test_missing_wrong_and_revoked_write_keys_get_401(api: ApiClient) -> None:
    track = msg("track", "denied", userId="u-1", event="A")
    batch = {"batch": [track]}
    plain = {"Content-Type": "application/json"}
    attempts: list[tuple[str, Any, dict[str, str]]] = [
        ("/v1/track", track, plain),
        ("/v1/batch", batch, plain),
        ("/v1/track", track, basic("cxw_not-a-real-key")),
        ("/v1/batch", batch, basic("cxw_not-a-real-key")),
        ("/v1/track", {**track, "writeKey": "cxw_wrong"}, plain),
        ("/v1/batch", {**batch, "writeKey": "cxw_wrong"}, plain),
        # A secret key is not a write key.
        ("/v1/track", track, basic(api.secret_key)),
        ("/v1/identify", {"userId": "u-1"}, {"Authorization": f"Bearer {api.write_key}"}),
    ]
    for path, body, headers in attempts:
        response = api.http.post(path, content=json.dumps(body), headers=headers)
        assert response.status_code == 401, (path, headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"

    created = api.http.post(
        "/api/v1/keys", json={"kind": "write", "name": "mobile"}, headers=api.auth
    ).json()
    key = created["key"]
    ok = send(api, "/v1/track", msg("track", "before-revoke", userId="u-1", event="A"))
    assert ok.status_code == 200
    with_new_key = msg("track", "new-key", userId="u-1", event="A")
    assert send(api, "/v1/track", with_new_key, **basic(key)).status_code == 200

    state = api.http.app.state.cxloop  # type: ignore[attr-defined]
    with session_scope(state.project.sessions) as session:
        revoke_key(session, created["id"])
    state.keys.entries.clear()  # skip the few seconds a verified key stays cached

    after = msg("track", "after", userId="u-1", event="A")
    assert send(api, "/v1/track", after, **basic(key)).status_code == 401
    assert send(api, "/v1/track", {**after, "writeKey": key}, Authorization="").status_code == 401
    revoked_batch = {"batch": [msg("page", "p", anonymousId="a")]}
    assert send(api, "/v1/batch", revoked_batch, **basic(key)).status_code == 401
    # The other write key still works; nothing refused was stored.
    assert send(api, "/v1/track", msg("track", "still-ok", userId="u-1", event="A")).is_success
    assert stored_ids(api) == ["before-revoke", "new-key", "still-ok"]


# -- batch envelope --------------------------------------------------------------------------


def test_batch_context_and_integrations_merge_into_each_message(api: ApiClient) -> None:
    body = {
        "context": {"library": {"name": "analytics-python"}, "ip": "10.0.0.1", "locale": "fr"},
        "integrations": {"All": False, "Mixpanel": True},
        "batch": [
            msg(
                "track",
                "own",
                userId="u-1",
                event="A",
                context={"ip": "10.9.9.9", "page": {"path": "/x"}},
                integrations={"Mixpanel": False, "Amplitude": True},
            ),
            msg("track", "bare", 1, userId="u-1", event="B"),
        ],
    }
    response = send(api, "/v1/batch", body)
    assert response.status_code == 200, response.text

    own = event_row(api, "own")
    assert own["context"] == {
        "library": {"name": "analytics-python"},
        "ip": "10.9.9.9",
        "locale": "fr",
        "page": {"path": "/x"},
    }
    assert own["integrations"] == {"All": False, "Mixpanel": False, "Amplitude": True}
    bare = event_row(api, "bare")
    assert bare["context"] == body["context"]
    assert bare["integrations"] == body["integrations"]
    by_api = {e["message_id"]: e["context"] for e in stored(api)}
    assert by_api["own"]["ip"] == "10.9.9.9"
    assert by_api["bare"]["ip"] == "10.0.0.1"


def test_channel_comes_from_properties_then_context_then_the_message(api: ApiClient) -> None:
    body = {
        "context": {"channel": "batch-ctx"},
        "batch": [
            msg("track", "ch-props", userId="u-1", event="A", properties={"channel": " store "}),
            msg("track", "ch-ctx", userId="u-1", event="A", context={"channel": "phone"}),
            msg("track", "ch-batch", userId="u-1", event="A", properties={"sku": "channel"}),
            msg("track", "ch-top", userId="u-1", event="A", channel="server", context={}),
        ],
    }
    assert send(api, "/v1/batch", body).status_code == 200
    bare = {"batch": [msg("track", "ch-none", userId="u-1", event="A", channel=" ")]}
    assert send(api, "/v1/batch", bare).status_code == 200
    channels = {e["message_id"]: e["channel"] for e in stored(api)}
    assert channels == {
        "ch-props": "store",
        "ch-ctx": "phone",
        "ch-batch": "batch-ctx",
        "ch-top": "batch-ctx",
        "ch-none": None,
    }


# -- idempotency ----------------------------------------------------------------------------


def test_a_message_id_is_stored_once(api: ApiClient) -> None:
    first = msg("track", "dup-1", userId="u-1", event="Order Completed", properties={"n": 1})
    again = {**first, "properties": {"n": 2}}
    assert send(api, "/v1/track", first).status_code == 200
    assert send(api, "/v1/track", again).status_code == 200
    assert send(api, "/v1/batch", {"batch": [again]}).status_code == 200

    twice = msg("page", "dup-2", 5, anonymousId="anon-1", name="Pricing")
    response = send(api, "/v1/batch", {"batch": [twice, twice, {**twice, "messageId": "p3"}]})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == []

    events = stored(api)
    assert sorted(e["message_id"] for e in events) == ["dup-1", "dup-2", "p3"]
    assert next(e for e in events if e["message_id"] == "dup-1")["properties"] == {"n": 1}
    stats = api.http.get("/api/v1/stats", headers=api.auth).json()
    assert stats["events"] == 3
    assert stats["customers"] == 2


# -- clock skew -----------------------------------------------------------------------------


def test_timestamps_are_corrected_by_sent_at(api: ApiClient) -> None:
    """A device whose clock is hours off: stored = receivedAt - (sentAt - timestamp)."""
    skew = timedelta(hours=3, minutes=17)
    tolerance = timedelta(seconds=5)

    before = datetime.now(UTC)

    def device(ago: timedelta) -> str:
        # One reading of the clock for every field: the check below allows 1 ms.
        return (before + skew - ago).isoformat()

    single = {"userId": "u-1", "event": "A", "messageId": "s1"}
    single |= {"timestamp": device(timedelta(minutes=10)), "sentAt": device(timedelta(0))}
    assert send(api, "/v1/track", single).status_code == 200
    batch = {
        "sentAt": device(timedelta(0)),
        "batch": [
            # Batch-level sentAt applies ...
            msg("track", "b1", userId="u-1", event="B", timestamp=device(timedelta(hours=2))),
            # ... unless the message has its own.
            msg(
                "track",
                "b2",
                userId="u-1",
                event="C",
                timestamp=(before - timedelta(days=1)).isoformat(),
                sentAt=(before - timedelta(days=1) + timedelta(minutes=1)).isoformat(),
            ),
        ],
    }
    assert send(api, "/v1/batch", batch).status_code == 200
    # Without any sentAt the timestamp is kept as sent.
    assert send(api, "/v1/track", msg("track", "n1", userId="u-1", event="D")).status_code == 200
    after = datetime.now(UTC)

    events = {e["message_id"]: e for e in stored(api)}
    expected = {"s1": timedelta(minutes=10), "b1": timedelta(hours=2), "b2": timedelta(minutes=1)}
    for mid, ago in expected.items():
        ts = parse(events[mid]["timestamp"])
        received = parse(events[mid]["received_at"])
        assert before - ago - tolerance <= ts <= after - ago + tolerance, (mid, ts)
        assert abs(ts - (received - ago)) <= timedelta(milliseconds=1), mid
    assert parse(events["n1"]["timestamp"]) == T0


# -- sizes, encodings, malformed bodies --------------------------------------------------------


def test_size_limits(api: ApiClient) -> None:
    big = msg("track", "big", userId="u-1", event="A", properties={"pad": "x" * (33 * KB)})
    response = send(api, "/v1/track", big)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"

    # The limit applies to the decoded body, whatever the compression.
    packed = gzip.compress(json.dumps(big).encode())
    assert len(packed) < 32 * KB
    gz = api.http.post(
        "/v1/track", content=packed, headers={**basic(api.write_key), "Content-Encoding": "gzip"}
    )
    assert gz.status_code == 413, gz.text

    small = [
        msg("track", f"m{i}", i, userId="u-1", event="A", properties={"pad": "y" * (20 * KB)})
        for i in range(26)
    ]
    assert len(json.dumps({"batch": small})) > 500 * KB
    response = send(api, "/v1/batch", {"batch": small})
    assert response.status_code == 413, response.text

    mixed = [msg("track", "ok-0", userId="u-1", event="A"), big, msg("page", "ok-2", name="P")]
    mixed[2]["anonymousId"] = "anon-1"
    response = send(api, "/v1/batch", {"batch": mixed})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(1, "body")]
    assert "32 KB" in body["rejected"][0]["reason"]
    assert stored_ids(api) == ["ok-0", "ok-2"]
    assert [(r["batch_index"], r["field"]) for r in rejected(api)] == [(1, "body")]


def test_gzip_encoded_bodies(api: ApiClient) -> None:
    def gz(path: str, body: Any) -> httpx.Response:
        return api.http.post(
            path,
            content=gzip.compress(json.dumps(body).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    single = msg("track", "gz-1", userId="u-1", event="A", writeKey=api.write_key)
    assert gz("/v1/track", single).status_code == 200
    batch = {"writeKey": api.write_key, "batch": [msg("identify", "gz-2", userId="u-2")]}
    response = gz("/v1/batch", batch)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert stored_ids(api) == ["gz-1", "gz-2"]

    broken = api.http.post(
        "/v1/track",
        content=b"this is not gzip",
        headers={**basic(api.write_key), "Content-Encoding": "gzip"},
    )
    assert broken.status_code == 400, broken.text


@pytest.mark.parametrize("path", ["/v1/track", "/v1/identify", "/v1/batch", "/v1/import"])
def test_malformed_json_is_400(api: ApiClient, path: str) -> None:
    for raw in (b'{"userId": "u-1", "event": ', b"not json at all", b"[1, 2]"):
        response = api.http.post(path, content=raw, headers=basic(api.write_key))
        assert response.status_code == 400, (raw, response.text)
        assert response.json()["success"] is False
    if path in ("/v1/batch", "/v1/import"):
        response = send(api, path, {"messages": [msg("track", "x", userId="u", event="A")]})
        assert response.status_code == 400
        assert response.json()["error"]["field"] == "batch"
    assert stored(api) == []


# -- invalid messages ------------------------------------------------------------------------


def test_batch_stores_valid_messages_and_reports_each_invalid_one(api: ApiClient) -> None:
    batch = [
        msg("track", "v0", userId="u-1", event="Signed Up"),
        msg("track", "x1", userId="u-1"),  # no event
        msg("track", "x2", event="Signed Up"),  # neither userId nor anonymousId
        msg("track", "x3", userId={"id": 7}, event="Signed Up"),  # wrong type
        msg("purchase", "x4", userId="u-1"),  # unknown type
        msg("alias", "x5", userId="u-1"),  # alias without previousId
        {**msg("page", "x6", userId="u-1"), "timestamp": "last tuesday"},
        msg("identify", "v7", userId="u-1", traits={"plan": "pro"}),
        {"messageId": "x8", "userId": "u-1", "event": "A"},  # no type
        msg("group", "x9", userId="u-1"),  # group without groupId
    ]
    response = send(api, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    expected = [
        (1, "event"),
        (2, "userId"),
        (3, "userId"),
        (4, "type"),
        (5, "previousId"),
        (6, "timestamp"),
        (8, "type"),
        (9, "groupId"),
    ]
    assert [(r["index"], r["field"]) for r in body["rejected"]] == expected
    assert all(set(r) == {"index", "field", "reason"} and r["reason"] for r in body["rejected"])
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "purchase" in reasons[4]
    assert "ISO 8601" in reasons[6]
    assert stored_ids(api) == ["v0", "v7"]

    kept = rejected(api)
    assert sorted((r["batch_index"], r["field"]) for r in kept) == expected
    for row in kept:
        assert json.loads(row["payload"])["messageId"] == f"x{row['batch_index']}"
        assert row["source"] == "tests"
    stats = api.http.get("/api/v1/stats", headers=api.auth).json()
    assert stats["rejected_messages"] == len(expected)


def test_an_invalid_single_message_is_400_naming_the_field(api: ApiClient) -> None:
    cases = [
        ("/v1/track", {"userId": "u-1", "messageId": "t"}, "event"),
        ("/v1/track", {"event": "A", "messageId": "t"}, "userId"),
        ("/v1/identify", {"userId": ["u-1"], "messageId": "t"}, "userId"),
        ("/v1/alias", {"userId": "u-1", "messageId": "t"}, "previousId"),
        ("/v1/page", {"anonymousId": "a", "timestamp": "soon"}, "timestamp"),
    ]
    for path, body, field in cases:
        response = send(api, path, body)
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["field"] == field, (path, error)
        assert error["message"].startswith(f"{field}: ")
    assert stored(api) == []
    assert sorted(r["field"] for r in rejected(api)) == sorted(f for _, _, f in cases)


def test_a_bad_typed_trait_is_kept_as_a_free_trait_with_a_warning(api: ApiClient) -> None:
    traits = {"email": "ann@example.com", "birth_year": "soon", "plan": "pro"}
    response = send(api, "/v1/identify", msg("identify", "i1", userId="u-ann", traits=traits))
    assert response.status_code == 200, response.text
    warnings = response.json()["warnings"]
    assert [(w["index"], w["field"]) for w in warnings] == [(0, "traits.birth_year")]
    assert "soon" in warnings[0]["reason"]

    customer = api.http.get("/api/v1/customers/u-ann", headers=api.auth).json()
    assert customer["birth_year"] is None
    assert customer["email"] == "ann@example.com"
    assert customer["traits"] == {"birth_year": "soon", "plan": "pro"}

    # In a batch the warning names the message's own position, duplicates included.
    batch = [
        msg("track", "t0", userId="u-bo", event="A"),
        msg("track", "t0", userId="u-bo", event="A"),
        msg("identify", "i2", 1, userId="u-bo", traits={"birth_year": "soon", "gender": "M"}),
    ]
    response = send(api, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    assert [(w["index"], w["field"]) for w in response.json()["warnings"]] == [
        (2, "traits.birth_year")
    ]
    bo = api.http.get("/api/v1/customers/u-bo", headers=api.auth).json()
    assert (bo["gender"], bo["birth_year"], bo["traits"]) == ("male", None, {"birth_year": "soon"})


def test_an_identify_that_changes_nothing_writes_nothing(api: ApiClient) -> None:
    """Browsers identify on every page load with the same traits; only a change is written,
    and a value of another JSON type (true for 1) is a change."""
    engine = api.http.app.state.cxloop.project.engine  # type: ignore[attr-defined]

    def profile() -> tuple[Any, ...]:
        with engine.connect() as conn:
            row = conn.execute(
                select(Customer.updated_at, Customer.city, Customer.traits).where(
                    Customer.id
                    == api.http.get("/api/v1/customers/u-cy", headers=api.auth).json()["id"]
                )
            ).one()
        return tuple(row)

    traits = {"city": "Utrecht", "plan": 1, "seats": 3}
    assert (
        send(api, "/v1/identify", msg("identify", "c1", userId="u-cy", traits=traits)).status_code
        == 200
    )
    first = profile()
    assert first[1:] == ("Utrecht", {"plan": 1, "seats": 3})
    again = msg("identify", "c2", 5, userId="u-cy", traits=dict(reversed(traits.items())))
    assert send(api, "/v1/identify", again).status_code == 200
    assert profile() == first  # same values in another order: not even updated_at moved
    assert len(stored(api, customer="u-cy")) == 2  # the identify itself is still an event

    changed = msg("identify", "c3", 10, userId="u-cy", traits={**traits, "plan": True})
    assert send(api, "/v1/identify", changed).status_code == 200
    after = profile()
    assert after[2] == {"plan": True, "seats": 3}
    assert after[0] > first[0]
    moved = msg("identify", "c4", 15, userId="u-cy", traits={"city": "Leiden"})
    assert send(api, "/v1/identify", moved).status_code == 200
    assert profile()[1:] == ("Leiden", {"plan": True, "seats": 3})


def test_nul_characters_are_refused_on_every_backend(api: ApiClient) -> None:
    """PostgreSQL cannot keep NUL in text or JSON; every backend refuses it up front, so an
    acknowledged message is always one every store can hold."""
    batch = [
        msg("track", "n0", userId="u\u0000x", event="E"),
        msg("track", "n1", userId="u", event="E\u0000"),
        msg("track", "n2", userId="u", event="E", properties={"note": "a\u0000b"}),
        msg("identify", "n3", userId="u", traits={"nick": "\u0000"}),
        msg("track", "n4", userId="u", event="E", properties={"note": "a literal \\u0000"}),
    ]
    response = send(api, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (0, "userId"), (1, "event"), (2, "properties"), (3, "traits"),
    ]  # fmt: skip
    assert all("NUL" in r["reason"] for r in body["rejected"])
    assert stored_ids(api) == ["n4"]
    assert stored(api)[0]["properties"] == {"note": "a literal \\u0000"}
