"""Shared fixtures: a project on each backend, an API client, a real server process.

``backend`` runs a test on the embedded default (SQLite + DuckDB) and on PostgreSQL (both
stores in a fresh database on 127.0.0.1:5432, which `make test` makes sure is running).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import psycopg
import pytest
from fastapi.testclient import TestClient

from cxloop.project import Project, open_project
from cxloop.settings import Settings
from cxloop.store.database import make_sessionmaker, session_scope
from cxloop.store.keys import create_key
from cxloop.web.app import create_app
from tests.journeys import on_spark
from tests.site import Site, key_from, launch_chromium, load_demo

PG_ADMIN = os.environ.get(
    "CXLOOP_TEST_PG_ADMIN_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# Property tests draw the same examples every run, so a failure is reproducible and a run
# does not pass or fail by chance; CXLOOP_HYPOTHESIS_RANDOM=1 searches new examples instead.
hypothesis.settings.register_profile(
    "cxloop", derandomize=not os.environ.get("CXLOOP_HYPOTHESIS_RANDOM"), database=None
)
hypothesis.settings.load_profile("cxloop")
BACKENDS = ("embedded", "postgres")
# Analytics also run on Spark, over a Parquet lake exported from an embedded project.
ENGINES = (*BACKENDS, "spark")
on_every_engine = pytest.mark.parametrize("backend", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not DATA.is_dir():
        pytest.fail(f"the shared data folder {DATA} is missing")
    return DATA


@dataclass
class PgDatabase:
    name: str
    sqlalchemy_url: str
    url: str


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)


@pytest.fixture
def pg_database() -> Iterator[PgDatabase]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"cxtest_{uuid.uuid4().hex[:12]}"
    with _admin() as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    db = PgDatabase(
        name=name,
        sqlalchemy_url=f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}",
        url=f"{base}/{name}",
    )
    try:
        yield db
    finally:
        with _admin() as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings of a fresh project on the parametrised backend."""
    home = tmp_path / "project"
    if backend in ("embedded", "spark"):
        return Settings(home=home)
    db: PgDatabase = request.getfixturevalue("pg_database")
    return Settings(home=home, database_url=db.sqlalchemy_url, events_url=db.url)


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "project")


@pytest.fixture
def project(settings: Settings, backend: str) -> Iterator[Project]:
    opened = open_project(settings)
    on_spark(opened, backend == "spark")
    try:
        yield opened
    finally:
        on_spark(opened, False)
        opened.close()


@dataclass
class ApiClient:
    http: TestClient
    write_key: str
    secret_key: str
    settings: Settings

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


def make_keys(settings: Settings) -> tuple[str, str]:
    from cxloop.project import open_database

    engine = open_database(settings)
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            write_key, _ = create_key(session, "write", "tests")
            secret_key, _ = create_key(session, "secret", "tests")
    finally:
        engine.dispose()
    return write_key, secret_key


@pytest.fixture
def api(settings: Settings) -> Iterator[ApiClient]:
    """The app in-process (its lifespan runs), with a write key and a secret key."""
    write_key, secret_key = make_keys(settings)
    with TestClient(create_app(settings)) as http:
        yield ApiClient(http, write_key, secret_key, settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cxloop_bin() -> str:
    found = shutil.which("cxloop", path=str(Path(sys.executable).parent))
    assert found, "the cxloop command is not installed in this environment"
    return found


def project_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env["CXLOOP_HOME"] = str(settings.home)
    if settings.database_url:
        env["CXLOOP_DATABASE_URL"] = settings.database_url
    if settings.events_url:
        env["CXLOOP_EVENTS_URL"] = settings.events_url
    env.update(extra)
    return env


@dataclass
class ServerProcess:
    """`cxloop serve` as a real process, which a test may kill and start again."""

    settings: Settings
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        env = project_env(self.settings, CXLOOP_PORT=str(self.port), **self.env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [cxloop_bin(), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server process on a free loopback port, on the parametrised backend."""
    proc = ServerProcess(settings, free_port(), tmp_path / "server.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


# -- the web app in a real browser -----------------------------------------------------------


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo project (500 customers: enough history for the churn model) served by a
    real process, with users of every role (password ``tests.site.PASSWORD``)."""
    home = tmp_path_factory.mktemp("site") / "project"
    settings = Settings(home=home)
    output = load_demo(settings, project_env(settings), cxloop_bin())
    proc = ServerProcess(settings, free_port(), home.parent / "server.log")
    proc.start(timeout=60)
    try:
        secret, write = key_from(output, "secret key"), key_from(output, "write key")
        yield Site(proc.url, settings, secret, write)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Per module, not per session: while Playwright's sync API runs, its event loop is
    the thread's running loop, and tests that call asyncio.run() would fail beside it."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) at a desktop size."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
