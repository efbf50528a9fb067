"""The gaps page in a real browser: per stage the REST API's ranking, figures and sample
sizes for the same model and filters, the priority chart, and the formula beside them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.site import Site, screenshot, sign_in
from tests.test_web_analytics import _api, _spec
from tests.test_web_lifecycle import api, first_line, surveyed_model, window

# The drawn bar chart's categories and values, once app.js has drawn it.
BARS = """() => { const el = document.querySelector('.card .chart');
  const chart = el && window.echarts && window.echarts.getInstanceByDom(el);
  if (!chart) return null; const o = chart.getOption();
  return {labels: o.yAxis[0].data, values: o.series[0].data}; }"""
ROWS = """() => [...document.querySelectorAll('[data-testid=gaps] tr[data-stage]')].map(tr =>
  [tr.dataset.stage, Object.fromEntries([...tr.querySelectorAll('[data-col]')]
    .map(td => [td.dataset.col, td.innerText.trim()]))])"""


def check_rows(rows: list[list[Any]], found: dict[str, Any]) -> None:
    """The table lists the API's stages in its order, each row with its figures."""
    assert [key for key, _ in rows] == [s["key"] for s in found["stages"]]
    for (_, row), stage in zip(rows, found["stages"], strict=True):
        assert row["name"] == stage["name"] and row["owner"] == stage["owner"]
        assert row["rank"] == (str(stage["rank"]) if stage["rank"] else "\u2013")
        if stage["priority"] is None:
            assert row["priority"] == stage["note"]
        else:
            assert row["priority"] == f"{stage['priority']:.1f}"
        assert row["entered"] == f"{stage['entered']:,}"
        drop = stage["drop_off_rate"]
        assert first_line(row["drop_off_rate"]) == (
            "\u2013" if drop is None else f"{drop * 100:.1f} %"
        )
        if stage["nps"] is None:
            assert row["nps"] == "no answers"
        else:
            assert first_line(row["nps"]) == f"{stage['nps']:+.1f}"
            assert f"{stage['nps_responses']:,} answers" in row["nps"]
        assert f"{stage['cases_opened']:,} cases" in row["case_rate"]
        for reason, n in stage["exits_by_reason"].items():
            assert f"{reason} {n:,}" in row["exits"]


def test_the_gaps_page_shows_the_apis_ranking(site: Site, browser_page: Any) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/insights")
    page.wait_for_url("**/insights/gaps")
    page.get_by_label("Lifecycle model").select_option(key)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(f"**/insights/gaps?*model={key}*")
    found = api(site, f"/api/v1/insights/gaps/{key}")
    assert page.locator("h1").inner_text() == f"Gaps: {found['model_name']}"
    rows = page.evaluate(ROWS)
    check_rows(rows, found)
    assert any(s["priority"] is not None for s in found["stages"])
    assert page.get_by_test_id("formula").inner_text() == found["formula"]
    # the chart draws the ranked stages, worst on top (ECharts lists categories bottom up)
    page.wait_for_function(f"() => ({BARS})() !== null")
    drawn = page.evaluate(BARS)
    ranked = [s for s in found["stages"] if s["priority"] is not None]
    assert drawn["values"][::-1] == [s["priority"] for s in ranked]
    assert drawn["labels"][::-1] == [f"{s['name']} ({s['owner']})" for s in ranked]
    # each stage's parts, with the reason a part was left out
    worst = ranked[0]
    details = page.locator(f"details[data-stage='{worst['key']}']")
    details.locator("summary").click()
    for part in worst["parts"]:
        if not part["counted"]:
            assert part["why_not"] in details.inner_text()
    screenshot(page, "insights-gaps")


