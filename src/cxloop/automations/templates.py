"""Message templates: Jinja in a sandbox, strict about names.

Templates are written by people with the admin role but filled with customer data, so they
run in Jinja's ``SandboxedEnvironment`` (no attribute access to Python internals, no
calls of unsafe methods) with ``StrictUndefined``: a name the context does not have is an
error. Rules are rendered against a real customer when they are saved
(``preview``), so a misspelt variable is refused then, not discovered when a customer
should have had the message. HTML templates autoescape, so a customer's name cannot add
markup; subjects are collapsed to one line, so no value can add a header.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, TemplateError, UndefinedError, pass_context
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment


class TemplateProblem(ValueError):
    """A template that does not parse or names something the context lacks."""


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
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True
    )
    env.filters["when"] = _when
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
    try:
        return str(_compiled(source, html).render(**context))
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


def one_line(text: str, limit: int = 300) -> str:
    """A header value: every run of whitespace (line breaks included) becomes one space."""
    return " ".join(text.split())[:limit]
