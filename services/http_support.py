"""What every HTTP route shares: the caller from the bearer token, the body limit, and one shape
for every error answer (`schemas.api.Problem`: a detail, and the field at fault)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError

from schemas.api import Problem
from services.adapters.auth import AuthError, Caller, Role, caller_from_header, require_role
from services.adapters.settings import Settings
from services.order_ingest.validation import InvalidOrder

_DESCRIPTIONS = {
    401: "no valid bearer token",
    403: "the token's role may not do this",
    404: "not found, or not visible to the caller",
    409: "conflicts with what is stored (stale or reused version, lifecycle)",
    413: "body larger than the configured limit",
    422: "invalid input; `field` names the part at fault",
    503: "the database is unavailable; retry (idempotent per event_id)",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in codes}


class BodyTooLarge(Exception):
    pass


class CallerWith:
    """Dependency: the authenticated caller, refused unless its role is one of `roles`."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(self, request: Request) -> Caller:
        settings: Settings = request.app.state.settings
        caller = caller_from_header(settings, request.headers.get("authorization"))
        return require_role(caller, self.roles)


async def body_within_limit(request: Request) -> bytes:
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return bytes(body)


def _problem(status: int, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    return JSONResponse(
        Problem(detail=detail, field=field).model_dump(), status_code=status, headers=headers
    )


def install_error_answers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        return _problem(exc.status, exc.detail, None, **extra)

    @app.exception_handler(InvalidOrder)
    async def _invalid(request: Request, exc: InvalidOrder) -> JSONResponse:
        return _problem(422, exc.reason, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
        return _problem(422, str(first.get("msg")), ".".join(loc) or None)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return _problem(413, f"body larger than {exc.args[0]} bytes", "body")

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if isinstance(exc, IntegrityError):
            return _problem(409, "a concurrent request changed the same order; retry")
        return _problem(503, "database unavailable; retry", None, **{"Retry-After": "1"})

    @app.exception_handler(OSError)
    async def _unreachable(request: Request, exc: OSError) -> JSONResponse:
        return _problem(503, "database unreachable; retry", None, **{"Retry-After": "1"})