def test_gaps_filters_give_the_apis_figures(site: Site, browser_page: Any) -> None:
    page = browser_page
    key = surveyed_model(site)
    first, last = window(site)
    sign_in(page, site, "analyst")
    page.goto(
        f"{site.url}/insights/gaps?model={key}&from={first}&to={last}&segment=channel&value=web"
    )
    found = api(
        site, f"/api/v1/insights/gaps/{key}",
        **{"from": first.isoformat(), "to": last.isoformat(), "where": "channel=web"},
    )  # fmt: skip
    check_rows(page.evaluate(ROWS), found)
    everyone = api(site, f"/api/v1/insights/gaps/{key}")
    assert [s["entered"] for s in found["stages"]] != [s["entered"] for s in everyone["stages"]]
    # a bad date is said next to its field, and the page still answers
    answer = page.goto(f"{site.url}/insights/gaps?model={key}&from=2026-02-30")
    assert answer is not None and answer.status == 200
    assert "is not a date" in page.locator("#e-from").inner_text()
    assert page.locator("#f-from").get_attribute("aria-invalid") == "true"
    assert page.get_by_test_id("gaps").is_visible()  # shown without the broken filter


DRIVER_ROWS = """() => [...document.querySelectorAll('[data-testid=drivers] tr[data-driver]')]
  .map(tr => [tr.dataset.driver, Object.fromEntries([...tr.querySelectorAll('[data-col]')]
    .map(td => [td.dataset.col, td.innerText.trim()]))])"""
POINTS = """() => { const el = document.querySelector('.card .chart');
  const chart = el && window.echarts && window.echarts.getInstanceByDom(el);
  if (!chart) return null;
  return chart.getOption().series[0].data.map(p => [p.name, p.value[0], p.value[1]]); }"""


