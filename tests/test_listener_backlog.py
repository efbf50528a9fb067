"""A listener of stored events that fails keeps its batch and takes it later: no survey,
case, rule run or webhook is silently lost because the app database was briefly away."""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError, OperationalError

from cxloop.domain.messages import from_dict, normalise
from cxloop.feedback import triggers
from cxloop.ingest import backlog as backlog_module
from cxloop.ingest import handing
from cxloop.ingest.backlog import Kept, ListenerBacklog, should_set_aside
from cxloop.ingest.handing import Listeners
from cxloop.project import Project, open_project
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
                raise locked()
            return real(engine, rows)

        monkeypatch.setattr(triggers, "on_events", flaky)


def locked() -> OperationalError:
    """What SQLAlchemy raises while another process holds the SQLite database."""
    return OperationalError("UPDATE jobs", {}, sqlite3.OperationalError("database is locked"))


def stats_of(api: ApiClient) -> dict[str, Any]:
    return api.http.get("/api/v1/stats", headers=api.auth).json()  # type: ignore[no-any-return]


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
        backlog = api.http.app.state.cxloop.project.pipeline.backlog  # type: ignore[attr-defined]
        [kept] = backlog.pending("survey-triggers")
        rows, _merges = backlog.load(kept.path)
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
        assert backlog.counts() == (0, 0)
    finally:
        http.__exit__(None, None, None)


def test_a_batch_the_listener_alone_cannot_take_is_set_aside_not_holding_back_others(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handing, "RETRY_ALONE_AFTER_S", 0.0)  # no rest between its tries
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
        pipeline = api.http.app.state.cxloop.project.pipeline  # type: ignore[attr-defined]
        [kept] = pipeline.backlog.pending("survey-triggers")
        assert kept.failures == 0  # failing alone, it might still be the database
        # The next batch is taken after the kept one failed again: that failure was the
        # batch's own, and it holds back no later batch.
        send(api, track("g1", "cy", "Installation Completed", NOW - timedelta(minutes=2)))
        [kept] = pipeline.backlog.pending("survey-triggers")
        assert kept.failures == 1 and stats_of(api)["listener_set_aside"] == 0
        # The sweep alone tells nothing: with no batch taken after it, nothing counts.
        assert pipeline.catch_up() == 0
        assert pipeline.backlog.pending("survey-triggers")[0].failures == 1
        send(api, track("g2", "cy", "Installation Completed", NOW - timedelta(minutes=1)))
        assert pipeline.backlog.pending("survey-triggers")[0].failures == 2
        send(api, track("g3", "cy", "Installation Completed", NOW - timedelta(seconds=50)))
        stats = stats_of(api)  # the third failure of its own sets it aside
        assert (stats["listener_backlog"], stats["listener_set_aside"]) == (0, 1)
        assert sorted(j["key"].rsplit(":", 1)[1] for j in sends(api)) == ["g1", "g2", "g3"]
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
    assert first is not None and second is not None
    assert backlog.pending("stages") == [first, second] and backlog.counts() == (2, 0)
    assert backlog.load(first.path) == (rows, [(3, 7)])
    assert backlog.pending("cases") == [] and ListenerBacklog(None).keep("x", rows, []) is None
    # The name carries the order, the lone failures and when the first was, for a restart.
    assert (first.order, first.failures, second.order, second.failures) == (1, 0, 2, 0)
    again = backlog.failed("stages", second)
    assert again.failures == 1 and again.first_failed > 0 and not second.path.exists()
    assert ListenerBacklog(tmp_path).pending("stages") == [first, again]
    backlog.done("stages", first)
    assert backlog.pending("stages") == [again]
    # Order goes on after the largest kept or set-aside batch, also after a restart.
    backlog.set_aside("stages", again)
    assert backlog.counts() == (0, 1)
    third = ListenerBacklog(tmp_path).keep("stages", rows, [])
    assert third is not None and third.order == 3


def test_two_processes_keeping_batches_at_once_never_replace_each_others(tmp_path: Any) -> None:
    rows = pa.table({"message_id": pa.array(["a"], pa.string())})
    mine, theirs = ListenerBacklog(tmp_path), ListenerBacklog(tmp_path)  # same listing
    kept = [mine.keep("stages", rows, []), theirs.keep("stages", rows, [])]
    assert all(k is not None for k in kept)
    assert sorted(k.order for k in kept if k) == [1, 2]
    assert ListenerBacklog(tmp_path).counts() == (2, 0)
    # A name of another cxloop version is taken in, after the others, never lost.
    (tmp_path / "stages" / "00000001764892800000-000000.arrow").write_bytes(b"old")
    (tmp_path / "stages" / "gone.arrow").symlink_to(tmp_path / "nowhere")
    reopened = ListenerBacklog(tmp_path)
    assert [k.order for k in reopened.pending("stages")][:3] == [1, 2, 3]


