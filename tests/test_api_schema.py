"""Property-based check of every documented operation: schemathesis generates requests from
the app's OpenAPI document (valid ones, boundary values and some just past the edges) and
no answer may be a server error; documented answers must match their schema.

One project per backend serves every operation's test (seeding a project for each of the
~70 operations would take minutes): its app runs in-process under a TestClient, whose
lifespan opens and closes the project, and schemathesis reaches it over ASGI through a
forwarder. A few records are seeded first, and generated path parameters, queries and
bodies often take their ids and names, so that requests reach real customers, models and
surveys and not only 404s. No operation is left out (the Arrow imports get real Arrow
streams besides random bytes). Only documented answers are checked against their schema:
the document lists 200/201 and 422, not the 400/401/403/404/409 the API also gives.

The regressions below the check are what it found, each now refused as invalid input.
"""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import httpx
import hypothesis
import psycopg
import pyarrow as pa
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)
from sqlalchemy import update
from starlette.types import Receive, Scope, Send

from cxloop.ingest.files_model import CUSTOMERS_SCHEMA, EVENTS_SCHEMA
from cxloop.ingest.importer import arrow_bytes
from cxloop.settings import Settings
from cxloop.store.models import ApiKey
from cxloop.web.app import create_app
from tests.conftest import BACKENDS, PG_ADMIN, ApiClient, make_keys

log = logging.getLogger(__name__)


class Forwarder:
    """The ASGI app schemathesis calls: it hands requests to the app being served and
    answers lifespan events itself, because the TestClient owns the real lifespan (the
    schemathesis plugin ends the lifespans it started after every test, which would close
    the project between operations)."""

    def __init__(self) -> None:
        self.target: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.target is not None, "no project is being served"
        try:
            await self.target(scope, receive, send)
        except Exception:
            # The 500 is already sent; schemathesis reports it with the request that caused
            # it, and the traceback goes to the test's captured log.
            log.exception("%s %s failed", scope["method"], scope["path"])


FORWARDER = Forwarder()
# The document does not depend on the project: build it from an app that is never started.
# Unexpected methods are left out: FastAPI's router answers them (405), not cxloop's code.
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"unexpected-methods": []}}})
schema = schemathesis.openapi.from_dict(
    create_app(Settings(home=Path("unused"))).openapi(), config=CONFIG
)
schema.app = FORWARDER
# `cxloop import` sends Arrow IPC streams: bytes on the wire, like application/octet-stream.
ARROW = "application/vnd.apache.arrow.stream"
schemathesis.serializer.alias(ARROW, "application/octet-stream")

TESTS_KEY = "tests"


