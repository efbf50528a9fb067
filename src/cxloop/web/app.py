"""The FastAPI application: tracking API, REST API, OpenAPI docs at /docs."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from cxloop import __version__
from cxloop.ingest.log import IngestLog
from cxloop.ingest.writer import GroupCommitWriter
from cxloop.project import Project, open_project, register_server, unregister_server
from cxloop.service.worker import Worker, WorkerThread
from cxloop.settings import Settings
from cxloop.web import (
    analytics,
    api,
    automations,
    exports,
    feedback,
    insights,
    lifecycle,
    reports,
    segments,
    service,
    survey_page,
    tracking,
)
from cxloop.web.errors import install_error_handlers
from cxloop.web.headers import SecurityHeaders
from cxloop.web.pages import install_pages
from cxloop.web.state import ServerState

log = logging.getLogger(__name__)


SWEEP_EVERY_S = 60.0


def _warm_sequences(project: Project) -> None:
    """Read the event store's sequence index before the first funnel asks for it (a full
    read: about 0.2 s per million events), so that no user waits for it."""
    sequences = getattr(project.events, "sequences", None)
    if sequences is None:
        return
    try:
        sequences()
    except Exception:
        log.exception("reading the sequence index failed; the first funnel reads it again")


async def _sweep_inactive(writer: GroupCommitWriter, project: Project) -> None:
    """Record inactivity exits as they fall due (no event will arrive to reveal them), and
    hand listeners the batches they failed on, even when no new batch arrives."""
    while True:
        await asyncio.sleep(SWEEP_EVERY_S)
        try:
            await writer.call(project.stages.sweep)
        except Exception:
            log.exception("the inactivity sweep failed; it runs again in a minute")
        try:
            await writer.call(project.pipeline.catch_up)
        except Exception:
            log.exception("handing kept batches to their listeners failed; again in a minute")


def create_app(settings: Settings, *, public_url: str | None = None) -> FastAPI:
    """An app that opens the project on start-up and closes it cleanly on shutdown.

    ``public_url`` is written to server.json so that CLI commands of the same project
    send their work to this process instead of opening the event store themselves.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        project = open_project(settings)
        writer = GroupCommitWriter(
            project.pipeline,
            IngestLog(settings.home_dir / "ingest-log"),
            max_messages=settings.commit_max_messages,
        )
        info = register_server(settings, public_url) if public_url else None
        app.state.cxloop = ServerState(
            project=project, writer=writer, run_token=info.token if info else None
        )
        sweeper = asyncio.create_task(_sweep_inactive(writer, project))
        worker = Worker(project.engine, settings, events=project.events)
        jobs = WorkerThread(worker, every_s=settings.jobs_poll_s)
        if settings.jobs_poll_s > 0:
            jobs.start()
        warming = threading.Thread(
            target=_warm_sequences, args=(project,), name="cxloop-sequences", daemon=True
        )
        warming.start()
        try:
            yield
        finally:
            sweeper.cancel()
            jobs.stop()
            writer.close()
            warming.join()  # it reads the store, which closes next
            if info is not None:
                unregister_server(settings, info)
            project.close()

    app = FastAPI(
        title="cxloop",
        version=__version__,
        description=(
            "Customer-experience platform. Tracking API (Segment spec) under /v1 with a "
            "write key as HTTP basic user; REST API under /api/v1 with a secret key as "
            "`Authorization: Bearer KEY`."
        ),
        lifespan=lifespan,
        dependencies=[Depends(segments.known_filters)],
    )
    install_error_handlers(app)
    app.include_router(tracking.router)
    app.include_router(api.router)
    app.include_router(lifecycle.router)
    app.include_router(feedback.router)
    app.include_router(service.router)
    app.include_router(survey_page.router)
    app.include_router(analytics.router)
    app.include_router(analytics.export_router)
    app.include_router(reports.router)
    app.include_router(insights.router)
    app.include_router(segments.router)
    app.include_router(automations.router)
    app.include_router(exports.router)
    install_pages(app)
    # The last added runs first: the headers wrap the tracking shortcut's answers too.
    app.add_middleware(tracking.TrackingShortcut, origins=settings.tracking_origin_list)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        """Liveness: the server is up and its stores are open."""
        return {"status": "ok", "version": __version__}

    return app
