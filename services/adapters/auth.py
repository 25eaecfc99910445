"""The one auth adapter: JWTs (PyJWT, HS256, a configured key) and the caller they describe.

Roles (DESIGN.md "Who may see what"): `cjib` ingests orders; `operator` is a control room of one
region; `probation` is an officer who sees own cases; `victim-support`; `admin`. What a role may
see is scoped in SQL by the repositories, from the `Caller` handed to them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, get_args

import jwt

from services.adapters.settings import Settings

Role = Literal["cjib", "operator", "probation", "victim-support", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)
REGIONAL_ROLES: frozenset[Role] = frozenset({"operator", "victim-support"})
ALGORITHM = "HS256"


class AuthError(Exception):
    """No usable token (401) or a token whose role may not do this (403)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    role: Role
    region: str | None = None


@dataclass(frozen=True, slots=True)
class VictimCaller:
    """A victim holding the token handed to them for one order: they may file reports against
    that order and nothing else. Not a role: the token carries an audience no other route
    accepts."""

    order_id: str
    role: str = "victim"
    region: str | None = None

    @property
    def sub(self) -> str:
        return f"victim:{self.order_id}"


Actor = Caller | VictimCaller
VICTIM_AUDIENCE = "victim-report"


def mint_victim_token(settings: Settings, *, order_id: str, ttl_s: int) -> tuple[str, int]:
    """A token for the victim of `order_id`; returns it and its expiry (epoch seconds)."""
    now = int(time.time())
    claims = {
        "sub": f"victim:{order_id}", "order_id": order_id, "aud": VICTIM_AUDIENCE,
        "iss": settings.jwt_issuer, "iat": now, "exp": now + ttl_s,
    }  # fmt: skip
    return jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM
    ), now + ttl_s


def victim_from_header(settings: Settings, authorization: str | None) -> VictimCaller | None:
    """The victim a bearer token names, or None when it is not a victim's token."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    try:
        claims = jwt.decode(
            authorization[7:].strip(), settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM], issuer=settings.jwt_issuer, audience=VICTIM_AUDIENCE,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )  # fmt: skip
    except jwt.PyJWTError:
        return None
    order_id = claims.get("order_id")
    return VictimCaller(order_id) if isinstance(order_id, str) and order_id else None


def mint_token(
    settings: Settings, *, role: Role, sub: str, region: str | None = None, ttl_s: int = 8 * 3600
) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role in REGIONAL_ROLES and not region:
        raise ValueError(f"role {role} needs a region")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub, "role": role, "iss": settings.jwt_issuer, "iat": now, "exp": now + ttl_s,
    }  # fmt: skip
    if region:
        claims["region"] = region
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def caller_from_header(settings: Settings, authorization: str | None) -> Caller:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthError(401, "missing bearer token")
    try:
        claims = jwt.decode(
            authorization[7:].strip(),
            settings.jwt_secret.get_secret_value(),
            algorithms=[ALGORITHM],
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "exp", "iss"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(401, f"invalid token: {exc}") from None
    role, sub, region = claims.get("role"), claims.get("sub"), claims.get("region")
    if role not in ROLES or not isinstance(sub, str) or not sub:
        raise AuthError(401, "token has no valid role or subject")
    if role in REGIONAL_ROLES and not isinstance(region, str):
        raise AuthError(401, f"a {role} token must name its region")
    return Caller(sub=sub, role=role, region=region if isinstance(region, str) else None)


def require_role(caller: Caller, roles: frozenset[Role]) -> Caller:
    if caller.role not in roles:
        raise AuthError(403, f"role {caller.role} may not do this")
    return caller
