"""The pre-visit notice: a staff profile with an uploaded photo, the preset rule, the e-mail
received by a real SMTP server on loopback (plain text, HTML, the photo inline), and its
HTML drawn by Debian's chromium."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from typing import Any

from PIL import Image, ImageDraw

from cxloop.automations.running import PHOTO_CID
from tests.conftest import ApiClient
from tests.site import screenshot
from tests.test_automations import runs, worker
from tests.test_closing_loop import get
from tests.test_distribution import Inbox, identify, mailing, quiet_api, send, smtp, track

__all__ = ["quiet_api", "smtp"]
NOW = datetime.now(UTC).replace(microsecond=0)
BIO = "Ten years fitting kitchens; ask her about tiles."


def portrait(size: int = 900) -> bytes:
    """A generated picture with a GPS tag in its metadata (which must not be kept)."""
    image = Image.new("RGB", (size, size), (40, 110, 160))
    ImageDraw.Draw(image).ellipse(
        (size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=(240, 200, 120)
    )
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 0.0)}  # GPSInfo
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()


def parts(message: EmailMessage) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html"):
            found[kind] = part.get_content()
        elif kind.startswith("image/"):
            found["image"] = (kind, part["Content-ID"], part.get_content())
        elif kind == "multipart/related":
            found["related"] = True
    return found


def test_the_customer_hears_who_is_coming_with_photo_and_bio(
    quiet_api: ApiClient, smtp: tuple[Inbox, int], browser_page: Any
) -> None:
    api = quiet_api
    inbox, port = smtp
    staff = {"ref": "t-7", "name": "Maria Lopez", "bio": BIO, "department": None}
    saved = api.http.post("/api/v1/staff", json=staff, headers=api.auth)
    assert saved.status_code == 201 and not saved.json()["has_photo"]
    bad = api.http.put("/api/v1/staff/t-7/photo", content=b"not a picture", headers=api.auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "photo"
    up = api.http.put("/api/v1/staff/t-7/photo", content=portrait(), headers=api.auth)
    assert up.status_code == 200 and up.json()["has_photo"]
    stored = api.http.get("/api/v1/staff/t-7/photo", headers=api.auth)
    with Image.open(io.BytesIO(stored.content)) as kept:
        assert kept.size == (512, 512) and not kept.getexif().get(0x8825)  # scaled, no GPS

    visit_at = NOW + timedelta(days=3)
    send(
        api,
        identify("ann", "ann@example.com", "Ann Lee"),
        {
            **identify("eve", "eve@example.com", "Eve"),
            "traits": {"name": "Eve\r\nBcc: spy@example.com", "email": "eve@example.com"},
        },
        track(
            "old",
            "ann",
            "Visit Scheduled",
            NOW - timedelta(days=30),
            technician_id="t-7",
            scheduled_at=(NOW - timedelta(days=29)).isoformat(),
        ),
    )
    made = api.http.post(
        "/api/v1/automations/presets/pre-visit", params={"lead": "24h"}, headers=api.auth
    )
    assert made.status_code == 201, made.text
    assert made.json()["timing"] == {"delay": "0m", "before": "24h", "of": "scheduled_at"}
    assert runs(api) == []  # the visit from before the rule starts nothing
    send(
        api,
        track(
            "v1",
            "ann",
            "Visit Scheduled",
            NOW,
            technician_id="t-7",
            scheduled_at=visit_at.isoformat(),
        ),
        track(
            "v2",
            "eve",
            "Visit Scheduled",
            NOW,
            technician_id="t-7",
            scheduled_at=visit_at.isoformat(),
        ),
    )
    [one, _two] = runs(api)
    assert one["due_at"] == (visit_at - timedelta(hours=24)).isoformat()

    mailer = worker(api, mailing(api.settings, port))
    mailer.run_once(now=visit_at - timedelta(hours=25))
    assert inbox.messages == []  # more than a day ahead: not yet
    mailer.run_once(now=visit_at - timedelta(hours=23))
    by_to = {m["To"]: m for m in inbox.messages}
    assert set(by_to) == {
        "Ann Lee <ann@example.com>",
        '"Eve Bcc: spy@example.com" <eve@example.com>',
    }
    assert all(m["Bcc"] is None for m in inbox.messages)  # no header from customer data
    message = by_to["Ann Lee <ann@example.com>"]
    parsed = message_from(message)
    assert parsed["Subject"] == "Your visit: Maria Lopez is coming"
    found = parts(parsed)
    when = visit_at.strftime("%A %-d %B %Y, %H:%M")
    assert "Maria Lopez will visit you on " + when in found["text/plain"]
    assert BIO in found["text/plain"] and "Hello Ann," in found["text/plain"]
    kind, cid, photo = found["image"]
    assert found["related"] and kind == "image/jpeg" and cid == f"<{PHOTO_CID}>"
    assert photo == stored.content
    html = found["text/html"]
    assert f'src="cid:{PHOTO_CID}"' in html and BIO in html and when in html

    # The HTML as a mail client shows it: the inline part in place of its cid.
    inline = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    browser_page.set_content(html.replace(f"cid:{PHOTO_CID}", inline))
    assert browser_page.get_by_text("Maria Lopez", exact=True).is_visible()
    assert browser_page.get_by_text(BIO).is_visible()
    image = browser_page.get_by_role("img", name="Photo of Maria Lopez")
    assert image.evaluate("img => img.complete && img.naturalWidth") == 512
    box = image.bounding_box()
    assert box is not None and box["width"] == 120 and box["height"] == 120
    screenshot(browser_page, "email-pre-visit")

    mailer.run_once(now=visit_at - timedelta(hours=1))
    assert len(inbox.messages) == 2  # once each
    assert {r["status"] for r in runs(api)} == {"done"}
    listed = get(api, "/api/v1/staff")
    assert listed[0]["photo"] == "/api/v1/staff/t-7/photo"


def message_from(message: Any) -> EmailMessage:
    from email import message_from_bytes

    parsed = message_from_bytes(message.as_bytes(), policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed
