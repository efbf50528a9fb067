"""The journey map: in a real browser on the demo site, its stages, key numbers, scores
and pain points are the REST API's for the same model and filters, it exports a PNG and
prints, and fits a phone; in-process on a small project of known events, what customers
did in each stage is counted exactly, within the dates and segment chosen."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cxloop.lifecycle.service import create_department
from cxloop.project import open_database
from cxloop.settings import Settings
from cxloop.store.users import create_user
from cxloop.web.app import create_app
from cxloop.web.pages.base import fmt_duration
from tests.conftest import make_keys
from tests.site import PASSWORD, Site, screenshot, sign_in
from tests.test_web_lifecycle import api, first_line, surveyed_model, window

CHART = "#journey-chart .chart"
# The map's cells: {lane: {stage: text}}, and the stages its columns name.
CELLS = """() => Object.fromEntries(
  [...document.querySelectorAll('[data-testid=journey] tr[data-lane]')].map(tr =>
    [tr.dataset.lane, Object.fromEntries([...tr.querySelectorAll('td[data-stage]')]
      .map(td => [td.dataset.stage, td.innerText.trim()]))]))"""
COLUMNS = """() => [...document.querySelectorAll('[data-testid=journey] thead th[data-stage]')]
  .map(th => [th.dataset.stage, th.innerText.trim()])"""
FIGURES = """() => Object.fromEntries([...document.querySelectorAll('tr[data-lane=figures] td')]
  .map(td => [td.dataset.stage, Object.fromEntries([...td.querySelectorAll('[data-figure]')]
    .map(dd => [dd.dataset.figure, dd.innerText.trim()]))]))"""


def pct(value: float | None) -> str:
    return "\u2013" if value is None else f"{value * 100:.1f} %"


def check_map(page: Any, report: dict[str, Any], nps: dict[str, Any]) -> dict[str, Any]:
    """Columns, owners, key numbers and stage NPS are the API's; returns the cells."""
    key = report["model"]
    stages = report["stages"]
    columns = page.evaluate(COLUMNS)
    assert [c[0] for c in columns] == [s["key"] for s in stages]
    assert [" ".join(c[1].split()) for c in columns] == [
        f"{i} {s['name']}" for i, s in enumerate(stages, 1)
    ]
    cells = page.evaluate(CELLS)
    figures = page.evaluate(FIGURES)
    nps_at = {g["key"]: g for g in nps["groups"]}
    for stage in stages:
        shown = figures[stage["key"]]
        assert shown["entered"] == f"{stage['entered']:,}"
        assert shown["conversion_rate"] == pct(stage["conversion_rate"])
        assert shown["drop_off_rate"] == pct(stage["drop_off_rate"])
        assert shown["median"] == fmt_duration(stage["median_time_in_stage_s"])
        assert cells["owner"][stage["key"]] == stage["owner"]
        group = nps_at.get(f"{key}:{stage['key']}")
        satisfaction = cells["satisfaction"][stage["key"]]
        if group:
            assert f"NPS {group['nps']:+.1f} ± {group['margin_of_error']:.1f}" in satisfaction
            assert f"{group['responses']:,} answers" in satisfaction
        else:
            assert "NPS" not in first_line(satisfaction)
    return dict(cells)


