"""One open cxloop project: app database, event store and ingestion pipeline together.

The server and the CLI both open a project; whichever holds the embedded DuckDB file is
the one writer. ``server.json`` in the project folder tells other processes where the
running server is, so that they can hand their work to it instead.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cxloop.automations import firing, webhooks
from cxloop.events import EventStore, open_event_store
from cxloop.feedback import triggers
from cxloop.ingest.pipeline import IngestPipeline
from cxloop.lifecycle.engine import StageEngine
from cxloop.service import cases
from cxloop.settings import Settings
from cxloop.store.database import make_engine, make_sessionmaker, migrate


@dataclass
class Project:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    events: EventStore
    pipeline: IngestPipeline
    stages: StageEngine

    def close(self) -> None:
        self.pipeline.close()
        self.events.close()
        self.engine.dispose()


def open_database(settings: Settings, *, migrate_schema: bool = True) -> Engine:
    engine = make_engine(settings.effective_database_url)
    if migrate_schema:
        migrate(engine)
    return engine


def open_project(settings: Settings, *, migrate_schema: bool = True) -> Project:
    """Open (and migrate) both stores; raises EventStoreUnavailable if another process writes."""
    engine = open_database(settings, migrate_schema=migrate_schema)
    try:
        events = open_event_store(settings.effective_events_url)
    except BaseException:
        engine.dispose()
        raise
    pipeline = IngestPipeline(engine, events, backlog_dir=settings.home_dir / "listener-backlog")
    stages = StageEngine(engine, events)
    pipeline.listen("stages", stages.on_batch)
    pipeline.listen("cases", lambda rows, _merges: cases.on_events(engine, rows))
    pipeline.listen("survey-triggers", lambda rows, _merges: triggers.on_events(engine, rows))
    pipeline.listen("automations", lambda rows, _merges: firing.on_events(engine, rows))
    pipeline.listen("webhooks", lambda rows, _merges: webhooks.on_events(engine, rows))
    pipeline.recover()
    pipeline.catch_up()
    stages.mirror.resync()
    return Project(settings, engine, make_sessionmaker(engine), events, pipeline, stages)


# -- the running server's address, for other processes of the same project --------------


@dataclass(frozen=True)
class ServerInfo:
    url: str
    pid: int
    token: str


def server_file(settings: Settings) -> Path:
    return settings.home_dir / "server.json"


def register_server(settings: Settings, url: str) -> ServerInfo:
    """Write server.json (owner-only) with a per-run token the CLI may use as a secret key."""
    info = ServerInfo(url=url, pid=os.getpid(), token="cxs_" + secrets.token_urlsafe(32))
    path = server_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": info.url, "pid": info.pid, "token": info.token}, fh)
    os.replace(tmp, path)
    return info


def unregister_server(settings: Settings, info: ServerInfo) -> None:
    path = server_file(settings)
    current = read_server(settings)
    if current is not None and current.token == info.token:
        path.unlink(missing_ok=True)


def read_server(settings: Settings) -> ServerInfo | None:
    """The live server of this project, or None (a stale file of a dead process is ignored)."""
    path = server_file(settings)
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        info = ServerInfo(url=str(data["url"]), pid=int(data["pid"]), token=str(data["token"]))
    except (OSError, ValueError, KeyError):
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return info