@dataclass
class Served:
    """The project being served, the keys the check calls with, and the records that
    path parameters may point at."""

    http: TestClient
    write_key: str
    secret_key: str
    known: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}

    @property
    def tracking(self) -> dict[str, str]:
        basic = base64.b64encode(f"{self.write_key}:".encode()).decode()
        return {"Authorization": f"Basic {basic}"}

    def headers_for(self, case: Case[Any]) -> dict[str, str]:
        return self.tracking if case.path.startswith("/v1/") else self.auth

    def post(self, path: str, body: dict[str, Any], *, tracking: bool = False) -> Any:
        answer = self.http.post(path, json=body, headers=self.tracking if tracking else self.auth)
        assert answer.status_code < 300, (path, answer.status_code, answer.text)
        return answer.json()

    def seed(self) -> None:
        batch: list[dict[str, Any]] = []
        for n, name in enumerate(("ada", "bob", "cy"), start=1):
            batch.append(
                {
                    "type": "identify",
                    "userId": name,
                    "traits": {"email": f"{name}@example.com", "country": "NL", "plan": "pro"},
                    "timestamp": f"2024-03-0{n}T10:00:00Z",
                }
            )
            for event in ("Signed Up", "Order Completed"):
                batch.append(
                    {
                        "type": "track",
                        "userId": name,
                        "event": event,
                        "properties": {"revenue": 10 * n},
                        "timestamp": f"2024-03-0{n}T11:00:00Z",
                    }
                )
        self.post("/v1/batch", {"batch": batch}, tracking=True)
        self.restock()
        survey = self.post("/api/v1/surveys", {"type": "nps", "name": "After purchase"})
        self.post(
            f"/api/v1/surveys/{survey['id']}/responses",
            {"score": 3, "comment": "slow delivery", "customer": "ada"},
        )
        case = self.post("/api/v1/cases", {"customer": "bob", "subject": "Late parcel"})
        followup = self.post("/api/v1/followups", {"customer": "cy", "summary": "Call back"})
        self.post("/api/v1/customers/ada/notes", {"body": "Prefers e-mail", "author": "tests"})
        trigger = self.post(
            "/api/v1/survey-triggers",
            {"survey": survey["id"], "on": "event", "event": "Order Completed"},
        )
        decoy = self.post("/api/v1/keys", {"kind": "write", "name": "decoy"})
        presets = self.http.get("/api/v1/lifecycle/presets", headers=self.auth).json()
        stages = next(p["stages"] for p in presets if p["key"] == "client-experience")
        self.known = {
            # path parameters
            "ref": ["ada", "bob@example.com"],
            "key": ["client-experience"],
            "name": ["support"],
            "survey_id": [survey["id"]],
            "case_id": [case["id"]],
            "followup_id": [followup["id"]],
            "trigger_id": [trigger["id"]],
            "key_id": [decoy["id"]],
            "job_id": [1],
            # fields of bodies and queries
            "customer": ["ada", "bob@example.com", "cy"],
            "from_customer": ["cy"],
            "survey": [survey["id"]],
            "department": ["support"],
            "model": ["client-experience"],
            "preset": ["client-experience"],
            "stage": [f"client-experience:{s}" for s in stages[:2]] + stages[:1],
            "type": ["nps", "csat", "custom", "track", "identify"],
            "on": ["event", "stage", "case_resolved"],
            "event": ["Signed Up", "Order Completed"],
            "outcome": ["positive", "negative"],
            "status": ["open", "in_progress", "done"],
        }

    def restock(self) -> None:
        """Put back what an earlier operation's test may have removed or renamed."""
        if self.http.get("/api/v1/lifecycle/models/client-experience", headers=self.auth).is_error:
            self.post("/api/v1/lifecycle/models", {"preset": "client-experience"})
        names = {d["name"] for d in self.http.get("/api/v1/departments", headers=self.auth).json()}
        if "support" not in names:
            self.post("/api/v1/departments", {"name": "support"})

    def keep_own_keys(self) -> None:
        """Undo the revocation of the check's own keys (generated ids hit them too), which
        would make every later call a 401."""
        state = self.http.app.state.cxloop  # type: ignore[attr-defined]
        with state.project.engine.begin() as conn:
            conn.execute(update(ApiKey).where(ApiKey.name == TESTS_KEY).values(revoked_at=None))
        state.keys.entries.clear()


@contextmanager
def _project_settings(backend: str, home: Path) -> Iterator[Settings]:
    """A fresh project on the backend (its own PostgreSQL database, dropped afterwards):
    conftest's ``pg_database`` is per test, and this project serves a whole module."""
    if backend == "embedded":
        yield Settings(home=home)
        return
    name = f"cxtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield Settings(
            home=home,
            database_url=f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}",
            events_url=f"{base}/{name}",
        )
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A seeded project on one backend, shared by every operation's test."""
    home = tmp_path_factory.mktemp(f"schema-{request.param}") / "project"
    with _project_settings(str(request.param), home) as settings:
        write_key, secret_key = make_keys(settings)
        app = create_app(settings)
        with TestClient(app) as http:
            served = Served(http, write_key, secret_key)
            served.seed()
            FORWARDER.target = app
            try:
                yield served
            finally:
                FORWARDER.target = None


# What the project being served holds, by parameter or field name (set per test).
CURRENT_KNOWN: dict[str, list[Any]] = {}


