"""Every page, signed in, in a real browser: usable from a 360 px phone to a wide screen,
by keyboard, with labelled controls, readable contrast, and a loading indicator."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.site import Site, screenshot, sign_in

PAGES = [
    "/",
    "/lifecycle",
    "/journey",
    "/insights/gaps",
    "/insights/drivers?outcome=churn&model=client-experience",
    "/insights/retarget",
    "/insights/purchases",
    "/insights/churn?model=client-experience",
    "/insights/segments",
    "/funnels",
    "/retention",
    "/paths",
    "/customers",
    "/inbox",
    "/feedback",
    "/settings",
]
CSS = Path(__file__).resolve().parents[1] / "src" / "cxloop" / "web" / "static" / "app.css"

# Controls without a name a screen reader can announce (a <label for>, a wrapping
# <label>, aria-label or aria-labelledby), and whether the page scrolls sideways.
UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !el.getAttribute('aria-labelledby'))
  .map(el => el.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


@pytest.mark.parametrize("path", PAGES)
def test_each_page_fits_a_phone_and_labels_its_controls(
    site: Site, browser_page: Any, path: str
) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.set_viewport_size({"width": 360, "height": 780})
    answer = page.goto(f"{site.url}{path}")
    assert answer is not None and answer.status == 200, path
    page.wait_for_load_state("networkidle")
    assert page.locator("h1").count() >= 1
    assert page.evaluate(UNLABELLED) == []
    assert page.evaluate(OVERFLOW) <= 1, f"{path} scrolls sideways at 360 px"
    # the menu opens from its button on a phone, and says so to assistive technology
    toggle = page.get_by_role("button", name="Menu")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert page.get_by_role("navigation", name="Main").is_visible()
    name = "phone-" + (path.strip("/").replace("/", "-") or "overview")
    screenshot(page, name)


def test_keyboard_reaches_the_content_first(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.textContent.trim()")
    assert focused == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("() => document.activeElement.id") == "main"
    # the navigation is reachable by Tab and opens pages by Enter
    page.reload()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.textContent.trim()") == "Customers":
            break
    else:
        pytest.fail("Tab never reached the Customers link")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{site.url}/customers")


def test_a_page_that_is_not_there_says_so(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    answer = page.goto(f"{site.url}/no-such-page")
    assert answer is not None and answer.status == 404
    assert page.get_by_role("heading", name="Page not found").is_visible()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_text_colours_meet_wcag_aa_contrast() -> None:
    """The stylesheet's text colours against the backgrounds they are used on: 4.5:1."""
    found = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", CSS.read_text()))
    pairs = [
        ("ink", "card"),
        ("ink", "bg"),
        ("muted", "card"),
        ("muted", "bg"),
        ("brand", "card"),
        ("brand-ink", "brand"),
        ("bad", "card"),
        ("good", "card"),
        ("warn", "card"),
    ]
    weak = {
        f"{text} on {ground}": round(contrast(found[text], found[ground]), 2)
        for text, ground in pairs
        if contrast(found[text], found[ground]) < 4.5
    }
    assert weak == {}
    assert contrast("#ffffff", "#102a43") >= 4.5  # the header's links
