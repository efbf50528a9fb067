"""Message templates: Jinja in a sandbox, strict about names.

Templates are written by people with the admin role but filled with customer data, so they
run in Jinja's ``SandboxedEnvironment`` (no attribute access to Python internals, no
calls of unsafe methods) with ``StrictUndefined``: a name the context does not have is an
error. Rules are rendered against a real customer when they are saved
(``preview``), so a misspelt variable is refused then, not discovered when a customer
should have had the message. HTML templates autoescape, so a customer's name cannot add
markup; subjects are collapsed to one line, so no value can add a header.

A template is also bounded in what it may cost, so that a slip (two nested loops over
``range(100000)``, a ``'-' * 10**9``) is refused when the rule is saved instead of hanging
the save or, later, the worker: each render has ``MAX_SECONDS`` (checked at every step of
a ``range``, every call and every piece of output), at most ``MAX_OUTPUT`` characters of
output, repetitions (``*``) of at most that length and powers of small exponents only.
A loop over a long text the template built itself is not checked step by step; the caps
on repetition and output keep such texts short.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateError, UndefinedError, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, safe_range

MAX_SECONDS = 2.0
MAX_OUTPUT = 1_000_000  # characters; an e-mail body is far shorter
MAX_EXPONENT = 64

_deadline: ContextVar[float] = ContextVar("template_deadline", default=float("inf"))


class TemplateProblem(ValueError):
    """A template that does not parse, names something the context lacks, or costs more
    than a message may."""


class TooCostly(SecurityError):
    """A render past its time or size limit (a ``SecurityError``: reported as not
    allowed, like any other unsafe template)."""


def _in_time() -> None:
    if time.monotonic() > _deadline.get():
        raise TooCostly(f"it takes longer than {MAX_SECONDS:g} s to render")


def _range(*args: int) -> Iterator[int]:
    """The sandbox's ``range`` (at most 100,000 items), on the clock at every step."""
    for item in safe_range(*args):
        _in_time()
        yield item


class _BoundedEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _in_time()
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise TooCostly(f"powers above {MAX_EXPONENT} are too large to compute")
            return left**right
        for text, count in ((left, right), (right, left)):
            sized = isinstance(text, str | list | tuple) and isinstance(count, int)
            if sized and len(text) * count > MAX_OUTPUT:
                raise TooCostly(f"a repetition longer than {MAX_OUTPUT:,} characters")
        return left * right


@pass_context
def _when(ctx: Any, value: Any, pattern: str = "%A %-d %B %Y, %H:%M") -> str:
    """An ISO time shown in the project's time zone (``timezone`` in the context):
    ``{{ event.properties.scheduled_at | when }}`` → ``Saturday 5 December 2026, 14:00``."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    zone = ZoneInfo(str(ctx.get("timezone") or "UTC"))
    return moment.astimezone(zone).strftime(pattern)


@lru_cache(maxsize=2)
def _environment(html: bool) -> SandboxedEnvironment:
    env = _BoundedEnvironment(
        undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True
    )
    env.filters["when"] = _when
    env.globals["range"] = _range
    del env.globals["lipsum"]  # lipsum(n=10**9) would write for ever
    return env


@lru_cache(maxsize=512)
def _compiled(source: str, html: bool) -> Any:
    return _environment(html).from_string(source)


def check_syntax(source: str, field: str, *, html: bool = False) -> None:
    try:
        _compiled(source, html)
    except TemplateError as exc:
        raise TemplateProblem(f"{field}: the template does not parse: {exc}") from None


def render(source: str, context: Mapping[str, Any], field: str, *, html: bool = False) -> str:
    """The template filled with ``context``; ``TemplateProblem`` names the field and the
    missing variable (``event.properties.visit_at`` …)."""
    check_syntax(source, field, html=html)
    token = _deadline.set(time.monotonic() + MAX_SECONDS)
    try:
        return _bounded(_compiled(source, html).generate(**context))
    except UndefinedError as exc:
        raise TemplateProblem(
            f"{field}: {exc.message}; the variables are {', '.join(sorted(context))}"
        ) from None
    except SecurityError as exc:
        raise TemplateProblem(f"{field}: not allowed in a template: {exc}") from None
    except TemplateError as exc:
        raise TemplateProblem(f"{field}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TemplateProblem(f"{field}: {type(exc).__name__}: {exc}") from None
    except RecursionError:
        raise TemplateProblem(f"{field}: a macro calls itself without end") from None
    finally:
        _deadline.reset(token)


def _bounded(pieces: Iterator[str]) -> str:
    """The output, refused once it passes ``MAX_OUTPUT`` or the render's time."""
    kept: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_OUTPUT:
            raise TooCostly(f"it writes more than {MAX_OUTPUT:,} characters")
        _in_time()
        kept.append(piece)
    return "".join(kept)


def one_line(text: str, limit: int = 300) -> str:
    """A header value: every run of whitespace (line breaks included) becomes one space."""
    return " ".join(text.split())[:limit]
