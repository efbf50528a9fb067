"""Single-use survey links: who was asked, through which channel, until when.

The link carries a random token; only its SHA-256 is stored, so a copy of the database
cannot answer on anyone's behalf. Answering claims the invite with one conditional
update (not yet answered, not expired), so a second submit, however quick, is refused.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, insert, select, update

from cxloop.domain.values import iso_utc, utc
from cxloop.feedback.responses import ResponseIn, record_response
from cxloop.feedback.surveys import get_survey
from cxloop.lifecycle.service import NotFound
from cxloop.store.models import SurveyInvite

invites_t = cast(Table, SurveyInvite.__table__)
Channel = Literal["email", "link", "in_app"]
CHANNELS: tuple[Channel, ...] = ("email", "link", "in_app")
MAX_EXPIRY_DAYS = 365


class InviteRefused(Exception):
    """A link that cannot be answered: unknown, expired or already used; ``status`` is
    the HTTP status a page answers with."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invite(
    conn: Connection,
    survey_id: int,
    *,
    channel: Channel = "link",
    customer_id: int | None = None,
    email: str | None = None,
    expires_days: int = 14,
    trigger_id: int | None = None,
    case_id: int | None = None,
    touchpoint: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], str]:
    """A new invite and its token (shown once: only its hash is kept)."""
    survey = get_survey(conn, survey_id)
    if channel not in CHANNELS:
        raise ValueError(f"channel: must be one of {', '.join(CHANNELS)}, not {channel!r}")
    if not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"expires_days: must be 1 to {MAX_EXPIRY_DAYS}, not {expires_days}")
    if survey["audience"] == "employees" and customer_id is not None:
        raise ValueError("customer: an employee survey is not sent to customers")
    now = now or datetime.now(UTC)
    token = secrets.token_urlsafe(24)
    row = {
        "survey_id": survey_id,
        "customer_id": customer_id,
        "trigger_id": trigger_id,
        "case_id": case_id,
        "token_hash": token_hash(token),
        "channel": channel,
        "email": email,
        "touchpoint": touchpoint,
        "created_at": now,
        "expires_at": now + timedelta(days=expires_days),
    }
    new_id = conn.execute(insert(invites_t).values(**row).returning(invites_t.c.id)).scalar_one()
    return get_invite(conn, int(new_id)), token


def get_invite(conn: Connection, invite_id: int) -> dict[str, Any]:
    row = conn.execute(select(invites_t).where(invites_t.c.id == invite_id)).first()
    if row is None:
        raise NotFound("invite", f"no invite with id {invite_id}")
    return _shown(row)


def mark_sent(conn: Connection, invite_id: int, moment: datetime | None = None) -> None:
    conn.execute(
        update(invites_t)
        .where(invites_t.c.id == invite_id)
        .values(sent_at=moment or datetime.now(UTC))
    )


def reissue_token(conn: Connection, invite_id: int) -> str:
    """A new token for an invite (an app fetching its pending survey again): the old
    token stops working, since only one hash is kept."""
    token = secrets.token_urlsafe(24)
    conn.execute(
        update(invites_t).where(invites_t.c.id == invite_id).values(token_hash=token_hash(token))
    )
    return token


def open_invite(conn: Connection, token: str, now: datetime | None = None) -> dict[str, Any]:
    """The invite and its survey, if the link can still be answered."""
    row = conn.execute(select(invites_t).where(invites_t.c.token_hash == token_hash(token))).first()
    _refuse_unless_open(row, now or datetime.now(UTC))
    assert row is not None
    return {**_shown(row), "survey": get_survey(conn, int(row.survey_id))}


def answer_invite(
    conn: Connection,
    token: str,
    answer: ResponseIn,
    *,
    source: str = "page",
    now: datetime | None = None,
) -> dict[str, Any]:
    """Store the answer of an open invite and close the invite, in the caller's
    transaction: if the answer is refused (a score out of range), the invite stays open."""
    now = now or datetime.now(UTC)
    digest = token_hash(token)
    claimed = conn.execute(
        update(invites_t)
        .where(
            invites_t.c.token_hash == digest,
            invites_t.c.answered_at.is_(None),
            invites_t.c.expires_at > now,
        )
        .values(answered_at=now)
        .returning(
            invites_t.c.id, invites_t.c.survey_id, invites_t.c.customer_id, invites_t.c.touchpoint
        )
    ).first()
    if claimed is None:
        row = conn.execute(select(invites_t).where(invites_t.c.token_hash == digest)).first()
        _refuse_unless_open(row, now)
        raise InviteRefused(409, "already_answered", "This survey has already been answered.")
    given = answer.model_copy(
        update={
            "customer": None if claimed.customer_id is None else str(claimed.customer_id),
            "touchpoint": answer.touchpoint or claimed.touchpoint,
            "submitted_at": min(now, datetime.now(UTC)),
        }
    )
    response = record_response(conn, int(claimed.survey_id), given, source=source)
    conn.execute(
        update(invites_t).where(invites_t.c.id == claimed.id).values(response_id=response["id"])
    )
    return response


def pending_for(
    conn: Connection, customer_id: int, now: datetime | None = None
) -> dict[str, Any] | None:
    """The newest open in-app invite of a customer, for an app to show."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        select(invites_t)
        .where(
            invites_t.c.customer_id == customer_id,
            invites_t.c.channel == "in_app",
            invites_t.c.answered_at.is_(None),
            invites_t.c.expires_at > now,
        )
        .order_by(invites_t.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else _shown(row)


def _refuse_unless_open(row: Any, now: datetime) -> None:
    if row is None:
        raise InviteRefused(404, "unknown_link", "This survey link is not valid.")
    if row.answered_at is not None:
        raise InviteRefused(409, "already_answered", "This survey has already been answered.")
    if utc(row.expires_at) <= now:
        raise InviteRefused(410, "expired", "This survey link has expired.")


def _shown(row: Any) -> dict[str, Any]:
    return {
        "id": int(row.id),
        "survey_id": int(row.survey_id),
        "customer_id": row.customer_id,
        "channel": row.channel,
        "email": row.email,
        "touchpoint": row.touchpoint,
        "trigger_id": row.trigger_id,
        "case_id": row.case_id,
        "created_at": iso_utc(row.created_at),
        "expires_at": iso_utc(row.expires_at),
        "sent_at": iso_utc(row.sent_at),
        "answered_at": iso_utc(row.answered_at),
        "response_id": row.response_id,
    }
