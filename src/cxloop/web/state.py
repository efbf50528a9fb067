"""What the running server holds: the open project, its writer and its key checks."""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fastapi import Request
from sqlalchemy import Connection

from cxloop.ingest.writer import GroupCommitWriter
from cxloop.project import Project
from cxloop.store.database import session_scope
from cxloop.store.keys import KeyKind, verify_key

_KEY_TTL_S = 5.0


@dataclass
class KeyCache:
    """Verified keys for a few seconds: a revoked key stops working within the TTL."""

    entries: dict[tuple[str, str], tuple[float, str | None]] = field(default_factory=dict)


@dataclass
class ServerState:
    project: Project
    writer: GroupCommitWriter
    run_token: str | None = None
    keys: KeyCache = field(default_factory=KeyCache)

    def check_key(self, plain: str, kind: KeyKind) -> str | None:
        """The key's name if it is a live key of ``kind``, else None."""
        if kind == "secret":
            if self.run_token and hmac.compare_digest(plain, self.run_token):
                return "server-token"
            configured = self.project.settings.secret_key
            if configured and hmac.compare_digest(plain, configured.get_secret_value()):
                return "settings-secret"
        now = time.monotonic()
        cached = self.keys.entries.get((kind, plain))
        if cached is not None and cached[0] > now:
            return cached[1]
        with session_scope(self.project.sessions) as session:
            info = verify_key(session, plain, kind)
        name = info.name if info else None
        if len(self.keys.entries) > 10_000:
            self.keys.entries.clear()
        self.keys.entries[(kind, plain)] = (now + _KEY_TTL_S, name)
        return name


T = TypeVar("T")


async def written(state: ServerState, write: Callable[[Connection], T]) -> T:
    """A write in one transaction, on the applier thread (the one writer)."""

    def run() -> T:
        with state.project.engine.begin() as conn:
            return write(conn)

    return await state.writer.call(run)


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.cxloop
    return state


def basic_user(header: str | None) -> str | None:
    """The user part of an HTTP basic Authorization header (Segment's write key)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def bearer_token(header: str | None) -> str | None:
    if not header or header[:7].lower() != "bearer ":
        return None
    return header[7:].strip() or None
