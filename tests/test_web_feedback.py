"""The feedback pages in a real browser: their figures against the REST API's for the same
filters, creating a survey through the form (and its errors next to the fields), sending
a survey link and answering it without a session, and who may do what."""

from __future__ import annotations

import re
import uuid
from contextlib import closing
from datetime import date, timedelta
from typing import Any

import httpx

from tests.site import PASSWORD, Site, screenshot, sign_in


def _api(site: Site, path: str, **params: Any) -> Any:
    answer = httpx.get(
        f"{site.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def _new_survey(site: Site, **fields: Any) -> dict[str, Any]:
    body = {"type": "nps", "name": f"Test survey {uuid.uuid4().hex[:8]}", **fields}
    answer = httpx.post(
        f"{site.url}/api/v1/surveys",
        json=body,
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _signed_in(site: Site, role: str) -> tuple[httpx.Client, str]:
    """An HTTP client with a session cookie, and the session's CSRF token."""
    client = httpx.Client(base_url=site.url, follow_redirects=False, timeout=30)
    answer = client.post("/login", data={"email": site.email(role), "password": PASSWORD})
    assert answer.status_code == 303, answer.text
    page = client.get("/feedback")
    assert page.status_code == 200
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    return client, csrf


def _fits(page: Any) -> bool:
    """Nothing sticks out sideways: wide tables scroll inside their own box."""
    width = int(page.evaluate("document.documentElement.scrollWidth"))
    return width <= int(page.viewport_size["width"])


def _window(site: Site) -> dict[str, str]:
    """A few months in the middle of the demo's answers, so that a date filter changes the
    figures."""
    months = [g["key"] for g in _api(site, "/api/v1/feedback/nps", by="month")["groups"]]
    assert len(months) >= 4, months
    first, last = months[1], months[-2]
    year, month = (int(p) for p in last.split("-"))
    after = f"{year + 1}-01-01" if month == 12 else f"{year}-{month + 1:02d}-01"
    end = date.fromisoformat(after) - timedelta(days=1)
    return {"from": f"{first}-01", "to": end.isoformat()}


def test_feedback_figures_equal_the_apis_for_the_same_filters(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "member")
    window = _window(site)
    for filters in ({}, {**window, "segment": "channel", "value": "web"}):
        params: dict[str, Any] = {k: filters[k] for k in ("from", "to") if k in filters}
        if "segment" in filters:
            params["where"] = f"{filters['segment']}={filters['value']}"
        api = _api(site, "/api/v1/feedback/nps", **params)
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        page.goto(f"{site.url}/feedback?{query}")
        table = page.get_by_test_id("overall-table")
        assert table.get_by_test_id("score").inner_text() == f"{api['nps']:+.1f}"
        assert table.get_by_test_id("margin").inner_text() == f"± {api['margin_of_error']:.1f}"
        assert table.get_by_test_id("answers").inner_text() == f"{api['responses']:,}"
        figures = page.get_by_test_id("figures").inner_text()
        assert f"{api['nps']:+.1f}" in figures
        assert f"± {api['margin_of_error']:.1f} · {api['responses']:,} answers" in figures
        # the distribution's bars add up to the same answers, promoters to promoters
        cells = page.get_by_test_id("distribution").locator("tbody tr").first.locator("td")
        counts = [int(c.replace(",", "")) for c in cells.all_inner_texts()]
        assert len(counts) == 11
        assert sum(counts) == api["responses"]
        assert counts[9] + counts[10] == api["promoters"]
        # NPS by stage: one row per group of the API, each with its figures and flag
        stages = _api(site, "/api/v1/feedback/nps", by="stage", **params)["groups"]
        rows = page.get_by_test_id("by-stage").locator("tbody tr")
        assert rows.count() == len(stages)
        for group in stages:
            key = group["key"] or ""
            row = page.locator(f'[data-testid="by-stage"] tbody tr[data-key="{key}"]')
            cells = row.locator("td").all_inner_texts()
            assert cells[1] == f"{group['nps']:+.1f}"
            assert cells[2] == f"± {group['margin_of_error']:.1f}"
            assert cells[3] == f"{group['responses']:,}"
            versus = group["vs_rest"]
            if versus is not None:
                assert cells[4].startswith(f"{versus['difference']:+.1f}")
                assert ("not significant" not in cells[4]) is versus["significant"]
        months = _api(site, "/api/v1/feedback/nps", by="month", **params)["groups"]
        assert page.get_by_test_id("by-month").locator("tbody tr").count() == len(months)
    assert api["responses"] < _api(site, "/api/v1/feedback/nps")["responses"]
    assert page.locator(".chart[data-drawn]").count() >= 4  # gauge, bars, trend, eNPS
    screenshot(page, "feedback-filtered")


def test_feedback_page_lists_surveys_comments_themes_and_enps(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/feedback")
    surveys = _api(site, "/api/v1/surveys")
    listed = page.get_by_test_id("surveys").locator("tbody tr")
    assert listed.count() == len(surveys)
    for survey in surveys:
        row = listed.filter(has=page.get_by_role("link", name=survey["name"], exact=True))
        assert row.locator("td").nth(1).inner_text() == survey["kind"].upper()
        if (survey["kind"], survey["audience"]) == ("nps", "customers"):
            answers = _api(site, "/api/v1/feedback/nps", survey=survey["id"])["responses"]
            assert row.locator("td").last.inner_text() == f"{answers:,}"
    # comments: a page of 50, newest first, with the total the API's comment report counts
    total = _api(site, "/api/v1/feedback/comments")["comments"]
    comments = page.get_by_test_id("comments").locator("tbody tr")
    assert comments.count() == min(total, 50)
    assert f"of {total:,}" in page.locator("#comments .pager").inner_text()
    if total > 50:
        page.locator("#comments .pager").get_by_role("link", name="Older →").click()
        page.wait_for_url("**offset=50*")
        assert page.get_by_test_id("comments").locator("tbody tr").count() == min(total - 50, 50)
        page.goto(f"{site.url}/feedback")
    themes = _api(site, "/api/v1/feedback/themes")["themes"]
    shown = page.get_by_test_id("themes").locator("tbody tr td:first-child").all_inner_texts()
    assert shown == [t["phrase"] for t in themes]
    enps = _api(site, "/api/v1/feedback/enps/departments")
    rows = page.get_by_test_id("enps").locator("tbody tr")
    assert rows.count() == len(enps["departments"])
    first = enps["departments"][0]
    cells = rows.first.locator("td").all_inner_texts()
    assert cells[0] == (first["department"] or "none")
    assert cells[1] == (f"{first['enps']:+.1f}" if first["enps"] is not None else "\u2013")
    screenshot(page, "feedback")
    page.set_viewport_size({"width": 360, "height": 800})
    page.reload()
    assert _fits(page)
    screenshot(page, "feedback-360")


def test_an_analyst_creates_a_survey_through_the_form(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/feedback")
    page.get_by_role("link", name="New survey").first.click()
    page.wait_for_url("**/feedback/surveys/new")
    name = f"Checkout CSAT {uuid.uuid4().hex[:6]}"
    models = _api(site, "/api/v1/lifecycle/models")
    stage = f"{models[0]['key']}:{models[0]['stages'][1]['key']}"
    page.get_by_label("Kind").select_option("csat")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Question", exact=True).fill("How satisfied are you with checking out?")
    page.get_by_label("Lifecycle stage (customers)").select_option(stage)
    page.get_by_label("Touchpoint (an event name)").fill("Checkout Completed")
    screenshot(page, "feedback-new-survey")
    page.get_by_role("button", name="Create survey").click()
    page.wait_for_url("**/feedback/surveys/*?done=created")
    survey_id = int(page.url.split("/surveys/", 1)[1].split("?", 1)[0])
    assert page.get_by_role("heading", level=1).inner_text() == name
    assert "Survey created" in page.get_by_role("status").first.inner_text()
    stored = _api(site, f"/api/v1/surveys/{survey_id}")
    assert stored["kind"] == "csat"
    assert stored["stage"] == stage
    assert stored["touchpoint"] == "Checkout Completed"
    assert stored["question"] == "How satisfied are you with checking out?"
    page.goto(f"{site.url}/feedback")
    row = page.get_by_test_id("surveys").locator("tbody tr").filter(has_text=name)
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "CSAT"
    assert cells[4] == "Checkout Completed"
    assert cells[5] == "0"
    screenshot(page, "feedback-survey-created")


def test_an_analyst_ties_a_survey_to_another_stage_on_its_page(
    site: Site, browser_page: Any
) -> None:
    models = _api(site, "/api/v1/lifecycle/models")
    first = f"{models[0]['key']}:{models[0]['stages'][1]['key']}"
    later = f"{models[0]['key']}:{models[0]['stages'][2]['key']}"
    survey = _new_survey(site, stage=first, touchpoint="Checkout Completed")
    taken = _new_survey(site)
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/feedback/surveys/{survey['id']}")
    page.get_by_text("Change this survey").click()
    # A name another survey has is refused next to the field, with what was typed kept.
    page.get_by_label("Name", exact=True).fill(taken["name"])
    page.get_by_label("Lifecycle stage").select_option(later)
    page.get_by_role("button", name="Save survey").click()
    error = page.locator("#err-name")
    assert f"a survey named '{taken['name']}' exists already" in error.inner_text()
    assert page.get_by_label("Lifecycle stage").input_value() == later
    assert _api(site, f"/api/v1/surveys/{survey['id']}")["stage"] == first
    screenshot(page, "feedback-survey-change-error")

    page.get_by_label("Name", exact=True).fill(survey["name"] + " (renewed)")
    page.get_by_label("Touchpoint (an event name; empty for none)").fill("")
    page.get_by_role("button", name="Save survey").click()
    page.wait_for_url(f"**/feedback/surveys/{survey['id']}?done=changed*")
    assert "Survey saved" in page.get_by_role("status").first.inner_text()
    stored = _api(site, f"/api/v1/surveys/{survey['id']}")
    assert (stored["name"], stored["stage"], stored["touchpoint"]) == (
        survey["name"] + " (renewed)",
        later,
        None,
    )
    assert page.get_by_role("heading", level=1).inner_text() == stored["name"]


def test_bad_survey_input_is_shown_next_to_the_field(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/feedback/surveys/new")
    page.get_by_label("Question", exact=True).fill("Kept as typed?")
    with page.expect_response("**/feedback/surveys/new") as sent:
        page.get_by_role("button", name="Create survey").click()
    assert sent.value.status == 422
    name = page.get_by_label("Name", exact=True)
    assert name.get_attribute("aria-invalid") == "true"
    described = name.get_attribute("aria-describedby")
    assert page.locator(f"#{described}").inner_text() == "give a name of 1 to 200 characters"
    assert page.get_by_label("Question", exact=True).input_value() == "Kept as typed?"
    screenshot(page, "feedback-new-survey-error")
    # a custom survey needs its question, and a name already taken is refused
    taken = _api(site, "/api/v1/surveys")[0]["name"]
    page.get_by_label("Kind").select_option("custom")
    page.get_by_label("Name", exact=True).fill(taken)
    page.get_by_label("Question", exact=True).fill("")
    page.get_by_label("Scale LOW-HIGH").fill("1-10")
    page.get_by_role("button", name="Create survey").click()
    assert page.locator("#err-question").inner_text() == "a custom survey needs its question"
    page.get_by_label("Question", exact=True).fill("How was it?")
    page.get_by_role("button", name="Create survey").click()
    assert "exists already" in page.locator("#err-name").inner_text()
    page.get_by_label("Scale LOW-HIGH").fill("ten")
    page.get_by_role("button", name="Create survey").click()
    assert "give LOW-HIGH" in page.locator("#err-scale").inner_text()
    assert page.get_by_label("Scale LOW-HIGH").input_value() == "ten"
    assert not [s for s in _api(site, "/api/v1/surveys") if s["question"] == "How was it?"]
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{site.url}/feedback/surveys/new")
    assert _fits(page)
    screenshot(page, "feedback-new-survey-360")


def test_a_survey_link_is_answered_without_a_session(site: Site, browser_page: Any) -> None:
    survey = _new_survey(site, touchpoint="Link Test")
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/feedback/surveys/{survey['id']}")
    assert "No answers yet" in page.locator(".empty").first.inner_text()
    assert page.get_by_test_id("answers").count() == 0
    page.get_by_label("Expires after (days)").fill("3")
    page.get_by_role("button", name="Create a link").click()
    url = page.get_by_label("Survey link").input_value()
    assert url.startswith(f"{site.url}/s/")
    assert "only this once" in page.get_by_test_id("invite").inner_text()
    screenshot(page, "feedback-survey-link")
    # a reload of the survey page does not show the link again
    page.goto(f"{site.url}/feedback/surveys/{survey['id']}")
    assert page.get_by_test_id("invite").count() == 0
    assert url not in page.content()

    stranger = page.context.browser.new_context(viewport={"width": 360, "height": 740})
    try:
        answer = stranger.new_page()
        answer.goto(url)
        assert answer.get_by_role("heading", level=1).inner_text() == survey["question"]
        answer.locator(".scale span").filter(has_text=re.compile(r"^9$")).click()
        assert answer.get_by_role("radio", name="9", exact=True).is_checked()
        answer.get_by_label("What is the main reason for your answer?").fill(
            "Quick and friendly <b>help</b>"
        )
        answer.get_by_role("button", name="Send my answer").click()
        assert answer.get_by_role("heading", level=1).inner_text() == "Thank you!"
        screenshot(answer, "survey-link-answered-360")
        answer.goto(url)  # one answer per link
        assert "already answered" in answer.get_by_role("heading", level=1).inner_text()
    finally:
        stranger.close()

    scored = _api(site, "/api/v1/feedback/nps", survey=survey["id"])
    assert (scored["responses"], scored["promoters"], scored["nps"]) == (1, 1, 100.0)
    page.reload()
    assert page.get_by_test_id("answers").inner_text() == "1"
    comment = page.get_by_test_id("comments").locator("tbody tr").first
    assert "Quick and friendly <b>help</b>" in comment.inner_text()  # shown as text
    assert comment.locator("b").count() == 0
    assert comment.locator(".badge").inner_text().startswith("positive")
    touchpoints = page.get_by_test_id("by-touchpoint").locator("tbody tr")
    assert touchpoints.first.locator("td").first.inner_text() == "Link Test"
    screenshot(page, "feedback-survey")
    page.set_viewport_size({"width": 360, "height": 800})
    page.reload()
    assert _fits(page)
    screenshot(page, "feedback-survey-360")


def test_a_survey_link_for_an_unknown_customer_is_refused_next_to_the_field(
    site: Site, browser_page: Any
) -> None:
    survey = _new_survey(site)
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/feedback/surveys/{survey['id']}")
    page.get_by_label("Customer (optional)").fill("nobody-at-all@nowhere.example.com")
    page.get_by_label("Expires after (days)").fill("400")
    page.get_by_role("button", name="Create a link").click()
    expires = page.get_by_label("Expires after (days)")
    assert expires.get_attribute("aria-invalid") == "true"
    assert "less than or equal to 365" in page.locator("#err-expires_days").inner_text()
    page.get_by_label("Expires after (days)").fill("7")
    page.get_by_role("button", name="Create a link").click()
    assert "no customer" in page.locator("#err-customer").inner_text()
    assert page.get_by_test_id("invite").count() == 0


def test_the_other_kinds_of_survey_have_their_own_scale(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    surveys = _api(site, "/api/v1/surveys")
    csat = next(s for s in surveys if s["kind"] == "csat")
    api = _api(site, "/api/v1/feedback/csat", survey=csat["id"])
    page.goto(f"{site.url}/feedback/surveys/{csat['id']}")
    assert page.get_by_test_id("score").inner_text() == f"{api['csat']:.1f} %"
    assert page.get_by_test_id("answers").inner_text() == f"{api['responses']:,}"
    heads = page.get_by_test_id("distribution").locator("thead th").all_inner_texts()
    assert heads[1:] == ["1", "2", "3", "4", "5"]
    custom = _new_survey(site, type="custom", question="Which?", choices=["Red", "Blue"])
    answered = httpx.post(
        f"{site.url}/api/v1/surveys/{custom['id']}/responses",
        json={"choice": "Blue", "comment": "Blue is calm"},
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert answered.status_code == 201, answered.text
    page.goto(f"{site.url}/feedback/surveys/{custom['id']}")
    table = page.get_by_test_id("distribution")
    assert table.locator("thead th").all_inner_texts()[1:] == ["Red", "Blue"]
    assert table.locator("tbody tr").first.locator("td").all_inner_texts() == ["0", "1"]
    assert page.get_by_test_id("figures").inner_text().startswith("Answers\n1")
    assert "Blue is calm" in page.get_by_test_id("comments").inner_text()


def test_a_member_creates_no_survey_and_no_link(site: Site, browser_page: Any) -> None:
    role = "member"
    survey = _new_survey(site)
    page = browser_page
    sign_in(page, site, role)
    page.goto(f"{site.url}/feedback")
    assert page.get_by_role("link", name="New survey").count() == 0
    answer = page.goto(f"{site.url}/feedback/surveys/new")
    assert answer is not None and answer.status == 403
    assert "You don't have permission" in page.get_by_role("heading", level=1).inner_text()
    page.goto(f"{site.url}/feedback/surveys/{survey['id']}")
    assert page.get_by_role("button", name="Create a link").count() == 0
    assert page.get_by_text("Change this survey").count() == 0
    client, csrf = _signed_in(site, role)
    with closing(client):
        made = client.post(
            "/feedback/surveys/new", data={"csrf_token": csrf, "type": "nps", "name": "No"}
        )
        assert made.status_code == 403
        link = client.post(
            f"/feedback/surveys/{survey['id']}/invites",
            data={"csrf_token": csrf, "expires_days": "3"},
        )
        assert link.status_code == 403
        assert "/s/" not in link.text
        renamed = client.post(
            f"/feedback/surveys/{survey['id']}", data={"csrf_token": csrf, "name": "Mine"}
        )
        assert renamed.status_code == 403
    # and an analyst's form without the session's CSRF token is refused
    client, _csrf = _signed_in(site, "analyst")
    with closing(client):
        forged = client.post("/feedback/surveys/new", data={"type": "nps", "name": "Forged"})
        assert forged.status_code == 403
    assert not [s for s in _api(site, "/api/v1/surveys") if s["name"] in ("No", "Forged")]


def test_an_unknown_survey_is_a_404_page(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    for survey_id in ("987654", str(2**64)):  # past what the database holds, too
        answer = page.goto(f"{site.url}/feedback/surveys/{survey_id}")
        assert answer is not None and answer.status == 404
        assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
