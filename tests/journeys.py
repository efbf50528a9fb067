"""Test journeys declared person by person: ``{"person": [(event, time, properties), ...]}``.

People whose name starts with ``anon-`` are anonymous ids; everyone else a user id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cxloop.domain.messages import from_dict, normalise
from cxloop.project import Project

Journey = list[tuple[str, datetime, dict[str, Any]] | tuple[str, datetime]]


def journeys(project: Project, people: dict[str, Journey]) -> None:
    messages = []
    for person, events in people.items():
        for n, item in enumerate(events):
            name, at = item[0], item[1]
            props = item[2] if len(item) > 2 else {}  # type: ignore[misc]
            who = {"anonymousId": person} if person.startswith("anon-") else {"userId": person}
            messages.append(
                {
                    "type": "track",
                    "event": name,
                    "properties": props,
                    "timestamp": at.isoformat(),
                    "messageId": f"{person}-{n}",
                    **who,
                }
            )
    now = datetime.now(UTC)
    project.pipeline.ingest(
        [normalise(from_dict(m), received_at=now) for m in messages], source="t"
    )
