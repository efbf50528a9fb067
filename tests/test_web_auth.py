"""Sign-in, sessions, CSRF, rate limiting and permissions of the web app, over HTTP and
in a real browser; and the overview's figures against the API's."""

from __future__ import annotations

from contextlib import closing
from typing import Any

import httpx
import pytest

from tests.site import PASSWORD, Site, screenshot, sign_in


def _client(site: Site) -> httpx.Client:
    return httpx.Client(base_url=site.url, follow_redirects=False, timeout=30)


def _signed_in(site: Site, role: str) -> tuple[httpx.Client, str]:
    """A client with a session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=site.url, follow_redirects=False, timeout=30)
    answer = client.post("/login", data={"email": site.email(role), "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    page = client.get("/")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client, csrf


def test_pages_send_a_stranger_to_sign_in_and_back(site: Site, browser_page: Any) -> None:
    page = browser_page
    page.goto(f"{site.url}/?segment=channel&value=web")
    assert "/login?next=" in page.url
    page.get_by_label("E-mail").fill(site.email("analyst"))
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That e-mail and password")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/?segment=channel&value=web")
    screenshot(page, "login-then-overview")


def test_cookie_is_http_only_and_same_site_and_sign_out_ends_the_session(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    cookie = next(c for c in page.context.cookies() if c["name"] == "cxloop_session")
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{site.url}/login")
    # the old token is gone on the server too, not only in this browser
    with _client(site) as client:
        client.cookies.set("cxloop_session", cookie["value"])
        assert client.get("/").status_code == 303
        assert client.get("/api/v1/stats").status_code == 401


def test_overview_shows_the_apis_figures(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    api = httpx.get(
        f"{site.url}/api/v1/overview",
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    ).json()
    figures = page.get_by_test_id("figures")
    text = figures.inner_text()
    assert f"{api['customers']:,}" in text
    assert f"{api['nps']['nps']:+.1f}" in text
    assert f"± {api['nps']['margin_of_error']:.1f}" in text
    assert f"{api['lifecycle']['conversion_rate'] * 100:.1f} %" in text
    screenshot(page, "overview")
    # the same with a segment filter, chosen in the form
    page.get_by_label("Segment").select_option("channel")
    page.get_by_label("is", exact=True).fill("web")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/?*value=web*")
    segment = httpx.get(
        f"{site.url}/api/v1/overview",
        params={"where": "channel=web", "model": api["lifecycle"]["model"]},
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    ).json()
    assert segment["customers"] < api["customers"]
    assert f"{segment['customers']:,}" in page.get_by_test_id("figures").inner_text()


def test_the_api_accepts_a_session_but_changes_need_its_csrf_token(site: Site) -> None:
    client, csrf = _signed_in(site, "admin")
    with closing(client):
        assert client.get("/api/v1/stats").status_code == 200
        body = {"kind": "secret", "name": "from the browser"}
        refused = client.post("/api/v1/keys", json=body)
        assert refused.status_code == 403
        assert "x-csrf-token" in refused.json()["error"]["message"]
        made = client.post("/api/v1/keys", json=body, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        client.delete(f"/api/v1/keys/{made.json()['id']}", headers={"X-CSRF-Token": csrf})


@pytest.mark.parametrize(
    ("role", "path", "allowed"),
    [
        ("member", "/api/v1/keys", False),
        ("analyst", "/api/v1/keys", False),
        ("admin", "/api/v1/keys", True),
    ],
)
def test_roles_are_checked_on_the_api(site: Site, role: str, path: str, allowed: bool) -> None:
    client, _csrf = _signed_in(site, role)
    with closing(client):
        answer = client.get(path)
        assert (answer.status_code == 200) is allowed, answer.text
        if not allowed:
            assert answer.status_code == 403
            assert answer.json()["error"]["code"] == "forbidden"


def test_a_member_works_only_its_own_departments_follow_ups(site: Site) -> None:
    client, csrf = _signed_in(site, "member")
    headers = {"X-CSRF-Token": csrf}
    with closing(client):
        items = client.get("/api/v1/followups", params={"status": "open", "limit": 200}).json()
        mine = next(f for f in items if f["department"] == "customer service")
        other = next(f for f in items if f["department"] not in (None, "customer service"))
        refused = client.patch(
            f"/api/v1/followups/{other['id']}", json={"status": "in_progress"}, headers=headers
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["message"].startswith("department:")
        done = client.patch(
            f"/api/v1/followups/{mine['id']}", json={"status": "in_progress"}, headers=headers
        )
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "in_progress"


def test_failed_sign_ins_are_rate_limited(site: Site) -> None:
    with _client(site) as client:
        email = "nobody-here@site.example.com"
        codes = [
            client.post("/login", data={"email": email, "password": f"guess {n}"}).status_code
            for n in range(6)
        ]
        assert codes[:5] == [401] * 5
        assert codes[5] == 429
        assert (
            "Too many failed sign-ins"
            in client.post("/login", data={"email": email, "password": "again"}).text
        )


def test_sign_in_form_names_the_missing_fields_and_never_leaves_the_site(site: Site) -> None:
    with _client(site) as client:
        empty = client.post("/login", data={"email": "", "password": ""})
        assert empty.status_code == 400
        assert "Enter your e-mail address." in empty.text
        assert "Enter your password." in empty.text
        away = client.post(
            "/login",
            data={"email": site.email("admin"), "password": PASSWORD, "next": "//evil.example"},
        )
        assert away.status_code == 303
        assert away.headers["location"] == "/"


def test_pages_carry_security_headers(site: Site) -> None:
    with _client(site) as client:
        page = client.get("/login")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
