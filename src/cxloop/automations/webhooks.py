"""Outgoing webhooks: signed JSON to the tools a team already uses.

An endpoint subscribes to topics (``event``, ``stage``, ``response``, ``case``,
``followup``; rules send to it by name as ``automation``). Each payload is one
*delivery*, a row written with an idempotency key in the transaction that calls for it,
and sent by a ``webhook.deliver`` job, so a crash never loses one and a rescan never
makes two. Payloads are signed the Standard Webhooks way (``webhook-id``,
``webhook-timestamp``, ``webhook-signature: v1,BASE64(HMAC-SHA256(secret,
id.timestamp.body))``, docs/automations.md shows how to check it), so receivers can use
the published libraries. A 5xx, a timeout or a refused connection is retried with
exponential backoff; any other 4xx is final. After ``CXLOOP_WEBHOOKS_DISABLE_AFTER``
failed attempts in a row the endpoint is disabled and the admins are told. Targets in
loopback, private and link-local networks are refused unless
``CXLOOP_WEBHOOKS_ALLOW_PRIVATE`` is set, and redirects are never followed, so a webhook
cannot be aimed at the internal network.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from standardwebhooks.webhooks import Webhook

from cxloop.domain.segments import NAME_PATTERN
from cxloop.domain.values import bounded_key, iso_utc
from cxloop.settings import Settings
from cxloop.store import activity, audit, jobs
from cxloop.store.models import (
    StageTransition,
    SurveyResponse,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
endpoints_t = cast(Table, WebhookEndpoint.__table__)
deliveries_t = cast(Table, WebhookDelivery.__table__)
attempts_t = cast(Table, WebhookAttempt.__table__)
transitions_t = cast(Table, StageTransition.__table__)
responses_t = cast(Table, SurveyResponse.__table__)
users_t = cast(Table, User.__table__)
DELIVER_JOB = "webhook.deliver"
TOPICS = ("event", "stage", "response", "case", "followup", "automation")
RETRIED_4XX = {408, 425, 429}
MAX_ATTEMPTS = 8


class WebhookIn(BaseModel):
    """An endpoint: where to POST and which topics it wants (``events`` narrows the
    ``event`` topic to those event names)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, pattern=NAME_PATTERN)
    url: str = Field(min_length=1, max_length=2000)
    topics: list[str] = Field(min_length=1, max_length=len(TOPICS))
    events: list[str] | None = Field(default=None, max_length=200)


class Unreachable(ValueError):
    """A URL cxloop will not call (not http(s), or in a blocked network)."""


class RetryLater(RuntimeError):
    """A failed attempt worth repeating (5xx, timeout, connection refused)."""


