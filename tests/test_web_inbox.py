"""The cases and follow-ups inbox in a real browser, checked against the REST API: the
lists and figures per department, assigning, changing status and resolving with a note,
the note's error next to its field, and the department rule (a member works only its own
department's items: no controls for the others, and a 403 when it posts anyway).

Each test makes its own follow-ups and cases, so the shared site's data stays usable."""

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
MINE = "customer service"  # the member's department


def _headers(site: Site) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.secret_key}"}


def _api(site: Site, path: str, **params: Any) -> Any:
    answer = httpx.get(
        f"{site.url}/api/v1{path}", params=params, headers=_headers(site), timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _other_department(site: Site) -> str:
    names = [d["name"] for d in _api(site, "/departments")]
    return next(n for n in names if n != MINE)


def _customer(site: Site) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in _api(site, "/customers", limit=50)["items"] if c["name"]
    )
    return found


def _new_followup(site: Site, department: str) -> dict[str, Any]:
    customer = _customer(site)
    answer = httpx.post(
        f"{site.url}/api/v1/followups",
        json={
            "customer": str(customer["id"]),
            "summary": f"Call back about the invoice {uuid.uuid4().hex[:8]}",
            "department": department,
        },
        headers=_headers(site),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return {**made, "customer_name": customer["name"]}


def _new_case(site: Site, department: str) -> dict[str, Any]:
    customer = _customer(site)
    answer = httpx.post(
        f"{site.url}/api/v1/cases",
        json={
            "customer": str(customer["id"]),
            "subject": f"Meter not reporting {uuid.uuid4().hex[:8]}",
            "department": department,
        },
        headers=_headers(site),
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


def _find(page: Any, site: Site, query: str, element_id: str) -> Any:
    """Open the inbox with ``query`` and page on until the item is on screen."""
    page.goto(f"{site.url}/inbox?{query}")
    for _ in range(40):
        item = page.locator(f"#{element_id}")
        if item.count():
            return item
        with page.expect_navigation():
            page.get_by_role("link", name="Older →").click()
    raise AssertionError(f"{element_id} is not in the inbox for {query}")


def test_the_member_resolves_its_followup_with_a_note(site: Site, browser_page: Any) -> None:
    page = browser_page
    made = _new_followup(site, MINE)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/inbox")
    # the member's own department is chosen unasked
    assert page.get_by_label("Department", exact=True).input_value() == MINE
    screenshot(page, "inbox")
    item = _find(page, site, "status=open", f"fu{made['id']}-item")
    assert item.get_by_role("link", name=made["customer_name"]).get_attribute("href") == (
        f"/customers/{made['customer_id']}"
    )
    assert made["summary"] in item.inner_text()
    assert item.get_by_test_id("status").inner_text() == "open"

    # done without a note: the service's message, next to the note field
    item.get_by_text("Work on this follow-up").click()
    item.get_by_label("Status").select_option("done")
    with page.expect_navigation():
        item.get_by_role("button", name="Save status").click()
    item = page.locator(f"#fu{made['id']}-item")
    note = item.get_by_label("Resolution note")
    assert note.get_attribute("aria-invalid") == "true"
    error = item.locator(f"#{note.get_attribute('aria-describedby')}")
    assert error.inner_text() == "say what was done before closing the follow-up"
    assert error.is_visible()
    assert item.get_by_label("Status").input_value() == "done"  # what was chosen stays
    assert _api(site, f"/followups/{made['id']}")["status"] == "open"
    screenshot(page, "inbox-note-missing")

    said = "Called her back; <b>refund</b> sent & confirmed"
    note.fill(said)
    item.get_by_role("button", name="Save status").click()
    page.wait_for_url("**saved=followup-*")
    assert page.get_by_role("status").inner_text() == f"Follow-up #{made['id']} saved."
    stored = _api(site, f"/followups/{made['id']}")
    assert stored["status"] == "done"
    assert stored["resolution_note"] == said
    assert stored["closed_at"] is not None
    done = _find(page, site, "status=done", f"fu{made['id']}-item")
    assert done.get_by_test_id("status").inner_text() == "done"
    assert said in done.locator(".resolution").inner_text()
    assert done.locator(".resolution b").count() == 0  # shown as text
    screenshot(page, "inbox-done")


def test_a_member_gets_403_on_another_departments_followup(site: Site, browser_page: Any) -> None:
    page = browser_page
    other = _other_department(site)
    made = _new_followup(site, other)
    sign_in(page, site, "member")
    item = _find(page, site, f"department={other}&status=open", f"fu{made['id']}-item")
    # it may read the item, but gets no controls for it
    assert item.locator("details.work").count() == 0
    assert item.locator("form").count() == 0
    assert f"Only {other} can change this" in item.inner_text()
    # and the server refuses the post made anyway, with the session cookie and CSRF token
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"{site.url}/inbox/followups/{made['id']}",
        form={"csrf_token": csrf, "action": "status", "status": "done", "note": "not mine"},
    )
    assert answer.status == 403
    assert "its own department" in answer.text()
    answer = page.request.post(
        f"{site.url}/inbox/followups/{made['id']}",
        form={"csrf_token": csrf, "action": "assign", "assignee": "me"},
    )
    assert answer.status == 403
    stored = _api(site, f"/followups/{made['id']}")
    assert (stored["status"], stored["assignee"]) == ("open", None)
    # without the token nothing changes either, even on its own department's items
    own = _new_followup(site, MINE)
    answer = page.request.post(
        f"{site.url}/inbox/followups/{own['id']}", form={"action": "assign", "assignee": "me"}
    )
    assert answer.status == 403
    assert _api(site, f"/followups/{own['id']}")["assignee"] is None


def test_an_analyst_works_every_department(site: Site, browser_page: Any) -> None:
    page = browser_page
    other = _other_department(site)
    made = _new_followup(site, other)
    sign_in(page, site, "analyst")
    item = _find(page, site, f"department={other}&status=open", f"fu{made['id']}-item")
    item.get_by_text("Work on this follow-up").click()
    item.get_by_label("Assign to").fill("Analyst Ana")
    item.get_by_role("button", name="Assign", exact=True).click()
    page.wait_for_url("**saved=followup-*")
    assert _api(site, f"/followups/{made['id']}")["assignee"] == "Analyst Ana"


def test_assign_a_case_and_resolve_it(site: Site, browser_page: Any) -> None:
    page = browser_page
    made = _new_case(site, MINE)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/inbox")
    page.get_by_role("link", name="Cases", exact=True).click()
    page.wait_for_url("**tab=cases*")
    item = page.locator(f"#case{made['id']}-item")  # the newest case comes first
    assert made["subject"] in item.inner_text()
    assert item.get_by_test_id("assignee").inner_text() == "nobody"
    screenshot(page, "inbox-cases")

    item.get_by_text("Work on this case").click()
    item.get_by_label("Assign to").fill("")
    with page.expect_navigation():
        item.get_by_role("button", name="Assign", exact=True).click()
    item = page.locator(f"#case{made['id']}-item")
    assert "give the name or e-mail" in item.locator(f"#err-case{made['id']}-assignee").inner_text()

    name = "Kim <kim@site.example.com>"
    item.get_by_label("Assign to").fill(name)
    item.get_by_role("button", name="Assign", exact=True).click()
    page.wait_for_url("**saved=case-*")
    item = page.locator(f"#case{made['id']}-item")
    assert item.get_by_test_id("assignee").inner_text() == name
    assert item.get_by_test_id("status").inner_text() == "in progress"
    stored = _api(site, f"/cases/{made['id']}")
    assert (stored["assignee"], stored["status"]) == (name, "in_progress")

    # given back before anyone answered: nobody has it, and it is open again
    item.get_by_text("Work on this case").click()
    item.get_by_role("button", name="Unassign").click()
    page.wait_for_url("**saved=case-*")
    item = page.locator(f"#case{made['id']}-item")
    assert item.get_by_test_id("assignee").inner_text() == "nobody"
    assert item.get_by_role("button", name="Unassign").count() == 0
    stored = _api(site, f"/cases/{made['id']}")
    assert (stored["assignee"], stored["status"]) == (None, "open")
    item.get_by_text("Work on this case").click()
    item.get_by_label("Assign to").fill(name)
    item.get_by_role("button", name="Assign", exact=True).click()
    page.wait_for_url("**saved=case-*")
    item = page.locator(f"#case{made['id']}-item")

    # resolving needs an outcome; then the case leaves the open list
    item.get_by_text("Work on this case").click()
    with page.expect_navigation():
        item.get_by_role("button", name="Resolve case").click()
    item = page.locator(f"#case{made['id']}-item")
    outcome = item.get_by_label("Outcome")
    assert outcome.get_attribute("aria-invalid") == "true"
    assert "positive or negative" in item.locator(f"#err-case{made['id']}-outcome").inner_text()
    outcome.select_option("positive")
    item.get_by_label("Resolution note").fill("Replaced the meter")
    item.get_by_role("button", name="Resolve case").click()
    page.wait_for_url("**saved=case-*")
    assert page.locator(f"#case{made['id']}-item").count() == 0
    stored = _api(site, f"/cases/{made['id']}")
    assert (stored["status"], stored["outcome"]) == ("resolved", "positive")
    assert stored["resolution_note"] == "Replaced the meter"


def test_the_lists_and_figures_match_the_api(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/inbox?department={MINE}&status=open")
    shown = [
        int(i) for i in page.locator(".items > li").evaluate_all("e => e.map(x => x.dataset.id)")
    ]
    api = _api(site, "/followups", department=MINE, status="open", limit=50)
    assert shown == [f["id"] for f in api]
    page.get_by_label("Overdue only").check()
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**overdue=1*")
    late = _api(site, "/followups", department=MINE, status="open", overdue="true", limit=50)
    shown = [
        int(i) for i in page.locator(".items > li").evaluate_all("e => e.map(x => x.dataset.id)")
    ]
    assert shown == [f["id"] for f in late]
    assert page.locator(".items > li .badge.bad", has_text="overdue").count() == len(late)

    metrics = _api(site, "/followups/metrics")
    mine = next(d for d in metrics["departments"] if d["department"] == MINE)
    figures = page.get_by_test_id("figures").inner_text()
    assert f"Open follow-ups\n{mine['open']:,}" in figures
    assert f"Overdue follow-ups\n{mine['overdue']:,}" in figures
    page.get_by_text("Figures per department").click()  # folded away for one department
    table = page.get_by_test_id("department-metrics")
    row = table.locator(f"tr[data-department='{MINE}'] td")
    assert row.nth(0).inner_text() == f"{mine['open']:,}"
    assert row.nth(1).inner_text() == f"{mine['in_progress']:,}"
    assert row.nth(2).inner_text() == f"{mine['overdue']:,}"
    every = table.locator("tr[data-department='all'] td")
    assert every.nth(0).inner_text() == f"{metrics['open']:,}"
    assert every.nth(2).inner_text() == f"{metrics['overdue']:,}"
    assert every.nth(3).inner_text() == (
        f"{metrics['median_hours_to_close']:,.1f}" if metrics["median_hours_to_close"] else MISSING
    )
    share = metrics["detractors_followed_up_share"]
    assert every.nth(4).inner_text() == (f"{share:.1f} %" if share is not None else MISSING)
    cases = _api(site, "/cases/metrics")
    assert every.nth(5).inner_text() == f"{cases['open']:,}"
    resolved = cases["median_hours_to_resolution"]
    assert every.nth(6).inner_text() == (f"{resolved:,.1f}" if resolved is not None else MISSING)

    # cases per department, newest first, as the API lists them
    page.goto(f"{site.url}/inbox?tab=cases&department={MINE}&status=all")
    shown = [
        int(i) for i in page.locator(".items > li").evaluate_all("e => e.map(x => x.dataset.id)")
    ]
    assert shown == [c["id"] for c in _api(site, "/cases", department=MINE, limit=50)]


def test_unknown_items_and_bad_filters(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    answer = page.goto(f"{site.url}/inbox?tab=nope&department=nowhere&status=weird&offset=x")
    assert answer is not None and answer.status == 200
    assert page.get_by_label("Department", exact=True).input_value() == MINE
    assert page.get_by_label("Status", exact=True).input_value() == "active"
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post(
        f"{site.url}/inbox/followups/987654321",
        form={"csrf_token": csrf, "action": "assign", "assignee": "me"},
    )
    assert answer.status == 404


@pytest.mark.parametrize("tab", ["followups", "cases"])
def test_the_inbox_fits_a_phone(site: Site, browser_page: Any, tab: str) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.set_viewport_size({"width": 360, "height": 780})
    page.goto(f"{site.url}/inbox?tab={tab}&department=all")
    page.wait_for_load_state("networkidle")
    work = page.locator("details.work").first
    if work.count():
        work.locator("summary").click()
    assert page.evaluate(OVERFLOW) <= 1
    assert page.evaluate(UNLABELLED) == []
    screenshot(page, f"phone-inbox-{tab}")
