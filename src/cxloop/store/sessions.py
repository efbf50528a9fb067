"""Signed-in browser sessions, kept server-side so that signing out (or disabling a user)
ends them at once. The cookie carries a random token; the table keeps its SHA-256, and
each session has its own CSRF token that every form and htmx request must send back."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, delete, insert, select, update

from cxloop.domain.values import utc
from cxloop.store.models import Department, User, UserSession

sessions_t = cast(Table, UserSession.__table__)
users_t = cast(Table, User.__table__)
departments_t = cast(Table, Department.__table__)

SESSION_HOURS = 12  # idle time after which a browser signs in again


@dataclass(frozen=True)
class SignedIn:
    """Who a live session belongs to, as the web layer checks permissions."""

    user_id: int
    email: str
    name: str | None
    role: str
    department_id: int | None
    department: str | None
    csrf_token: str
    expires_at: datetime


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(conn: Connection, user_id: int, *, now: datetime | None = None) -> str:
    """A new session for a user who just signed in; the plain token goes in the cookie."""
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(32)
    conn.execute(sessions_t.delete().where(sessions_t.c.expires_at < now))
    conn.execute(
        insert(sessions_t).values(
            token_hash=_digest(token),
            user_id=user_id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS),
        )
    )
    return token


def find_session(conn: Connection, token: str, *, now: datetime | None = None) -> SignedIn | None:
    """The session's user if the token is live and the user enabled, else None."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(
            sessions_t.c.user_id,
            sessions_t.c.csrf_token,
            sessions_t.c.expires_at,
            users_t.c.email,
            users_t.c.name,
            users_t.c.role,
            users_t.c.department_id,
            users_t.c.disabled_at,
            departments_t.c.name.label("department"),
        )
        .select_from(sessions_t.join(users_t).outerjoin(departments_t))
        .where(sessions_t.c.token_hash == _digest(token))
    ).first()
    if row is None or row.disabled_at is not None or utc(row.expires_at) <= now:
        return None
    return SignedIn(
        user_id=int(row.user_id),
        email=row.email,
        name=row.name,
        role=row.role,
        department_id=None if row.department_id is None else int(row.department_id),
        department=row.department,
        csrf_token=row.csrf_token,
        expires_at=utc(row.expires_at),
    )


def extend_session(conn: Connection, token: str, *, now: datetime | None = None) -> None:
    """Slide the idle deadline forward (done when half of it is used, not on every click)."""
    now = now or datetime.now(UTC)
    conn.execute(
        update(sessions_t)
        .where(sessions_t.c.token_hash == _digest(token))
        .values(expires_at=now + timedelta(hours=SESSION_HOURS))
    )


def end_session(conn: Connection, token: str) -> None:
    conn.execute(delete(sessions_t).where(sessions_t.c.token_hash == _digest(token)))


def end_user_sessions(conn: Connection, user_id: int) -> None:
    """Sign a user out everywhere (after a password change or when disabled)."""
    conn.execute(delete(sessions_t).where(sessions_t.c.user_id == user_id))
