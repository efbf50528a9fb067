"""What happened in the app database that rules and webhooks react to: a case opened or
resolved, a follow-up created. The services write a row in the transaction of the change
(an outbox), and the worker's scans read the rows by id from their cursors, so no change
is missed and none is read twice by the same scan."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select

from cxloop.domain.values import utc
from cxloop.store.models import Activity

activity_t = cast(Table, Activity.__table__)
KINDS = ("case.opened", "case.resolved", "followup.created")


def record(
    conn: Connection,
    kind: str,
    *,
    customer_id: int | None,
    ref_id: int | None,
    at: datetime,
    data: dict[str, Any],
    chain: list[int] | None = None,
) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    conn.execute(
        insert(activity_t).values(
            kind=kind, customer_id=customer_id, ref_id=ref_id, at=utc(at), data=data, chain=chain
        )
    )


def since(conn: Connection, position: int, *, batch: int = 5000) -> list[Any]:
    return list(
        conn.execute(
            select(activity_t)
            .where(activity_t.c.id > position)
            .order_by(activity_t.c.id)
            .limit(batch)
        )
    )
