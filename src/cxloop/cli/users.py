"""`cxloop users`: the people who sign in to the web app (passwords stored as argon2)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cxloop.cli.context import handle_errors, load_settings
from cxloop.cli.output import Format, emit
from cxloop.project import open_database
from cxloop.store.users import (
    create_user,
    list_users,
    new_password,
    set_disabled,
    set_password,
    set_role,
    user_id_by_email,
)

app = typer.Typer(
    help="Users of the web app: admins, analysts, department members.", no_args_is_help=True
)
COLUMNS = ("id", "email", "name", "role", "department", "last_login_at", "disabled")


@app.command("create")
@handle_errors
def create(
    email: Annotated[str, typer.Option("--email", help="Signs in with this address")],
    role: Annotated[str, typer.Option("--role", help="admin, analyst or member")],
    department: Annotated[
        str | None, typer.Option("--department", help="A member's department")
    ] = None,
    name: Annotated[str | None, typer.Option("--name")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
) -> None:
    """Create a user; without --password-stdin, print a new password alone on stdout.

    The password cannot be shown again."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else new_password()
    engine = open_database(load_settings())
    try:
        with engine.begin() as conn:
            user = create_user(
                conn, email=email, role=role, password=password, department=department, name=name
            )
    finally:
        engine.dispose()
    typer.echo(f"created user {user['id']} ({user['email']}, {user['role']})", err=True)
    if not password_stdin:
        sys.stdout.write(password + "\n")


@app.command("list")
@handle_errors
def list_(fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table) -> None:
    """Every user (never their passwords)."""
    engine = open_database(load_settings())
    try:
        with engine.connect() as conn:
            rows = list_users(conn)
    finally:
        engine.dispose()
    emit(rows, fmt, rows=rows, columns=COLUMNS, title="users")


@app.command("set-password")
@handle_errors
def set_password_(
    email: Annotated[str, typer.Option("--email")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin")
    ] = False,
) -> None:
    """Give a user a new password; the user's sessions end.

    Without --password-stdin, a password is generated and printed alone on stdout."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else new_password()
    engine = open_database(load_settings())
    try:
        with engine.begin() as conn:
            set_password(conn, email, password)
    finally:
        engine.dispose()
    typer.echo(f"new password for {email}; signed out everywhere", err=True)
    if not password_stdin:
        sys.stdout.write(password + "\n")


@app.command("role")
@handle_errors
def role_(
    email: Annotated[str, typer.Option("--email")],
    role: Annotated[str, typer.Option("--role", help="admin, analyst or member")],
    department: Annotated[
        str | None, typer.Option("--department", help="A member's department")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
) -> None:
    """Change a user's role (and department); the last enabled admin stays admin."""
    engine = open_database(load_settings())
    try:
        with engine.begin() as conn:
            user = set_role(conn, user_id_by_email(conn, email), role, department)
    finally:
        engine.dispose()
    emit(user, fmt, rows=[user], columns=COLUMNS, title="user")


@app.command("disable")
@handle_errors
def disable(email: Annotated[str, typer.Option("--email")]) -> None:
    """Stop a user signing in; their open sessions end at once."""
    _set_disabled(email, True)


@app.command("enable")
@handle_errors
def enable(email: Annotated[str, typer.Option("--email")]) -> None:
    """Let a disabled user sign in again."""
    _set_disabled(email, False)


def _set_disabled(email: str, disabled: bool) -> None:
    engine = open_database(load_settings())
    try:
        with engine.begin() as conn:
            set_disabled(conn, user_id_by_email(conn, email), disabled)
    finally:
        engine.dispose()
    typer.echo(f"{email} {'disabled' if disabled else 'enabled'}", err=True)
