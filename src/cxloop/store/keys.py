"""API keys: write keys for the tracking API, secret keys for the REST API.

Keys are long random tokens, so a fast hash (SHA-256) is as safe as a slow one for them and
lets every tracking request be checked cheaply; passwords (chosen by people) use argon2.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cxloop.store import audit
from cxloop.store.models import ApiKey

KeyKind = Literal["write", "secret"]
KEY_KINDS: tuple[KeyKind, ...] = ("write", "secret")
_PREFIX = {"write": "cxw_", "secret": "cxs_"}


@dataclass(frozen=True)
class KeyInfo:
    id: int
    kind: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _info(row: ApiKey) -> KeyInfo:
    return KeyInfo(
        row.id, row.kind, row.name, row.prefix, row.created_at, row.revoked_at, row.last_used_at
    )


def create_key(session: Session, kind: KeyKind, name: str) -> tuple[str, KeyInfo]:
    """A new key; the plain text is returned once and never stored."""
    if kind not in KEY_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(KEY_KINDS)}, got {kind!r}")
    name = name.strip()
    if not name:
        raise ValueError("name: must not be empty")
    if len(name) > 120:
        raise ValueError("name: longer than 120 characters")
    plain = _PREFIX[kind] + secrets.token_urlsafe(24)
    row = ApiKey(
        kind=kind,
        name=name,
        prefix=plain[:10],
        key_hash=hash_key(plain),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    audit.record(
        session.connection(),
        None,
        "created",
        "key",
        row.id,
        f"{kind} key {name} created ({row.prefix}…)",
    )
    return plain, _info(row)


def list_keys(session: Session, *, include_revoked: bool = False) -> list[KeyInfo]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [_info(row) for row in session.scalars(query)]


def revoke_key(session: Session, key_id: int) -> KeyInfo:
    row = session.get(ApiKey, key_id)
    if row is None:
        raise LookupError(f"id: no key with id {key_id}")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        audit.record(
            session.connection(),
            None,
            "revoked",
            "key",
            row.id,
            f"{row.kind} key {row.name} revoked",
        )
    return _info(row)


def verify_key(session: Session, plain: str, kind: KeyKind) -> KeyInfo | None:
    """The key's record if ``plain`` is a live key of ``kind``, else None."""
    row = session.scalars(select(ApiKey).where(ApiKey.key_hash == hash_key(plain))).first()
    if row is None or row.kind != kind or row.revoked_at is not None:
        return None
    return _info(row)
