"""The audit log: who changed what (models, rules, users, keys, merges, webhooks, staff)
and when. An entry is written with the connection of the change itself, so a change and
its entry are committed together or not at all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from cxloop.domain.values import iso_utc
from cxloop.store.models import AuditEntry

audit_t = cast(Table, AuditEntry.__table__)
ENTITIES = ("model", "rule", "user", "key", "merge", "webhook", "staff", "department", "segment")
# Who is acting: the REST API and the pages set it to the caller (a user's e-mail, a key's
# name), the CLI to ``cli:USER``; the job worker acts as ``cxloop``. Work handed to the
# writer thread carries it along (``GroupCommitWriter.call`` copies the context).
ACTOR: ContextVar[str] = ContextVar("cxloop_actor", default="cxloop")


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = ACTOR.set(actor)
    try:
        yield
    finally:
        ACTOR.reset(token)


def record(
    conn: Connection,
    actor: str | None,
    action: str,
    entity: str,
    entity_id: str | int | None,
    summary: str,
    details: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        insert(audit_t).values(
            at=datetime.now(UTC),
            actor=(actor or ACTOR.get())[:320],
            action=action[:40],
            entity=entity[:40],
            entity_id=None if entity_id is None else str(entity_id)[:200],
            summary=summary[:2000],
            details=details,
        )
    )


def entries(
    conn: Connection,
    *,
    entity: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` (an entry's id) pages back."""
    if entity is not None and entity not in ENTITIES:
        raise ValueError(f"entity: must be one of {', '.join(ENTITIES)}, not {entity!r}")
    if not 1 <= limit <= 1000:
        raise ValueError("limit: must be between 1 and 1000")
    query = select(audit_t).order_by(audit_t.c.id.desc()).limit(limit)
    if entity is not None:
        query = query.where(audit_t.c.entity == entity)
    if actor is not None:
        query = query.where(audit_t.c.actor == actor)
    if before is not None:
        query = query.where(audit_t.c.id < before)
    return [
        {
            "id": int(r.id),
            "at": iso_utc(r.at),
            "actor": r.actor,
            "action": r.action,
            "entity": r.entity,
            "entity_id": r.entity_id,
            "summary": r.summary,
            "details": r.details,
        }
        for r in conn.execute(query)
    ]
