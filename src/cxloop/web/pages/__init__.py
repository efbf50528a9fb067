"""The web app's pages: server-rendered (Jinja2 + htmx), charts by ECharts, no build step.

``install_pages`` mounts the static files, the page routers, the handlers that turn a
missing session into the sign-in page and a refused role into a 403 page (the security
headers every answer carries are ``cxloop.web.headers``).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxloop.web.auth import session_user
from cxloop.web.pages import (
    automations,
    customers,
    feedback,
    funnels,
    inbox,
    insights,
    journey,
    lifecycle,
    overview,
    paths,
    retention,
    settings,
    signin,
)
from cxloop.web.pages.base import LoginRequired, PageBadInput, PageForbidden, render

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
    insights.router,
    settings.router,
    automations.router,
]


def install_pages(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _login(_request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        return RedirectResponse(f"/login?next={quote(exc.next_path)}", status_code=303)

    json_http = app.exception_handlers[StarletteHTTPException]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: Exception) -> Response:
        """A browser asking for a page that is not there gets a page; API clients keep
        the JSON error shape."""
        assert isinstance(exc, StarletteHTTPException)
        api = request.url.path.startswith(("/api/", "/v1/", "/static/", "/s/"))
        if exc.status_code == 404 and not api and "text/html" in request.headers.get("accept", ""):
            return render(
                request, "pages/error.html", user=session_user(request), status_code=404,
                title="Page not found", message=f"There is no page at {request.url.path}.",
            )  # fmt: skip
        answer = json_http(request, exc)
        return await answer if inspect.isawaitable(answer) else answer

    async def _refused(request: Request, exc: Exception) -> HTMLResponse:
        """A page the role may not see (403), or input no form of ours sends (400)."""
        bad_input = isinstance(exc, PageBadInput)
        return render(
            request, "pages/error.html", user=session_user(request),
            status_code=400 if bad_input else 403,
            title="That input can't be used" if bad_input else "You don't have permission",
            message=str(exc),
        )  # fmt: skip

    app.add_exception_handler(PageForbidden, _refused)
    app.add_exception_handler(PageBadInput, _refused)