def _substituted(value: Any, rng: Random) -> Any:
    """``value`` with most of its known-named fields, at any depth, set to a seeded
    record's id or a name the project knows."""
    if isinstance(value, dict):
        return {
            k: rng.choice(CURRENT_KNOWN[k])
            if k in CURRENT_KNOWN and rng.random() < 0.7
            else _substituted(v, rng)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substituted(v, rng) for v in value]
    return value


def _sometimes_known(value: Any) -> st.SearchStrategy[Any]:
    if not isinstance(value, dict | list):
        return st.just(value)
    known = st.integers(0, 2**32).map(lambda seed: _substituted(value, Random(seed)))
    return st.one_of(st.just(value), known, known)


@schema.hook
def flatmap_path_parameters(_ctx: schemathesis.HookContext, params: Any) -> st.SearchStrategy[Any]:
    return _sometimes_known(params)


@schema.hook
def flatmap_query(_ctx: schemathesis.HookContext, query: Any) -> st.SearchStrategy[Any]:
    return _sometimes_known(query)


def _column(kind: pa.DataType) -> st.SearchStrategy[Any]:
    if pa.types.is_timestamp(kind):
        return st.datetimes(timezones=st.just(UTC))
    if pa.types.is_integer(kind):
        return st.integers(-(2**31), 2**31 - 1)
    return st.text(max_size=12)


@st.composite
def arrow_tables(draw: st.DrawFn, wanted: pa.Schema) -> bytes:
    """An Arrow IPC stream of a few rows: the canonical columns, some of them missing,
    null, or of another type, as a client other than `cxloop import` might send."""
    rows = draw(st.integers(0, 3))
    columns: dict[str, pa.Array] = {}
    for fld in wanted:
        shape = draw(st.sampled_from(["right", "right", "right", "null", "other", "missing"]))
        if shape == "missing":
            continue
        kind = fld.type if shape != "other" else draw(st.sampled_from([pa.int64(), pa.string()]))
        values = draw(st.lists(st.one_of(st.none(), _column(kind)), min_size=rows, max_size=rows))
        if shape == "null":
            values = [None] * rows
        columns[fld.name] = pa.array(values, kind)
    return arrow_bytes(pa.table(columns) if columns else pa.table({"x": pa.array([], pa.int8())}))