def check_url(url: str, settings: Settings, *, resolve: bool) -> None:
    """Refuse what is not http(s) and, unless allowed, hosts in non-public networks. At
    save time the host is checked as written (``resolve=False``: the name may not resolve
    from here yet); every delivery resolves it and checks each address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Unreachable(f"url: must start with http:// or https://, not {url[:40]!r}")
    if not parts.hostname:
        raise Unreachable("url: names no host")
    if parts.username or parts.password:
        raise Unreachable("url: must not carry a user name or password")
    if settings.webhooks_allow_private:
        return
    host = parts.hostname
    addresses: list[str] = []
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            addresses = ["127.0.0.1"]
        elif resolve:
            try:
                infos = socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise RetryLater(f"url: the host {host!r} does not resolve: {exc}") from None
            addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise Unreachable(
                f"url: {host} is in a private, loopback or link-local network ({address}); "
                "set CXLOOP_WEBHOOKS_ALLOW_PRIVATE=true to allow it"
            )


# -- endpoints ----------------------------------------------------------------------------


def _checked(new: WebhookIn, settings: Settings) -> dict[str, Any]:
    check_url(new.url, settings, resolve=False)
    unknown = sorted(set(new.topics) - set(TOPICS))
    if unknown:
        raise ValueError(f"topics: unknown {', '.join(unknown)} (use {', '.join(TOPICS)})")
    if new.events is not None and "event" not in new.topics:
        raise ValueError("events: only an endpoint on the event topic narrows events")
    events = None if not new.events else sorted({e.strip() for e in new.events if e.strip()})
    return {
        "name": new.name.strip(),
        "url": new.url,
        "topics": sorted(set(new.topics)),
        "events": events,
    }


def create_endpoint(
    conn: Connection, new: WebhookIn, settings: Settings, actor: str
) -> dict[str, Any]:
    """Register an endpoint; the answer carries its signing secret (``whsec_…``)."""
    values = _checked(new, settings)
    if conn.execute(select(endpoints_t.c.id).where(endpoints_t.c.name == values["name"])).first():
        raise ValueError(f"name: there is a webhook named {values['name']!r} already")
    now = datetime.now(UTC)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    new_id = conn.execute(
        insert(endpoints_t)
        .values(
            **values, secret=secret, enabled=True, failures_in_row=0, created_at=now, updated_at=now
        )
        .returning(endpoints_t.c.id)
    ).scalar_one()
    audit.record(
        conn,
        actor,
        "created",
        "webhook",
        new_id,
        f"webhook {values['name']} → {values['url']} ({', '.join(values['topics'])})",
    )
    return get_endpoint(conn, values["name"], with_secret=True)


def _row(conn: Connection, name: str) -> Any:
    from cxloop.lifecycle.service import NotFound

    row = conn.execute(select(endpoints_t).where(endpoints_t.c.name == name)).first()
    if row is None:
        raise NotFound("webhook", f"no webhook named {name!r}")
    return row


def _shown(row: Any, *, with_secret: bool = False) -> dict[str, Any]:
    found = {
        "id": int(row.id),
        "name": row.name,
        "url": row.url,
        "topics": list(row.topics),
        "events": row.events,
        "enabled": bool(row.enabled),
        "failures_in_row": row.failures_in_row,
        "disabled_reason": row.disabled_reason,
        "created_at": iso_utc(row.created_at),
    }
    if with_secret:
        found["secret"] = row.secret
    return found


def get_endpoint(conn: Connection, name: str, *, with_secret: bool = False) -> dict[str, Any]:
    return _shown(_row(conn, name), with_secret=with_secret)


def list_endpoints(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(endpoints_t).order_by(endpoints_t.c.name)).all()
    return [_shown(r) for r in rows]


def set_enabled(conn: Connection, name: str, enabled: bool, actor: str) -> dict[str, Any]:
    """Enable (which forgets the failures in a row) or disable an endpoint."""
    row = _row(conn, name)
    conn.execute(
        update(endpoints_t)
        .where(endpoints_t.c.id == row.id)
        .values(
            enabled=enabled,
            failures_in_row=0 if enabled else row.failures_in_row,
            disabled_reason=None if enabled else "disabled by hand",
            updated_at=datetime.now(UTC),
        )
    )
    audit.record(
        conn,
        actor,
        "enabled" if enabled else "disabled",
        "webhook",
        row.id,
        f"webhook {name} {'enabled' if enabled else 'disabled'}",
    )
    return get_endpoint(conn, name)


def rotate_secret(conn: Connection, name: str, actor: str) -> dict[str, Any]:
    row = _row(conn, name)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    conn.execute(update(endpoints_t).where(endpoints_t.c.id == row.id).values(secret=secret))
    audit.record(conn, actor, "changed", "webhook", row.id, f"webhook {name}: new secret")
    return get_endpoint(conn, name, with_secret=True)


def delete_endpoint(conn: Connection, name: str, actor: str) -> None:
    """Refused while a rule still posts to it (``usage`` imports the rules, which import
    this module)."""
    from cxloop.automations.usage import refuse_if_used

    row = _row(conn, name)
    refuse_if_used(conn, "webhook", name)
    conn.execute(endpoints_t.delete().where(endpoints_t.c.id == row.id))
    audit.record(conn, actor, "deleted", "webhook", row.id, f"webhook {name} deleted")


# -- deliveries ---------------------------------------------------------------------------


# The length of webhook_deliveries.source_key.
SOURCE_KEY_LENGTH = 300


def envelope(kind: str, data: dict[str, Any], at: datetime | None = None) -> dict[str, Any]:
    """The JSON every receiver gets: what happened (``type``), when, and its data."""
    return {"type": kind, "timestamp": iso_utc(at or datetime.now(UTC)), "data": data}


def queue_delivery(
    conn: Connection, endpoint_id: int, topic: str, source_key: str, payload: dict[str, Any]
) -> int | None:
    """One delivery per endpoint and source (None: queued before), and its job."""
    source_key = bounded_key(source_key, SOURCE_KEY_LENGTH)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    found = conn.execute(
        dialect.insert(deliveries_t)
        .values(
            endpoint_id=endpoint_id,
            uid="msg_" + uuid.uuid4().hex,
            source_key=source_key,
            topic=topic,
            payload=payload,
            status="pending",
            attempts=0,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=["endpoint_id", "source_key"])
        .returning(deliveries_t.c.id)
    ).first()
    if found is None:
        return None
    delivery_id = int(found.id)
    jobs.enqueue(
        conn,
        DELIVER_JOB,
        {"delivery_id": delivery_id},
        key=f"{DELIVER_JOB}:{delivery_id}",
        max_attempts=MAX_ATTEMPTS,
    )
    return delivery_id


def _subscribed(conn: Connection, topic: str) -> list[Any]:
    rows = conn.execute(select(endpoints_t).where(endpoints_t.c.enabled)).all()
    return [r for r in rows if topic in (r.topics or [])]


def publish(
    conn: Connection,
    topic: str,
    kind: str,
    source_key: str,
    data: dict[str, Any],
    at: datetime | None = None,
) -> int:
    """Queue a delivery of one change to every enabled endpoint on ``topic``."""
    payload = envelope(kind, data, at)
    return sum(
        queue_delivery(conn, int(e.id), topic, source_key, payload) is not None
        for e in _subscribed(conn, topic)
    )


def deliver_to(conn: Connection, name: str, source_key: str, payload: dict[str, Any]) -> str:
    """A rule's webhook action: one delivery to the endpoint it names."""
    source_key = bounded_key(source_key, SOURCE_KEY_LENGTH)
    row = _row(conn, name)
    if not row.enabled:
        return f"skipped: webhook {name} is disabled"
    delivery = queue_delivery(conn, int(row.id), "automation", source_key, payload)
    if delivery is None:
        found = conn.execute(
            select(deliveries_t.c.id).where(
                deliveries_t.c.endpoint_id == row.id, deliveries_t.c.source_key == source_key
            )
        ).scalar_one()
        return f"delivery {found} to {name} was queued already"
    return f"delivery {delivery} to {name} queued"


