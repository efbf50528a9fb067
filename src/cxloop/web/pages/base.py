"""What every page shares: the signed-in user, the CSRF check on forms, the filters of
date range and segment, number formatting, and rendering into the layout.

Pages are thin: they call the same feature services as the REST API and hand the
results to templates. A browser without a session is sent to the sign-in page; a user
whose role does not allow a page gets a 403 page, never a broken one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from cxloop.customers.service import SAVED_SEGMENT
from cxloop.domain.values import as_utc
from cxloop.feedback.responses import days_window
from cxloop.segments import check_named
from cxloop.store import audit
from cxloop.store.sessions import SignedIn
from cxloop.web.auth import CSRF_FIELD, CSRF_HEADER, Principal, csrf_ok, session_user
from cxloop.web.errors import NUL_REASON
from cxloop.web.state import ServerState, state_of

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES))
PAGE_SIZE = 50
MISSING = "\u2013"  # an en dash where a figure is unknown


class LoginRequired(Exception):
    """No session: the browser goes to the sign-in page and comes back afterwards."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageForbidden(Exception):
    """Signed in, but the role does not allow this page or action."""


class PageBadInput(Exception):
    """A value no form or link of ours can send (the NUL character): answered with a 400
    page naming the field, before it reaches a service. PostgreSQL cannot store or compare
    text holding NUL, so every backend refuses it alike, as the REST API does."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field}: {NUL_REASON}")
        self.field = field


def _refuse_nul(values: Iterable[tuple[str, str]]) -> None:
    for name, value in values:
        if "\x00" in name or "\x00" in value:
            raise PageBadInput(name.replace("\x00", "\\u0000"))


@dataclass
class Page:
    """One page request: who asks, the server state, and the filters it came with."""

    request: Request
    state: ServerState
    user: SignedIn

    @property
    def principal(self) -> Principal:
        return Principal(name=self.user.email, role=self.user.role, user=self.user)

    @property
    def zone(self) -> ZoneInfo:
        return self.state.project.settings.zone

    def at_least(self, role: str) -> bool:
        return self.principal.at_least(role)

    def require(self, role: str) -> None:
        if not self.at_least(role):
            raise PageForbidden(f"this page needs the {role} role or higher")

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return render(self.request, template, user=self.user, status_code=status_code, **context)

    async def form(self) -> dict[str, str]:
        """The posted form, after its CSRF token is checked against the session's."""
        data = await self.request.form()
        sent = data.get(CSRF_FIELD) or self.request.headers.get(CSRF_HEADER)
        if not csrf_ok(self.user, str(sent) if sent is not None else None):
            raise PageForbidden("the form's security token is missing or stale; reload the page")
        _refuse_nul((k, v) for k, v in data.multi_items() if isinstance(v, str))
        return {k: str(v) for k, v in data.items() if k != CSRF_FIELD and isinstance(v, str)}


async def page_context(request: Request) -> Page:
    user = session_user(request)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    _refuse_nul(request.query_params.multi_items())
    _refuse_nul((k, v) for k, v in request.path_params.items() if isinstance(v, str))
    state = state_of(request)
    audit.ACTOR.set(user.email)
    await state.writer.settled()
    _check_saved_segment(request, state)
    return Page(request=request, state=state, user=user)


def _check_saved_segment(request: Request, state: ServerState) -> None:
    """A filter naming a saved segment that does not exist is said next to the segment's
    field (``Filters.parse`` reads it), rather than shown as an empty report."""
    q = request.query_params
    name = q.get("value", "").strip()
    if q.get("segment") != SAVED_SEGMENT or not name:
        return
    with state.project.engine.connect() as conn:
        try:
            check_named(conn, {SAVED_SEGMENT: name}, "value")
        except LookupError:
            request.state.unknown_segment = f"no saved segment {name!r}"


PageCtx = Annotated[Page, Depends(page_context)]


