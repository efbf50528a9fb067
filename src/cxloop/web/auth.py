"""Who is calling and what they may do: a secret key (scripts, the CLI) or a signed-in
user (the web app, whose session cookie also works on the REST API).

Roles rank ``member`` < ``analyst`` < ``admin``. Everyone reads everything; members work
the cases and follow-ups of their own department; analysts also create surveys, import
data and work every department's cases; admins change settings (models, departments,
keys, triggers, users). A secret key acts as an admin. Requests that come with the
session cookie and change something must carry the session's CSRF token, as the
``X-CSRF-Token`` header or a ``csrf_token`` form field.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, Response

from cxloop.store import audit
from cxloop.store.sessions import (
    SESSION_HOURS,
    SignedIn,
    end_session,
    extend_session,
    find_session,
    start_session,
)
from cxloop.web.errors import ApiError
from cxloop.web.state import ServerState, bearer_token, state_of

SESSION_COOKIE = "cxloop_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
RANK = {"member": 0, "analyst": 1, "admin": 2}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    role: str
    user: SignedIn | None = None  # None for a secret key

    @property
    def department(self) -> str | None:
        return None if self.user is None else self.user.department

    def at_least(self, role: str) -> bool:
        return RANK[self.role] >= RANK[role]

    def may_work(self, department: str | None) -> bool:
        """Whether this caller may change a case or follow-up of that department."""
        mine = self.department
        return self.at_least("analyst") or (
            department is not None and mine is not None and department.lower() == mine.lower()
        )

    def check_may_work(self, department: str | None) -> None:
        if not self.may_work(department):
            raise forbidden(
                f"department: a member changes only the cases and follow-ups of its own "
                f"department ({self.department}), not of {department or 'no department'}"
            )


def forbidden(reason: str) -> ApiError:
    return ApiError(403, "forbidden", reason)


def session_user(request: Request) -> SignedIn | None:
    """The signed-in user of this request's cookie, read once per request."""
    if hasattr(request.state, "signed_in"):
        found: SignedIn | None = request.state.signed_in
        return found
    token = request.cookies.get(SESSION_COOKIE)
    user = None
    if token:
        state = state_of(request)
        with state.project.engine.connect() as conn:
            user = find_session(conn, token)
        if user is not None and user.expires_at - datetime.now(UTC) < timedelta(
            hours=SESSION_HOURS / 2
        ):
            with state.project.engine.begin() as conn:
                extend_session(conn, token)
    request.state.signed_in = user
    return user


def csrf_ok(user: SignedIn, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(str(sent), user.csrf_token)


def identify(request: Request) -> Principal | None:
    """The caller by secret key or session cookie, or None."""
    state = state_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if token is not None:
        name = state.check_key(token, "secret")
        return None if name is None else Principal(name=name, role="admin")
    user = session_user(request)
    if user is None:
        return None
    return Principal(name=user.email, role=user.role, user=user)


async def require_caller(request: Request) -> ServerState:
    """A secret key or a signed-in user; then wait until every acknowledged message is
    applied, so that a client that got a 200 from the tracking API reads what it sent."""
    principal = identify(request)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "a secret key is required as 'Authorization: Bearer KEY' (or sign in)",
        )
    user = principal.user
    if (
        user is not None
        and request.method not in SAFE_METHODS
        and not csrf_ok(user, request.headers.get(CSRF_HEADER))
    ):
        raise forbidden(f"the {CSRF_HEADER} header must carry this session's CSRF token")
    request.state.principal = principal
    audit.ACTOR.set(principal.name)  # this request's own context: its writes are audited so
    state = state_of(request)
    await state.writer.settled()
    return state


def principal_of(request: Request) -> Principal:
    found: Principal = request.state.principal
    return found


def _needs(role: str) -> Callable[[Request], Awaitable[ServerState]]:
    async def check(request: Request) -> ServerState:
        state = await require_caller(request)
        if not principal_of(request).at_least(role):
            raise forbidden(f"this needs the {role} role or higher")
        return state

    return check


Caller = Annotated[ServerState, Depends(require_caller)]
Analyst = Annotated[ServerState, Depends(_needs("analyst"))]
Admin = Annotated[ServerState, Depends(_needs("admin"))]
Who = Annotated[Principal, Depends(principal_of)]


def sign_in(request: Request, response: Response, user_id: int) -> None:
    """Start a session and set its cookie: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    state = state_of(request)
    with state.project.engine.begin() as conn:
        token = start_session(conn, user_id)
    public = state.project.settings.effective_public_url
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_HOURS * 3600,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https" or public.startswith("https://"),
        path="/",
    )


def sign_out(request: Request, response: Response) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        with state_of(request).project.engine.begin() as conn:
            end_session(conn, token)
    response.delete_cookie(SESSION_COOKIE, path="/")