def test_the_map_shows_the_apis_figures_scores_and_pain_points(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/journey?model={key}")
    report = api(site, f"/api/v1/lifecycle/{key}/report")
    nps = api(site, "/api/v1/feedback/nps", by="stage")
    assert page.locator("h1").inner_text() == f"Journey map: {report['model_name']}"
    cells = check_map(page, report, nps)
    # each touchpoint surveyed in a stage shows that touchpoint's own scores
    touchpoints = {
        m: {g["key"]: g for g in api(site, f"/api/v1/feedback/{m}", by="touchpoint")["groups"]}
        for m in ("nps", "csat", "ces")
    }
    shown = page.locator("tr[data-lane=satisfaction] [data-touchpoint]").all_inner_texts()
    assert shown, "the demo surveys customers at touchpoints"
    for line in shown:
        name, _, rest = line.partition(": ")
        measure, score = rest.split()[:2]
        group = touchpoints[measure.lower()][name]
        expected = {
            "NPS": f"{group.get('nps', 0):+.1f}",
            "CSAT": f"{group.get('csat', 0):.1f}",
            "CES": f"{group.get('ces', 0):.2f}",
        }[measure]
        assert score == expected, line
        assert f"({group['responses']:,})" in line
    # pain points: the stage's themes whose comments read negative, as the API ranks them
    themes = api(site, "/api/v1/feedback/themes", by="stage", top=10)
    seen_any = False
    for group in themes["groups"]:
        if not str(group["key"]).startswith(f"{key}:"):
            continue
        stage = str(group["key"]).split(":", 1)[1]
        negative = [t for t in group["themes"] if (t["mean_sentiment"] or 0) < 0][:3]
        items = page.locator(f"tr[data-lane=pains] td[data-stage='{stage}'] .jm-label")
        assert items.all_inner_texts() == [f"\u201c{t['phrase']}\u201d" for t in negative]
        seen_any = seen_any or bool(negative)
    assert seen_any, "the demo's comments have negative themes"
    # the actions lane names events the stage's customers had
    assert any("times" in text or "time" in text for text in cells["actions"].values())
    screenshot(page, "journey")


def test_a_segment_and_dates_from_the_form_give_the_apis_figures(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    first, last = window(site)
    sign_in(page, site, "analyst")
    page.goto(f"{site.url}/journey?model={key}")
    everyone = page.evaluate(FIGURES)
    page.get_by_label("From", exact=True).fill(first.isoformat())
    page.get_by_label("To", exact=True).fill(last.isoformat())
    page.get_by_label("Segment").select_option("channel")
    page.get_by_label("is", exact=True).fill("web")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**/journey?*value=web*")
    page.wait_for_function(f"() => document.querySelector('#f-from').value === '{first}'")
    report = api(
        site, f"/api/v1/lifecycle/{key}/report",
        **{"from": first.isoformat(), "to": (last + timedelta(days=1)).isoformat(),
           "where": "channel=web"},
    )  # fmt: skip
    nps = api(
        site, "/api/v1/feedback/nps", by="stage",
        **{"from": first.isoformat(), "to": last.isoformat(), "where": "channel=web"},
    )  # fmt: skip
    check_map(page, report, nps)
    assert page.evaluate(FIGURES) != everyone
    scope = page.get_by_test_id("scope").inner_text()
    assert f"From {first} to {last}" in scope and "channel = web" in scope
    screenshot(page, "journey-segment")


def test_the_map_downloads_its_chart_as_png_and_prints_without_the_controls(
    site: Site, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    page.goto(f"{site.url}/journey?model={key}")
    button = page.get_by_role("button", name="Download PNG")
    target = button.get_attribute("data-export-chart")
    assert target == CHART
    page.wait_for_function(
        "(sel) => { const el = document.querySelector(sel);"
        " return !!(el && window.echarts && window.echarts.getInstanceByDom(el)); }",
        arg=target,
    )
    page.wait_for_timeout(600)  # the bars grow in
    with page.expect_download() as info:
        button.click()
    download = info.value
    assert download.suggested_filename == f"journey-{key}.png"
    saved = tmp_path / "journey.png"
    download.save_as(saved)
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert saved.stat().st_size > 5000
    printer = page.get_by_role("button", name="Print / save as PDF")
    assert printer.get_attribute("data-print") is not None
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    assert not page.locator("form.filters").is_visible()
    assert not button.is_visible() and not printer.is_visible()
    assert page.get_by_test_id("journey").is_visible()
    screenshot(page, "journey-print")
    page.emulate_media(media="screen")
    assert button.is_visible()


def test_the_map_scrolls_sideways_on_a_phone_and_says_bad_dates(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    key = surveyed_model(site)
    sign_in(page, site, "member")
    page.set_viewport_size({"width": 360, "height": 800})
    page.goto(f"{site.url}/journey?model={key}")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 362
    scroller = page.locator(".jm-scroll")
    assert scroller.evaluate("el => el.scrollWidth > el.clientWidth + 100")
    # the lane names stay in view while the stages scroll past
    lane = page.locator("tr[data-lane=owner] th")
    before = lane.evaluate("el => el.getBoundingClientRect().left")
    scroller.evaluate("el => { el.scrollLeft = 400; }")
    assert abs(lane.evaluate("el => el.getBoundingClientRect().left") - before) < 2
    scroller.evaluate("el => { el.scrollLeft = 0; }")
    screenshot(page, "journey-phone")
    answer = page.goto(f"{site.url}/journey?model={key}&to=2026-13-01")
    assert answer is not None and answer.status == 200
    assert "is not a date" in page.locator("#e-to").inner_text()
    assert page.locator("#f-to").get_attribute("aria-invalid") == "true"
    assert page.get_by_test_id("journey").is_visible()  # shown without the broken filter


# -- in-process, on events whose stages and counts are known -------------------------------

NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN, MEMBER = "admin@journey.example.com", "member@journey.example.com"


def _message(kind: str, mid: str, user: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    moment = (NOW - timedelta(days=days_ago)).isoformat()
    return {"type": kind, "messageId": mid, "userId": user, "timestamp": moment, **fields}


# ann: Target from 40 days ago, Engage (skipping Connect) from 38; bob: Target from 30.
MESSAGES = [
    _message("identify", "j0", "ann", 41, traits={"country": "Spain"}),
    _message("track", "j1", "ann", 40, event="Ad Clicked", channel="web"),
    _message("track", "j2", "ann", 39, event="Newsletter Read", channel="email"),
    _message("track", "j3", "ann", 38.5, event="Newsletter Read", channel="email"),
    _message("track", "j4", "ann", 38, event="Demo Requested", channel="web"),
    _message("track", "j5", "ann", 37, event="Chat Started", channel="phone"),
    _message("page", "j6", "ann", 36, name="Docs", channel="web"),
    _message("track", "j7", "bob", 30, event="Ad Clicked", channel="web"),
    _message("track", "j8", "bob", 29, event="Newsletter Read", channel="email"),
]


class _Cells(HTMLParser):
    """The journey table's cells as text: ``{lane: {stage: text}}``."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, str]] = {}
        self.lane: str | None = None
        self.stage: str | None = None
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and found.get("data-lane"):
            self.lane = found["data-lane"]
            self.cells[self.lane or ""] = {}
        elif tag == "td" and self.lane and found.get("data-stage"):
            self.stage, self.depth = found["data-stage"], 0
            self.cells[self.lane][self.stage or ""] = ""
        elif self.stage and tag in ("li", "p", "div", "dt", "dd"):
            self.cells[self.lane or ""][self.stage] += "\n"

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self.stage = None
        elif tag == "tr":
            self.lane = None

    def handle_data(self, data: str) -> None:
        if self.lane and self.stage:
            self.cells[self.lane][self.stage] += data


def cells_of(html: str) -> dict[str, dict[str, list[str]]]:
    parser = _Cells()
    parser.feed(html)
    return {
        lane: {
            stage: [" ".join(line.split()) for line in text.splitlines() if line.strip()]
            for stage, text in stages.items()
        }
        for lane, stages in parser.cells.items()
    }


@pytest.fixture
def fresh(embedded_settings: Settings) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """A project of its own in-process, no model installed yet: the app, the secret key's
    header, and the write key."""
    write_key, secret_key = make_keys(embedded_settings)
    engine = open_database(embedded_settings)
    try:
        with engine.begin() as conn:
            create_department(conn, "marketing")
            create_user(conn, email=ADMIN, role="admin", password=PASSWORD)
            create_user(conn, email=MEMBER, role="member", password=PASSWORD,
                        department="marketing")  # fmt: skip
    finally:
        engine.dispose()
    with TestClient(create_app(embedded_settings)) as http:
        yield http, {"Authorization": f"Bearer {secret_key}"}, write_key


def _as(http: TestClient, email: str) -> None:
    http.cookies.clear()
    answer = http.post("/login", data={"email": email, "password": PASSWORD},
                       follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text


def test_without_a_model_the_pages_say_how_to_install_one(
    fresh: tuple[TestClient, dict[str, str], str],
) -> None:
    http, _auth, _write = fresh
    _as(http, ADMIN)
    for path in ("/journey", "/lifecycle"):
        page = http.get(path)
        assert page.status_code == 200
        assert "No lifecycle model is installed yet" in page.text
        assert "cxloop lifecycle apply" in page.text
        assert '<a class="button" href="/settings">Open Settings</a>' in page.text
        assert 'data-testid="journey"' not in page.text
    _as(http, MEMBER)
    for path in ("/journey", "/lifecycle"):
        page = http.get(path)
        assert page.status_code == 200
        assert "Ask an admin to install one" in page.text
        assert 'href="/settings"' not in page.text  # a member cannot install models


def test_what_customers_did_in_each_stage_is_counted_within_the_filters(
    fresh: tuple[TestClient, dict[str, str], str], embedded_settings: Settings
) -> None:
    http, auth, write_key = fresh
    installed = http.post("/api/v1/lifecycle/models", json={"preset": "client-experience"},
                          headers=auth)  # fmt: skip
    assert installed.status_code == 201, installed.text
    sent = http.post("/v1/batch", content=json.dumps({"batch": MESSAGES}), auth=(write_key, ""))
    assert sent.status_code == 200, sent.text
    _as(http, MEMBER)

    cells = cells_of(http.get("/journey?model=client-experience").text)
    actions, touch = cells["actions"], cells["touchpoints"]
    assert actions["target"] == ["Newsletter Read 3 times", "Ad Clicked 2 times"]
    assert touch["target"] == ["email 60 %", "web 40 %"]
    # the event that moved ann on belongs to the stage it opened
    assert actions["engage"] == ["Chat Started 1 time", "Demo Requested 1 time"]
    assert touch["engage"] == ["web 67 %", "phone 33 %", "Pages: Docs"]
    assert actions["connect"] == ["No tracked events in this stage."]
    assert cells["owner"]["engage"] == ["sales"]
    figures = cells["figures"]["target"]
    assert figures[:4] == ["Entered", "2", "Conversion", "50.0 %"]
    assert cells["pains"]["target"] == ["No comments from this stage."]

    # only the events of the days chosen (and the stays that began in them)
    since = (NOW - timedelta(days=35)).astimezone(embedded_settings.zone).date()
    cells = cells_of(http.get(f"/journey?model=client-experience&from={since}").text)
    assert cells["actions"]["target"] == ["Ad Clicked 1 time", "Newsletter Read 1 time"]
    assert cells["actions"]["engage"] == ["No tracked events in this stage."]
    assert cells["figures"]["target"][:2] == ["Entered", "1"]

    # only the segment's customers
    cells = cells_of(http.get("/journey?model=client-experience&segment=country&value=Spain").text)
    assert cells["actions"]["target"] == ["Newsletter Read 2 times", "Ad Clicked 1 time"]
    assert cells["touchpoints"]["target"] == ["email 67 %", "web 33 %"]
    report = http.get("/api/v1/lifecycle/client-experience/report",
                      params={"where": "country=Spain"}, headers=auth).json()  # fmt: skip
    entered = {s["key"]: s["entered"] for s in report["stages"]}
    assert cells["figures"]["target"][:2] == ["Entered", f"{entered['target']}"]
    assert entered["target"] == 1