# -- the backlog itself failing, and batches failing alone ---------------------------------


class Probe:
    """A listener that fails on the batches holding ``failing`` message ids with ``error``."""

    def __init__(self) -> None:
        self.failing: set[str] = set()
        self.error: Exception = locked()
        self.taken: list[str] = []

    def __call__(self, rows: pa.Table, _merges: list[tuple[int, int]]) -> None:
        ids = rows.column("message_id").to_pylist()
        if self.failing & set(ids):
            raise self.error
        self.taken.extend(ids)


def probed(settings: Settings) -> tuple[Project, Probe]:
    opened = open_project(settings)
    probe = Probe()
    opened.pipeline.listen("probe", probe)
    return opened, probe


def store(project: Project, *ids: str) -> int:
    """Store one track per id as one batch; how many were stored."""
    at = NOW - timedelta(minutes=5)
    messages = [
        normalise(
            from_dict(
                {"type": "track", "event": "Seen", "userId": "u", "messageId": mid,
                 "timestamp": at.isoformat()}
            ),
            received_at=NOW,
        )
        for mid in ids
    ]  # fmt: skip
    return project.pipeline.ingest(messages, source="test").stored


def test_a_disk_refusing_the_backlog_does_not_refuse_the_stored_batch(
    embedded_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    project, probe = probed(embedded_settings)
    try:
        # Where the probe's kept batches go is a file, so the OS refuses to write there.
        (embedded_settings.home_dir / "listener-backlog").mkdir(exist_ok=True)
        (embedded_settings.home_dir / "listener-backlog" / "probe").write_text("not a folder")
        probe.failing = {"a1"}
        assert store(project, "a1") == 1  # stored and acknowledged all the same
        assert project.events.count() == 1
        assert "could not keep a batch of 1 events for the probe listener" in caplog.text
        assert project.pipeline.backlog.counts() == (0, 0)
        probe.failing = set()
        assert store(project, "a2") == 1 and probe.taken == ["a2"]
    finally:
        project.close()


def test_an_unreadable_kept_batch_is_set_aside_and_the_project_still_opens(
    embedded_settings: Settings,
) -> None:
    place = embedded_settings.home_dir / "listener-backlog" / "stages"
    place.mkdir(parents=True)
    (place / "000000000001.f1.t0.arrow").write_bytes(b"junk")
    (place / "00000001764892800000-000000.arrow").write_bytes(b"")  # an older cxloop's name
    (place / "dangling.arrow").symlink_to(place / "nowhere")  # and one that points nowhere
    stale, fresh = place / "000000000002.f0.t0.partial", place / "000000000003.f0.t0.partial"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    project = open_project(embedded_settings)
    try:
        assert project.pipeline.backlog.counts() == (0, 3)
        # the other names were taken in after the others, then found unreadable
        assert sorted(p.name for p in (place / "set-aside").iterdir()) == [
            "000000000001.f1.t0.arrow",
            "000000000002.f0.t0.arrow",
            "000000000003.f0.t0.arrow",
        ]
        # A crash's leftover goes; one that may still be being written stays.
        assert not stale.exists() and fresh.exists()
        assert store(project, "b1") == 1
    finally:
        project.close()


def test_a_batch_failing_alone_on_a_locked_database_waits_rather_than_being_set_aside(
    embedded_settings: Settings,
) -> None:
    project, probe = probed(embedded_settings)
    backlog = project.pipeline.backlog
    try:
        probe.failing = {"a"}
        store(project, "a")  # fails: kept
        assert [k.failures for k in backlog.pending("probe")] == [0]
        store(project, "b")  # a fails again, then b is taken: a failure of a's own
        [waiting] = backlog.pending("probe")
        assert waiting.failures == 1 and backlog.counts() == (1, 0)
        assert probe.taken == ["b"]
        store(project, "c")  # a rests a while rather than being tried with every batch
        assert probe.taken == ["b", "c"] and backlog.pending("probe") == [waiting]
        probe.failing = set()
        assert project.pipeline.catch_up() == 1  # the sweep hands it again
        assert probe.taken == ["b", "c", "a"] and backlog.counts() == (0, 0)
    finally:
        project.close()


def test_failures_while_the_listener_takes_nothing_do_not_count_against_a_batch(
    embedded_settings: Settings,
) -> None:
    project, probe = probed(embedded_settings)
    backlog = project.pipeline.backlog
    try:
        probe.failing = {f"o{i}" for i in range(6)}  # its database is away for a while
        for i in range(6):
            store(project, f"o{i}")
            project.pipeline.catch_up()
        assert [k.failures for k in backlog.pending("probe")] == [0] * 6
        # Back, but o0 meets a race once (an error of its own): one lone failure only.
        probe.failing = {"o0"}
        probe.error = IntegrityError("INSERT", {}, Exception("duplicate key"))
        store(project, "n1")
        assert [k.failures for k in backlog.pending("probe")] == [1]
        assert probe.taken == ["o1", "o2", "o3", "o4", "o5", "n1"]
    finally:
        project.close()


def test_a_lock_that_never_lifts_for_one_batch_sets_it_aside_after_a_day() -> None:
    day = 86_400
    assert not should_set_aside(2, time.time(), ValueError("bad row"))
    assert should_set_aside(3, time.time(), ValueError("bad row"))
    assert not should_set_aside(19, time.time() - 2 * day, locked())
    assert not should_set_aside(20, time.time() - day + 60, locked())
    assert should_set_aside(20, time.time() - day - 1, locked())
    assert not should_set_aside(500, time.time() - 60, OSError(28, "No space left on device"))


# -- telling a bad batch from a failing listener, with the handing alone --------------------


def batch(*ids: str) -> pa.Table:
    return pa.table({"message_id": pa.array(list(ids), pa.string())})


class Switch(Probe):
    """A probe whose database can be away as a whole, or by a script of calls."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.script: list[bool] = []  # per call, while it lasts: is the database up?

    def __call__(self, rows: pa.Table, merges: list[tuple[int, int]]) -> None:
        up = self.script.pop(0) if self.script else not self.down
        if not up:
            raise locked()
        super().__call__(rows, merges)


def listening(folder: Any) -> tuple[Listeners, Switch]:
    listeners, switch = Listeners(folder), Switch()
    listeners.listen("probe", switch)
    return listeners, switch


def names(listeners: Listeners) -> list[str]:
    return [k.path.name for k in listeners.backlog.pending("probe")]


def kept_in_an_outage(listeners: Listeners, switch: Switch, *ids: str) -> list[Kept]:
    """Store one batch per id while the listener is down, so each is kept; then it is up."""
    switch.down = True
    for message_id in ids:
        listeners.notify(batch(message_id), [])
    switch.down = False
    return listeners.backlog.pending("probe")


def test_two_bad_batches_at_the_head_hold_back_no_other(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handing, "RETRY_ALONE_AFTER_S", 0.0)
    listeners, switch = listening(tmp_path)
    switch.failing, switch.error = {"bad1", "bad2"}, ValueError("a row it cannot take")
    listeners.notify(batch("bad1"), [])
    listeners.notify(batch("bad2"), [])
    assert names(listeners) == ["000000000001.f0.t0.arrow", "000000000002.f0.t0.arrow"]
    # Each round: two failing in a row, then the new batch is taken, and the first is
    # handed again: its failure counts (the second waits its turn, in case the first
    # failure again was the outage back). Every new batch is taken at once all along.
    for i in range(6):
        listeners.notify(batch(f"g{i}"), [])
        assert switch.taken == [f"g{n}" for n in range(i + 1)]
        if i == 2:
            assert names(listeners) == ["000000000002.f0.t0.arrow"]  # bad1 went aside
    assert listeners.backlog.counts() == (0, 2)


def test_an_outage_with_gaps_never_sets_a_healthy_batch_aside(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(backlog_module.time, "time", lambda: clock[0])
    monkeypatch.setattr(handing, "RETRY_ALONE_AFTER_S", 0.0)
    listeners, switch = listening(tmp_path)
    switch.down = True
    for i in range(5):
        listeners.notify(batch(f"k{i}"), [])  # all kept
    # Two failing in a row, then the lock lifts for exactly one call (the new batch), and
    # is back when the two are handed again: the worst luck a lock coming and going can
    # bring, every ten minutes for three hours.
    for round_ in range(18):
        clock[0] += 600
        switch.script = [False, False, True]
        listeners.notify(batch(f"n{round_}"), [])
        listeners.catch_up()  # the sweep meets the lock too
    assert "n17" in switch.taken and listeners.backlog.counts() == (5, 0)
    switch.down = False
    listeners.catch_up()
    assert listeners.backlog.counts() == (0, 0)
    assert sorted(switch.taken) == sorted(
        [f"k{i}" for i in range(5)] + [f"n{i}" for i in range(18)]
    )


def test_a_damaged_kept_file_is_set_aside_and_the_others_flow(tmp_path: Any) -> None:
    listeners, switch = listening(tmp_path)
    [kept] = kept_in_an_outage(listeners, switch, "a")
    data = bytearray(kept.path.read_bytes())
    data[-40] ^= 0xFF  # a flipped byte in the footer: pyarrow's OSError without an errno
    kept.path.write_bytes(bytes(data))
    (tmp_path / "probe" / "000000000009.f0.t0.arrow").mkdir()  # not a file at all
    listeners.backlog.refresh("probe")
    listeners.notify(batch("n1"), [])
    listeners.notify(batch("n2"), [])
    assert switch.taken == ["n1", "n2"] and listeners.backlog.counts() == (0, 2)


def test_a_kept_file_the_system_cannot_read_now_rests_rather_than_going_aside(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners, switch = listening(tmp_path)
    kept_in_an_outage(listeners, switch, "a")
    real_load = ListenerBacklog.load

    def failing_disk(path: Any) -> Any:  # an I/O error, which root cannot cause here
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(ListenerBacklog, "load", staticmethod(failing_disk))
    listeners.notify(batch("n1"), [])
    [kept] = listeners.backlog.pending("probe")
    assert kept.failures == 1 and switch.taken == ["n1"] and listeners.backlog.counts() == (1, 0)
    monkeypatch.setattr(ListenerBacklog, "load", staticmethod(real_load))
    assert listeners.catch_up() == 1 and switch.taken == ["n1", "a"]


def test_two_processes_counting_one_failure_at_once_leave_one_file(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = ListenerBacklog(tmp_path)
    kept = mine.keep("probe", batch("a"), [])
    assert kept is not None
    theirs = ListenerBacklog(tmp_path)
    [their_kept] = theirs.pending("probe")
    seconds = iter([1_800_000_000.0, 1_800_000_001.0])
    monkeypatch.setattr(backlog_module.time, "time", lambda: next(seconds))
    real_link = os.link
    between: list[Any] = []

    def link(source: Any, target: Any, **options: Any) -> None:
        real_link(source, target, **options)
        if not between:  # the other process counts its failure between our two steps
            between.append(None)
            between[0] = theirs.failed("probe", their_kept)

    monkeypatch.setattr(backlog_module.os, "link", link)
    assert mine.failed("probe", kept) is None  # theirs won: ours is forgotten
    assert mine.pending("probe") == []
    files = [p.name for p in (tmp_path / "probe").glob("*.arrow")]
    assert files == ["000000000001.f1.t1800000001.arrow"] == [between[0].path.name]


def test_a_crash_between_the_steps_of_a_rename_leaves_one_name(tmp_path: Any) -> None:
    backlog = ListenerBacklog(tmp_path)
    kept = backlog.keep("probe", batch("a"), [])
    assert kept is not None
    os.link(kept.path, kept.path.with_name("000000000001.f1.t1800000000.arrow"))
    again = ListenerBacklog(tmp_path)
    assert [k.path.name for k in again.pending("probe")] == ["000000000001.f1.t1800000000.arrow"]
    assert not kept.path.exists()


def test_old_batches_the_disk_will_not_tidy_never_cost_the_new_one(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    listeners, switch = listening(tmp_path)
    [kept] = kept_in_an_outage(listeners, switch, "a")
    kept.path.write_bytes(b"junk")  # to be set aside, where a file stands in the way
    (tmp_path / "probe" / "set-aside").write_text("")
    listeners.notify(batch("n1"), [])
    listeners.notify(batch("n2"), [])
    assert switch.taken == ["n1", "n2"] and kept.path.exists()  # the junk stays, logged
    # A disk that will not remove a taken batch: handed again (listeners are idempotent),
    # and the new batches still go.
    (tmp_path / "probe" / "set-aside").unlink()
    listeners.catch_up()
    kept_in_an_outage(listeners, switch, "b")
    real_unlink = os.unlink

    def read_only(path: Any, *args: Any, **options: Any) -> None:
        if str(path).endswith(".arrow"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        real_unlink(path, *args, **options)

    monkeypatch.setattr(os, "unlink", read_only)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: read_only(self))
    listeners.notify(batch("n3"), [])
    listeners.notify(batch("n4"), [])
    assert switch.taken == ["n1", "n2", "b", "n3", "b", "n4"]


def test_a_listing_between_the_steps_of_a_rename_loses_nothing(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = ListenerBacklog(tmp_path)
    kept = mine.keep("probe", batch("a"), [])
    assert kept is not None
    real_link = os.link

    def link(source: Any, target: Any, **options: Any) -> None:
        real_link(source, target, **options)
        if str(source).endswith(".arrow"):  # another process opens the backlog: it sees
            ListenerBacklog(tmp_path)  # two names of one file and removes the old one
        else:  # or it removes a .partial that looks abandoned (a slow disk)
            os.utime(source, (1, 1))
            ListenerBacklog(tmp_path)

    monkeypatch.setattr(backlog_module.os, "link", link)
    counted = mine.failed("probe", kept)
    assert counted is not None and counted.failures == 1 and counted.path.exists()
    second = mine.keep("probe", batch("b"), [])
    assert second is not None and second.path.exists()
    assert [k.path for k in ListenerBacklog(tmp_path).pending("probe")] == [
        counted.path,
        second.path,
    ]
