"""Sustained HTTP ingestion: how many events a second `cxloop serve` acknowledges.

    .venv/bin/python bench/ingest.py [--backend embedded|postgres] [--seconds 20]
                                     [--batch 100] [--connections 8]

It starts `cxloop serve` in a temporary project (embedded SQLite + DuckDB, or PostgreSQL on
127.0.0.1:5432 in a fresh database it creates and drops), creates a write key with the CLI,
and runs a separate load process: pre-built /v1/batch bodies of realistic Segment messages
(track, page, identify; a few thousand users), each request given fresh message ids, sent
over keep-alive connections as fast as the server answers. Only events in a 200 answer
are counted; afterwards the stored event count (REST API) must equal that count.

In the same run and with the same load it measures two references:

* peer ``baseline``: a minimal receiver that does only what any ingestion endpoint must do:
  Starlette on uvicorn (uvloop, httptools, as cxloop), the write key checked, the batch
  parsed with the standard json module, one Arrow table appended to a DuckDB table and
  committed before the 200. No validation, identity resolution or deduplication;
* ``null`` endpoint: reads each request and answers 200 without doing anything, which is
  the ceiling of the load generator and the HTTP exchange on this machine.

A human summary is printed, and last one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get(
    "CXLOOP_BENCH_PG_ADMIN_URL", "postgresql://postgres:postgres@127.0.0.1:5432/postgres"
)
TOKEN = b"@@@@@@@@@@@@"  # replaced per request by a unique 12-character token
USERS = 4000
VISITORS = 2000  # anonymous visitors who never sign in
TEMPLATES = 200
WARMUP_S = 2.0
NULL_ENDPOINT = "null endpoint: asyncio protocol that reads each request and answers 200"
PEERS = {
    "embedded": "baseline: Starlette + json + DuckDB Arrow append, committed per request",
    "postgres": "baseline: Starlette + json + PostgreSQL COPY, committed per request",
}

# -- realistic Segment messages --------------------------------------------------------------

PRODUCTS = [
    (f"sku-{n:05d}", name, cat, price)
    for n, (name, cat, price) in enumerate(
        [
            ("Trail Running Shoe", "Footwear", 129.95),
            ("Merino Base Layer", "Apparel", 74.5),
            ("Ultralight Tent 2P", "Camping", 389.0),
            ("Insulated Bottle 750ml", "Accessories", 34.99),
            ("Down Jacket", "Apparel", 249.0),
            ("Headlamp 400lm", "Accessories", 49.95),
            ("Hiking Poles", "Accessories", 89.0),
            ("Rain Shell", "Apparel", 199.0),
            ("Sleeping Bag -5C", "Camping", 279.0),
            ("Camp Stove", "Camping", 119.0),
        ]
    )
]
EVENTS = [
    ("Product Viewed", 30),
    ("Product Added", 10),
    ("Cart Viewed", 6),
    ("Checkout Started", 4),
    ("Order Completed", 3),
    ("Products Searched", 8),
    ("Product List Viewed", 8),
    ("Signed In", 2),
    ("Coupon Applied", 1),
]
PAGES = [
    ("/", "Home"),
    ("/collections/footwear", "Footwear"),
    ("/collections/apparel", "Apparel"),
    ("/products/trail-running-shoe", "Trail Running Shoe"),
    ("/cart", "Cart"),
    ("/checkout", "Checkout"),
    ("/blog/layering-guide", "How to layer for the mountains"),
    ("/account", "Account"),
]
AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 15; Pixel 9) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
]
CITIES = [
    ("Amsterdam", "Noord-Holland", "NL"),
    ("Utrecht", "Utrecht", "NL"),
    ("Berlin", "Berlin", "DE"),
    ("Munich", "Bavaria", "DE"),
    ("Lyon", "Auvergne-Rhone-Alpes", "FR"),
    ("Leeds", "England", "GB"),
]
CAMPAIGNS = [
    {"name": "winter-sale", "source": "newsletter", "medium": "email"},
    {"name": "brand", "source": "google", "medium": "cpc", "term": "trail shoes"},
    {"name": "retargeting", "source": "facebook", "medium": "paid_social"},
]


def _context(rng: random.Random, page: tuple[str, str], user: int) -> dict[str, Any]:
    path, title = page
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "5.2.0"},
        "ip": f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{user % 254}",
        "locale": rng.choice(["en-GB", "nl-NL", "de-DE", "fr-FR"]),
        "timezone": "Europe/Amsterdam",
        "userAgent": rng.choice(AGENTS),
        "page": {
            "path": path,
            "referrer": rng.choice(["", "https://www.google.com/", "https://t.co/x1"]),
            "search": "",
            "title": title,
            "url": f"https://shop.example.com{path}",
        },
    }
    if rng.random() < 0.3:
        context["campaign"] = rng.choice(CAMPAIGNS)
    return context


def _message(rng: random.Random, index: int, now: datetime) -> dict[str, Any]:
    identified = rng.random() < 0.8
    user = rng.randrange(USERS)
    message: dict[str, Any] = {
        "messageId": f"{TOKEN.decode()}-{index:03d}",
        "timestamp": (now - timedelta(seconds=rng.randrange(1, 600))).isoformat(),
        "integrations": {},
    }
    if identified:
        message["userId"] = f"user-{user:06d}"
        message["anonymousId"] = f"anon-u{user:06d}"
    else:
        visitor = rng.randrange(VISITORS)
        message["anonymousId"] = f"anon-v{visitor:06d}"
    page = rng.choice(PAGES)
    message["context"] = _context(rng, page, user)
    roll = rng.random()
    if identified and roll < 0.1:
        city, region, country = rng.choice(CITIES)
        message["type"] = "identify"
        message["traits"] = {
            "email": f"customer{user}@example.com",
            "firstName": rng.choice(["Anna", "Ben", "Chloe", "Daan", "Eva", "Finn"]),
            "lastName": rng.choice(["de Vries", "Schmidt", "Martin", "Smith", "Jansen"]),
            "gender": rng.choice(["female", "male"]),
            "birth_year": rng.randrange(1950, 2006),
            "city": city,
            "region": region,
            "country": country,
            "plan": rng.choice(["free", "plus", "pro"]),
            "newsletter": rng.random() < 0.5,
        }
    elif roll < 0.3:
        message["type"] = "page"
        message["name"] = page[1]
        message["properties"] = {
            "path": page[0],
            "title": page[1],
            "url": f"https://shop.example.com{page[0]}",
            "referrer": message["context"]["page"]["referrer"],
        }
    else:
        names, weights = zip(*EVENTS, strict=True)
        event = rng.choices(names, weights)[0]
        sku, name, category, price = rng.choice(PRODUCTS)
        quantity = rng.randrange(1, 4)
        message["type"] = "track"
        message["event"] = event
        message["properties"] = {
            "product_id": sku,
            "sku": sku,
            "name": name,
            "category": category,
            "brand": "Northwind Outdoor",
            "variant": rng.choice(["S", "M", "L", "42", "43", "44"]),
            "price": price,
            "quantity": quantity,
            "currency": "EUR",
            "value": round(price * quantity, 2),
        }
        if event == "Order Completed":
            message["properties"]["order_id"] = f"ord-{rng.getrandbits(40):x}"
            message["properties"]["revenue"] = round(price * quantity, 2)
    return message


def build_templates(batch: int, seed: int = 20261122) -> list[bytes]:
    """/v1/batch bodies whose message ids all contain TOKEN once."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    bodies = []
    for _ in range(TEMPLATES):
        messages = [_message(rng, i, now) for i in range(batch)]
        body = {"batch": messages, "sentAt": now.isoformat(), "context": {}}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