def test_the_drivers_page_shows_the_apis_drivers_and_quadrant(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/insights/gaps")
    page.get_by_role("link", name="Drivers", exact=True).click()
    page.wait_for_url("**/insights/drivers")
    nps = api(site, "/api/v1/insights/drivers")
    assert page.locator("h1").inner_text() == "Drivers of overall NPS"
    assert f"{nps['customers']:,} customers" in page.get_by_test_id("outcome").inner_text()
    if nps["note"]:  # the small demo may have too few relationship answers: said, not shown
        assert nps["note"] in page.locator("main").inner_text()
        assert page.get_by_test_id("drivers").count() == 0

    page.get_by_label("Outcome").select_option("churn")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**outcome=churn**")
    page.get_by_label("Lifecycle model").select_option("client-experience")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**model=client-experience**")
    found = api(site, "/api/v1/insights/drivers", outcome="churn", model="client-experience")
    assert found["drivers"], found["note"]
    rows = page.evaluate(DRIVER_ROWS)
    assert [key for key, _ in rows] == [d["driver"] for d in found["drivers"]]
    for (_, row), driver in zip(rows, found["drivers"], strict=True):
        assert row["label"] == driver["label"]
        assert row["measured"] == f"{driver['measured']:,}"
        assert row["importance"] == f"{driver['importance']:.1f} %"
        low, high = driver["importance_ci"]
        assert row["interval"] == f"{low:.1f} \u2013 {high:.1f}"
        assert row["effect"].startswith(f"{driver['direction']} churn")
        assert ("not significant" in row["effect"]) == (not driver["significant"])
        assert row["quadrant"] == driver["quadrant"]
    fit = page.get_by_test_id("fit").inner_text()
    assert f"{found['r_squared'] * 100:.1f} %" in fit
    page.wait_for_function(f"() => ({POINTS})() !== null")
    assert page.evaluate(POINTS) == [
        [d["label"], d["performance"], d["importance"]] for d in found["drivers"]
    ]
    screenshot(page, "insights-drivers")


VALUE_ROWS = """() => [...document.querySelectorAll('[data-testid=values] tr[data-value]')]
  .map(tr => [tr.dataset.value, Object.fromEntries([...tr.querySelectorAll('[data-col]')]
    .map(td => [td.dataset.col, td.innerText.trim()]))])"""


def test_the_retarget_page_shows_the_apis_segments(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/insights/retarget?model=buyer")
    found = api(site, "/api/v1/insights/retarget/buyer")
    groups = page.get_by_test_id("groups").inner_text()
    assert f"{found['targeted']:,} customers entered the model" in groups
    assert f"{found['converted']:,} {found['goal_is']}" in groups
    assert found["attributes"], found["note"]
    listed = page.locator("[data-testid=attributes] tr[data-attribute]").evaluate_all(
        "rows => rows.map(r => r.dataset.attribute)"
    )
    assert listed == [a["attribute"] for a in found["attributes"]]
    # the strongest attribute is shown value by value; a link shows another
    for attribute in (found["attributes"][0], found["attributes"][-1]):
        if attribute is not found["attributes"][0]:
            name = attribute["attribute"].removeprefix("trait:")
            page.get_by_role("link", name=name, exact=True).click()
            page.wait_for_url("**attribute=**")
        rows = page.evaluate(VALUE_ROWS)
        assert [value for value, _ in rows] == [v["value"] for v in attribute["values"]]
        for (_, row), value in zip(rows, attribute["values"], strict=True):
            assert row["targeted"] == f"{value['targeted']:,}"
            assert row["converted"] == f"{value['converted']:,}"
            assert row["lift"] == f"{value['lift']:.2f}"
            if value["significant"] is None:
                assert row["significant"] == "too few to test"
            else:
                assert row["significant"].startswith("yes" if value["significant"] else "no")
    best = page.get_by_test_id("best")
    if found["best"]:
        assert best.locator("tbody tr").count() == len(found["best"])
    screenshot(page, "insights-retarget")
    # a goal that is not a stage is said next to the goal field
    page.goto(f"{site.url}/insights/retarget?model=buyer&goal=nowhere")
    assert "is not a stage" in page.locator("#err-goal").inner_text()


def test_the_purchases_page_shows_the_apis_figures(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/insights/gaps")
    page.get_by_role("link", name="Purchases", exact=True).click()
    page.wait_for_url("**/insights/purchases")
    found = api(site, "/api/v1/insights/purchases")
    assert found["buyers"] > 0
    summary = page.get_by_test_id("summary").inner_text()
    assert f"{found['buyers']:,}" in summary and f"{found['purchases']:,} purchases" in summary
    assert f"{found['repeat_rate'] * 100:.1f} %" in summary
    frequency = page.get_by_test_id("frequency").locator("tbody tr").all_inner_texts()
    assert [line.split("\t") for line in frequency] == [
        [f["purchases"], f"{f['buyers']:,}"] for f in found["frequency"]
    ]
    segments = page.locator("[data-testid=rfm] tr[data-segment]").evaluate_all(
        "rows => rows.map(r => [r.dataset.segment, r.cells[1].innerText])"
    )
    assert segments == [[s["segment"], f"{s['buyers']:,}"] for s in found["rfm"]["segments"]]
    channels = page.get_by_test_id("channels").locator("tbody th").all_inner_texts()
    assert channels == [c["channel"] for c in found["channels"]]
    assert page.get_by_test_id("repeat").locator("tbody tr").count() == len(found["repeat_curves"])
    screenshot(page, "insights-purchases")
    # an empty event name is said next to its field
    page.goto(f"{site.url}/insights/purchases?event=")
    assert "name the purchase event" in page.locator("#err-event").inner_text()


def test_the_churn_page_ranks_the_apis_customers_and_opens_follow_ups(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/insights/churn?model=client-experience")
    found = api(site, "/api/v1/insights/churn/client-experience")
    if found["note"]:  # too little history in the small demo: said, not computed
        assert found["note"] in page.locator("main").inner_text()
        return
    ev = found["evaluation"]
    assert f"{ev['auc']:.3f}" in page.get_by_test_id("evaluation").inner_text()
    rows = page.locator("[data-testid=at-risk] tr[data-customer]").evaluate_all(
        "rows => rows.map(r => [Number(r.dataset.customer),"
        " r.querySelector('[data-col=risk]').innerText])"
    )
    assert rows == [[r["customer_id"], f"{r['risk'] * 100:.1f} %"] for r in found["at_risk"]]
    calibration = page.get_by_test_id("calibration").locator("tbody tr").count()
    assert calibration == len(ev["calibration"])
    screenshot(page, "insights-churn")
    before = len(api(site, "/api/v1/followups", reason="churn_risk", limit=1000))
    page.get_by_label("Risk at least (%)").fill("1")
    page.get_by_label("Among the most at risk").fill("3")
    page.get_by_role("button", name="Create follow-ups for their owners").click()
    page.wait_for_url("**created=**")
    note = page.get_by_test_id("created").inner_text()
    after = api(site, "/api/v1/followups", reason="churn_risk", limit=1000)
    created = len(after) - before
    assert note.startswith(f"{created:,} follow-ups created") and created <= 3


def test_a_segment_is_saved_from_its_page_and_filters_another(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/insights/segments")
    name = f"Web buyers {uuid.uuid4().hex[:4]}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("Rules (YAML or JSON)").fill(
        "rules:\n  - {kind: trait, field: no_such_trait, value: x}\n"
    )
    page.get_by_role("button", name="Save segment").click()
    expect(page.locator("#err-rules")).to_contain_text("no customer has a trait 'no_such_trait'")
    assert page.get_by_label("Name").input_value() == name  # the form keeps what was typed
    page.get_by_label("Rules (YAML or JSON)").fill(
        "rules:\n  - {kind: trait, field: channel, value: web}\n"
        "  - {kind: event, event: Order Completed}\n"
    )
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_url("**/insights/segments?done=saved")
    saved = api(site, f"/api/v1/segments/{name}")
    row = page.locator(f"[data-testid=segments] tr[data-segment='{name}']")
    assert row.locator("[data-col=members]").inner_text() == f"{saved['members']:,}"
    assert saved["members"] > 0
    # the segment filters the purchases page as it filters the API
    row.get_by_role("link", name="Purchases").click()
    page.wait_for_url("**/insights/purchases?segment=segment*")
    found = api(site, "/api/v1/insights/purchases", where=f"segment={name}")
    summary = page.get_by_test_id("summary").inner_text()
    assert f"{found['buyers']:,}" in summary and found["buyers"] <= saved["members"]
    screenshot(page, "insights-segments-filter")
    # ... and breaks the funnel down: its members against the rest
    page.goto(f"{site.url}/funnels")
    steps = [page.get_by_label(f"Step {n}", exact=True).input_value() for n in (1, 2, 3, 4)]
    page.get_by_label("Kind of breakdown").select_option("segment")
    page.get_by_label("Break down by").fill(name)
    page.get_by_role("button", name="Show funnel").click()
    page.wait_for_url("**breakdown_by=segment**")
    split = _api(site, "POST", "/api/v1/analytics/funnel", json={
        **_spec(steps), "breakdown": {"segment": name}})  # fmt: skip
    shown = (
        page.get_by_test_id("funnel-breakdown")
        .locator("tbody tr")
        .evaluate_all("rows => rows.map(r => [r.cells[0].innerText, r.cells[1].innerText])")
    )
    assert shown == [[g["value"], f"{g['steps'][0]['count']:,}"] for g in split["breakdown"]]
    assert {g["value"] for g in split["breakdown"]} == {f"in {name}", f"not in {name}"}
    # A rule names it: deleting it from the page is refused, naming the rule, and it stays.
    rule = {
        "name": f"Call {name}",
        "enabled": False,
        "trigger": {"on": "event", "event": "Order Completed"},
        "conditions": {"rules": [{"kind": "segment", "segment": name}]},
        "actions": [{"type": "followup", "summary": "Call them"}],
    }
    _api(site, "POST", "/api/v1/automations", json=rule)
    page.goto(f"{site.url}/insights/segments")
    row = page.locator(f"[data-testid=segments] tr[data-segment='{name}']")
    row.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("alert")).to_contain_text(f"still used by rule 'Call {name}'")
    assert page.locator(f"[data-testid=segments] tr[data-segment='{name}']").count() == 1
    auth = {"Authorization": f"Bearer {site.secret_key}"}
    gone = httpx.delete(f"{site.url}/api/v1/automations/Call {name}", headers=auth, timeout=30)
    assert gone.status_code == 204, gone.text
    page.goto(f"{site.url}/insights/segments")
    row.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/insights/segments?done=deleted")
    assert page.locator(f"[data-testid=segments] tr[data-segment='{name}']").count() == 0