def on_events(engine: Engine, rows: pa.Table) -> int:
    """The ingestion listener: stored track events to endpoints on the ``event`` topic."""
    if rows.num_rows == 0:
        return 0
    with engine.connect() as conn:
        endpoints = _subscribed(conn, "event")
    if not endpoints:
        return 0
    queued = 0
    wanted_names: set[str] = set()
    for e in endpoints:
        wanted_names.update(e.events or [])
    everything = any(not e.events for e in endpoints)
    hits = rows.filter(pc.equal(rows["type"], "track"))
    if not everything:
        hits = hits.filter(pc.is_in(hits["event"], value_set=pa.array(sorted(wanted_names))))
    if hits.num_rows == 0:
        return 0
    columns = ["message_id", "event", "customer_id", "timestamp", "properties"]
    with engine.begin() as conn:
        for row in hits.select(columns).to_pylist():
            data = {
                "message_id": row["message_id"],
                "event": row["event"],
                "customer_id": row["customer_id"],
                "timestamp": iso_utc(row["timestamp"]),
                "properties": _json(row["properties"]),
            }
            payload = envelope("event", data)
            for e in endpoints:
                if not e.events or row["event"] in e.events:
                    queued += (
                        queue_delivery(
                            conn, int(e.id), "event", f"event:{row['message_id']}", payload
                        )
                        is not None
                    )
    return queued


def _json(raw: Any) -> Any:
    if raw is None or isinstance(raw, dict):
        return raw or {}
    try:
        return json.loads(raw)
    except ValueError:
        return {}


def scan(conn: Connection, *, batch: int = 5000) -> int:
    """Queue deliveries of stage changes, answers, cases and follow-ups recorded since the
    last scan. With no endpoint on a topic its cursor just moves on, so an endpoint
    created later gets what happens from then, not the whole history."""
    return _scan_stages(conn, batch) + _scan_responses(conn, batch) + _scan_activity(conn, batch)


