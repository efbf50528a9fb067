"""`cxloop keys`: write keys (tracking API) and secret keys (REST API)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cxloop.cli.context import handle_errors, load_settings
from cxloop.cli.output import Format, emit
from cxloop.project import open_database
from cxloop.store.database import make_sessionmaker, session_scope
from cxloop.store.keys import KeyInfo, KeyKind, create_key, list_keys, revoke_key

app = typer.Typer(help="Manage API keys (stored hashed; shown once).", no_args_is_help=True)
COLUMNS = ("id", "kind", "name", "prefix", "created_at", "revoked_at")


def _row(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "kind": info.kind,
        "name": info.name,
        "prefix": info.prefix,
        "created_at": info.created_at.isoformat(),
        "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None,
    }


def _sessions() -> Any:
    return make_sessionmaker(open_database(load_settings()))


@app.command("create")
@handle_errors
def create(
    kind: Annotated[str, typer.Option("--kind", help="write (tracking API) or secret (REST API)")],
    name: Annotated[str, typer.Option("--name", help="What the key is for")],
) -> None:
    """Create a key and print it alone on stdout (it cannot be shown again)."""
    if kind not in ("write", "secret"):
        raise ValueError(f"--kind: must be write or secret, got {kind!r}")
    kind_: KeyKind = "write" if kind == "write" else "secret"
    with session_scope(_sessions()) as session:
        plain, _info = create_key(session, kind_, name)
    sys.stdout.write(plain + "\n")


@app.command("list")
@handle_errors
def list_(
    fmt: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    all_: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
) -> None:
    """List keys (never the keys themselves, only their prefixes)."""
    with session_scope(_sessions()) as session:
        infos = list_keys(session, include_revoked=all_)
    rows = [_row(i) for i in infos]
    emit(rows, fmt, rows=rows, columns=COLUMNS, title="API keys")


@app.command("revoke")
@handle_errors
def revoke(key_id: Annotated[int, typer.Argument(help="The key's id (see `keys list`)")]) -> None:
    """Revoke a key; requests using it are refused within seconds."""
    with session_scope(_sessions()) as session:
        info = revoke_key(session, key_id)
    typer.echo(f"revoked key {info.id} ({info.kind}, {info.name})", err=True)