# -- the load process -------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    events: int  # acknowledged (200) events in the measured window
    events_total: int  # acknowledged, warm-up included
    failures: int  # requests not answered with a 200
    per_second: list[int]  # acknowledged events in each whole second of the window
    seconds: float
    body_bytes: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[int, bytes]:
    """One HTTP/1.1 response (Content-Length framed) from a keep-alive connection."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    head = bytes(buffer[:end]).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    need = end + 4 + length
    while len(buffer) < need:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed")
        buffer += chunk
    body = bytes(buffer[end + 4 : need])
    del buffer[:need]
    return status, body


def _worker(
    conn: int,
    host: str,
    port: int,
    write_key: str,
    templates: list[bytes],
    measure_from: float,
    deadline: float,
    out: list[tuple[int, int, int, int, list[int]]],
) -> None:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    heads = [
        (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
            f"User-Agent: cxloop-bench\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        for body in templates
    ]
    requests = events = events_total = failures = 0
    per_second = [0] * (int(deadline - measure_from) + 1)
    sock: socket.socket | None = None
    buffer = bytearray()
    seq = 0
    n = len(templates)
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            pick = (seq * 7 + conn * 13) % n
            token = b"%02d%010d" % (conn, seq)
            seq += 1
            try:
                if sock is None:
                    sock = socket.create_connection((host, port))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffer.clear()
                sock.sendall(heads[pick] + templates[pick].replace(TOKEN, token))
                status, body = _read_response(sock, buffer)
            except OSError:  # counted as a failure; a new connection is made
                failures += 1
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
                continue
            requests += 1
            if status != 200:
                failures += 1
                continue
            accepted = int(json.loads(body).get("accepted", 0))
            events_total += accepted
            if now >= measure_from:
                events += accepted
                per_second[int(now - measure_from)] += accepted
    finally:
        if sock is not None:
            sock.close()
        out.append((requests, events, events_total, failures, per_second))


def run_load(
    host: str, port: int, write_key: str, seconds: float, connections: int, batch: int, queue: Any
) -> None:
    """The load process: N connections, each a thread sending batches back to back."""
    templates = build_templates(batch)
    out: list[tuple[int, int, int, int, list[int]]] = []
    start = time.monotonic()
    measure_from = start + WARMUP_S
    deadline = measure_from + seconds
    threads = [
        threading.Thread(
            target=_worker,
            args=(c, host, port, write_key, templates, measure_from, deadline, out),
            daemon=True,
        )
        for c in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(
        asdict(
            LoadResult(
                requests=sum(o[0] for o in out),
                events=sum(o[1] for o in out),
                events_total=sum(o[2] for o in out),
                failures=sum(o[3] for o in out),
                per_second=[sum(col) for col in zip(*(o[4] for o in out), strict=True)][
                    : int(seconds)
                ],
                seconds=seconds,
                body_bytes=sum(len(t) for t in templates) // len(templates),
            )
        )
    )


def load(port: int, write_key: str, args: argparse.Namespace) -> LoadResult:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=run_load,
        args=("127.0.0.1", port, write_key, args.seconds, args.connections, args.batch, queue),
        name="cxloop-bench-load",
    )
    proc.start()
    result = queue.get(timeout=args.seconds + 600)
    proc.join(30)
    return LoadResult(**result)


# -- references: the baseline receiver and the null endpoint -----------------------------------

BASELINE_DDL = """
CREATE TABLE IF NOT EXISTS baseline_events (
    message_id VARCHAR, type VARCHAR, event VARCHAR, name VARCHAR, user_id VARCHAR,
    anonymous_id VARCHAR, "timestamp" TIMESTAMPTZ, received_at TIMESTAMPTZ,
    properties JSON, traits JSON, context JSON
)
"""
BASELINE_COLUMNS = (
    'message_id, type, event, name, user_id, anonymous_id, "timestamp", received_at, '
    "properties, traits, context"
)


def serve_baseline(port: int, store: str, write_key: str) -> None:
    """The minimal receiver: write key, json.loads, one append committed before the 200.

    ``store`` is a DuckDB file (an Arrow table appended) or a PostgreSQL URL (COPY).
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = threading.Lock()
    expected = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    dumps = json.dumps

    if store.startswith("postgresql://"):
        import psycopg

        pg = psycopg.connect(store, autocommit=True)
        pg.execute(BASELINE_DDL.replace("VARCHAR", "TEXT").replace("JSON", "JSONB"))
        copy_sql = f"COPY baseline_events ({BASELINE_COLUMNS}) FROM STDIN"

        def append(rows: list[dict[str, Any]]) -> None:
            now = datetime.now(UTC)
            with lock, pg.transaction(), pg.cursor() as cur, cur.copy(copy_sql) as copy:
                for m in rows:
                    copy.write_row(
                        (
                            m.get("messageId"),
                            m.get("type"),
                            m.get("event"),
                            m.get("name"),
                            m.get("userId"),
                            m.get("anonymousId"),
                            m.get("timestamp"),
                            now,
                            dumps(m.get("properties") or {}),
                            dumps(m.get("traits") or {}),
                            dumps(m.get("context") or {}),
                        )
                    )

    else:
        import duckdb
        import pyarrow as pa

        con = duckdb.connect(store)
        con.execute(BASELINE_DDL)
        ts = pa.timestamp("us", tz="UTC")

        def append(rows: list[dict[str, Any]]) -> None:
            incoming = pa.table(
                {
                    "message_id": [m.get("messageId") for m in rows],
                    "type": [m.get("type") for m in rows],
                    "event": [m.get("event") for m in rows],
                    "name": [m.get("name") for m in rows],
                    "user_id": [m.get("userId") for m in rows],
                    "anonymous_id": [m.get("anonymousId") for m in rows],
                    "timestamp": pa.array(
                        [datetime.fromisoformat(m["timestamp"]) for m in rows], type=ts
                    ),
                    "received_at": pa.array([datetime.now(UTC)] * len(rows), type=ts),
                    "properties": [dumps(m.get("properties") or {}) for m in rows],
                    "traits": [dumps(m.get("traits") or {}) for m in rows],
                    "context": [dumps(m.get("context") or {}) for m in rows],
                }
            )
            with lock:
                con.register("incoming", incoming)
                con.execute("INSERT INTO baseline_events SELECT * FROM incoming")
                con.unregister("incoming")

    async def batch(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != expected:
            return JSONResponse({"success": False}, status_code=401)
        rows = json.loads(await request.body())["batch"]
        await asyncio.to_thread(append, rows)
        return JSONResponse({"success": True, "accepted": len(rows)})

    serve_app(Starlette(routes=[Route("/v1/batch", batch, methods=["POST"])]), port)


def serve_app(app: Any, port: int) -> None:
    """A reference receiver on uvicorn as cxloop serves (uvloop, httptools), quietly."""
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


class _NullProtocol(asyncio.Protocol):
    """Reads whole requests and answers each with a 200 naming the messages in it."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = bytearray()
        self.need = -1  # bytes of the current request (head and body), once its head is read

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n", 0, 8192)
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                at = head.index(b"content-length:") + 15
                stop = head.find(b"\r\n", at)
                self.need = end + 4 + int(head[at : stop if stop >= 0 else None])
                self.body_from = end + 4
            if len(self.buffer) < self.need:
                return
            messages = self.buffer.count(b'"messageId"', self.body_from, self.need)
            del self.buffer[: self.need]
            self.need = -1
            reply = b'{"success":true,"accepted":%d}' % messages
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(reply), reply)
            )


def serve_null(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_NullProtocol, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    import uvloop

    uvloop.run(main())


# -- orchestration ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = proc.poll() is None if hasattr(proc, "poll") else proc.is_alive()
        if not alive:
            raise RuntimeError("the server exited during start-up")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def cxloop_bin() -> str:
    found = shutil.which("cxloop", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit("the cxloop command is not installed in this environment (make venv)")
    return found


def project_env(home: Path, port: int, pg_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXLOOP_")}
    env["CXLOOP_HOME"] = str(home)
    env["CXLOOP_PORT"] = str(port)
    if pg_url:
        env["CXLOOP_DATABASE_URL"] = pg_url.replace("postgresql://", "postgresql+psycopg://")
        env["CXLOOP_EVENTS_URL"] = pg_url
    return env


def rest_get(port: int, path: str, secret_key: str) -> Any:
    import httpx

    response = httpx.get(
        f"http://127.0.0.1:{port}/api/v1{path}",
        headers={"Authorization": f"Bearer {secret_key}"},
        timeout=300,
    )
    response.raise_for_status()
    return response.json()


@dataclass
class Run:
    name: str
    result: LoadResult
    stored: int | None = None


def bench_cxloop(args: argparse.Namespace, workdir: Path, pg_url: str | None) -> Run:
    port = free_port()
    env = project_env(workdir / "project", port, pg_url)
    keys = {}
    for kind in ("write", "secret"):
        keys[kind] = subprocess.run(
            [cxloop_bin(), "keys", "create", "--kind", kind, "--name", "bench"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    if args.lifecycle:
        subprocess.run(
            [cxloop_bin(), "lifecycle", "apply", args.lifecycle],
            env=env,
            check=True,
            capture_output=True,
        )
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen([cxloop_bin(), "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_for_port(port, server)
        print(f"  cxloop serve: pid {server.pid}, port {port}", flush=True)
        result = load(port, keys["write"], args)
        stored = int(rest_get(port, "/stats?days=1", keys["secret"])["events"])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        log.close()
    return Run("cxloop", result, stored)


def bench_baseline(args: argparse.Namespace, workdir: Path, pg_url: str | None) -> Run:
    port = free_port()
    store = pg_url or str(workdir / "baseline.duckdb")
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=serve_baseline, args=(port, store, "wk_baseline"), daemon=True)
    proc.start()
    try:
        wait_for_port(port, proc)
        result = load(port, "wk_baseline", args)
    finally:
        if proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(60)
    return Run("baseline", result, count_rows(store, "baseline_events"))


def count_rows(store: str, table: str) -> int:
    if store.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(store) as pg:
            found = pg.execute(f"SELECT count(*) FROM {table}").fetchone()
    else:
        import duckdb

        con = duckdb.connect(store, read_only=True)
        found = con.execute(f"SELECT count(*) FROM {table}").fetchone()
        con.close()
    return int(found[0]) if found else 0


def bench_null(args: argparse.Namespace) -> Run:
    port = free_port()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=serve_null, args=(port,), daemon=True)
    proc.start()
    try:
        wait_for_port(port, proc)
        result = load(port, "wk_null", args)
    finally:
        proc.terminate()
        proc.join(30)
    return Run("null", result)


def create_pg_database() -> str:
    import psycopg

    name = f"cxbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe(run: Run) -> str:
    r = run.result
    seconds = sorted(r.per_second) or [0]
    line = (
        f"{r.events_per_s:>11,.0f} events/s  (per second: min {seconds[0]:,}, "
        f"median {seconds[len(seconds) // 2]:,}, max {seconds[-1]:,}; "
        f"{r.events_total:,} acknowledged in {r.requests:,} requests"
    )
    if r.failures:
        line += f", {r.failures:,} not acknowledged"
    if run.stored is not None:
        line += f"; {run.stored:,} stored"
    return line + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "postgres"], default="embedded")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--batch", type=int, default=100, help="messages per request")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections")
    parser.add_argument(
        "--lifecycle",
        metavar="PRESET",
        help="install this lifecycle preset first, so the stage engine runs on every batch",
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="measure cxloop only (no baseline, no null)"
    )
    args = parser.parse_args()
    if args.seconds < 1 or args.batch < 1 or args.connections < 1:
        parser.error("--seconds, --batch and --connections must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="cxloop-bench-"))
    pg_url = create_pg_database() if args.backend == "postgres" else None
    runs: list[Run] = []
    try:
        print(
            f"cxloop ingestion benchmark: backend {args.backend}, {args.seconds:g} s measured "
            f"after {WARMUP_S:g} s warm-up per receiver, /v1/batch of {args.batch} messages, "
            f"{args.connections} keep-alive connections from a separate load process; "
            f"{os.cpu_count()} cores, Python {platform.python_version()}",
            flush=True,
        )
        runs.append(bench_cxloop(args, workdir, pg_url))
        print(f"  cxloop serve ({args.backend}): {describe(runs[0])}", flush=True)
        if not args.no_peers:
            runs.append(bench_baseline(args, workdir, pg_url))
            print(f"  peer, {PEERS[args.backend]}:", flush=True)
            print(f"  {'':{len(args.backend) + 16}}{describe(runs[1])}", flush=True)
            runs.append(bench_null(args))
            print(f"  ceiling, {NULL_ENDPOINT}:", flush=True)
            print(f"  {'':{len(args.backend) + 16}}{describe(runs[2])}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if pg_url:
            drop_pg_database(pg_url)

    cx = runs[0]
    ok = all(r.stored is None or r.stored == r.result.events_total for r in runs)
    print(
        f"  check: stored == acknowledged (cxloop through its REST API, the peer in its "
        f"table): {'yes' if ok else 'NO'}; request body {cx.result.body_bytes / 1024:.0f} KB"
    )
    summary: dict[str, Any] = {
        "events_per_s": round(cx.result.events_per_s),
        "backend": args.backend,
        "peer": None,
        "peer_events_per_s": None,
        "acknowledged": cx.result.events_total,
        "stored": cx.stored,
        "consistent": ok,
        "seconds": args.seconds,
        "batch": args.batch,
        "connections": args.connections,
        "cores": os.cpu_count(),
        "lifecycle": args.lifecycle,
    }
    if not args.no_peers:
        summary.update(
            peer=PEERS[args.backend],
            peer_events_per_s=round(runs[1].result.events_per_s),
            ceiling=NULL_ENDPOINT,
            ceiling_events_per_s=round(runs[2].result.events_per_s),
        )
    print(json.dumps(summary), flush=True)
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
