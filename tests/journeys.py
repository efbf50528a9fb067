"""Test journeys declared person by person: ``{"person": [(event, time, properties), ...]}``.

People whose name starts with ``anon-`` are anonymous ids; everyone else a user id.
``stores`` says where a test's analytics run: the project's own event store, or, for a
project marked ``on_spark``, Spark over a Parquet lake exported from it just before.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from cxloop.analytics.lake import export_parquet
from cxloop.domain.messages import from_dict, normalise
from cxloop.events.base import EventStore
from cxloop.project import Project, open_project
from cxloop.settings import Settings

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


def cli_project(home: Path, people: dict[str, Journey]) -> None:
    """An embedded project in ``home`` holding the journeys, closed again, so the CLI (with
    ``CXLOOP_HOME`` pointing there) opens it as a user's command would."""
    opened = open_project(Settings(home=home))
    try:
        journeys(opened, people)
    finally:
        opened.close()


def traits(project: Project, people: dict[str, dict[str, Any]], at: datetime) -> None:
    """Identify each person with these traits (an ``identify`` at ``at``)."""
    now = datetime.now(UTC)
    messages = [
        {"type": "identify", "userId": person, "traits": values, "timestamp": at.isoformat(),
         "messageId": f"{person}-traits"}
        for person, values in people.items()
    ]  # fmt: skip
    project.pipeline.ingest(
        [normalise(from_dict(m), received_at=now) for m in messages], source="t"
    )


_ON_SPARK: set[int] = set()


def on_spark(project: Project, value: bool = True) -> None:
    """Run this project's analytics on Spark over its lake (or, with False, no longer)."""
    (_ON_SPARK.add if value else _ON_SPARK.discard)(id(project))


def stores(project: Project) -> tuple[EventStore, Engine | None]:
    """The event store and app database a test's analytics read."""
    if id(project) not in _ON_SPARK:
        return project.events, project.engine
    from cxloop.events.spark_lake import SparkLake

    lake = project.settings.home_dir / "lake"
    export_parquet(project.events, project.engine, lake, overwrite=True)
    return SparkLake(lake, master="local[2]"), None  # type: ignore[return-value]