@dataclass
class Filters:
    """Date range (both days included, in the project's time zone) and a segment, as the
    query string carries them: ``from``, ``to``, ``segment=FIELD`` and ``value``."""

    first: date | None = None
    last: date | None = None
    segment_field: str = ""
    segment_value: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, request: Request) -> Filters:
        q = request.query_params
        found = cls(
            segment_field=q.get("segment", "").strip()[:80],
            segment_value=q.get("value", "").strip()[:200],
        )
        for name in ("from", "to"):
            text = q.get(name, "").strip()
            if not text:
                continue
            try:
                day = date.fromisoformat(text)
            except ValueError:
                found.errors[name] = f"{text!r} is not a date (YYYY-MM-DD)"
                continue
            if name == "from":
                found.first = day
            else:
                found.last = day
        if found.first and found.last and found.last < found.first:
            found.errors["to"] = "must not be before the first day"
            found.last = None
        if found.segment_field and not found.segment_value:
            found.errors["value"] = "give the value the segment must have"
        unknown = getattr(request.state, "unknown_segment", None)
        if unknown:
            found.errors["value"] = unknown
            found.segment_field = found.segment_value = ""
        return found

    @property
    def where(self) -> dict[str, str]:
        if self.segment_field and self.segment_value:
            return {self.segment_field: self.segment_value}
        return {}

    def window(self, zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
        """The days as UTC instants, the last one's end excluded."""
        return days_window(self.first, self.last, zone)

    def query(self, **extra: Any) -> str:
        """These filters (and ``extra``) as a query string for links."""
        pairs = {
            "from": self.first.isoformat() if self.first else "",
            "to": self.last.isoformat() if self.last else "",
            "segment": self.segment_field,
            "value": self.segment_value,
            **{k: v for k, v in extra.items() if v is not None},
        }
        return urlencode({k: v for k, v in pairs.items() if v != ""})


# -- formatting for people -----------------------------------------------------------------


def fmt_num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:,.{digits}f}"


def fmt_pct(value: Any, digits: int = 1, *, share: bool = True) -> str:
    """A share (0..1) or, with ``share=False``, a value already in percent."""
    if value is None:
        return MISSING
    return f"{(value * 100 if share else value):.{digits}f} %"


def fmt_signed(value: Any, digits: int = 1) -> str:
    if value is None:
        return MISSING
    return f"{value:+.{digits}f}"


def fmt_duration(seconds: Any) -> str:
    if seconds is None:
        return MISSING
    seconds = float(seconds)
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def fmt_when(value: Any, zone: ZoneInfo | None = None, *, with_time: bool = True) -> str:
    if value is None or value == "":
        return MISSING
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(moment, datetime):
        found = as_utc(moment)
        assert found is not None
        local = found.astimezone(zone) if zone else found
        return local.strftime("%d %b %Y %H:%M" if with_time else "%d %b %Y")
    return str(moment)


def chart(option: dict[str, Any], label: str, height: int = 320) -> Markup:
    """A chart container that static/app.js fills with ECharts; the numbers are always
    in a table next to it, so the chart's label only says what it shows."""
    data = json.dumps(option, separators=(",", ":"), default=str)
    return Markup(
        '<div class="chart" role="img" aria-label="{label}" style="height:{h}px" '
        "data-option='{data}'></div>"
    ).format(label=label, h=int(height), data=data)


templates.env.filters.update(
    num=fmt_num, pct=fmt_pct, signed=fmt_signed, duration=fmt_duration, when=fmt_when
)
templates.env.globals.update(chart=chart, quote=quote)


NAV: tuple[tuple[str, str, str], ...] = (
    ("/", "Overview", "member"),
    ("/lifecycle", "Lifecycle", "member"),
    ("/funnels", "Funnels", "member"),
    ("/retention", "Retention", "member"),
    ("/paths", "Paths", "member"),
    ("/journey", "Journey map", "member"),
    ("/insights", "Insights", "member"),
    ("/customers", "Customers", "member"),
    ("/feedback", "Feedback", "member"),
    ("/inbox", "Cases & follow-ups", "member"),
    ("/settings", "Settings", "admin"),
)


def render(
    request: Request,
    template: str,
    *,
    user: SignedIn | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    principal = None if user is None else Principal(name=user.email, role=user.role, user=user)
    nav = [
        (href, label)
        for href, label, role in NAV
        if principal is not None and principal.at_least(role)
    ]
    return templates.TemplateResponse(
        request,
        template,
        {
            "user": user,
            "csrf": user.csrf_token if user else "",
            "nav": nav,
            "path": request.url.path,
            "zone": state_of(request).project.settings.zone,
            **context,
        },
        status_code=status_code,
    )