def _scan_stages(conn: Connection, batch: int) -> int:
    name = "webhooks:stages"
    if not _subscribed(conn, "stage"):
        jobs.skip_to_end(conn, name, transitions_t)
        return 0
    from cxloop.lifecycle.service import move_key, moves_since

    rows = moves_since(conn, jobs.read_cursor(conn, name), batch=batch)
    queued = 0
    for r in rows:
        kind = "stage.exited" if r.kind == "exit" else "stage.entered"
        data = {
            "customer_id": int(r.customer_id),
            "model": r.model,
            "kind": r.kind,
            "from_stage": r.from_stage,
            "to_stage": r.to_stage,
            "at": iso_utc(r.at),
            "cycle": r.cycle,
            "event": r.event,
            "reason": r.reason,
        }
        queued += publish(conn, "stage", kind, move_key(r.model, r), data, r.at)
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return queued


def _scan_responses(conn: Connection, batch: int) -> int:
    name = "webhooks:responses"
    if not _subscribed(conn, "response"):
        jobs.skip_to_end(conn, name, responses_t)
        return 0
    r = responses_t.c
    rows = conn.execute(
        select(responses_t).where(r.id > jobs.read_cursor(conn, name)).order_by(r.id).limit(batch)
    ).all()
    queued = 0
    for row in rows:
        data = {
            "id": int(row.id),
            "survey_id": int(row.survey_id),
            "customer_id": row.customer_id,
            "score": row.score,
            "choice": row.choice,
            "comment": row.comment,
            "touchpoint": row.touchpoint,
            "stage_model": row.stage_model,
            "stage": row.stage,
            "submitted_at": iso_utc(row.submitted_at),
        }
        queued += publish(conn, "response", "response.created", f"response:{row.id}", data)
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return queued


def _scan_activity(conn: Connection, batch: int) -> int:
    name = "webhooks:activity"
    if not (_subscribed(conn, "case") or _subscribed(conn, "followup")):
        jobs.skip_to_end(conn, name, activity.activity_t)
        return 0
    rows = activity.since(conn, jobs.read_cursor(conn, name), batch=batch)
    queued = 0
    for row in rows:
        topic = row.kind.split(".")[0]
        queued += publish(conn, topic, row.kind, f"activity:{row.id}", dict(row.data), row.at)
    if rows:
        jobs.save_cursor(conn, name, int(rows[-1].id))
    return queued


# -- sending ------------------------------------------------------------------------------

_clients: dict[float, httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(timeout: float) -> httpx.Client:
    """One pooled client per timeout, so deliveries to an endpoint reuse connections.
    (httpx is loaded with the first delivery, not by every command that opens a project.)"""
    import httpx

    with _clients_lock:
        client = _clients.get(timeout)
        if client is None:
            client = httpx.Client(
                timeout=timeout,
                follow_redirects=False,
                headers={"user-agent": "cxloop-webhooks/1"},
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
            )
            _clients[timeout] = client
        return client


def signed_headers(secret: str, uid: str, body: str, at: datetime) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": uid,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(uid, at, body),
    }


@dataclass
class Prepared:
    """A delivery read and ready to send (or, in ``done``, why there is nothing to send)."""

    job: jobs.ClaimedJob
    delivery_id: int
    endpoint: Any = None
    uid: str = ""
    body: str = ""
    done: tuple[str, dict[str, Any]] | None = None


@dataclass
class Sent:
    code: int | None
    error: str | None
    took_ms: float


def run_delivery(
    engine: Engine, settings: Settings, job: jobs.ClaimedJob, notify: Any = None
) -> tuple[str, dict[str, Any]]:
    """The ``webhook.deliver`` job: one attempt, logged. Raises ``RetryLater`` for a
    failure worth repeating (the queue backs off); a final failure returns normally. The
    worker runs the three stages itself to send many side by side: reading and logging
    write the app database in turn, only the POSTs overlap."""
    prepared = prepare_delivery(engine, job)
    if prepared.done is not None:
        return prepared.done
    sent = send_delivery(settings, prepared)
    with engine.begin() as conn:
        outcome, again = record_delivery(conn, settings, prepared, sent, notify)
    if again:
        raise RetryLater(outcome)
    return outcome, job.payload


