"""The web app's pages: server-rendered (Jinja2 + htmx), charts by ECharts, no build step.

``install_pages`` mounts the static files, the page routers, the handlers that turn a
missing session into the sign-in page and a refused role into a 403 page, and the
security headers every answer carries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from cxloop.web.auth import session_user
from cxloop.web.pages import (
    customers,
    feedback,
    funnels,
    inbox,
    journey,
    lifecycle,
    overview,
    paths,
    retention,
    settings,
    signin,
)
from cxloop.web.pages.base import LoginRequired, PageForbidden, render

STATIC = Path(__file__).resolve().parents[1] / "static"
ROUTERS = [
    signin.router,
    overview.router,
    lifecycle.router,
    journey.router,
    funnels.router,
    retention.router,
    paths.router,
    customers.router,
    inbox.router,
    feedback.router,
    settings.router,
]

# Scripts only from this site (no inline script anywhere); ECharts and htmx set inline
# styles, and the journey map's PNG export makes a data: URL.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def install_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    @app.exception_handler(PageForbidden)
    async def _forbidden(request: Request, exc: PageForbidden) -> HTMLResponse:
        return render(
            request, "pages/error.html", user=session_user(request), status_code=403,
            title="You don't have permission", message=str(exc),
        )  # fmt: skip

    @app.middleware("http")
    async def _headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers.setdefault("X-Frame-Options", "DENY")
            if not request.url.path.startswith("/docs"):
                response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("Cache-Control", "no-store")
        return response
