"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}``.

Bad input is always 400 (never FastAPI's 422), and no response ever carries a traceback.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from persona_sdk.errors import (
    InvalidInputError,
    MemoryNotFoundError,
    PersonaError,
    UnknownUserError,
)

log = logging.getLogger("persona.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 429: "rate_limit_error",
          503: "service_unavailable", 500: "server_error"}  # fmt: skip


class ApiError(Exception):
    """An error the server answers with ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = _TYPES.get(self.status, "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param,
                          "code": self.code}}  # fmt: skip

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def from_persona_error(exc: PersonaError) -> ApiError:
    """The HTTP status of a library error: bad input 400, missing things 404."""
    if isinstance(exc, InvalidInputError):
        return ApiError(400, str(exc), code="invalid_value")
    if isinstance(exc, (UnknownUserError, MemoryNotFoundError)):
        return ApiError(404, str(exc), code="not_found")
    log.error("request failed: %s: %s", type(exc).__name__, exc)
    return ApiError(500, f"{type(exc).__name__}: {exc}", code="server_error")


def from_validation(exc: ValidationError | RequestValidationError) -> ApiError:
    """A pydantic failure as one 400 naming the first bad field."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(where) or None
    message = first.get("msg", "invalid request")
    return ApiError(400, f"{param}: {message}" if param else message, param=param,
                    code="invalid_value")  # fmt: skip


def install(app: FastAPI) -> None:
    """Route every exception through :class:`ApiError`."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(PersonaError)
    async def persona_error(_: Request, exc: PersonaError):
        return from_persona_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def request_validation(_: Request, exc: RequestValidationError):
        return from_validation(exc).response()

    @app.exception_handler(ValidationError)
    async def validation(_: Request, exc: ValidationError):
        return from_validation(exc).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException):
        return ApiError(exc.status_code, str(exc.detail)).response()

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception):
        log.exception("unexpected error")
        return ApiError(500, "internal server error", code="server_error").response()


def sse_error(message: str, status: int = 500) -> str:
    """The server-sent event a stream ends with when it fails mid-way."""
    return f"data: {json.dumps(ApiError(status, message).body())}\n\n"
