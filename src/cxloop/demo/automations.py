"""The demo's automations: its twelve technicians as staff profiles (generated portraits),
three active rules (the pre-visit notice, the detractor call-back, the win-back e-mail
after an exit) and their run history over the last 30 days of the demo.

The rules are saved like any other (checked, audited), then enabled as of 30 days ago and
fed the history: the stored ``Visit Scheduled`` events (each judged as of its own time),
and the scans of stage exits and answers from the start. The worker runs what is due;
visits still ahead stay waiting for their time, as they would live. The demo has no mail
server, so the e-mails of the history are written as ``.eml`` files to
``CXLOOP_HOME/demo-outbox/`` instead of being sent.
"""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pyarrow as pa
from PIL import Image, ImageDraw
from sqlalchemy import update

from cxloop.automations import firing, presets, rules, staff
from cxloop.events.base import EventQuery
from cxloop.feedback.triggers import Sender
from cxloop.project import Project
from cxloop.service.worker import Worker
from cxloop.settings import Settings
from cxloop.store import audit, jobs

HISTORY_DAYS = 30
ACTOR = "cxloop demo"
TECHNICIANS = (
    ("Maria Lopez", "Ten years fitting kitchens; ask her about tiles."),
    ("Tom Becker", "Installs and explains: leaves nobody with a manual they cannot read."),
    ("Aisha Khan", "Electrician by trade, patient by nature."),
    ("Jonas Weber", "Former carpenter; measures twice, drills once."),
    ("Lena Novak", "Knows every model we sell, and the ones before them."),
    ("Samuel Okafor", "Brings shoe covers and the right spare parts."),
    ("Chloe Martin", "Ten minutes early, on principle."),
    ("Diego Rossi", "Our trainer for new technicians."),
    ("Hanna Berg", "Specialist in tricky old buildings."),
    ("Yuki Tanaka", "Sets everything up and shows you the app before leaving."),
    ("Omar Haddad", "Fifteen years in field service, still curious."),
    ("Eva Svensson", "Calm hands for complicated installations."),
)
_COLOURS = ((40, 110, 160), (160, 70, 60), (60, 130, 90), (120, 80, 150), (190, 130, 40))


def portrait(name: str, seed: int) -> bytes:
    """A generated avatar: a coloured disc with the initials (no real person's photo)."""
    rng = random.Random(seed)
    image = Image.new("RGB", (256, 256), (236, 240, 244))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 248, 248), fill=rng.choice(_COLOURS))
    initials = "".join(part[0] for part in name.split()[:2])
    draw.text((128, 128), initials, fill=(255, 255, 255), anchor="mm", font_size=96)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def load_automations(project: Project) -> int:
    """Staff, rules and their history, once per project. Returns the runs started."""
    with project.engine.connect() as conn:
        if rules.list_rules(conn):
            return 0
    settings = project.settings
    with audit.acting_as(ACTOR), project.engine.begin() as conn:
        for n, (name, bio) in enumerate(TECHNICIANS, start=1):
            ref = f"tech-{n:02d}"
            staff.save_staff(
                conn, staff.StaffIn(ref=ref, name=name, bio=bio, department="delivery"), ACTOR
            )
            staff.set_photo(conn, ref, portrait(name, n), ACTOR)
        for body in (
            presets.pre_visit(lead="24h"),
            presets.detractor_callback(department="customer service", model="client-experience"),
            presets.win_back(model="client-experience"),
        ):
            rules.save_rule(conn, project.events, body, ACTOR, timezone=settings.timezone)
        since = datetime.now(UTC) - timedelta(days=HISTORY_DAYS)
        conn.execute(update(rules.rules_t).values(enabled_at=since))
        for cursor in ("automations:stages", "automations:responses", "automations:activity"):
            jobs.save_cursor(conn, cursor, 0)
    started = _replay_visits(project, since)
    with project.engine.begin() as conn:
        started += firing.scan(conn, settings.zone)
    outbox = settings.home_dir / "demo-outbox"
    Worker(project.engine, settings, sender=_to_folder(outbox), events=project.events).run_once()
    return started


def _replay_visits(project: Project, since: datetime) -> int:
    found = project.events.query(
        EventQuery(event="Visit Scheduled", type="track", start=since, limit=1_000_000)
    )
    if not found:
        return 0
    table = _visits_table(found)
    return firing.on_events(project.engine, table, replay=True)


def _visits_table(found: list[dict[str, Any]]) -> pa.Table:
    """The stored events in the shape the ingestion listener reads."""
    return pa.table(
        {
            "customer_id": pa.array([r["customer_id"] for r in found], pa.int64()),
            "timestamp": pa.array([r["timestamp"] for r in found], pa.timestamp("us", "UTC")),
            "message_id": pa.array([r["message_id"] for r in found], pa.string()),
            "event": pa.array([r["event"] for r in found], pa.string()),
            "type": pa.array([r["type"] for r in found], pa.string()),
            "properties": pa.array([json.dumps(r["properties"]) for r in found], pa.string()),
        }
    )


def _to_folder(folder: Path) -> Sender:
    def write(_settings: Settings, message: EmailMessage) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").replace("@", "_").replace("/", "_")
        (folder / f"{name}.eml").write_bytes(message.as_bytes())

    return write
