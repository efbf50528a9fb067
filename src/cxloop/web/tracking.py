"""Segment-compatible Tracking API: /v1/track, identify, page, screen, group, alias, batch.

Browsers send here too: Segment's analytics.js posts each message to a one-letter path
(``/v1/t``, ``/v1/i`` …, batches to ``/v1/b``) as ``text/plain`` with the write key in the
body, from the page's own origin, so these paths answer CORS (``CXLOOP_TRACKING_ORIGINS``
says which pages may send; a POST from any other page is refused).

The hot path avoids FastAPI's body validation: bodies are read as bytes and decoded with
msgspec, one message at a time, so that a bad message costs only its own rejection. The
routes are registered with FastAPI (for the OpenAPI document), but ``TrackingShortcut``
answers their POSTs before FastAPI's routing, dependencies and exception layers, which cost
as much CPU per request as checking a batch of 100 messages: these handlers take no
dependencies, raise nothing those layers would turn into an answer, and build their own
error answers.
"""

from __future__ import annotations

import gzip
import io
import logging
import zlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cxloop.domain.messages import write_key_of
from cxloop.ingest.intake import Checked, check, error_answer
from cxloop.web.state import ServerState, basic_user, state_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["tracking"])

_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A Segment-spec message (see the Segment Tracking API).",
    "properties": {
        "type": {"type": "string"},
        "messageId": {"type": "string"},
        "userId": {"type": "string"},
        "anonymousId": {"type": "string"},
        "event": {"type": "string"},
        "name": {"type": "string"},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
        "sentAt": {"type": "string", "format": "date-time"},
        "previousId": {"type": "string"},
        "groupId": {"type": "string"},
    },
}
_BATCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {"type": "array", "items": _MESSAGE_SCHEMA},
        "context": {"type": "object"},
        "integrations": {"type": "object"},
        "sentAt": {"type": "string", "format": "date-time"},
        "writeKey": {"type": "string"},
    },
}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Stored (accepted messages are durable); refused ones are listed."},
    400: {"description": "Malformed JSON or an invalid message (field and reason given)."},
    401: {"description": "Missing or invalid write key."},
    413: {"description": "Message over 32 KB or batch over 500 KB."},
    503: {"description": "Storage unavailable; retry."},
}


def _answer(checked: Checked) -> Response:
    return Response(checked.answer, status_code=checked.status, media_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    return _answer(error_answer(status, code, message, field))


async def _read_body(request: Request, limit: int) -> bytes | Response:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return _error(413, "too_large", f"body is larger than {limit // 1024} KB")
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding in ("gzip", "deflate"):
        try:
            body = _inflate(body, encoding, limit)
        except (OSError, zlib.error, EOFError):
            return _error(400, "bad_encoding", f"body is not valid {encoding}")
    if len(body) > limit:
        return _error(413, "too_large", f"body is larger than {limit // 1024} KB")
    return body


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    if encoding == "gzip":
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as fh:
            return fh.read(limit + 1)
    return zlib.decompressobj().decompress(body, limit + 1)


def _authenticate(request: Request, body: bytes, state: ServerState) -> str | Response:
    key = basic_user(request.headers.get("authorization")) or write_key_of(body)
    if not key:
        return _error(401, "unauthorized", "a write key is required (HTTP basic user)")
    source = state.check_key(key, "write")
    if source is None:
        return _error(401, "unauthorized", "the write key is not valid")
    return source


async def _checked(request: Request, implied: str | None) -> Response:
    """Check the request, log it durably, then answer."""
    received_at = datetime.now(UTC)
    state = state_of(request)
    settings = state.project.settings
    limit = settings.max_message_bytes if implied else settings.max_batch_bytes
    body = await _read_body(request, limit)
    if isinstance(body, Response):
        return body
    source = _authenticate(request, body, state)
    if isinstance(source, Response):
        return source
    checked = check(
        body,
        source=source,
        received_at=received_at,
        implied=implied,
        max_message_bytes=settings.max_message_bytes,
    )
    if checked.record is not None:
        try:
            await state.writer.ingest(checked.record)
        except Exception:
            log.exception("ingestion failed")
            if checked.status == 200:  # a refused single message is answered 400 all the same
                return _error(503, "unavailable", "storage is unavailable; retry later")
    return _answer(checked)


def _single(implied: str) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def handle(request: Request) -> Response:
        return await _checked(request, implied)

    handle.__name__ = f"track_{implied}"
    handle.__doc__ = f"Record one `{implied}` message (Segment spec)."
    return handle


async def batch(request: Request) -> Response:
    """Record many messages; valid ones are stored, each invalid one is reported."""
    return await _checked(request, None)


for _kind in ("track", "identify", "page", "screen", "group", "alias"):
    router.add_api_route(
        f"/{_kind}",
        _single(_kind),
        methods=["POST"],
        responses=_RESPONSES,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _MESSAGE_SCHEMA}},
            }
        },
    )
