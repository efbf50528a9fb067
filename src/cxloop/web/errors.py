"""One error shape for every API: {"error": {"code", "message", "field"?, "details"?}}."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from cxloop.customers.service import NotFound
from cxloop.domain.values import explain_error
from cxloop.lifecycle import service as lifecycle


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(code, message, **extra)


NUL_REASON = "must not contain the NUL character (\\u0000)"
# Bodies whose items are checked one at a time downstream, so that one bad message among
# good ones is reported in the answer rather than refusing them all.
_PER_ITEM = {"/api/v1/import/messages": "messages"}


def _nul_at(value: Any, where: str) -> str | None:
    """The dotted path of the first text holding NUL in decoded JSON, or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            found = inner if "\x00" in key else _nul_at(item, inner)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_at(item, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None


def nul_error(field: str) -> ApiError:
    return ApiError(422, "invalid_request", f"{field}: {NUL_REASON}", field=field)


async def refuse_nul(request: Request) -> None:
    """A router dependency: refuse NUL in path, query and JSON body values, naming the
    field. PostgreSQL can neither store nor compare text holding NUL (its driver raises),
    so every backend refuses it up front alike, as the tracking API does per message."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise nul_error(name)
    for name, value in request.query_params.multi_items():
        if "\x00" in value:
            raise nul_error(name)
    if "json" not in request.headers.get("content-type", ""):
        return
    body = await request.body()  # already read and kept by FastAPI for the body model
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    try:
        data = json.loads(body)
    except ValueError:
        return  # FastAPI answers malformed JSON itself
    skip = _PER_ITEM.get(request.url.path)
    if skip is not None and isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != skip}
    found = _nul_at(data, "")
    if found is not None:
        raise nul_error(found or "body")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            field, reason = explain_error(e.get("loc", ()), str(e.get("msg", "invalid")))
            problems.append({"field": field, "reason": reason})
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
