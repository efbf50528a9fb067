"""Tracking from web pages: Segment's analytics.js in a real browser, and the CORS answers
the Tracking API gives a page on another origin."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cxloop.settings import Settings
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys
from tests.site import Site, sign_in

SHOP = "https://shop.example.com"


def body_with_key(api: ApiClient, message: dict[str, Any]) -> str:
    """What analytics.js sends: the write key inside the JSON, sent as text/plain."""
    return json.dumps({**message, "writeKey": api.write_key})


def events_of(api: ApiClient, user: str) -> list[dict[str, Any]]:
    response = api.http.get("/api/v1/events", params={"customer": user}, headers=api.auth)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@pytest.fixture
def shop_only(embedded_settings: Settings) -> Iterator[ApiClient]:
    """A server that lets only the shop's pages send."""
    settings = embedded_settings.model_copy(update={"tracking_origins": f"{SHOP}, https://x.io"})
    write_key, secret_key = make_keys(settings)
    with TestClient(create_app(settings)) as http:
        yield ApiClient(http, write_key, secret_key, settings)


@pytest.fixture
def any_page(embedded_settings: Settings) -> Iterator[ApiClient]:
    write_key, secret_key = make_keys(embedded_settings)
    with TestClient(create_app(embedded_settings)) as http:
        yield ApiClient(http, write_key, secret_key, embedded_settings)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/t", {"type": "track", "userId": "b-1", "event": "Viewed"}),
        ("/v1/i", {"type": "identify", "userId": "b-1", "traits": {"plan": "pro"}}),
        ("/v1/p", {"type": "page", "anonymousId": "a-1", "name": "Home"}),
        ("/v1/s", {"type": "screen", "anonymousId": "a-1", "name": "Home"}),
        ("/v1/g", {"type": "group", "userId": "b-1", "groupId": "acme"}),
        ("/v1/a", {"type": "alias", "userId": "b-1", "previousId": "a-1"}),
    ],
)
def test_the_one_letter_paths_of_analytics_js_store_the_message(
    any_page: ApiClient, path: str, message: dict[str, Any]
) -> None:
    response = any_page.http.post(
        path,
        content=body_with_key(any_page, {**message, "messageId": f"m{path}"}),
        headers={"Content-Type": "text/plain", "Origin": SHOP},
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"
    stats = any_page.http.get("/api/v1/stats", headers=any_page.auth).json()
    assert stats["events"] == 1


def test_a_batch_on_the_b_path_keeps_good_messages_and_reports_bad_ones(
    any_page: ApiClient,
) -> None:
    batch = {
        "writeKey": any_page.write_key,
        "batch": [
            {"type": "track", "userId": "b-2", "event": "Added", "messageId": "b1"},
            {"type": "track", "userId": "b-2", "messageId": "b2"},  # no event name
        ],
    }
    response = any_page.http.post(
        "/v1/b", content=json.dumps(batch), headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200, response.text
    assert [(r["index"], r["field"]) for r in response.json()["rejected"]] == [(1, "event")]
    assert [e["event"] for e in events_of(any_page, "b-2")] == ["Added"]


def test_a_preflight_is_answered_for_any_page_by_default(any_page: ApiClient) -> None:
    response = any_page.http.options(
        "/v1/track",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    assert response.headers["access-control-max-age"] == "86400"


def test_server_clients_get_no_cors_headers(any_page: ApiClient) -> None:
    response = any_page.http.post(
        "/v1/track",
        content=body_with_key(any_page, {"userId": "s-1", "event": "Server Side"}),
    )
    assert response.status_code == 200, response.text
    assert "access-control-allow-origin" not in response.headers
    # and an OPTIONS without Origin is no preflight: the methods are named, nothing stored
    options = any_page.http.options("/v1/batch")
    assert options.status_code == 405
    assert options.headers["allow"] == "POST"


def test_a_listed_origin_is_echoed_and_others_are_refused(shop_only: ApiClient) -> None:
    api = shop_only
    ok = api.http.post(
        "/v1/t",
        content=body_with_key(api, {"userId": "o-1", "event": "From Shop", "messageId": "o1"}),
        headers={"Origin": SHOP, "Content-Type": "text/plain"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.headers["access-control-allow-origin"] == SHOP
    assert "Origin" in ok.headers["vary"]

    refused = api.http.post(
        "/v1/t",
        content=body_with_key(api, {"userId": "o-1", "event": "Elsewhere", "messageId": "o2"}),
        headers={"Origin": "https://evil.example.net", "Content-Type": "text/plain"},
    )
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "origin_not_allowed"
    assert "https://evil.example.net" in error["message"]
    assert "access-control-allow-origin" not in refused.headers
    assert [e["event"] for e in events_of(api, "o-1")] == ["From Shop"]

    preflight = api.http.options(
        "/v1/batch",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 403
    assert preflight.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in preflight.headers
    other_method = api.http.options(
        "/v1/batch", headers={"Origin": SHOP, "Access-Control-Request-Method": "DELETE"}
    )
    assert other_method.status_code == 405
    assert "only POST" in other_method.json()["error"]["message"]


def test_the_rest_api_answers_no_cross_origin_requests(any_page: ApiClient) -> None:
    response = any_page.http.get("/api/v1/stats", headers={**any_page.auth, "Origin": SHOP})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "value", ["https://shop.example.com/", "shop.example.com", "https://a.com/path", "ftp://a"]
)
def test_an_origins_setting_that_is_no_origin_is_refused_by_name(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(home=tmp_path, tracking_origins=value)
    assert "tracking_origins" in str(raised.value)
    assert "is not an origin" in str(raised.value)


def test_origin_settings_are_read_as_a_list(tmp_path: Path) -> None:
    assert Settings(home=tmp_path).tracking_origin_list == ["*"]
    listed = Settings(home=tmp_path, tracking_origins="https://a.com, http://[::1]:8080")
    assert listed.tracking_origin_list == ["https://a.com", "http://[::1]:8080"]
    # spelled as a browser's Origin header spells them
    spelled = Settings(
        home=tmp_path,
        tracking_origins="HTTPS://Shop.Example.com:443, http://a.com:80, http://b.io:443",
    )
    assert spelled.tracking_origin_list == [SHOP, "http://a.com", "http://b.io:443"]


# -- Segment's analytics.js in Debian's chromium ----------------------------------------------


class _ShopPage(BaseHTTPRequestHandler):
    html = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.html)

    def log_message(self, format: str, *args: Any) -> None:
        return


# The shop's page: the snippet the keys page gave, then the shop's own calls, and a fetch
# that needs a preflight (JSON body, basic auth) whose answer the page reads.
SHOP_PAGE = """<!doctype html>
<html><head><title>Shop</title>
{snippet}
</head><body>
<script>
window.done = (async () => {{
  await analytics.identify("{user}", {{ email: "{user}@example.com", plan: "pro" }});
  await analytics.track("Demo Requested", {{ channel: "web" }});
  const answer = await fetch("{server}/v1/track", {{
    method: "POST",
    headers: {{ "Content-Type": "application/json", "Authorization": "Basic " + btoa("{key}:") }},
    body: JSON.stringify({{ userId: "{user}", event: "Read Back", messageId: "{user}-rb" }})
  }});
  return {{ status: answer.status, body: await answer.json() }};
}})();
</script></body></html>
"""


@pytest.fixture
def shop() -> Iterator[tuple[str, type[_ShopPage]]]:
    """A web server on localhost: another origin than cxloop's 127.0.0.1."""
    handler = type("Page", (_ShopPage,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/", handler
    finally:
        server.shutdown()


def test_the_snippet_of_a_new_write_key_tracks_a_website_into_cxloop(
    site: Site, shop: tuple[str, type[_ShopPage]], browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/keys")
    page.get_by_label("Name").fill("website")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("plain-key").input_value()
    snippet = page.get_by_test_id("web-snippet").input_value()
    assert key in snippet and site.url in snippet

    shop_url, handler = shop
    user = f"web-{time.time_ns()}"
    handler.html = SHOP_PAGE.format(snippet=snippet, server=site.url, key=key, user=user).encode()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.clock.install()  # so that the page's timers can be run ahead below
    page.goto(shop_url)
    answer = page.evaluate("window.done")
    assert answer["status"] == 200
    assert answer["body"]["success"] is True, answer
    # The page's visitors contact the shop and cxloop alone: analytics.js would report
    # its own usage metrics every 30 s unless the snippet turns them off.
    page.clock.run_for("02:00")
    page.wait_for_timeout(500)
    elsewhere = [u for u in requested if not u.startswith((shop_url, f"{site.url}/"))]
    assert elsewhere == [] and not [u for u in requested if u.endswith("/v1/m")], requested
    assert f"{site.url}/v1/p" in requested

    auth = {"Authorization": f"Bearer {site.secret_key}"}
    deadline = time.monotonic() + 30
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(events) < 4:
        time.sleep(0.2)
        events = httpx.get(
            f"{site.url}/api/v1/events", params={"customer": user}, headers=auth, timeout=30
        ).json()["items"]
    kinds = sorted((e["type"], e["event"] or e["name"] or "") for e in events)
    assert kinds == [
        ("identify", ""),
        ("page", ""),
        ("track", "Demo Requested"),
        ("track", "Read Back"),
    ], events
    viewed = next(e for e in events if e["type"] == "page")
    assert viewed["context"]["library"]["name"] == "analytics.js"
    assert viewed["context"]["page"]["url"] == shop_url
    # analytics.js sends its anonymous id with every message: it is the customer's now
    assert viewed["anonymous_id"]
    customer = httpx.get(f"{site.url}/api/v1/customers/{user}", headers=auth, timeout=30).json()
    assert customer["email"] == f"{user}@example.com"
    assert {"kind": "anonymous_id", "value": viewed["anonymous_id"]} in customer["identities"]
