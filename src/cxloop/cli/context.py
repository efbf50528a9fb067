"""Where a command's work runs: in this process, or in the project's running server.

DuckDB lets one process write its file. When `cxloop serve` runs on the project, commands
that read or write events send their request to it (its address and a per-run token are in
``.cxloop/server.json``); otherwise they open the project themselves.
"""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import Connection

from cxloop import yamltext
from cxloop.cli.output import err_console
from cxloop.domain.values import explain_error
from cxloop.events.factory import EventStoreUnavailable
from cxloop.project import Project, ServerInfo, open_database, open_project, read_server
from cxloop.settings import Settings

P = ParamSpec("P")
R = TypeVar("R")


class CliError(Exception):
    """A problem to report in one line (no traceback), with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def cli_actor() -> str:
    """Who the audit log names for what a command changes: cli:USER."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "CXLOOP_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
        _where, reason = explain_error((), str(first["msg"]))
        raise CliError(f"{field}: {reason}", 2) from exc


def _fail(message: str, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


def validation_line(exc: ValidationError, fallback: str | None = None) -> str:
    """A model's first error as one line, ``field: reason`` (``fallback`` names the
    field when the error is about the whole model)."""
    first = exc.errors()[0]
    where, reason = explain_error(tuple(first.get("loc", ())), str(first["msg"]))
    where = where or fallback or ""
    return f"{where}: {reason}" if where else reason


def option_error(exc: ValidationError, options: Mapping[str, str] | None = None) -> CliError:
    """A request model's first error as one line naming the option it came from:
    ``options`` maps a field to its option where they differ (``recipients`` → ``--to``);
    any other field ``some_field`` is option ``--some-field``."""
    first = exc.errors()[0]
    loc = tuple(first.get("loc", ()))
    where, reason = explain_error(loc, str(first["msg"]))
    if not loc:
        return CliError(reason, 2)
    head, rest = str(loc[0]), where.partition(".")[2]
    option = (options or {}).get(head, f"--{head.replace('_', '-')}")
    return CliError(f"{option}{'.' + rest if rest else ''}: {reason}", 2)


def dashed(*fields: str) -> dict[str, str]:
    """``options`` for fields given by the option of the same name (``note`` → ``--note``),
    so that an error from the server names the option too."""
    return {field: f"--{field.replace('_', '-')}" for field in fields}


M = TypeVar("M", bound=BaseModel)


def from_options(request: type[M], options: Mapping[str, str] | None, /, **values: Any) -> M:
    """``request(**values)``, its error naming the option (see :func:`option_error`)."""
    try:
        return request(**values)
    except ValidationError as exc:
        raise option_error(exc, options) from None


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into one line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            _fail(str(exc), exc.code)
        except ValidationError as exc:  # a model built from a file or the options
            _fail(validation_line(exc), 2)
        except (ValueError, LookupError) as exc:
            _fail(str(exc), 2)
        except EventStoreUnavailable as exc:
            _fail(str(exc), 1)
        except OverflowError:  # a number given on the command line past 64 bits
            _fail("a number given is too large (at most 2**63 - 1)", 2)
        except OSError as exc:  # a file to read or write: missing, a directory, no rights
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 1)

    return wrapper


@contextmanager
def local_project(settings: Settings) -> Iterator[Project]:
    project = open_project(settings)
    try:
        yield project
    finally:
        project.close()


class RemoteServer:
    """The project's running server, called with its per-run token.

    The HTTP client library is loaded here, when a server runs, rather than by every
    command at start-up.
    """

    def __init__(self, info: ServerInfo) -> None:
        import httpx

        self.info = info
        self.client = httpx.Client(
            base_url=info.url,
            headers={"Authorization": f"Bearer {info.token}"},
            timeout=httpx.Timeout(600.0, connect=5.0),
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx  # loaded by __init__ already

        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CliError(f"the running server did not answer: {exc}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:500]
            # Refused input exits 2, as the same refusal does without a server.
            code = 2 if response.status_code in (400, 404, 409, 413, 422) else 1
            raise CliError(message, code)
        return None if response.status_code == 204 else response.json()

    def close(self) -> None:
        self.client.close()


@contextmanager
def remote_server(settings: Settings) -> Iterator[RemoteServer | None]:
    """The running server of this project, if there is one."""
    info = read_server(settings)
    if info is None:
        yield None
        return
    remote = RemoteServer(info)
    try:
        yield remote
    finally:
        remote.close()


# Query parameters of the reports as the options that give them, for errors from a
# running server (``where: …`` there is ``--where: …`` here).
FILTER_OPTIONS = {
    "where": "--where",
    "from": "--from",
    "to": "--to",
    "segment": "--segment",
    "by": "--by",
    "min_sample": "--min-sample",
}


def call_project(
    method: str,
    path: str,
    local: Callable[[Project], Any],
    *,
    params: dict[str, Any] | None = None,
    body: Any = None,
    options: Mapping[str, str] | None = None,
) -> Any:
    """The running server answers if there is one; otherwise this process does the work.
    An error naming a field of ``body`` that came from an option named otherwise names
    the option (``options``: ``{"body": "--text"}``), from either side."""
    settings = load_settings()
    try:
        with remote_server(settings) as remote:
            if remote is not None:
                clean = {k: v for k, v in (params or {}).items() if v is not None}
                return remote.request(method, path, params=clean, json=body)
        with local_project(settings) as project:
            return to_jsonable_python(local(project))
    except (CliError, ValueError) as exc:
        named = options or {}
        field, colon, rest = str(exc).partition(":")
        if not colon or field not in named:
            raise
        code = exc.code if isinstance(exc, CliError) else 2
        raise CliError(f"{named[field]}:{rest}", code) from None


def day_option(value: str | None, option: str) -> date | None:
    """A ``YYYY-MM-DD`` option, or an error naming it."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option}: {value!r} is not a date (YYYY-MM-DD)") from None


def read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A ``--file`` of JSON or YAML that must hold a mapping (``expected`` says of what)."""
    if not path.is_file():
        raise ValueError(f"--file: no file {str(path)!r}")
    try:
        data = yamltext.load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"--file: not JSON or YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"--file: give a mapping with {expected}")
    return data


def read_database(read: Callable[[Connection], Any]) -> Any:
    """A read of the app database alone, beside a running server or not (SQLite's WAL and
    PostgreSQL both let readers in while the server writes)."""
    settings = load_settings()
    engine = open_database(settings)
    try:
        with engine.connect() as conn:
            return to_jsonable_python(read(conn))
    finally:
        engine.dispose()
