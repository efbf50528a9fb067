"""The automation settings in a real browser, as an admin, on the demo site: the demo's
rules and run history, a rule previewed on a real customer and saved from the page,
webhooks (secret shown once, private targets refused), staff with photo upload, and the
audit log. Each test cleans up what it made, so the shared site stays as others expect."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from tests.site import Site, screenshot, sign_in


def _api(site: Site, path: str, **params: Any) -> Any:
    answer = httpx.get(
        f"{site.url}{path}",
        params=params,
        timeout=30,
        headers={"Authorization": f"Bearer {site.secret_key}"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_demo_rules_show_with_their_runs(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/automations")
    rows = page.get_by_test_id("rules").locator("tbody tr")
    names = {rows.nth(i).get_attribute("data-name") for i in range(rows.count())}
    assert {"Pre-visit notice", "Detractor call-back", "Win-back e-mail"} <= names
    by_api = {r["name"]: r for r in _api(site, "/api/v1/automations")}
    pre_visit = page.locator('tr[data-name="Pre-visit notice"]')
    done = by_api["Pre-visit notice"]["runs"].get("done", 0)
    assert done > 0 and pre_visit.locator("td").nth(3).inner_text() == f"{done:,}"
    assert "24h before scheduled_at" in pre_visit.inner_text()
    runs = page.get_by_test_id("runs")
    assert runs.locator("tbody tr").count() > 0 and "done" in runs.inner_text()
    screenshot(page, "settings-automations")
    page.get_by_role("link", name="Pre-visit notice", exact=True).click()
    assert page.get_by_role("heading", name="Recent runs of Pre-visit notice").is_visible()
    assert {r["rule"] for r in _api(site, "/api/v1/automation-runs", rule="Pre-visit notice")} == {
        "Pre-visit notice"
    }

    page.get_by_role("button", name="Turn off Win-back e-mail").click()
    assert "Rule disabled" in page.get_by_test_id("done").inner_text()
    assert not _api(site, "/api/v1/automations/Win-back e-mail")["enabled"]
    page.get_by_role("button", name="Turn on Win-back e-mail").click()
    assert _api(site, "/api/v1/automations/Win-back e-mail")["enabled"]


def test_a_rule_is_previewed_then_saved_from_the_page(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/automations")
    name = f"Thanks {uuid.uuid4().hex[:6]}"
    text = (
        f"name: {name}\ntrigger:\n  on: event\n  event: Order Completed\nactions:\n"
        "  - type: email\n    subject: Thanks {{ customer.first_name }}\n"
        "    text: Hello {{ customer.name }}, your order is on its way.\n"
    )
    # A customer with a name (the site's data has e-mail addresses without one too).
    found = _api(site, "/api/v1/customers", limit=100, search="@")["items"]
    customer = next(c for c in found if c["name"])
    page.get_by_label("Rule", exact=True).fill(text.replace("customer.name", "customer.nick"))
    page.get_by_label("Preview for customer").fill(str(customer["id"]))
    page.get_by_role("button", name="Preview").click()
    error = page.get_by_test_id("rule-error")
    assert "actions.0.text" in error.inner_text() and "nick" in error.inner_text()
    page.get_by_label("Rule", exact=True).fill(text)
    page.get_by_role("button", name="Preview").click()
    preview = page.get_by_test_id("preview")
    assert f"Preview for customer {customer['id']}" in preview.inner_text()
    assert f"Hello {customer['name']}, your order is on its way." in preview.inner_text()
    screenshot(page, "settings-automations-preview")
    page.get_by_role("button", name="Save rule").click()
    assert "Rule saved" in page.get_by_test_id("done").inner_text()
    assert page.locator(f'tr[data-name="{name}"]').count() == 1
    entries = _api(site, "/api/v1/audit", entity="rule")
    assert entries[0]["summary"] == f"rule {name} created"
    assert entries[0]["actor"] == site.email("admin")
    # Changed on the page: the rule comes back as the YAML it was written in.
    page.get_by_role("link", name=f"Change {name}").click()
    assert page.get_by_role("heading", name=f"Change rule {name}").is_visible()
    written = page.get_by_label("Rule", exact=True).input_value()
    assert "subject: Thanks {{ customer.first_name }}" in written and "'on': event" in written
    page.get_by_label("Rule", exact=True).fill(written.replace("Thanks {{", "Thank you {{"))
    page.get_by_role("button", name="Save changes").click()
    assert "Rule saved" in page.get_by_test_id("done").inner_text()
    changed = _api(site, f"/api/v1/automations/{name}")
    assert changed["actions"][0]["subject"] == "Thank you {{ customer.first_name }}"
    assert changed["version"] == 2 and page.locator(f'tr[data-name="{name}"]').count() == 1
    assert _api(site, "/api/v1/audit", entity="rule")[0]["summary"] == f"rule {name} changed"
    page.get_by_role("button", name=f"Delete {name}").click()
    assert page.locator(f'tr[data-name="{name}"]').count() == 0


def test_a_webhook_shows_its_secret_once_and_refuses_private_targets(
    site: Site, browser_page: Any
) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/webhooks")
    name = f"crm-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Name").fill(name)
    page.get_by_label("URL (http or https)").fill("http://10.0.0.5/hooks")
    page.get_by_label("case").check()
    page.get_by_role("button", name="Create webhook").click()
    assert "private, loopback or link-local" in page.locator("#new-webhook").inner_text()
    assert page.get_by_label("Name").input_value() == name  # what was typed is kept
    page.get_by_label("URL (http or https)").fill("https://93.184.215.14/hooks")
    page.get_by_role("button", name="Create webhook").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    screenshot(page, "settings-webhooks")
    page.goto(f"{site.url}/settings/webhooks")
    assert secret not in page.content()
    assert page.locator(f'tr[data-name="{name}"]').count() == 1
    # While a rule posts to it, deleting it is refused on the page, naming the rule.
    auth = {"Authorization": f"Bearer {site.secret_key}"}
    rule = {
        "name": f"Tell {name}",
        "trigger": {"on": "event", "event": "Order Completed"},
        "actions": [{"type": "webhook", "endpoint": name}],
        "enabled": False,
    }
    made = httpx.post(f"{site.url}/api/v1/automations", json=rule, headers=auth, timeout=30)
    assert made.status_code == 201, made.text
    page.get_by_role("button", name=f"Delete {name}").click()
    refused = page.get_by_test_id("webhooks-error").inner_text()
    assert f"rule 'Tell {name}'" in refused and "change or delete it first" in refused
    assert page.locator(f'tr[data-name="{name}"]').count() == 1
    gone = httpx.delete(f"{site.url}/api/v1/automations/Tell {name}", headers=auth, timeout=30)
    assert gone.status_code == 204, gone.text
    page.goto(f"{site.url}/settings/webhooks")
    page.get_by_role("button", name=f"Delete {name}").click()
    assert page.locator(f'tr[data-name="{name}"]').count() == 0


def test_staff_are_listed_with_photos_and_added_with_an_upload(
    site: Site, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/staff")
    maria = page.get_by_role("img", name="Photo of Maria Lopez")
    assert maria.evaluate("img => img.complete && img.naturalWidth") == 256
    ref = f"tech-{uuid.uuid4().hex[:6]}"
    photo = tmp_path / "me.png"
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 768), (200, 80, 40)).save(buffer, format="PNG")
    photo.write_bytes(buffer.getvalue())
    page.get_by_label("Id in events").fill(ref)
    page.get_by_label("Name").fill("Pat Doe")
    page.get_by_label("Short bio").fill("New on the team.")
    page.get_by_label("Photo (JPEG, PNG, GIF or WebP)").set_input_files(str(photo))
    page.get_by_role("button", name="Save staff member").click()
    assert "Staff member saved" in page.get_by_test_id("done").inner_text()
    image = page.get_by_role("img", name="Photo of Pat Doe")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 512  # scaled down
    screenshot(page, "settings-staff")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    page.get_by_label("Id in events").fill(ref)
    page.get_by_label("Name").fill("Pat Doe")
    page.get_by_label("Photo (JPEG, PNG, GIF or WebP)").set_input_files(str(bad))
    page.get_by_role("button", name="Save staff member").click()
    assert "not an image" in page.locator("#new-staff").inner_text()
    page.goto(f"{site.url}/settings/staff")
    page.get_by_role("button", name="Delete Pat Doe").click()
    assert page.get_by_role("img", name="Photo of Pat Doe").count() == 0


def test_the_audit_log_lists_changes_newest_first(site: Site, browser_page: Any) -> None:
    page = browser_page
    sign_in(page, site, "admin")
    page.goto(f"{site.url}/settings/audit?entity=rule")
    table = page.get_by_test_id("audit")
    assert "rule Pre-visit notice created" in table.inner_text()
    assert "cxloop demo" in table.inner_text()
    assert all("rule " in row for row in table.locator("tbody tr").all_inner_texts())
    screenshot(page, "settings-audit")