def prepare_delivery(engine: Engine, job: jobs.ClaimedJob) -> Prepared:
    delivery_id = int(job.payload["delivery_id"])
    with engine.connect() as conn:
        d = conn.execute(select(deliveries_t).where(deliveries_t.c.id == delivery_id)).first()
        e = (
            None
            if d is None
            else conn.execute(select(endpoints_t).where(endpoints_t.c.id == d.endpoint_id)).first()
        )
    found = Prepared(job, delivery_id)
    if d is None or e is None:
        found.done = ("skipped: the delivery or its endpoint was deleted", job.payload)
    elif d.status == "delivered" and not job.payload.get("resend"):
        found.done = (f"delivery {delivery_id} was delivered already", job.payload)
    elif not e.enabled:
        _set(engine, delivery_id, status="skipped", last_error=f"webhook {e.name} is disabled")
        found.done = (f"skipped: webhook {e.name} is disabled", job.payload)
    else:
        found.endpoint = e
        found.uid = d.uid
        found.body = json.dumps(d.payload, separators=(",", ":"), ensure_ascii=False)
    return found


def send_delivery(settings: Settings, prepared: Prepared) -> Sent:
    """The POST alone (no database): safe to run in many threads at once."""
    import httpx

    e = prepared.endpoint
    started = time.perf_counter()
    code: int | None = None
    error: str | None = None
    try:
        check_url(e.url, settings, resolve=True)
        response = _client(settings.webhooks_timeout_s).post(
            e.url,
            content=prepared.body.encode(),
            headers=signed_headers(e.secret, prepared.uid, prepared.body, datetime.now(UTC)),
        )
        code = response.status_code
    except Unreachable as exc:
        error = str(exc)
    except (httpx.HTTPError, RetryLater) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Sent(code, error, (time.perf_counter() - started) * 1000)


def record_delivery(
    conn: Connection, settings: Settings, prepared: Prepared, sent: Sent, notify: Any = None
) -> tuple[str, bool]:
    """Log the attempt; the outcome, and whether it is worth another attempt."""
    job, e, delivery_id = prepared.job, prepared.endpoint, prepared.delivery_id
    code, error = sent.code, sent.error
    ok = code is not None and 200 <= code < 300
    final = not ok and (
        (code is not None and 400 <= code < 500 and code not in RETRIED_4XX)
        or (error is not None and error.startswith("url:"))
        or job.attempts >= job.max_attempts
    )
    said = error or f"HTTP {code}"
    conn.execute(
        insert(attempts_t).values(
            delivery_id=delivery_id,
            at=datetime.now(UTC),
            status_code=code,
            error=error,
            duration_ms=sent.took_ms,
        )
    )
    values: dict[str, Any] = {
        "attempts": deliveries_t.c.attempts + 1,
        "last_status": code,
        "last_error": None if ok else said,
    }
    if ok:
        values.update(status="delivered", delivered_at=datetime.now(UTC))
        conn.execute(
            update(endpoints_t)
            .where(endpoints_t.c.id == e.id, endpoints_t.c.failures_in_row > 0)
            .values(failures_in_row=0)
        )
    elif final:
        values.update(status="failed")
    conn.execute(update(deliveries_t).where(deliveries_t.c.id == delivery_id).values(**values))
    if not ok:
        _count_failure(conn, settings, e, said, notify)
    if ok:
        return f"delivered {delivery_id} to {e.name}: HTTP {code}", False
    if final:
        return f"failed for good: {delivery_id} to {e.name}: {said}", False
    return f"delivery {delivery_id} to {e.name}: {said}", True


def _set(engine: Engine, delivery_id: int, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(deliveries_t).where(deliveries_t.c.id == delivery_id).values(**values))


def _count_failure(conn: Connection, settings: Settings, e: Any, said: str, notify: Any) -> None:
    failures = conn.execute(
        update(endpoints_t)
        .where(endpoints_t.c.id == e.id)
        .values(failures_in_row=endpoints_t.c.failures_in_row + 1)
        .returning(endpoints_t.c.failures_in_row, endpoints_t.c.enabled)
    ).one()
    if not failures.enabled or failures.failures_in_row < settings.webhooks_disable_after:
        return
    reason = f"disabled after {failures.failures_in_row} failed attempts in a row; the last: {said}"
    conn.execute(
        update(endpoints_t)
        .where(endpoints_t.c.id == e.id)
        .values(enabled=False, disabled_reason=reason, updated_at=datetime.now(UTC))
    )
    audit.record(conn, "cxloop", "disabled", "webhook", e.id, f"webhook {e.name} {reason}")
    admins = [
        r.email
        for r in conn.execute(
            select(users_t.c.email).where(
                users_t.c.role == "admin", users_t.c.disabled_at.is_(None)
            )
        )
    ]
    if admins:  # told by e-mail, through the queue, so a mail outage does not lose it
        jobs.enqueue(
            conn,
            NOTICE_JOB,
            {"to": admins, "webhook": e.name, "reason": reason},
            key=f"{NOTICE_JOB}:{e.id}:{datetime.now(UTC):%Y%m%dT%H%M%S}",
        )
    log.warning("webhook %s %s", e.name, reason)


