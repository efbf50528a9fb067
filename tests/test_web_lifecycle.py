"""The lifecycle page in a real browser: per stage the figures of the REST API's stage-flow
report and stage scores for the same model and filters, the funnel and the sankey, the
stalled customers, errors next to the fields, and a phone-sized screen."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import httpx

from cxloop.web.pages.base import fmt_duration
from tests.site import Site, screenshot, sign_in

CHART = "#lifecycle-chart .chart"
# The drawn chart's first series, once app.js has drawn it.
SERIES = """(sel) => { const el = document.querySelector(sel);
  const chart = el && window.echarts && window.echarts.getInstanceByDom(el);
  if (!chart) return null; const s = chart.getOption().series[0];
  return {type: s.type, data: s.data.map(d => [d.name, d.value === undefined ? null : d.value]),
          links: (s.links || []).map(l => [l.source, l.target, l.value])}; }"""
# Each stage row of the table: its cells' text by column.
ROWS = """() => Object.fromEntries(
  [...document.querySelectorAll('[data-testid=stages] tr[data-stage]')].map(tr =>
    [tr.dataset.stage, Object.fromEntries([...tr.querySelectorAll('[data-col]')]
      .map(td => [td.dataset.col, td.innerText.trim()]))]))"""


def api(site: Site, path: str, **params: Any) -> Any:
    answer = httpx.get(
        f"{site.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def surveyed_model(site: Site) -> str:
    """The installed model whose stages have NPS answers (the demo's surveys follow one)."""
    keys = [m["key"] for m in api(site, "/api/v1/lifecycle/models")]
    groups = api(site, "/api/v1/feedback/nps", by="stage")["groups"]
    placed = {str(g["key"]).split(":", 1)[0] for g in groups if g["key"]}
    found = [k for k in keys if k in placed]
    assert found, f"no model of {keys} has NPS answers per stage"
    return found[0]


def window(site: Site) -> tuple[date, date]:
    """Days around the middle of the demo's data, in the project's time zone."""
    today = datetime.now(site.settings.zone).date()
    return today - timedelta(days=150), today - timedelta(days=40)


def first_line(text: str) -> str:
    return text.splitlines()[0].strip() if text else ""


def check_stage_table(
    rows: dict[str, dict[str, str]],
    report: dict[str, Any],
    nps: dict[str, Any],
    csat: dict[str, Any],
) -> None:
    """Every stage's row says what the API's report and stage scores say."""
    key = report["model"]
    assert list(rows) == [s["key"] for s in report["stages"]]
    nps_at = {g["key"]: g for g in nps["groups"]}
    csat_at = {g["key"]: g for g in csat["groups"]}
    for stage in report["stages"]:
        row = rows[stage["key"]]
        assert row["name"] == stage["name"]
        assert row["owner"] == stage["owner"]
        for column in ("entered", "progressed", "exited", "current"):
            assert first_line(row[column]) == f"{stage[column]:,}", (stage["key"], column)
        for column in ("drop_off_rate", "conversion_rate"):
            value = stage[column]
            assert row[column] == ("\u2013" if value is None else f"{value * 100:.1f} %")
        assert row["median"] == fmt_duration(stage["median_time_in_stage_s"])
        assert row["p90"] == fmt_duration(stage["p90_time_in_stage_s"])
        if stage["target_days"]:
            assert first_line(row["over_target"]) == f"{stage['over_target'] * 100:.1f} %"
        else:
            assert row["over_target"] == "no target"
        group = nps_at.get(f"{key}:{stage['key']}")
        if group:
            assert first_line(row["nps"]) == f"{group['nps']:+.1f}"
            assert f"± {group['margin_of_error']:.1f}" in row["nps"]
            assert f"{group['responses']:,} answers" in row["nps"]
        else:
            assert row["nps"] == "no answers"
        group = csat_at.get(f"{key}:{stage['key']}")
        if group:
            assert first_line(row["csat"]) == f"{group['csat']:.1f} %"
            assert f"{group['responses']:,} answers" in row["csat"]
        else:
            assert row["csat"] == "no answers"


def test_the_stage_table_shows_the_apis_report_scores_and_open_cases(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    # a case of our own, open, for a customer standing in a stage now
    standing = next(s for s in api(site, f"/api/v1/lifecycle/{key}/stalled") if s["customers"])
    who = standing["customers"][0]["customer_id"]
    opened = httpx.post(
        f"{site.url}/api/v1/cases",
        json={"customer": str(who), "subject": "lifecycle page test", "model": key},
        headers={"Authorization": f"Bearer {site.secret_key}"},
        timeout=30,
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["stage"] == f"{key}:{standing['stage']}"
    sign_in(page, site, "member")
    page.goto(f"{site.url}/lifecycle?model={key}")
    report = api(site, f"/api/v1/lifecycle/{key}/report")
    nps = api(site, "/api/v1/feedback/nps", by="stage")
    csat = api(site, "/api/v1/feedback/csat", by="stage")
    metrics = api(site, "/api/v1/cases/metrics")
    assert page.locator("h1").inner_text() == f"Lifecycle: {report['model_name']}"
    assert page.get_by_label("Lifecycle model").input_value() == key
    rows = page.evaluate(ROWS)
    check_stage_table(rows, report, nps, csat)
    # the demo surveys some stages, so some cells show a score, not all say "no answers"
    assert any(r["nps"] != "no answers" for r in rows.values())
    open_at = {s["stage"]: s["open"] for s in metrics["stages"]}
    for stage in report["stages"]:
        expected = open_at.get(f"{key}:{stage['key']}", 0)
        assert rows[stage["key"]]["open_cases"] == f"{expected:,}"
    assert int(rows[standing["stage"]]["open_cases"].replace(",", "")) >= 1
    # exits by reason, as the report counts them
    exits = page.get_by_test_id("exits").locator("tbody tr").all_inner_texts()
    assert [line.split("\t") for line in exits] == [
        [reason, f"{n:,}"] for reason, n in report["exits_by_reason"].items()
    ]
    screenshot(page, "lifecycle")


def test_a_segment_and_dates_chosen_in_the_form_give_the_apis_figures(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    first, last = window(site)
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/lifecycle?model={key}")
    everyone = page.evaluate(ROWS)
    page.get_by_label("From", exact=True).fill(first.isoformat())
    page.get_by_label("To", exact=True).fill(last.isoformat())
    page.get_by_label("Segment").select_option("channel")
    page.get_by_label("is", exact=True).fill("web")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/lifecycle?*value=web*")
    assert f"from={first}" in page.url and f"model={key}" in page.url
    page.wait_for_function(f"() => document.querySelector('#f-from').value === '{first}'")
    # the API's "to" is the first day left out; the page's is the last day shown
    report = api(
        site, f"/api/v1/lifecycle/{key}/report",
        **{"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat(),
           "where": "channel=web"},
    )  # fmt: skip
    scores = {"from": first.isoformat(), "to": last.isoformat(), "where": "channel=web"}
    nps = api(site, "/api/v1/feedback/nps", by="stage", **scores)
    csat = api(site, "/api/v1/feedback/csat", by="stage", **scores)
    rows = page.evaluate(ROWS)
    check_stage_table(rows, report, nps, csat)
    assert rows != everyone  # the filters changed the figures
    assert sum(s["entered"] for s in report["stages"]) > 0
    screenshot(page, "lifecycle-segment")


def test_the_chart_switches_between_funnel_and_sankey(site: Site, browser_page: Any) -> None:
    page = browser_page
    key = surveyed_model(site)
    report = api(site, f"/api/v1/lifecycle/{key}/report")
    stages = report["stages"]
    sign_in(page, site, "member")
    page.goto(f"{site.url}/lifecycle?model={key}")
    page.wait_for_function(f"() => ({SERIES})('{CHART}') !== null")
    funnel = page.evaluate(SERIES, CHART)
    assert funnel["type"] == "funnel"
    assert funnel["data"] == [[s["name"], s["entered"]] for s in stages]
    funnel_link = page.get_by_role("link", name="Funnel", exact=True)
    sankey_link = page.get_by_role("link", name="Sankey", exact=True)
    assert funnel_link.get_attribute("aria-current") == "true"

    sankey_link.click()
    page.wait_for_url("**view=sankey**")
    page.wait_for_function(f"() => (({SERIES})('{CHART}') || {{}}).type === 'sankey'")
    sankey = page.evaluate(SERIES, CHART)
    expected = []
    for i, stage in enumerate(stages):
        if i + 1 < len(stages) and stage["progressed"]:
            expected.append([stage["name"], stages[i + 1]["name"], stage["progressed"]])
        if stage["exited"]:
            expected.append([stage["name"], "Left the lifecycle", stage["exited"]])
    assert sankey["links"] == expected
    assert sankey_link.get_attribute("aria-current") == "true"
    page.wait_for_timeout(600)  # the links grow in
    screenshot(page, "lifecycle-sankey")
    # the filters keep the view
    page.get_by_label("Segment").select_option("channel")
    page.get_by_label("is", exact=True).fill("web")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**value=web**")
    assert "view=sankey" in page.url
    page.wait_for_function(f"() => (({SERIES})('{CHART}') || {{}}).type === 'sankey'")
    funnel_link.click()
    page.wait_for_url("**view=funnel**")
    page.wait_for_function(f"() => (({SERIES})('{CHART}') || {{}}).type === 'funnel'")
    assert "value=web" in page.url


def test_stalled_customers_are_the_apis_and_link_to_each_customer(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    stalled = api(site, f"/api/v1/lifecycle/{key}/stalled", limit=5)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/lifecycle?model={key}")
    shown = [s for s in stalled if s["total"]]
    assert shown, "the demo has customers over a target time"
    for group in shown:
        items = page.locator(f"ul.lc-stalled[data-stage='{group['stage']}'] li a")
        hrefs = [items.nth(i).get_attribute("href") for i in range(items.count())]
        assert hrefs == [f"/customers/{c['customer_id']}" for c in group["customers"]]
        texts = items.all_inner_texts()
        assert texts == [c["user_id"] or f"Customer {c['customer_id']}" for c in group["customers"]]
        heading = page.locator(f"#stalled-{group['stage']}").inner_text()
        assert f"{group['total']:,} over" in heading
    quiet = [s["stage"] for s in stalled if not s["total"]]
    for stage in quiet:
        assert page.locator(f"ul.lc-stalled[data-stage='{stage}']").count() == 0


def test_bad_input_is_said_next_to_its_field(site: Site, browser_page: Any) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    answer = page.goto(f"{site.url}/lifecycle?model={key}&from=2025-02-30")
    assert answer is not None and answer.status == 200
    assert "is not a date" in page.locator("#e-from").inner_text()
    assert page.locator("#f-from").get_attribute("aria-invalid") == "true"
    assert page.locator("#f-from").get_attribute("aria-describedby") == "e-from"
    # the rest of the page still answers, without the broken filter
    rows = page.evaluate(ROWS)
    report = api(site, f"/api/v1/lifecycle/{key}/report")
    assert first_line(rows[report["stages"][0]["key"]]["entered"]) == (
        f"{report['stages'][0]['entered']:,}"
    )
    page.goto(f"{site.url}/lifecycle?model=no-such-model")
    assert "no lifecycle model 'no-such-model'" in page.locator("#err-model").inner_text()
    assert page.locator("#f-model").get_attribute("aria-invalid") == "true"
    page.goto(f"{site.url}/lifecycle?model={key}&segment=birth_year&value=soon")
    assert "not a year" in page.locator("#e-value").inner_text()
    assert page.get_by_test_id("stages").count() == 0
    assert "Fix the filter above" in page.locator("main").inner_text()
    page.goto(f"{site.url}/lifecycle?model={key}&from=2026-03-10&to=2026-03-01")
    assert "must not be before the first day" in page.locator("#e-to").inner_text()
    screenshot(page, "lifecycle-bad-date")


def test_the_page_fits_a_phone(site: Site, browser_page: Any) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{site.url}/lifecycle?model={key}")
    page.wait_for_load_state("networkidle")
    page.wait_for_function(f"() => ({SERIES})('{CHART}') !== null")
    assert page.evaluate("document.documentElement.scrollWidth") <= 362
    # the wide table scrolls inside its wrapper instead of the page
    wrap = page.get_by_test_id("stages").locator("xpath=..")
    assert wrap.evaluate("el => el.scrollWidth > el.clientWidth")
    assert wrap.evaluate("el => getComputedStyle(el).overflowX") == "auto"
    chart_width = page.locator(CHART).evaluate("el => el.getBoundingClientRect().width")
    assert 250 <= chart_width <= 360
    screenshot(page, "lifecycle-phone")
