"""A listener of stored events that fails keeps its batch and takes it later: no survey,
case, rule run or webhook is silently lost because the app database was briefly away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from cxloop.feedback import triggers
from cxloop.ingest.backlog import ListenerBacklog
from cxloop.settings import Settings
from cxloop.store import jobs
from cxloop.web.app import create_app
from tests.conftest import ApiClient, make_keys
from tests.test_distribution import created, identify, send, track

NOW = datetime.now(UTC).replace(microsecond=0)


class Outage:
    """Makes the survey-trigger listener fail while ``down``, as a locked database would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = True
        self.calls = 0
        real = triggers.on_events

        def flaky(engine: Any, rows: pa.Table) -> int:
            self.calls += 1
            if self.down:
                raise RuntimeError("database is locked")
            return real(engine, rows)

        monkeypatch.setattr(triggers, "on_events", flaky)


def sends(api: ApiClient) -> list[dict[str, Any]]:
    with api.http.app.state.cxloop.project.engine.connect() as conn:  # type: ignore[attr-defined]
        return jobs.list_jobs(conn, kind="survey.send")


def start(settings: Settings) -> tuple[TestClient, ApiClient]:
    quiet = settings.model_copy(update={"jobs_poll_s": 0})
    write_key, secret_key = make_keys(quiet)
    http = TestClient(create_app(quiet))
    http.__enter__()
    return http, ApiClient(http, write_key, secret_key, quiet)


def install_trigger(api: ApiClient) -> None:
    """A CSAT survey sent after each install."""
    survey = created(api, "/api/v1/surveys", {"type": "csat", "name": "Install"})
    created(
        api,
        "/api/v1/survey-triggers",
        {"survey": survey["id"], "on": "event", "event": "Installation Completed"},
    )


def first_install_during_an_outage(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> Outage:
    """A survey trigger on installs, then cy's install while its listener is down."""
    install_trigger(api)
    outage = Outage(monkeypatch)
    send(
        api,
        identify("cy", "cy@example.com", "Cy"),
        track("i1", "cy", "Installation Completed", NOW - timedelta(minutes=3)),
    )
    return outage


def test_a_failed_listener_takes_its_batch_with_the_next_one_in_order(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, api = start(settings)
    try:
        outage = first_install_during_an_outage(api, monkeypatch)
        # The events are stored and acknowledged; the listener's batch is kept on disk.
        stats = api.http.get("/api/v1/stats", headers=api.auth).json()
        assert stats["events"] == 2 and stats["listener_backlog"] == 1 and sends(api) == []
        backlog = ListenerBacklog(settings.home_dir / "listener-backlog")
        [kept] = backlog.pending("survey-triggers")
        rows, _merges = backlog.load(kept)
        assert sorted(rows.column("message_id").to_pylist()) == ["i1", "id-cy"]
        assert backlog.pending("automations") == []  # the others took it

        # Still down: the next batch waits behind the first, in order.
        send(api, track("i2", "cy", "Installation Completed", NOW - timedelta(minutes=2)))
        assert len(backlog.pending("survey-triggers")) == 2 and sends(api) == []
        # Back: the kept batches go first, then the new one; each queues its survey once.
        outage.down = False
        send(api, identify("dee", "dee@example.com", "Dee"))
        send(api, track("i3", "dee", "Installation Completed", NOW - timedelta(minutes=1)))
        assert backlog.pending("survey-triggers") == []
        assert api.http.get("/api/v1/stats", headers=api.auth).json()["listener_backlog"] == 0
        assert sorted(j["key"].rsplit(":", 1)[1] for j in sends(api)) == ["i1", "i2", "i3"]
    finally:
        http.__exit__(None, None, None)


def test_a_batch_kept_when_the_server_stopped_is_taken_at_the_next_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, api = start(settings)
    try:
        outage = first_install_during_an_outage(api, monkeypatch)
        assert outage.calls == 1 and sends(api) == []
    finally:
        http.__exit__(None, None, None)
    outage.down = False
    http, api = start(settings)
    try:
        [job] = sends(api)
        assert job["key"].endswith(":i1") and outage.calls == 2
        backlog = ListenerBacklog(settings.home_dir / "listener-backlog")
        assert backlog.count() == 0
    finally:
        http.__exit__(None, None, None)


def test_a_batch_the_listener_alone_cannot_take_is_set_aside_not_holding_back_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    http, api = start(settings)
    try:
        install_trigger(api)
        real = triggers.on_events

        def choking(engine: Any, rows: pa.Table) -> int:
            if "poison" in rows.column("message_id").to_pylist():
                raise ValueError("a row this listener cannot take")
            return real(engine, rows)

        monkeypatch.setattr(triggers, "on_events", choking)
        send(
            api,
            identify("cy", "cy@example.com", "Cy"),
            track("poison", "cy", "Installation Completed", NOW - timedelta(minutes=3)),
        )
        send(api, track("g1", "cy", "Installation Completed", NOW - timedelta(minutes=2)))
        # One kept batch failing might still be the database: the next waits behind it.
        assert (
            len(ListenerBacklog(settings.home_dir / "listener-backlog").pending("survey-triggers"))
            == 2
        )
        # The next round: the listener takes g1 but not the first batch, so that is set aside.
        send(api, track("g2", "cy", "Installation Completed", NOW - timedelta(minutes=1)))
        stats = api.http.get("/api/v1/stats", headers=api.auth).json()
        assert (stats["listener_backlog"], stats["listener_set_aside"]) == (0, 1)
        assert sorted(j["key"].rsplit(":", 1)[1] for j in sends(api)) == ["g1", "g2"]
        [aside] = (settings.home_dir / "listener-backlog" / "survey-triggers").glob("set-aside/*")
        rows, _merges = ListenerBacklog.load(aside)
        assert "poison" in rows.column("message_id").to_pylist()
    finally:
        http.__exit__(None, None, None)


def test_a_kept_batch_comes_back_with_its_rows_types_and_merges(tmp_path: Any) -> None:
    backlog = ListenerBacklog(tmp_path)
    rows = pa.table(
        {
            "customer_id": pa.array([7, None], pa.int64()),
            "timestamp": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
        }
    )
    first = backlog.keep("stages", rows, [(3, 7)])
    second = backlog.keep("stages", rows.slice(0, 1), [])
    assert backlog.pending("stages") == [first, second] and backlog.count() == 2
    assert backlog.load(first) == (rows, [(3, 7)])
    assert backlog.pending("cases") == [] and ListenerBacklog(None).keep("x", rows, []) is None
    assert first is not None
    backlog.done(first)
    assert backlog.pending("stages") == [second]
