"""The official Segment Python client against a real `cxloop serve`, read back over REST.

Every call goes through the client library unchanged (identify, track, page, screen, group,
alias), once message by message (sync mode) and once batched by its consumer thread; the
stored result must be the same: anonymous history on the identified customer, the alias
merged, traits split into typed profile fields and free traits, the client's context kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics import client as segment_client
from segment.analytics import consumer as segment_consumer
from segment.analytics.version import VERSION as CLIENT_VERSION

from tests.conftest import ServerProcess, make_keys

pytestmark = pytest.mark.slow

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Rest:
    """The REST API of the server under test, with a secret key."""

    def __init__(self, url: str, secret_key: str) -> None:
        self.http = httpx.Client(
            base_url=f"{url}/api/v1",
            headers={"Authorization": f"Bearer {secret_key}"},
            timeout=30,
        )

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def status(self, path: str) -> int:
        return self.http.get(path).status_code

    def events(self, customer: str) -> dict[str, dict[str, Any]]:
        page = self.get("/events", customer=customer, limit=1000)
        assert page["total"] == len(page["items"])
        return {e["message_id"]: e for e in page["items"]}

    def close(self) -> None:
        self.http.close()


STEPS = (
    "legacy_identify",
    "legacy_order",
    "anon_page",
    "anon_track",
    "identify",
    "signed_up",
    "screen",
    "group",
    "alias",
    "order",
)


def send_story(client: Client, ids: dict[str, str]) -> dict[str, str]:
    """A visitor browses anonymously, signs up, and an old account is aliased to them.

    Returns the message id of each step; the ids are set by the test so that they can be
    looked up afterwards.
    """
    mids = {step: f"{ids['run']}-{step}" for step in STEPS}
    web = {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "locale": "nl-NL"}
    anon, user, legacy = ids["anon"], ids["user"], ids["legacy"]

    # 1. The old account, identified under a legacy user id on another device.
    client.identify(
        user_id=legacy,
        traits={"city": "Utrecht", "plan": "starter", "newsletter": True},
        timestamp=at(0),
        message_id=mids["legacy_identify"],
    )
    client.track(
        user_id=legacy,
        event="Order Completed",
        properties={"order_id": "L-1", "revenue": 42.5, "currency": "EUR"},
        timestamp=at(1),
        message_id=mids["legacy_order"],
    )
    # 2. Anonymous browsing on the web.
    client.page(
        anonymous_id=anon,
        category="Docs",
        name="Pricing",
        properties={"path": "/pricing", "url": "https://example.com/pricing", "referrer": ""},
        context={**web, "channel": "web"},
        timestamp=at(10),
        message_id=mids["anon_page"],
    )
    client.track(
        anonymous_id=anon,
        event="Product Viewed",
        properties={"product_id": "sku-9", "price": 19.99, "tags": ["new", "sale"]},
        context=dict(web),
        timestamp=at(11),
        message_id=mids["anon_track"],
    )
    # 3. Sign-up: identify links the anonymous id and sets the profile.
    client.identify(
        user_id=user,
        anonymous_id=anon,
        traits={
            "email": "Ada.Lovelace@Example.com",
            "gender": "F",
            "birth_year": 1988,
            "firstName": "Ada",
            "lastName": "Lovelace",
            "plan": "pro",
            "seats": 5,
            "beta": True,
        },
        context=dict(web),
        timestamp=at(12),
        message_id=mids["identify"],
    )
    client.track(
        user_id=user,
        event="Signed Up",
        properties={"method": "email", "trial_days": 14},
        timestamp=at(13),
        message_id=mids["signed_up"],
    )
    # 4. The app: a screen view and the company the user belongs to.
    client.screen(
        user_id=user,
        name="Dashboard",
        properties={"tab": "overview"},
        context={"device": {"type": "ios", "model": "iPhone15,2"}, "os": {"name": "iOS"}},
        timestamp=at(14),
        message_id=mids["screen"],
    )
    client.group(
        user_id=user,
        group_id=ids["group"],
        traits={"name": "Analytical Engines Ltd", "employees": 40},
        timestamp=at(15),
        message_id=mids["group"],
    )
    # 5. Support finds the old account and aliases it to the new user.
    client.alias(
        previous_id=legacy,
        user_id=user,
        timestamp=at(16),
        message_id=mids["alias"],
    )
    client.track(
        user_id=user,
        event="Order Completed",
        properties={"order_id": "N-2", "revenue": 99.0, "currency": "EUR", "coupon": None},
        timestamp=at(17),
        message_id=mids["order"],
    )
    return mids


def _ids() -> dict[str, str]:
    run = uuid.uuid4().hex[:10]
    return {
        "run": run,
        "anon": f"anon-{run}",
        "user": f"user-{run}",
        "legacy": f"legacy-{run}",
        "group": f"org-{run}",
    }


@pytest.mark.parametrize("mode", ["sync", "batched"])
def test_segment_client_story_is_stored(
    server: ServerProcess, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_key, secret_key = make_keys(server.settings)
    # Which request carried which message: sync mode posts from the client module, the
    # consumer thread from its own; both are wrapped, the real function does the work.
    requests: list[list[str]] = []
    for module in (segment_client, segment_consumer):
        monkeypatch.setattr(module, "post", _recording(module.post, requests))
    errors: list[tuple[Exception, list[dict[str, Any]]]] = []
    client = Client(
        write_key,
        host=server.url,
        sync_mode=mode == "sync",
        upload_size=100,
        upload_interval=0.2,
        max_retries=3,
        on_error=lambda exc, batch: errors.append((exc, batch)),
    )
    ids = _ids()
    try:
        mids = send_story(client, ids)
    finally:
        if mode == "batched":
            client.shutdown()
    assert errors == []
    sent = [mid for batch in requests for mid in batch]
    assert sorted(sent) == sorted(mids.values())
    if mode == "sync":
        assert len(requests) == len(STEPS)
    request_of = {mid: n for n, batch in enumerate(requests) for mid in batch}
    # The alias merges a customer on record only if the legacy account was stored by an
    # earlier request; in the same batch both resolve to one new customer in one commit.
    merge_on_record = request_of[mids["legacy_identify"]] < request_of[mids["alias"]]

    rest = Rest(server.url, secret_key)
    try:
        _check_story(rest, ids, mids, merge_on_record=merge_on_record)
    finally:
        rest.close()


def _recording(real: Callable[..., Any], requests: list[list[str]]) -> Callable[..., Any]:
    def post(*args: Any, **kwargs: Any) -> Any:
        response = real(*args, **kwargs)
        requests.append([m["messageId"] for m in kwargs["batch"]])
        return response

    return post


def _check_story(
    rest: Rest, ids: dict[str, str], mids: dict[str, str], *, merge_on_record: bool
) -> None:
    user, anon, legacy = ids["user"], ids["anon"], ids["legacy"]

    # One customer, whichever identity it is looked up by.
    customer = rest.get(f"/customers/{user}", timeline=100)
    for ref in (anon, legacy, "ada.lovelace@example.com", str(customer["id"])):
        assert rest.get(f"/customers/{ref}", timeline=0)["id"] == customer["id"], ref
    assert rest.status(f"/customers/nobody-{ids['run']}") == 404

    # Identities: the user id, the linked anonymous id, the aliased id and the e-mail.
    identities = {(i["kind"], i["value"]) for i in customer["identities"]}
    assert identities >= {
        ("user_id", user),
        ("anonymous_id", anon),
        ("user_id", legacy),
        ("email", "ada.lovelace@example.com"),
    }
    assert customer["user_id"] in (user, legacy)

    # The alias merged the legacy customer into this one, and its events moved.
    merges = customer["merged_from"]
    if not merge_on_record:
        assert merges == []
    else:
        assert [m["reason"] for m in merges] == ["alias"]
        assert merges[0]["message_id"] == mids["alias"]
        assert merges[0]["into_customer_id"] == customer["id"]
        assert merges[0]["events_moved"] is True
        assert f"user_id:{legacy}" in merges[0]["identities"]

    # Traits: typed fields become columns, the rest stay free traits.
    assert customer["email"] == "ada.lovelace@example.com"
    assert customer["gender"] == "female"
    assert customer["birth_year"] == 1988
    assert customer["name"] == "Ada Lovelace"
    assert customer["traits"]["plan"] == "pro"  # the survivor's value wins over the legacy one
    assert customer["traits"]["seats"] == 5
    assert customer["traits"]["beta"] is True
    assert customer["traits"]["firstName"] == "Ada"
    assert customer["city"] == "Utrecht"  # a gap filled from the aliased customer
    assert customer["traits"]["newsletter"] is True
    for typed in ("email", "gender", "birth_year"):
        assert typed not in customer["traits"]
    # The group call's traits describe the company, not the person.
    assert customer["name"] != "Analytical Engines Ltd"
    assert "employees" not in customer["traits"]

    # Every message is an event of this customer: the anonymous history and the legacy
    # account's events included, each exactly once.
    events = rest.events(user)
    assert set(events) == set(mids.values())
    assert customer["event_count"] == len(mids)
    assert {e["message_id"] for e in customer["timeline"]} == set(mids.values())
    assert {e["customer_id"] for e in events.values()} == {customer["id"]}
    assert rest.events(anon).keys() == events.keys()
    assert rest.events(legacy).keys() == events.keys()

    kinds = {step: events[mid]["type"] for step, mid in mids.items()}
    assert kinds == {
        "legacy_identify": "identify",
        "legacy_order": "track",
        "anon_page": "page",
        "anon_track": "track",
        "identify": "identify",
        "signed_up": "track",
        "screen": "screen",
        "group": "group",
        "alias": "alias",
        "order": "track",
    }

    page = events[mids["anon_page"]]
    assert page["name"] == "Pricing"
    assert page["anonymous_id"] == anon
    assert page["user_id"] is None
    assert page["properties"]["path"] == "/pricing"
    assert page["channel"] == "web"

    viewed = events[mids["anon_track"]]
    assert viewed["event"] == "Product Viewed"
    assert viewed["properties"] == {"product_id": "sku-9", "price": 19.99, "tags": ["new", "sale"]}
    assert viewed["anonymous_id"] == anon

    identify = events[mids["identify"]]
    assert identify["user_id"] == user
    assert identify["anonymous_id"] == anon
    assert identify["traits"]["email"] == "Ada.Lovelace@Example.com"  # the event as sent
    assert identify["traits"]["birth_year"] == 1988

    assert events[mids["signed_up"]]["event"] == "Signed Up"
    assert events[mids["signed_up"]]["properties"] == {"method": "email", "trial_days": 14}
    assert events[mids["screen"]]["name"] == "Dashboard"
    assert events[mids["screen"]]["properties"] == {"tab": "overview"}
    assert events[mids["screen"]]["context"]["device"]["model"] == "iPhone15,2"
    assert events[mids["group"]]["traits"] == {"name": "Analytical Engines Ltd", "employees": 40}
    assert events[mids["alias"]]["user_id"] == user
    order = events[mids["order"]]
    assert order["event"] == "Order Completed"
    assert order["properties"]["revenue"] == 99.0
    assert order["properties"]["order_id"] == "N-2"
    legacy_order = events[mids["legacy_order"]]
    assert legacy_order["user_id"] == legacy
    assert legacy_order["properties"] == {"order_id": "L-1", "revenue": 42.5, "currency": "EUR"}

    # The client's context is stored with every message: its library and what we passed.
    for event in events.values():
        assert event["context"]["library"] == {
            "name": "analytics-python",
            "version": CLIENT_VERSION,
        }
        assert event["source"] == "tests"  # the name of the write key
    assert viewed["context"]["ip"] == "203.0.113.7"
    assert viewed["context"]["userAgent"].startswith("Mozilla/5.0")
    assert identify["context"]["locale"] == "nl-NL"

    # The client's timestamps are kept (it sends sentAt, so clock skew is corrected,
    # which on one machine leaves them within a few seconds).
    stamped = datetime.fromisoformat(viewed["timestamp"].replace("Z", "+00:00"))
    assert abs(stamped - at(11)) < timedelta(seconds=60)
    order_ts = datetime.fromisoformat(order["timestamp"].replace("Z", "+00:00"))
    assert order_ts > stamped
    # Last seen is kept to the minute (a batch within a minute of it does not rewrite it).
    assert datetime.fromisoformat(customer["last_seen"]) >= order_ts - timedelta(minutes=1)


def test_segment_client_gzip_and_bad_key(server: ServerProcess) -> None:
    """gzip bodies are accepted; a wrong write key is a 401 the client reports, not stores."""
    write_key, secret_key = make_keys(server.settings)
    ids = _ids()
    errors: list[Exception] = []
    client = Client(
        write_key,
        host=server.url,
        gzip=True,
        upload_interval=0.05,
        on_error=lambda exc, batch: errors.append(exc),
    )
    client.track(
        user_id=ids["user"],
        event="Compressed",
        properties={"padding": "x" * 2000},
        message_id=f"{ids['run']}-gz",
    )
    client.shutdown()
    assert errors == []

    wrong: list[tuple[Exception, list[dict[str, Any]]]] = []
    bad = Client(
        "wk_not_a_key",
        host=server.url,
        upload_interval=0.05,
        max_retries=1,
        on_error=lambda exc, batch: wrong.append((exc, batch)),
    )
    bad.track(user_id=ids["user"], event="Forged", message_id=f"{ids['run']}-forged")
    bad.shutdown()
    assert len(wrong) == 1
    refusal = wrong[0][0]
    assert getattr(refusal, "status", None) == 401
    # the library reads the reason where Segment puts it, instead of logging "unknown"
    assert getattr(refusal, "code", None) == "unauthorized"
    assert "write key is not valid" in getattr(refusal, "message", "")
    assert [m["messageId"] for m in wrong[0][1]] == [f"{ids['run']}-forged"]

    rest = Rest(server.url, secret_key)
    try:
        events = rest.events(ids["user"])
        assert set(events) == {f"{ids['run']}-gz"}
        assert events[f"{ids['run']}-gz"]["properties"]["padding"] == "x" * 2000
    finally:
        rest.close()
