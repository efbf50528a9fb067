"""One error shape for every API: {"error": {"code", "message", "field"?, "details"?}}."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxloop.customers.service import NotFound
from cxloop.lifecycle import service as lifecycle


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message, **extra)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "body")),
                "reason": e.get("msg", "invalid"),
            }
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "request", "reason": "invalid"}
        return JSONResponse(
            error_body(
                "invalid_request",
                f"{first['field']}: {first['reason']}",
                field=first["field"],
                details=problems,
            ),
            status_code=422,
        )

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), status_code=404)

    @app.exception_handler(lifecycle.NotFound)
    async def _lifecycle_not_found(_request: Request, exc: lifecycle.NotFound) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc), field=exc.field), status_code=404)

    @app.exception_handler(lifecycle.Conflict)
    async def _conflict(_request: Request, exc: lifecycle.Conflict) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc), field=exc.field), status_code=409)

    @app.exception_handler(ValueError)
    async def _value_error(_request: Request, exc: ValueError) -> JSONResponse:
        message = str(exc)
        field = message.split(":", 1)[0] if ":" in message else None
        return JSONResponse(error_body("invalid_request", message, field=field), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )
