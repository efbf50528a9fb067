"""The funnels, retention and paths pages in a real browser: what they show equals what the
analytics API answers for the same spec; follow-ups for the customers who dropped off are
created (and refused for another department); bad specs are explained next to the field."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from cxloop.web.pages.base import fmt_duration
from tests.site import PASSWORD, Site, screenshot, sign_in

MARKERS = {"$exit": "(left)", "$start": "(first seen)"}  # how the paths page says them


def _api(site: Site, method: str, path: str, **kwargs: Any) -> Any:
    answer = httpx.request(
        method,
        f"{site.url}{path}",
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=60,
        **kwargs,
    )
    assert answer.status_code < 300, answer.text
    return answer.json()


def _rows(page: Any, test_id: str) -> list[list[str]]:
    """The table's body as the user reads it: the text of each cell (th and td)."""
    table = page.get_by_test_id(test_id)
    table.wait_for()
    return [
        [cell.strip() for cell in row.locator("th, td").all_inner_texts()]
        for row in table.locator("tbody tr").all()
    ]


def _expected_steps(api: dict[str, Any]) -> list[list[str]]:
    steps = api["steps"]
    out = []
    for k, s in enumerate(steps):
        previous = steps[k - 1]["count"] if k else s["count"]
        out.append(
            [
                str(k + 1),
                s["name"],
                f"{s['count']:,}",
                f"{s['conversion_rate'] * 100:.1f} %",
                f"{(s['count'] / previous if previous else 0) * 100:.1f} %",
                fmt_duration(s["median_time_to_convert_s"]) if k else "\u2013",
                f"{s['count'] - steps[k + 1]['count']:,}" if k + 1 < len(steps) else "\u2013",
            ]
        )
    return out


def _spec(steps: list[str], days: int = 30, order: str = "ordered") -> dict[str, Any]:
    return {"steps": [{"event": s} for s in steps], "window_seconds": days * 86400, "order": order}


