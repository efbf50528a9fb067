"""Sign-in and sign-out. Failed attempts are rate limited per address and e-mail and per
address alone (a moving window), so guessing passwords is slow whichever is varied."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from cxloop.store.users import authenticate
from cxloop.web.auth import csrf_ok, session_user, sign_in, sign_out
from cxloop.web.pages.base import render
from cxloop.web.state import state_of

router = APIRouter(include_in_schema=False)
PER_ACCOUNT = RateLimitItemPerMinute(5)  # failed tries for one e-mail from one address
PER_ADDRESS = RateLimitItemPerMinute(20)  # failed tries from one address, any e-mail
_limiter = MovingWindowRateLimiter(MemoryStorage())


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host (``//evil``) or a scheme."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(
    request: Request,
    *,
    next_path: str,
    email: str = "",
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request, "pages/login.html", user=None, next_path=next_path, email=email,
        errors=errors or {}, status_code=status_code,
    )  # fmt: skip


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    if session_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next_path=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    target = safe_next(next)
    errors: dict[str, str] = {}
    if not email.strip():
        errors["email"] = "Enter your e-mail address."
    elif "\x00" in email:
        errors["email"] = "An e-mail address can't contain the NUL character."
    if not password:
        errors["password"] = "Enter your password."
    if errors:
        return _login_page(request, next_path=target, email=email, errors=errors, status_code=400)
    address = request.client.host if request.client else "unknown"
    account = email.strip().lower()
    if not _limiter.test(PER_ACCOUNT, address, account) or not _limiter.test(PER_ADDRESS, address):
        return _login_page(
            request, next_path=target, email=email, status_code=429,
            errors={"form": "Too many failed sign-ins. Wait a minute and try again."},
        )  # fmt: skip
    with state_of(request).project.engine.begin() as conn:
        user = authenticate(conn, account, password)
    if user is None:
        _limiter.hit(PER_ACCOUNT, address, account)
        _limiter.hit(PER_ADDRESS, address)
        return _login_page(
            request, next_path=target, email=email, status_code=401,
            errors={"form": "That e-mail and password do not match an enabled account."},
        )  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    sign_in(request, response, user["id"])
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    user = session_user(request)
    form = await request.form()
    sent = form.get("csrf_token")
    response = RedirectResponse("/login", status_code=303)
    if user is not None and csrf_ok(user, str(sent) if sent is not None else None):
        sign_out(request, response)
    return response