@schema.hook
def flatmap_body(ctx: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """The Arrow imports also get real Arrow streams, not only random bytes."""
    assert ctx.operation is not None
    wanted = {
        "/api/v1/import/events": EVENTS_SCHEMA,
        "/api/v1/import/customers": CUSTOMERS_SCHEMA,
    }.get(ctx.operation.path)
    if wanted is None:
        return _sometimes_known(body)
    return st.one_of(st.just(body), arrow_tables(wanted))


@pytest.fixture
def project(served: Served) -> Served:
    served.restock()
    CURRENT_KNOWN.clear()
    CURRENT_KNOWN.update(served.known)
    return served


# Generated cases per operation and mode, past the boundary cases of the coverage phase
# (which has no limit). A deeper search by hand: CXLOOP_SCHEMA_EXAMPLES=200, and
# CXLOOP_SCHEMA_RANDOM=1 for other cases than the same deterministic ones every run.
EXAMPLES = int(os.environ.get("CXLOOP_SCHEMA_EXAMPLES", "10"))
DERANDOMIZE = not os.environ.get("CXLOOP_SCHEMA_RANDOM")


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_with_a_server_error(case: Case[Any], project: Served) -> None:
    response = case.call(headers=project.headers_for(case))
    if case.method == "DELETE" and case.path == "/api/v1/keys/{key_id}":
        project.keep_own_keys()
    case.validate_response(
        response,
        checks=[not_a_server_error, content_type_conformance, response_schema_conformance],
    )


# -- regressions: what the check found, each answered as invalid input now ------------------


def refused(response: httpx.Response, field: str, status: int = 422) -> dict[str, Any]:
    """The answer refuses the request and names the field at fault."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["field"] == field, error
    assert error["message"].startswith(f"{field}: "), error
    return error


def write_auth(api: ApiClient) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{api.write_key}:".encode()).decode()}


def seed_customer(api: ApiClient, user: str = "ada") -> None:
    answer = api.http.post(
        "/v1/track", json={"userId": user, "event": "Signed Up"}, headers=write_auth(api)
    )
    assert answer.status_code == 200, answer.text


def test_numbers_past_64_bits_are_refused_naming_the_field(api: ApiClient) -> None:
    """SQLite's driver cannot even send such a number (it raised OverflowError)."""
    big = 2**63
    get = api.http.get
    cases: list[tuple[httpx.Response, str]] = [
        (get("/api/v1/customers", params={"offset": big}, headers=api.auth), "offset"),
        (get("/api/v1/customers", params={"birth_year": 10**20}, headers=api.auth), "birth_year"),
        (get("/api/v1/events", params={"offset": big}, headers=api.auth), "offset"),
        (get("/api/v1/rejected-messages", params={"offset": big}, headers=api.auth), "offset"),
        (get("/api/v1/cases", params={"offset": big}, headers=api.auth), "offset"),
        (get(f"/api/v1/surveys/{big}", headers=api.auth), "survey_id"),
        (get(f"/api/v1/cases/{big}", headers=api.auth), "case_id"),
        (get(f"/api/v1/followups/{-big - 1}", headers=api.auth), "followup_id"),
        (get("/api/v1/feedback/nps", params={"survey": big}, headers=api.auth), "survey"),
        (api.http.post(f"/api/v1/surveys/{big}/invites", json={}, headers=api.auth), "survey_id"),
        (api.http.delete(f"/api/v1/keys/{big}", headers=api.auth), "key_id"),
        (
            api.http.post(
                "/api/v1/survey-triggers",
                json={"survey": big, "on": "event", "event": "Signed Up"},
                headers=api.auth,
            ),
            "survey",
        ),
    ]
    for response, named in cases:
        refused(response, named)
    # The largest number the stores hold is still a valid id: of nothing.
    largest = get(f"/api/v1/surveys/{big - 1}", headers=api.auth)
    assert largest.status_code == 404, largest.text
    assert (
        get("/api/v1/customers", params={"offset": big - 1}, headers=api.auth).json()["items"] == []
    )


def _arrow_post(api: ApiClient, path: str, table: pa.Table) -> httpx.Response:
    answer: httpx.Response = api.http.post(
        path,
        content=arrow_bytes(table),
        headers={**api.auth, "Content-Type": ARROW},
        params={"source": "tests"},
    )
    return answer


def _events_table(**overrides: pa.Array) -> pa.Table:
    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    columns: dict[str, pa.Array] = {
        "message_id": pa.array(["m-1", "m-2"]),
        "type": pa.array(["track", "track"]),
        "event": pa.array(["Signed Up", "Order Completed"]),
        "user_id": pa.array(["ann", "ann"]),
        "anonymous_id": pa.array([None, None], pa.string()),
        "timestamp": pa.array([t0, t0 + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
        "channel": pa.array([None, "web"], pa.string()),
        "properties": pa.array(["{}", '{"total": 3}']),
    }
    columns.update(overrides)
    return pa.table({k: v for k, v in columns.items() if v is not None})


def test_arrow_imports_check_the_columns_they_are_given(api: ApiClient) -> None:
    """The pipeline takes the import's columns as `cxloop import` builds them; another
    client's stream used to crash it (a missing column, a null timestamp)."""
    path = "/api/v1/import/events"
    without_user = _events_table().drop_columns(["user_id"])
    refused(_arrow_post(api, path, without_user), "user_id")
    no_time = _events_table(timestamp=pa.array([None, None], pa.timestamp("us", tz="UTC")))
    refused(_arrow_post(api, path, no_time), "timestamp")
    words = _events_table(timestamp=pa.array(["soon", "later"]))
    refused(_arrow_post(api, path, words), "timestamp")
    nul = _events_table(event=pa.array(["Signed\x00Up", "Order Completed"]))
    refused(_arrow_post(api, path, nul), "event")
    # Castable types are taken: ISO text for the timestamp, as a CSV would give it.
    iso = _events_table(timestamp=pa.array(["2025-03-01T09:00:00Z", "2025-03-01T10:00:00Z"]))
    stored = _arrow_post(api, path, iso)
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] == 2
    names = [
        e["event"]
        for e in api.http.get(
            "/api/v1/events", params={"customer": "ann"}, headers=api.auth
        ).json()["items"]
    ]
    assert sorted(names) == ["Order Completed", "Signed Up"]
    customers = pa.table({"user_id": ["bo"], "email": ["bo@example.com"]})
    refused(_arrow_post(api, "/api/v1/import/customers", customers), "name")


def test_a_refused_body_with_a_nul_byte_is_kept_and_ingestion_goes_on(api: ApiClient) -> None:
    """PostgreSQL refused to keep the refused body's text, and the applier thread died of
    it: every later write and read waited for it."""
    raw = b'{"userId": "a\x00'
    answer = api.http.post(
        "/v1/track", content=raw, headers={**write_auth(api), "Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    seed_customer(api, "after")
    events = api.http.get("/api/v1/events", params={"customer": "after"}, headers=api.auth)
    assert [e["event"] for e in events.json()["items"]] == ["Signed Up"]
    kept = api.http.get("/api/v1/rejected-messages", headers=api.auth).json()["items"]
    assert [r["payload"] for r in kept] == ['{"userId": "a\ufffd']


def test_timestamps_outside_the_calendar_are_refused_not_a_crash(api: ApiClient) -> None:
    cases = [
        ({"timestamp": "0259-10-14T21:49:03Z", "sentAt": "6109-10-06T05:05:41Z"}, "timestamp"),
        ({"timestamp": "9999-12-31T23:00:00Z", "sentAt": "1970-01-01T00:00:00Z"}, "timestamp"),
        ({"timestamp": "0001-01-01T00:00:00+05:00"}, "timestamp"),
        ({"sentAt": "9999-12-31T23:59:59-05:00"}, "sentAt"),
    ]
    for times, named in cases:
        answer = api.http.post(
            "/v1/track", json={"userId": "u", "event": "E", **times}, headers=write_auth(api)
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["field"] == named, answer.text


def test_traits_with_numbers_past_64_bits_are_refused(api: ApiClient) -> None:
    """The ingestion log keeps traits as msgpack, which has no such numbers: the request
    used to get a 503 'storage unavailable', and a client would retry it for ever."""
    body = b'{"userId": "u", "traits": {"plan": "pro", "big": 25120214654383726592}}'
    answer = api.http.post(
        "/v1/identify",
        content=body,
        headers={**write_auth(api), "Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "traits"
    fine = api.http.post(
        "/v1/identify", json={"userId": "u", "traits": {"big": 2**63}}, headers=write_auth(api)
    )
    assert fine.status_code == 200, fine.text


def test_nul_in_rest_requests_is_refused_naming_the_field(api: ApiClient) -> None:
    """PostgreSQL can neither store nor compare text with NUL (its driver raised); every
    backend refuses it alike, before anything is read or written."""
    seed_customer(api)
    get, post = api.http.get, api.http.post
    cases: list[tuple[httpx.Response, str]] = [
        (get("/api/v1/customers/a%00b", headers=api.auth), "ref"),
        (get("/api/v1/customers", params={"search": "a\x00"}, headers=api.auth), "search"),
        (get("/api/v1/events", params={"event": "a\x00"}, headers=api.auth), "event"),
        (get("/api/v1/overview", params={"model": "a\x00"}, headers=api.auth), "model"),
        (post("/api/v1/departments", json={"name": "Sales\x00"}, headers=api.auth), "name"),
        (
            post("/api/v1/cases", json={"customer": "ada", "subject": "x\x00"}, headers=api.auth),
            "subject",
        ),
        (
            post("/api/v1/analytics/trends", json={"event": {"event": "E\x00"}}, headers=api.auth),
            "event.event",
        ),
        (
            get("/v1/surveys/pending", params={"userId": "ada\x00"}, headers=write_auth(api)),
            "userId",
        ),
    ]
    for response, named in cases:
        refused(response, named)
    assert get("/api/v1/departments", headers=api.auth).json() == []
    assert get("/api/v1/cases", headers=api.auth).json() == []
    # An import refuses its bad messages one at a time, as the tracking API does.
    batch = {
        "messages": [
            {"type": "track", "userId": "ada", "event": "Bad\x00"},
            {"type": "track", "userId": "ada", "event": "Good"},
        ]
    }
    imported = post("/api/v1/import/messages", json=batch, headers=api.auth)
    assert imported.status_code == 200, imported.text
    assert (imported.json()["stored"], len(imported.json()["rejected"])) == (1, 1)


def test_a_survey_comment_with_nul_is_shown_back_as_an_error(api: ApiClient) -> None:
    survey = api.http.post(
        "/api/v1/surveys", json={"type": "nps", "name": "After"}, headers=api.auth
    ).json()
    invite = api.http.post(f"/api/v1/surveys/{survey['id']}/invites", json={}, headers=api.auth)
    token = invite.json()["token"]
    page = api.http.post(f"/s/{token}", data={"score": "9", "comment": "fine\x00"})
    assert page.status_code == 422, page.text
    assert "must not contain the NUL character" in page.text
    answered = api.http.post(f"/s/{token}", data={"score": "9", "comment": "fine"})
    assert answered.status_code == 200 and "Thank you" in answered.text


def test_days_and_times_outside_the_calendar_range_are_refused(api: ApiClient) -> None:
    """Moving 0001-01-01 or 9999-12-31 by a zone, a day or a month fell off the calendar."""
    seed_customer(api)
    assert api.http.post(
        "/api/v1/lifecycle/models", json={"preset": "client-experience"}, headers=api.auth
    ).is_success
    get = api.http.get
    cases: list[tuple[httpx.Response, str]] = [
        (get("/api/v1/feedback/nps", params={"to": "9999-12-31"}, headers=api.auth), "to"),
        (get("/api/v1/feedback/comments", params={"to": "9999-12-31"}, headers=api.auth), "to"),
        (get("/api/v1/overview", params={"to": "0001-01-01"}, headers=api.auth), "to"),
        (
            get(
                "/api/v1/lifecycle/client-experience/report",
                params={"from": "0001-01-01"},
                headers=api.auth,
            ),
            "from",
        ),
        (
            get("/api/v1/events", params={"from": "0001-01-01T00:00:00+05:00"}, headers=api.auth),
            "from",
        ),
        (
            get(
                "/api/v1/customers/ada/timeline",
                params={"before": "9999-12-31T23:59:59-05:00"},
                headers=api.auth,
            ),
            "before",
        ),
        (
            api.http.post(
                "/api/v1/cases",
                json={"customer": "ada", "subject": "s", "opened_at": "0001-01-01T00:00:00+05:00"},
                headers=api.auth,
            ),
            "opened_at",
        ),
    ]
    for response, named in cases:
        refused(response, named)
    trends = api.http.post(
        "/api/v1/analytics/trends",
        json={"event": {"event": "Signed Up"}, "date_to": "9999-12-31"},
        headers=api.auth,
    )
    assert trends.status_code == 422, trends.text
    assert (trends.json()["error"]["code"], trends.json()["error"]["field"]) == (
        "bad_date",
        "date_to",
    )
    inside = get("/api/v1/overview", params={"to": "9998-12-31"}, headers=api.auth)
    assert inside.status_code == 200, inside.text


def test_a_department_name_beyond_ascii_is_found_again(api: ApiClient) -> None:
    """SQLite's lower() folds only ASCII letters: the second 'Ávila' was not found and hit
    the unique index instead of the 409."""
    first = api.http.post("/api/v1/departments", json={"name": "Ávila"}, headers=api.auth)
    assert first.status_code == 201, first.text
    again = api.http.post("/api/v1/departments", json={"name": "Ávila"}, headers=api.auth)
    refused(again, "name", status=409)
    other = api.http.post("/api/v1/departments", json={"name": "Ébano"}, headers=api.auth)
    assert other.status_code == 201, other.text
    renamed = api.http.patch(
        "/api/v1/departments/Ébano", json={"new_name": "Ávila"}, headers=api.auth
    )
    refused(renamed, "new_name", status=409)