def test_a_funnel_built_in_the_form_shows_the_apis_numbers(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/funnels")
    # the defaults show a funnel at once, equal to the API's
    defaults = [page.get_by_label(f"Step {n}", exact=True).input_value() for n in (1, 2, 3, 4)]
    api = _api(site, "POST", "/api/v1/analytics/funnel", json=_spec(defaults))
    assert _rows(page, "funnel-steps") == _expected_steps(api)
    assert api["steps"][0]["count"] > api["steps"][-1]["count"] > 0
    # a funnel of three steps: fill, remove the fourth row, run
    for n, event in enumerate(["Home", "Product", "Pricing"], start=1):
        page.get_by_label(f"Step {n}", exact=True).fill(event)
    page.get_by_role("button", name="Remove step 4").click()
    page.wait_for_url("**/funnels?*")
    page.get_by_label("Step 4", exact=True).wait_for(state="detached")
    page.get_by_label("Conversion window", exact=True).fill("7")
    page.get_by_label("Order of the steps").select_option("strict")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url("**order=strict**")
    assert "step=Pricing" in page.url and "window=7" in page.url
    api = _api(
        site,
        "POST",
        "/api/v1/analytics/funnel",
        json=_spec(["Home", "Product", "Pricing"], 7, "strict"),
    )
    assert _rows(page, "funnel-steps") == _expected_steps(api)
    # one more step through the "add" button, then the address is the funnel to share
    page.get_by_role("button", name="Add a step").click()
    page.get_by_label("Step 4", exact=True).fill("Signed Up")
    page.get_by_label("Order of the steps").select_option("ordered")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url(lambda url: "step=Signed" in url)
    assert "add=" not in page.url
    steps = ["Home", "Product", "Pricing", "Signed Up"]
    api = _api(site, "POST", "/api/v1/analytics/funnel", json=_spec(steps, 7))
    assert _rows(page, "funnel-steps") == _expected_steps(api)
    screenshot(page, "funnels")
    page.reload()
    assert _rows(page, "funnel-steps") == _expected_steps(api)


def test_a_segment_counts_only_its_customers(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    steps = ["Sales Call", "Quote Sent"]
    spain = _api(site, "GET", "/api/v1/customers", params={"country": "Spain", "limit": 1000})
    assert 0 < spain["total"] <= 1000
    in_spain = {c["id"] for c in spain["items"]}
    query = "&".join(f"step={s.replace(' ', '+')}" for s in steps)
    page.goto(f"{site.url}/funnels?{query}&window=30&unit=d")
    page.get_by_label("Segment").select_option("country")
    page.get_by_label("is", exact=True).fill("Spain")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url(lambda url: "value=Spain" in url)
    shown = _rows(page, "funnel-steps")
    for k, row in enumerate(shown):
        reached = _api(
            site, "POST", "/api/v1/analytics/funnel/customers",
            json={"spec": _spec(steps), "step": k, "outcome": "reached", "limit": 10000},
        )  # fmt: skip
        expected = len({c["id"] for c in reached["customers"]} & in_spain)
        assert row[2] == f"{expected:,}"
    everyone = _api(site, "POST", "/api/v1/analytics/funnel", json=_spec(steps))
    assert int(shown[0][2].replace(",", "")) < everyone["steps"][0]["count"]


def _dropped_page(page: Any, site: Site, step: int) -> list[int]:
    """Open the customers who dropped off after ``step`` from the funnel table's link."""
    page.goto(f"{site.url}/funnels")
    page.get_by_label(f"customers dropped off after step {step}").click()
    page.wait_for_url(f"**dropped={step}*")
    rows = _rows(page, "dropped-customers")
    return [int(r[2]) for r in rows]


def test_customers_who_dropped_off_get_follow_ups(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/funnels")
    steps = [page.get_by_label(f"Step {n}", exact=True).input_value() for n in (1, 2, 3, 4)]
    ids = _dropped_page(page, site, 3)
    api = _api(
        site, "POST", "/api/v1/analytics/funnel/customers",
        json={"spec": _spec(steps), "step": 2, "outcome": "dropped", "limit": 50},
    )  # fmt: skip
    assert ids == [c["id"] for c in api["customers"]] and ids
    assert f"{api['total']:,} customer" in page.locator("#dropped").inner_text()
    first = page.get_by_test_id("dropped-customers").get_by_role("link").first
    assert first.get_attribute("href") == f"/customers/{ids[0]}"
    screenshot(page, "funnels-dropped")
    # nothing to do is refused next to the field, and nothing is created
    page.get_by_label("What needs doing").fill("  ")
    page.get_by_role("button", name="Create follow-ups").click()
    assert page.locator("#err-summary").inner_text() == "say what needs doing"
    assert page.get_by_label("What needs doing").get_attribute("aria-invalid") == "true"
    # follow-ups for the customers on this page, for sales
    token = f"Call back after the quote {uuid.uuid4().hex[:8]}"
    page.get_by_label("Department").select_option("sales")
    page.get_by_label("What needs doing").fill(token)
    page.get_by_role("button", name="Create follow-ups").click()
    page.wait_for_url("**created=*")
    assert f"Created {len(ids)} follow-up" in page.get_by_role("status").first.inner_text()
    made = [
        f
        for f in _api(site, "GET", "/api/v1/followups",
                      params={"department": "sales", "reason": "manual", "limit": 1000})
        if f["summary"] == token
    ]  # fmt: skip
    assert sorted(f["customer_id"] for f in made) == sorted(ids)
    assert {f["status"] for f in made} == {"open"}


def test_a_member_follows_up_only_for_its_own_department(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    ids = _dropped_page(page, site, 3)
    select = page.get_by_label("Department")
    assert select.locator("option").all_inner_texts() == ["customer service"]
    form = page.locator("form.followups")
    fields = {
        "csrf_token": form.locator("input[name=csrf_token]").input_value(),
        "q": form.locator("input[name=q]").input_value(),
        "summary": f"not mine {uuid.uuid4().hex[:8]}",
        "scope": "page",
    }
    refused = page.request.post(
        f"{site.url}/funnels/followups", form={**fields, "department": "sales"}, max_redirects=0
    )
    assert refused.status == 403
    assert "own department" in refused.text()
    stale = page.request.post(
        f"{site.url}/funnels/followups",
        form={**fields, "csrf_token": "forged", "department": "customer service"},
        max_redirects=0,
    )
    assert stale.status == 403
    sales = _api(site, "GET", "/api/v1/followups", params={"reason": "manual", "limit": 1000})
    assert not [f for f in sales if f["summary"] == fields["summary"]]
    # its own department works, through the form
    token = f"Own department {uuid.uuid4().hex[:8]}"
    page.get_by_label("What needs doing").fill(token)
    page.get_by_role("button", name="Create follow-ups").click()
    page.wait_for_url("**created=*")
    made = [
        f
        for f in _api(site, "GET", "/api/v1/followups",
                      params={"department": "customer service", "limit": 1000})
        if f["summary"] == token
    ]  # fmt: skip
    assert sorted(f["customer_id"] for f in made) == sorted(ids)


def test_a_bad_funnel_is_explained_next_to_the_field(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/funnels")
    window = page.get_by_label("Conversion window", exact=True)
    window.fill("0")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url("**window=0**")
    error = page.locator("#err-window")
    assert "at least 1" in error.inner_text()
    assert window.get_attribute("aria-invalid") == "true"
    assert window.get_attribute("aria-describedby") == "err-window"
    assert page.get_by_test_id("funnel-steps").count() == 0
    screenshot(page, "funnels-bad-window")
    # the spec's own rules: at most 366 days, and two steps at least
    window.fill("400")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url("**window=400**")
    assert "at most 366 days" in page.locator("#err-window").inner_text()
    page.get_by_label("Conversion window", exact=True).fill("30")
    for n in (2, 3, 4):
        page.get_by_label(f"Step {n}", exact=True).fill("")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url("**window=30**")
    assert page.locator("#err-steps").inner_text() == "a funnel needs at least two steps"
    assert page.locator("fieldset.steps").get_attribute("aria-describedby") == "err-steps"
    assert page.get_by_test_id("funnel-steps").count() == 0


def test_retention_heatmap_table_equals_the_api(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/retention")
    page.get_by_label("Period", exact=True).select_option("week")
    page.get_by_label("Periods", exact=True).fill("6")
    page.get_by_role("button", name="Show retention").click()
    page.wait_for_url("**period=week**")
    spec = {
        "start_event": {"event": page.get_by_label("Start event").input_value()},
        "return_event": {"event": page.get_by_label("Return event").input_value()},
        "period": "week",
        "periods": 6,
    }
    api = _api(site, "POST", "/api/v1/analytics/retention", json=spec)
    cohorts = api["cohorts"][-60:]
    assert cohorts and any(c["values"][1:] and c["values"][1] for c in cohorts)
    expected = []
    for c in cohorts:
        cells = [c["start"], f"{c['size']:,}"]
        for k in range(6):
            if k < len(c["values"]):
                v = c["values"][k]
                cells.append(f"{v:,}\n{v / c['size'] * 100:.1f} %")
            else:
                cells.append("not yet")
        expected.append(cells)
    assert _rows(page, "retention-table") == expected
    assert page.locator(".chart[data-drawn]").count() == 1
    screenshot(page, "retention")


def test_paths_table_equals_the_api(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/paths")
    anchor = page.get_by_label("Event", exact=True).input_value()
    api = _api(site, "POST", "/api/v1/analytics/paths", json={"event": {"event": anchor}})
    assert api["paths"]

    def expected(answer: dict[str, Any]) -> list[list[str]]:
        return [
            [str(n), " → ".join(MARKERS.get(e, e) for e in p["path"]), f"{p['customers']:,}",
             f"{p['share'] * 100:.1f} %"]
            for n, p in enumerate(answer["paths"], start=1)
        ]  # fmt: skip

    assert _rows(page, "paths-table") == expected(api)
    # what came before another event, fewer steps
    page.get_by_label("Event", exact=True).fill("Order Completed")
    page.get_by_label("Show", exact=True).select_option("before")
    page.get_by_label("Steps", exact=True).fill("2")
    page.get_by_role("button", name="Show paths").click()
    page.wait_for_url("**direction=before**")
    spec = {"event": {"event": "Order Completed"}, "direction": "before", "depth": 2}
    api = _api(site, "POST", "/api/v1/analytics/paths", json=spec)
    assert _rows(page, "paths-table") == expected(api)
    assert page.locator(".chart[data-drawn]").count() == 1
    screenshot(page, "paths")
    # a bad depth is explained next to the field
    page.get_by_label("Steps", exact=True).fill("9")
    page.get_by_role("button", name="Show paths").click()
    page.wait_for_url("**depth=9**")
    assert "from 1 to 5" in page.locator("#err-depth").inner_text()


def test_exclusions_and_a_breakdown_match_the_api(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/funnels")
    steps = [page.get_by_label(f"Step {n}", exact=True).input_value() for n in (1, 2, 3, 4)]
    page.get_by_role("button", name="Add an exclusion").click()
    page.get_by_label("Exclude", exact=True).fill("Support Contacted")
    page.get_by_label("between step").select_option("1")
    page.get_by_label("and step").select_option("3")
    page.get_by_label("Kind of breakdown").select_option("property")
    page.get_by_label("Break down by").fill("channel")
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url(lambda url: "breakdown=channel" in url)
    spec = {
        **_spec(steps),
        "exclusions": [{"event": "Support Contacted", "from_step": 0, "to_step": 2}],
        "breakdown": {"property": "channel"},
    }
    api = _api(site, "POST", "/api/v1/analytics/funnel", json=spec)
    assert _rows(page, "funnel-steps") == _expected_steps(api)
    plain = _api(site, "POST", "/api/v1/analytics/funnel", json=_spec(steps))
    assert api["steps"][0]["count"] <= plain["steps"][0]["count"]
    assert api["breakdown"]
    assert _rows(page, "funnel-breakdown") == [
        [g["value"] if g["value"] is not None else "(none)"]
        + [f"{s['count']:,}" for s in g["steps"]]
        + [f"{g['steps'][-1]['conversion_rate'] * 100:.1f} %"]
        for g in api["breakdown"]
    ]
    # an exclusion that is a step itself is refused next to the exclusions
    page.get_by_label("Exclude", exact=True).fill(steps[1])
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url(lambda url: f"exclude={steps[1].split()[0]}" in url)
    assert "exclude every customer who takes the step" in page.locator("#err-exclude").inner_text()


def test_rows_change_without_javascript(site: Site) -> None:
    """The add and remove buttons work as plain form submissions too: the answer is the
    funnel's own address with the rows changed."""
    with httpx.Client(base_url=site.url, timeout=30) as client:
        signed = client.post("/login", data={"email": site.email("member"), "password": PASSWORD})
        assert signed.status_code == 303
        two = [("step", "Home"), ("step", "Pricing"), ("window", "30")]
        added = client.get("/funnels", params=[*two, ("add", "step")])
        assert added.status_code == 303
        target = added.headers["location"]
        assert "add=" not in target and target.count("step=") == 3
        page = client.get(target)
        assert page.status_code == 200 and 'id="step-2"' in page.text
        three = [*two, ("step", "Signed Up")]
        removed = client.get("/funnels", params=[*three, ("remove", "step-0")])
        assert removed.status_code == 303
        assert "step=Home" not in removed.headers["location"]
        assert "step=Pricing" in removed.headers["location"]
