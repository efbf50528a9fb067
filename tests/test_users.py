"""Users of the web app: argon2 hashes, roles, departments, and clear refusals."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from cxloop.lifecycle.service import create_department
from cxloop.project import open_database
from cxloop.settings import Settings
from cxloop.store.models import User
from cxloop.store.sessions import find_session, start_session
from cxloop.store.users import (
    UserError,
    authenticate,
    create_user,
    list_users,
    set_password,
    user_id_by_email,
)
from tests.test_cli import cx, cx_json


def test_users_are_stored_with_argon2_and_sign_in_by_password(settings: Settings) -> None:
    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            create_department(conn, "Delivery")
            admin = create_user(
                conn, email=" Ada@Example.com ", role="admin", password="correct horse battery"
            )
            member = create_user(
                conn,
                email="bo@example.com",
                role="member",
                password="another long secret",
                department="delivery",
            )
        assert admin["email"] == "ada@example.com" and member["department"] == "Delivery"
        with engine.connect() as conn:
            stored = conn.execute(select(User.password_hash)).scalars().all()
        assert all(h.startswith("$argon2id$") for h in stored)
        assert "correct horse" not in "".join(stored)
        with engine.begin() as conn:
            assert authenticate(conn, "ADA@example.com", "correct horse battery")["role"] == "admin"
            assert authenticate(conn, "ada@example.com", "wrong password!!") is None
            assert authenticate(conn, "nobody@example.com", "correct horse battery") is None
            set_password(conn, "bo@example.com", "a brand new secret")
            assert authenticate(conn, "bo@example.com", "another long secret") is None
            assert authenticate(conn, "bo@example.com", "a brand new secret") is not None
        for fields, field in [
            ({"email": "not-an-address", "role": "admin"}, "email"),
            ({"email": "ada@example.com", "role": "admin"}, "email"),  # exists
            ({"email": "cy@example.com", "role": "owner"}, "role"),
            ({"email": "cy@example.com", "role": "member"}, "department"),
            ({"email": "cy@example.com", "role": "member", "department": "Nope"}, "department"),
        ]:
            with pytest.raises(UserError, match=f"^{field}:"), engine.begin() as conn:
                create_user(conn, password="long enough secret", **fields)  # type: ignore[arg-type]
        with pytest.raises(UserError, match=r"^password:"), engine.begin() as conn:
            create_user(conn, email="cy@example.com", role="analyst", password="short")
        with engine.connect() as conn:
            assert [u["email"] for u in list_users(conn)] == ["ada@example.com", "bo@example.com"]
            assert all("password_hash" not in u for u in list_users(conn))
    finally:
        engine.dispose()


def test_the_cli_creates_users_and_prints_the_generated_password(
    embedded_settings: Settings,
) -> None:
    created = cx(
        embedded_settings, "users", "create", "--email", "lee@example.com", "--role", "analyst"
    )
    password = created.stdout.strip()
    assert len(password) >= 12 and "\n" not in password and "lee@example.com" in created.stderr
    [user] = cx_json(embedded_settings, "users", "list")
    assert (user["email"], user["role"], user["disabled"]) == ("lee@example.com", "analyst", False)
    engine = open_database(embedded_settings)
    try:
        with engine.begin() as conn:
            assert authenticate(conn, "lee@example.com", password) is not None
    finally:
        engine.dispose()
    bad = cx(
        embedded_settings,
        "users",
        "create",
        "--email",
        "x@example.com",
        "--role",
        "boss",
        check=False,
    )
    assert bad.returncode != 0 and "role" in bad.stderr and bad.stdout == ""


def test_the_cli_changes_passwords_roles_and_disables_and_sessions_end(
    embedded_settings: Settings,
) -> None:
    cx(embedded_settings, "users", "create", "--email", "kim@example.com", "--role", "admin")
    cx(embedded_settings, "users", "create", "--email", "jo@example.com", "--role", "analyst")
    engine = open_database(embedded_settings)
    try:
        with engine.begin() as conn:
            jo = user_id_by_email(conn, "jo@example.com")
            token = start_session(conn, jo)
        fresh = cx(embedded_settings, "users", "set-password", "--email", "jo@example.com")
        with engine.begin() as conn:
            assert find_session(conn, token) is None  # signed out everywhere
            assert authenticate(conn, "jo@example.com", fresh.stdout.strip()) is not None
        cx(embedded_settings, "users", "role", "--email", "jo@example.com", "--role", "admin")
        cx(embedded_settings, "users", "disable", "--email", "kim@example.com")
        with engine.begin() as conn:
            assert authenticate(conn, "jo@example.com", fresh.stdout.strip())["role"] == "admin"
        # the only enabled admin left cannot be disabled
        last = cx(embedded_settings, "users", "disable", "--email", "jo@example.com", check=False)
        assert last.returncode != 0 and "only enabled admin" in last.stderr
        cx(embedded_settings, "users", "enable", "--email", "kim@example.com")
        users = {u["email"]: u for u in cx_json(embedded_settings, "users", "list")}
        assert users["kim@example.com"]["disabled"] is False
        missing = cx(embedded_settings, "users", "disable", "--email", "x@example.com", check=False)
        assert missing.returncode != 0 and "email: no user" in missing.stderr
    finally:
        engine.dispose()


def test_sessions_keep_only_a_hash_expire_and_end(settings: Settings) -> None:
    from datetime import UTC, datetime, timedelta

    from cxloop.store.models import UserSession
    from cxloop.store.sessions import SESSION_HOURS, end_session, extend_session

    engine = open_database(settings)
    try:
        with engine.begin() as conn:
            user = create_user(conn, email="s@example.com", role="analyst", password="p" * 12)
            start = datetime(2026, 12, 1, 9, tzinfo=UTC)
            token = start_session(conn, user["id"], now=start)
            stored = conn.execute(select(UserSession.__table__.c.token_hash)).scalar_one()
            assert token not in stored and len(stored) == 64
            found = find_session(conn, token, now=start + timedelta(hours=1))
            assert found is not None and (found.email, found.role) == ("s@example.com", "analyst")
            assert len(found.csrf_token) >= 32
            late = start + timedelta(hours=SESSION_HOURS, minutes=1)
            assert find_session(conn, token, now=late) is None
            extend_session(conn, token, now=start + timedelta(hours=SESSION_HOURS - 1))
            assert find_session(conn, token, now=late) is not None
            assert find_session(conn, token + "x", now=start) is None
            end_session(conn, token)
            assert find_session(conn, token, now=start) is None
    finally:
        engine.dispose()
