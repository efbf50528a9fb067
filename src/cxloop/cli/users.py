"""`cxloop users`: the people who sign in to the web app (passwords stored as argon2)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cxloop.cli.context import handle_errors, load_settings
from cxloop.cli.output import Format, emit
from cxloop.project import open_database
from cxloop.store.users import create_user, list_users, new_password

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
    """Create a user. Without --password-stdin a password is generated and printed alone
    on stdout (it cannot be shown again)."""
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