NOTICE_JOB = "webhook.notice"


def run_notice(settings: Settings, job: jobs.ClaimedJob, sender: Any) -> tuple[str, dict[str, Any]]:
    from cxloop.mail import compose

    payload = job.payload
    text = (
        f"The webhook {payload['webhook']} was {payload['reason']}.\n\n"
        f"While it is disabled its deliveries are skipped (and logged). Enable it again "
        f"with `cxloop webhooks enable {payload['webhook']}` (or on the settings page) once "
        f"the receiver works, then re-send the deliveries that failed or were skipped "
        f"(`cxloop webhooks resend ID`).\n"
    )
    for to in payload["to"]:
        sender(
            settings,
            compose(
                settings,
                to=to,
                subject=f"cxloop: webhook {payload['webhook']} disabled",
                text=text,
                html=None,
            ),
        )
    return f"told {len(payload['to'])} admins", payload


def resend(conn: Connection, delivery_id: int, actor: str) -> dict[str, Any]:
    """Send a delivery again now (same ``webhook-id``, so a receiver that has it can
    drop it), whatever its status."""
    from cxloop.lifecycle.service import NotFound

    row = conn.execute(select(deliveries_t).where(deliveries_t.c.id == delivery_id)).first()
    if row is None:
        raise NotFound("delivery", f"no webhook delivery with id {delivery_id}")
    conn.execute(
        update(deliveries_t).where(deliveries_t.c.id == delivery_id).values(status="pending")
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    jobs.enqueue(
        conn,
        DELIVER_JOB,
        {"delivery_id": delivery_id, "resend": True},
        key=f"{DELIVER_JOB}:{delivery_id}:resend:{stamp}",
        max_attempts=MAX_ATTEMPTS,
    )
    audit.record(
        conn, actor, "resent", "webhook", row.endpoint_id, f"delivery {delivery_id} queued again"
    )
    return get_delivery(conn, delivery_id)


def get_delivery(conn: Connection, delivery_id: int) -> dict[str, Any]:
    found = list_deliveries(conn, delivery_id=delivery_id)
    if not found:
        from cxloop.lifecycle.service import NotFound

        raise NotFound("delivery", f"no webhook delivery with id {delivery_id}")
    return found[0]


def list_deliveries(
    conn: Connection,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    delivery_id: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """The delivery log, newest first, each with its attempts (status codes, errors)."""
    if status is not None and status not in ("pending", "delivered", "failed", "skipped"):
        raise ValueError(f"status: must be pending, delivered, failed or skipped, not {status!r}")
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be between 1 and 1000")
    d = deliveries_t.c
    query = (
        select(deliveries_t, endpoints_t.c.name.label("endpoint"))
        .join(endpoints_t, endpoints_t.c.id == d.endpoint_id)
        .order_by(d.id.desc())
        .limit(limit)
    )
    if endpoint is not None:
        query = query.where(endpoints_t.c.id == _row(conn, endpoint).id)
    if status is not None:
        query = query.where(d.status == status)
    if delivery_id is not None:
        query = query.where(d.id == delivery_id)
    rows = conn.execute(query).all()
    tries: dict[int, list[dict[str, Any]]] = {}
    if rows:
        for a in conn.execute(
            select(attempts_t)
            .where(attempts_t.c.delivery_id.in_([int(r.id) for r in rows]))
            .order_by(attempts_t.c.id)
        ):
            tries.setdefault(int(a.delivery_id), []).append(
                {
                    "at": iso_utc(a.at),
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": round(a.duration_ms, 1),
                }
            )
    return [
        {
            "id": int(r.id),
            "endpoint": r.endpoint,
            "webhook_id": r.uid,
            "topic": r.topic,
            "type": (r.payload or {}).get("type"),
            "status": r.status,
            "attempts": r.attempts,
            "last_status": r.last_status,
            "last_error": r.last_error,
            "created_at": iso_utc(r.created_at),
            "delivered_at": iso_utc(r.delivered_at),
            "payload": r.payload,
            "log": tries.get(int(r.id), []),
        }
        for r in rows
    ]
