"""People who sign in to the web app: an e-mail, an argon2 password hash and a role.

Roles: ``admin`` (everything, settings and users included), ``analyst`` (reads
everything, builds reports), ``member`` (reads everything, works the cases and follow-ups
of its department). Signing in compares against a hash even for an unknown e-mail, so
the time taken does not tell which addresses have accounts.
"""

from __future__ import annotations

import functools
import re
import secrets
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pwdlib import PasswordHash
from sqlalchemy import Connection, Table, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cxloop.domain.values import iso_utc
from cxloop.store import audit
from cxloop.store.models import Department, User
from cxloop.store.sessions import end_user_sessions

users_t = cast(Table, User.__table__)
departments_t = cast(Table, Department.__table__)
Role = Literal["admin", "analyst", "member"]
ROLES: tuple[Role, ...] = ("admin", "analyst", "member")
MIN_PASSWORD = 12
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHash.recommended()  # argon2id


@functools.cache
def _dummy_hash() -> str:
    """Hashed on first sign-in rather than at import, which every command would pay."""
    return _hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user that cannot be created or changed; the message starts with the field."""


def new_password() -> str:
    return secrets.token_urlsafe(15)


def create_user(
    conn: Connection,
    *,
    email: str,
    role: str,
    password: str,
    department: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise UserError(f"email: not an e-mail address: {email!r}")
    if role not in ROLES:
        raise UserError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    department_id = None
    if department is not None:
        department_id = _department_id(conn, department)
    if role == "member" and department_id is None:
        raise UserError("department: a member belongs to a department")
    row = {
        "email": email,
        "name": (name or "").strip() or None,
        "role": role,
        "password_hash": _hasher.hash(password),
        "department_id": department_id,
        "created_at": datetime.now(UTC),
    }
    try:
        new_id = conn.execute(insert(users_t).values(**row).returning(users_t.c.id)).scalar_one()
    except IntegrityError:
        raise UserError(f"email: a user {email!r} exists already") from None
    audit.record(conn, None, "created", "user", new_id, f"user {email} created as {role}")
    return get_user(conn, int(new_id))


def _department_id(conn: Connection, department: str) -> int:
    found = conn.execute(
        select(departments_t.c.id).where(
            func.lower(departments_t.c.name) == " ".join(department.split()).lower()
        )
    ).first()
    if found is None:
        raise UserError(f"department: no department named {department!r}")
    return int(found.id)


def set_password(conn: Connection, email: str, password: str) -> None:
    """A new password; the user's sessions end, so a stolen one stops working too."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"password: at least {MIN_PASSWORD} characters")
    user_id = user_id_by_email(conn, email)
    conn.execute(
        update(users_t).where(users_t.c.id == user_id).values(password_hash=_hasher.hash(password))
    )
    end_user_sessions(conn, user_id)
    audit.record(conn, None, "changed", "user", user_id, f"password of {email} changed")


def user_id_by_email(conn: Connection, email: str) -> int:
    found = conn.execute(
        select(users_t.c.id).where(users_t.c.email == email.strip().lower())
    ).scalar()
    if found is None:
        raise UserError(f"email: no user {email!r}")
    return int(found)


def authenticate(conn: Connection, email: str, password: str) -> dict[str, Any] | None:
    """The user if the password is theirs and the account is enabled, else None."""
    row = conn.execute(
        select(users_t.c.id, users_t.c.password_hash, users_t.c.disabled_at).where(
            users_t.c.email == email.strip().lower()
        )
    ).first()
    if row is None:
        _hasher.verify(password, _dummy_hash())  # the same work as for a real account
        return None
    if not _hasher.verify(password, row.password_hash) or row.disabled_at is not None:
        return None
    conn.execute(
        update(users_t).where(users_t.c.id == row.id).values(last_login_at=datetime.now(UTC))
    )
    return get_user(conn, int(row.id))


def get_user(conn: Connection, user_id: int) -> dict[str, Any]:
    found = _users(conn, users_t.c.id == user_id, limit=1, offset=0)
    if not found:
        raise UserError(f"user: no user with id {user_id}")
    return found[0]


def list_users(conn: Connection, *, limit: int = 500, offset: int = 0) -> list[dict[str, Any]]:
    """Users without their password hashes, a page at a time."""
    return _users(conn, None, limit=limit, offset=offset)


def _users(conn: Connection, where: Any, *, limit: int, offset: int) -> list[dict[str, Any]]:
    query = (
        select(users_t, departments_t.c.name.label("department"))
        .select_from(users_t.outerjoin(departments_t))
        .order_by(users_t.c.id)
        .limit(limit)
        .offset(offset)
    )
    if where is not None:
        query = query.where(where)
    return [
        {
            "id": int(r.id),
            "email": r.email,
            "name": r.name,
            "role": r.role,
            "department": r.department,
            "created_at": iso_utc(r.created_at),
            "last_login_at": iso_utc(r.last_login_at),
            "disabled": r.disabled_at is not None,
        }
        for r in conn.execute(query)
    ]


def count_users(conn: Connection) -> int:
    """All users, for paging the list."""
    return int(conn.execute(select(func.count()).select_from(users_t)).scalar_one())


def _enabled_admins_besides(conn: Connection, user_id: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(users_t)
            .where(
                users_t.c.role == "admin",
                users_t.c.disabled_at.is_(None),
                users_t.c.id != user_id,
            )
        ).scalar_one()
    )


def set_role(
    conn: Connection, user_id: int, role: str, department: str | None = None
) -> dict[str, Any]:
    """Change a user's role and department (a member needs one). The last enabled admin
    keeps the role, so that someone can still change settings afterwards. Sessions read
    the role on every request, so the change holds at once."""
    user = get_user(conn, user_id)
    if role not in ROLES:
        raise UserError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    department_id = None
    if department is not None and department.strip():
        department_id = _department_id(conn, department)
    if role == "member" and department_id is None:
        raise UserError("department: a member belongs to a department")
    if (
        user["role"] == "admin"
        and role != "admin"
        and not user["disabled"]
        and _enabled_admins_besides(conn, user_id) == 0
    ):
        raise UserError("role: this is the only enabled admin; make another admin first")
    conn.execute(
        update(users_t)
        .where(users_t.c.id == user_id)
        .values(role=role, department_id=department_id)
    )
    audit.record(
        conn,
        None,
        "changed",
        "user",
        user_id,
        f"user {user['email']} is now {role}"
        + (f" in {department}" if department_id is not None else ""),
    )
    return get_user(conn, user_id)


def set_disabled(conn: Connection, user_id: int, disabled: bool) -> dict[str, Any]:
    """Disable (or enable again) a user. Disabling ends the user's sessions at once, so a
    browser still signed in is signed out on its next request; the last enabled admin
    cannot be disabled."""
    user = get_user(conn, user_id)
    if disabled:
        if user["role"] == "admin" and _enabled_admins_besides(conn, user_id) == 0:
            raise UserError("user: this is the only enabled admin; make another admin first")
        if not user["disabled"]:
            conn.execute(
                update(users_t).where(users_t.c.id == user_id).values(disabled_at=datetime.now(UTC))
            )
        end_user_sessions(conn, user_id)
    else:
        conn.execute(update(users_t).where(users_t.c.id == user_id).values(disabled_at=None))
    audit.record(
        conn,
        None,
        "disabled" if disabled else "enabled",
        "user",
        user_id,
        f"user {user['email']} {'disabled' if disabled else 'enabled'}",
    )
    return get_user(conn, user_id)
