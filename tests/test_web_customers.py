"""The customer list and profile in a real browser, checked against the REST API: search
and filters, a profile's stages and unified timeline, notes (escaped), paging, errors
next to their fields, and the 404 page for a customer who is not there."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from cxloop.web.pages.base import MISSING
from tests.site import Site, screenshot, sign_in

OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
# Visible controls that a screen reader could not name.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML.slice(0, 120))"""


def _api(site: Site, path: str, **params: Any) -> Any:
    answer = httpx.get(
        f"{site.url}/api/v1{path}",
        params=params,
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _customer_with_a_case(site: Site) -> dict[str, Any]:
    """A named customer whose timeline's first page has a case beside events and stage
    changes (other tests add answers and notes to the shared demo, which can push a
    customer's stage changes to a later page)."""
    for case in _api(site, "/cases", limit=200):
        found = _api(site, f"/customers/{case['customer_id']}", timeline=0)
        if not (found["name"] and any(s["stage"] for s in found["stages"])):
            continue
        first_page = _api(site, f"/customers/{found['id']}/timeline", limit=50)["items"]
        if {"case", "event", "stage"} <= {item["kind"] for item in first_page}:
            return dict(found)
    raise AssertionError("the demo has no named customer with a case")


def _shown_timeline(page: Any) -> list[tuple[str, str, str]]:
    items = page.locator("[data-testid=timeline] > li")
    return [
        (
            items.nth(i).get_attribute("data-kind"),
            items.nth(i).get_attribute("data-at"),
            " ".join(items.nth(i).locator(".title").inner_text().split()),
        )
        for i in range(items.count())
    ]


def _api_timeline(site: Site, ref: int, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = _api(site, f"/customers/{ref}/timeline", **params)
    return found


def test_search_by_name_then_the_profile_matches_the_api(site: Site, browser_page: Any) -> None:
    page = browser_page
    wanted = _customer_with_a_case(site)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/customers")
    everyone = _api(site, "/customers", limit=1)
    assert page.get_by_test_id("total").inner_text().startswith(f"{everyone['total']:,} customers")
    screenshot(page, "customers")

    page.get_by_label("Search").fill(wanted["name"])
    page.get_by_role("button", name="Find").click()
    page.wait_for_url("**/customers?q=*")
    matches = _api(site, "/customers", search=wanted["name"], limit=50)
    rows = page.locator("table.customer-table tbody tr")
    assert rows.count() == len(matches["items"]) >= 1
    assert page.get_by_test_id("total").inner_text().startswith(f"{matches['total']:,} customer")
    row = rows.filter(has=page.locator(f"a[href='/customers/{wanted['id']}']"))
    cells = row.locator("td")
    assert cells.nth(0).inner_text() == wanted["name"]
    assert cells.nth(1).inner_text() == (wanted["email"] or MISSING)
    assert cells.nth(2).inner_text() == (wanted["country"] or MISSING)
    assert cells.nth(3).inner_text() == (wanted["channel"] or MISSING)
    first_model = wanted["stages"][0]  # the stage column shows the first model's
    assert cells.nth(4).inner_text().strip() == (first_model["stage_name"] or MISSING)
    screenshot(page, "customers-search")

    row.get_by_role("link", name=wanted["name"]).click()
    page.wait_for_url(f"**/customers/{wanted['id']}")
    assert page.get_by_test_id("customer-name").inner_text() == wanted["name"]
    stages = page.get_by_test_id("stages")
    for stage in wanted["stages"]:
        line = stages.locator(f"tr[data-model='{stage['model']}']")
        assert line.locator("th").inner_text() == stage["model_name"]
        if stage["stage"]:
            assert line.locator("td").nth(0).inner_text() == stage["stage_name"]
    profile = page.get_by_test_id("profile").inner_text()
    for field in ("gender", "city", "country", "income_band"):
        if wanted[field]:
            assert wanted[field] in profile
    api = _api_timeline(site, wanted["id"], limit=50)
    shown = _shown_timeline(page)
    assert shown == [(i["kind"], i["at"], " ".join(i["title"].split())) for i in api["items"]]
    assert {"case", "event", "stage"} <= {kind for kind, _, _ in shown}
    screenshot(page, "customer-profile")

    # the next page starts before the oldest item shown, as the API's next_before says
    if api["next_before"]:
        page.get_by_role("link", name="Older →").click()
        page.wait_for_url("**before=*")
        older = _api_timeline(site, wanted["id"], limit=50, before=api["next_before"])
        assert _shown_timeline(page) == [
            (i["kind"], i["at"], " ".join(i["title"].split())) for i in older["items"]
        ]
        page.get_by_role("link", name="Newest").click()
        page.wait_for_url(f"**/customers/{wanted['id']}#timeline")

    # only the kinds asked for
    for box in page.get_by_role("group", name="Show").get_by_role("checkbox").all():
        box.uncheck()
    page.get_by_label("Stage changes").check()
    page.get_by_label("Cases").check()
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**kind=stage*")
    narrowed = _api_timeline(site, wanted["id"], limit=50, kinds="stage,case")
    assert _shown_timeline(page) == [
        (i["kind"], i["at"], " ".join(i["title"].split())) for i in narrowed["items"]
    ]
    assert {kind for kind, _, _ in _shown_timeline(page)} <= {"stage", "case"}


def test_filters_by_field_trait_and_stage(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/customers")
    page.get_by_label("Country").select_option("Spain")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url("**country=Spain*")
    spain = _api(site, "/customers", country="Spain", limit=50)
    assert 0 < spain["total"] < _api(site, "/customers", limit=1)["total"]
    assert page.get_by_test_id("total").inner_text().startswith(f"{spain['total']:,} customer")
    countries = page.locator("table.customer-table tbody tr td:nth-child(3)").all_inner_texts()
    assert set(countries) == {"Spain"}

    page.get_by_label("Trait").fill("plan=basic")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url("**trait=plan*")
    both = _api(site, "/customers", country="Spain", trait="plan=basic", limit=50)
    assert both["total"] < spain["total"]
    assert page.get_by_test_id("total").inner_text().startswith(f"{both['total']:,} customer")

    # a stage: as many customers as the lifecycle API counts in it now
    models = _api(site, "/lifecycle/models")
    model = models[0]
    stage = max(model["stages"], key=lambda s: s["current"])
    page.goto(f"{site.url}/customers")
    page.get_by_label("Stage now").select_option(f"{model['key']}:{stage['key']}")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url("**stage=*")
    assert page.get_by_test_id("total").inner_text().startswith(f"{stage['current']:,} customer")
    column = page.locator("table.customer-table tbody tr td:nth-child(5)").all_inner_texts()
    assert column and {text.strip() for text in column} == {stage["name"]}
    first = page.locator("table.customer-table tbody tr td:nth-child(1) a").first
    ref = first.get_attribute("href").rsplit("/", 1)[1]
    theirs = next(
        s
        for s in _api(site, f"/customers/{ref}", timeline=0)["stages"]
        if s["model"] == model["key"]
    )
    assert theirs["stage"] == stage["key"]
    # fifty a page, and the pager moves on
    if stage["current"] > 50:
        assert len(column) == 50
        page.get_by_role("link", name="Older →").click()
        page.wait_for_url("**offset=50*")
        assert page.locator("table.customer-table tbody tr").count() == min(
            50, stage["current"] - 50
        )
    screenshot(page, "customers-stage")


def test_bad_filters_are_named_next_to_their_field(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/customers")
    page.get_by_label("Trait").fill("plan")
    page.get_by_role("button", name="Find").click()
    page.wait_for_url("**trait=plan*")
    field = page.get_by_label("Trait")
    assert field.get_attribute("aria-invalid") == "true"
    message = page.locator(f"#{field.get_attribute('aria-describedby')}")
    assert "is not NAME=VALUE" in message.inner_text()
    assert field.input_value() == "plan"  # what was typed stays
    answer = page.goto(f"{site.url}/customers?birth_year=nineteen")
    assert answer is not None and answer.status == 422
    assert "is not a year" in page.locator("#err-birth_year").inner_text()
    # nobody matches: the empty state says what to do
    page.goto(f"{site.url}/customers?q=nobody-is-called-{uuid.uuid4().hex}")
    assert "No customer matches these filters" in page.locator(".empty").inner_text()
    assert page.get_by_role("link", name="Show every customer").is_visible()


def test_a_note_appears_on_top_as_text(site: Site, browser_page: Any) -> None:
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    customers = _api(site, "/customers", limit=5, sort="id")["items"]
    target = customers[-1]["id"]
    sign_in(page, site, "member")
    page.goto(f"{site.url}/customers/{target}")

    # an empty note is refused next to the field, nothing stored
    before = _api_timeline(site, target, kinds="note")["items"]
    with page.expect_navigation():
        page.get_by_role("button", name="Add note").click()
    box = page.get_by_label("Add a note")
    assert box.get_attribute("aria-invalid") == "true"
    assert "the note is empty" in page.locator("#err-body").inner_text()
    assert _api_timeline(site, target, kinds="note")["items"] == before

    text = f"<script>alert(1)</script> called back {uuid.uuid4().hex[:8]} & <b>promised</b>"
    assert page.get_by_label("Department").input_value() == "customer service"
    box.fill(text)
    page.get_by_role("button", name="Add note").click()
    page.wait_for_url(f"**/customers/{target}?noted=1*")
    assert page.get_by_role("status").inner_text() == "Your note is on the timeline."
    top = page.locator("[data-testid=timeline] > li").first
    assert top.get_attribute("data-kind") == "note"
    assert top.locator(".note-body").inner_text() == text
    assert top.locator("script, b").count() == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.content()
    assert dialogs == []
    stored = _api_timeline(site, target, limit=1)["items"][0]
    assert stored["kind"] == "note"
    assert stored["body"] == text
    assert stored["author"] == site.email("member")
    assert stored["department"] == "customer service"
    assert top.inner_text().count(site.email("member")) == 1
    screenshot(page, "customer-note")


def test_an_unknown_customer_gets_a_404_page(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    # an e-mail or userId (as the API takes them) leads to the customer's own page
    known = next(c for c in _api(site, "/customers", limit=50)["items"] if c["email"])
    page.goto(f"{site.url}/customers/{known['email']}")
    page.wait_for_url(f"**/customers/{known['id']}")
    assert page.get_by_test_id("customer-name").inner_text() == (
        known["name"] or known["user_id"] or known["email"]
    )
    answer = page.goto(f"{site.url}/customers/987654321")
    assert answer is not None and answer.status == 404
    assert page.get_by_role("heading", name="Customer not found").is_visible()
    screenshot(page, "customer-404")
    # a note for nobody is not stored either
    with httpx.Client(base_url=site.url, timeout=30) as client:
        csrf = _session(client, site)
        posted = client.post("/customers/987654321/notes", data={"csrf_token": csrf, "body": "x"})
        assert posted.status_code == 404


def test_a_note_needs_the_sessions_csrf_token(site: Site) -> None:
    with httpx.Client(base_url=site.url, timeout=30) as client:
        _session(client, site)
        target = _api(site, "/customers", limit=1, sort="id")["items"][0]["id"]
        before = _api_timeline(site, target, kinds="note")["items"]
        refused = client.post(f"/customers/{target}/notes", data={"body": "forged"})
        assert refused.status_code == 403
        assert _api_timeline(site, target, kinds="note")["items"] == before


def _session(client: httpx.Client, site: Site) -> str:
    from tests.site import PASSWORD

    answer = client.post("/login", data={"email": site.email("member"), "password": PASSWORD})
    assert answer.status_code == 303
    text = client.get("/customers").text
    return text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("path", ["/customers", "/customers/{id}"])
def test_customer_pages_fit_a_phone(site: Site, browser_page: Any, path: str) -> None:
    page = browser_page
    ref = _customer_with_a_case(site)["id"]
    sign_in(page, site, "member")
    page.set_viewport_size({"width": 360, "height": 780})
    page.goto(site.url + path.format(id=ref))
    page.wait_for_load_state("networkidle")
    assert page.evaluate(OVERFLOW) <= 1
    assert page.evaluate(UNLABELLED) == []
    name = "phone-customer-profile" if "{id}" in path else "phone-customers-list"
    screenshot(page, name)