for _path in ("/batch", "/import"):
    router.add_api_route(
        _path,
        batch,
        methods=["POST"],
        responses=_RESPONSES,
        name=f"batch{_path.replace('/', '_')}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _BATCH_SCHEMA}},
            }
        },
    )
# The paths analytics.js posts to: the type's first letter, and b for a batch.
for _kind in ("track", "identify", "page", "screen", "group", "alias"):
    router.add_api_route(f"/{_kind[0]}", _single(_kind), methods=["POST"], include_in_schema=False)
router.add_api_route("/b", batch, methods=["POST"], name="batch_b", include_in_schema=False)


_HANDLERS: dict[str, Callable[[Request], Coroutine[Any, Any, Response]]] = {
    route.path: route.endpoint  # the router's paths include its /v1 prefix
    for route in router.routes
    if isinstance(route, APIRoute)
}


# The scope key under which the shortcut hands the CORS layer the handler it found.
_HANDLER = "cxloop.tracking_handler"


class TrackingShortcut:
    """Sends a Tracking API POST straight to its handler; everything else goes on.

    A request with an Origin header (a browser's) goes through Starlette's CORS middleware
    first, which answers preflights and marks the answer readable by the page; a server
    client sends no Origin and skips it.
    """

    def __init__(self, app: ASGIApp, origins: list[str] | None = None) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            self._from_browser,
            allow_origins=origins or ["*"],
            allow_methods=["POST"],
            allow_headers=["*"],
            max_age=86400,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "OPTIONS"):
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            handler = _HANDLERS.get(path.removeprefix(root) if root else path)
            if handler is not None:
                if any(name == b"origin" for name, _ in scope["headers"]):
                    refused = self._refused_preflight(scope)
                    if refused is not None:
                        await refused(scope, receive, send)
                        return
                    await self.cors({**scope, _HANDLER: handler}, receive, send)
                    return
                if scope["method"] == "POST":
                    response = await handler(Request(scope, receive))
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _refused_preflight(self, scope: Scope) -> Response | None:
        """A preflight the CORS layer would refuse, answered as cxloop's other errors are
        (JSON naming the reason) rather than Starlette's plain text."""
        if scope["method"] != "OPTIONS":
            return None
        headers = Headers(scope=scope)
        method = headers.get("access-control-request-method")
        if method is None:
            return None  # no preflight: the CORS layer passes it to _from_browser
        origin = headers.get("origin", "")
        if not self.cors.is_allowed_origin(origin):
            return _error(403, "origin_not_allowed", f"pages on {origin} may not send events here")
        if method.upper() != "POST":
            return _error(405, "method_not_allowed", f"{method} is not allowed here: only POST")
        return None

    async def _from_browser(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        origin = request.headers.get("origin", "")
        if scope["method"] != "POST":  # an OPTIONS that is no preflight
            response: Response = Response(status_code=204, headers={"Allow": "POST, OPTIONS"})
        elif not self.cors.is_allowed_origin(origin):
            response = _error(
                403, "origin_not_allowed", f"pages on {origin} may not send events here"
            )
        else:
            response = await scope[_HANDLER](request)
        await response(scope, receive, send)
