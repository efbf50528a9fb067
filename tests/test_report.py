"""The report document: `cxloop report` against the served demo project, the PDF rendered
to PNG pages with pdftoppm and read back with pdftotext, its key numbers checked against
the API's figures; the HTML self-contained; a department's view; refusals."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.site import Site, sign_in
from tests.test_cli import cx

BENCHMARK = {"measure": "nps", "scope": "industry", "name": "Retail test",
             "value": 41.0, "source": "made up"}  # fmt: skip


def _api(site: Site, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {site.secret_key}"}
    return httpx.request(method, f"{site.url}{path}", headers=headers, timeout=120, **kwargs)


def _figures(site: Site, **params: str) -> dict[str, Any]:
    answer = _api(site, "GET", "/api/v1/report", params=params)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _benchmark(site: Site) -> None:
    listed = _api(site, "GET", "/api/v1/feedback/benchmarks").json()
    if not any(b["name"] == BENCHMARK["name"] for b in listed):
        made = _api(site, "POST", "/api/v1/feedback/benchmarks", json=BENCHMARK)
        assert made.status_code == 201, made.text


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_pdf_renders_to_pages_holding_the_key_numbers(site: Site, tmp_path: Path) -> None:
    assert shutil.which("pdftoppm") and shutil.which("pdftotext"), "make poppler installs them"
    _benchmark(site)
    out = tmp_path / "report.pdf"
    done = cx(site.settings, "report", "--out", str(out))  # the running server answers
    assert f"wrote {out}" in done.stderr
    assert out.read_bytes().startswith(b"%PDF-")
    figures = _figures(site)

    subprocess.run(["pdftoppm", "-r", "50", "-png", str(out), str(tmp_path / "page")],
                   check=True, timeout=120)  # fmt: skip
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2  # overview and flow, then the insights
    for page in pages:
        assert page.read_bytes().startswith(b"\x89PNG") and page.stat().st_size > 5_000

    read = subprocess.run(["pdftotext", "-layout", str(out), "-"], check=True,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    text = _one_line(read.stdout)
    words = set(text.split())
    overview, nps = figures["overview"], figures["nps"]
    assert figures["title"] in text
    # the overview's tiles (laid out side by side, so read as words)
    assert {f"{overview['customers']:,}", f"{overview['active_customers']:,}"} <= words
    assert _pct(overview["lifecycle"]["conversion_rate"]) in text
    assert _pct(overview["lifecycle"]["churn_rate"]) in text
    assert f"{nps['nps']:.1f}" in words
    assert f"NPS ± {nps['margin_of_error']:.1f}, {nps['responses']:,} answers" in text
    for stage in figures["stages"]:  # the stage flow's table
        assert f"{stage['name']} {stage['owner']} {stage['entered']:,} {stage['exited']:,}" in text
    worst = figures["gaps"]["stages"][0]
    assert f"1 {worst['name']} {worst['owner']} {worst['priority']:.1f}" in text
    top = figures["drivers"]["top"][0]
    low, high = top["importance_ci"]
    assert f"{top['importance']:.1f} % ({low:.1f}\N{EN DASH}{high:.1f})" in text
    benchmark = next(b for b in figures["benchmarks"] if b["name"] == BENCHMARK["name"])
    assert f"{BENCHMARK['name']} industry 41.0 {benchmark['difference']:+.1f}" in text
    assert f"{figures['followups']['overdue']:,} overdue" in text
    assert f"page 1 of {len(pages)}" in text


def test_the_html_is_self_contained_with_its_charts(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    cx(site.settings, "report", "--out", str(out), "--model", "client-experience")
    html = out.read_text()
    figures = _figures(site, model="client-experience")
    assert figures["model"] == "client-experience"
    assert html.count("<svg") == 3  # stage flow, drivers' quadrant, NPS against benchmarks
    assert "<script" not in html and "src=" not in html and "<link" not in html
    for stage in figures["stages"]:
        assert f'data-stage="{stage["key"]}"' in html
    assert f'data-figure="customers">{figures["overview"]["customers"]:,}<' in html
    served = _api(site, "GET", "/api/v1/report", params={"model": "client-experience",
                                                          "format": "html"})  # fmt: skip
    assert served.headers["content-type"].startswith("text/html")
    assert "client-experience" in served.text and served.text.count("<svg") == 3
    pdf = _api(site, "GET", "/api/v1/report", params={"format": "pdf"})
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content[:5] == b"%PDF-"


def test_a_departments_report_narrows_gaps_and_follow_ups_to_what_it_owns(site: Site) -> None:
    everyone = _figures(site)
    sales = _figures(site, department="Sales")  # names match without regard to case
    assert sales["title"].endswith("for Sales")
    owned = [s["key"] for s in everyone["gaps"]["stages"] if s["owner"] == "sales"]
    assert owned and [s["key"] for s in sales["gaps"]["stages"]] == owned
    assert [d["department"] for d in sales["followups"]["departments"]] == ["sales"]
    for shared in ("customers", "lifecycle", "nps"):  # the company picture stays whole
        assert sales["overview"][shared] == everyone["overview"][shared]
    row = sales["followups"]["departments"][0]
    html = _api(site, "GET", "/api/v1/report", params={"department": "Sales", "format": "html"})
    assert f"sales: {row['followups']:,} follow-ups, {row['open']:,} open" in html.text
    assert f"Company-wide: {everyone['followups']['followups']:,} follow-ups" in html.text


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"department": "Nobody"}, 404, "no department named 'Nobody'"),
        ({"model": "nope"}, 404, "nope"),
        ({"from": "2026-10-02", "to": "2026-10-01"}, 422, "to: must not be before from"),
        ({"format": "docx"}, 422, "format"),
    ],
)
def test_bad_report_requests_say_which_field(
    site: Site, params: dict[str, str], status: int, says: str
) -> None:
    answer = _api(site, "GET", "/api/v1/report", params=params)
    assert answer.status_code == status, answer.text
    assert says in answer.text


def test_the_cli_refuses_a_file_it_cannot_write(site: Site, tmp_path: Path) -> None:
    wrong = cx(site.settings, "report", "--out", str(tmp_path / "r.docx"), check=False)
    assert wrong.returncode == 2 and "must end in .html or .pdf" in wrong.stderr
    nowhere = cx(site.settings, "report", "--out", str(tmp_path / "no" / "r.pdf"), check=False)
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr
    unknown = cx(site.settings, "report", "--out", str(tmp_path / "r.pdf"), "--department",
                 "Nobody", check=False)  # fmt: skip
    assert unknown.returncode == 2 and "no department named 'Nobody'" in unknown.stderr


def test_the_overview_links_the_report_for_a_signed_in_user(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "member")
    page.goto(f"{site.url}/?model=client-experience&from=2026-01-01")
    links = page.get_by_test_id("report-links")
    pdf_href = links.get_by_role("link", name="PDF").get_attribute("href")
    assert pdf_href and "format=pdf" in pdf_href and "from=2026-01-01" in pdf_href
    pdf = page.request.get(f"{site.url}{pdf_href}")  # the session's cookie, no key
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf"
    links.get_by_role("link", name="HTML").click()
    page.wait_for_url("**/api/v1/report?*format=html*")
    figures = _figures(site, model="client-experience", **{"from": "2026-01-01"})
    assert page.locator("h1").inner_text() == figures["title"]
    assert "Period 2026-01-01 to today" in page.locator("header").inner_text()
    assert page.locator("svg").count() == 3
