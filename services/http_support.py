"""What every HTTP route shares: the caller from the bearer token, the body limit, and one shape
for every error answer (`schemas.api.Problem`: a detail, and the field at fault)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.api import Problem
from services.adapters.auth import AuthError, Caller, Role, caller_from_header, require_role
from services.adapters.settings import Settings
from services.alert_dispatcher.policy import Refused
from services.alert_dispatcher.service import NotFound
from services.order_ingest.validation import InvalidOrder

_DESCRIPTIONS = {
    401: "no valid bearer token",
    403: "the token's role may not do this",
    404: "not found, or not visible to the caller",
    409: "conflicts with what is stored (stale or reused version, lifecycle, state)",
    413: "body larger than the configured limit",
    422: "invalid input; `field` names the part at fault",
    503: "the database is unavailable; retry (idempotent per event_id)",
}


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": Problem, "description": _DESCRIPTIONS[code]} for code in codes}


class BodyTooLarge(Exception):
    pass


# Declares the scheme in the OpenAPI; the header itself is checked by `caller_from_header`, so
# that a missing token is our 401 (with WWW-Authenticate), not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A JWT with `role` (and `region` for operator and victim-support); "
    "`breachwatch token` mints one for development.",
)


class CallerWith:
    """Dependency: the authenticated caller, refused unless its role is one of `roles`."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles

    def __call__(
        self,
        request: Request,
        _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Caller:
        settings: Settings = request.app.state.settings
        caller = caller_from_header(settings, request.headers.get("authorization"))
        return require_role(caller, self.roles)


async def no_unknown_query(request: Request) -> None:
    """Refuse query parameters a route does not take: an operator's misspelt `emergncy=true`
    must fail loudly, not run as an ordinary lookup."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _query_names(route)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", unknown[0]), "msg": "unknown query parameter", "type": "extra"}]
        )


def _query_names(route: APIRoute) -> frozenset[str]:
    def walk(dependant: Dependant) -> set[str]:
        names = {param.alias for param in dependant.query_params}
        for sub in dependant.dependencies:
            names |= walk(sub)
        return names

    return frozenset(walk(route.dependant))


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

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return _problem(404, exc.detail, exc.field)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> JSONResponse:
        return _problem(409, exc.detail, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
        return _problem(422, str(first.get("msg")), ".".join(loc) or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body it cannot read (not UTF-8, not JSON) with a bare 400; it is
        # invalid input like any other, so the usual 422 naming the body.
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            return _problem(422, "the body is not valid JSON", "body")
        return _problem(exc.status_code, str(exc.detail), None, **(exc.headers or {}))

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


def openapi_document(app: FastAPI, *, raw_bodies: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """The OpenAPI of `app`, completed where FastAPI leaves it short of what is served."""
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in raw_bodies:
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                # A query string has no null: an optional parameter is one left out. Saying
                # `anyOf: [string, null]` makes clients (and fuzzers) read `?x=null` as absent.
                parameter["schema"] = _without_null(parameter["schema"])
            # Malformed HTTP (a broken header, say) is refused by the server before the app runs.
            operation["responses"].setdefault(
                "400",
                {
                    "description": "malformed HTTP request, refused before it reached the service",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
            )
    return schema


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [option for option in options if option.get("type") != "null"]
    if len(kept) != 1:
        return schema
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
