"""JWT bearer tokens (HS256) and per-endpoint role checks.

The token carries the user id, name and role, so the hot path authenticates without touching the
database; tokens are short-lived (ACCESS_TOKEN_EXPIRE_MINUTES) so a role change or deactivation
takes effect within that window.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import wraps

import jwt
from flask import current_app, g, request

from .errors import Forbidden, Unauthorized
from .models import ROLE_RANK

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller."""

    id: int
    username: str
    role: str


def issue_token(user_id: int, username: str, role: str) -> tuple[str, int]:
    """Sign an access token; returns (token, seconds until it expires)."""
    ttl = int(current_app.config["ACCESS_TOKEN_EXPIRE_MINUTES"]) * 60
    now = int(time.time())
    claims = {"sub": str(user_id), "name": username, "role": role, "iat": now, "exp": now + ttl}
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM), ttl


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token",
                           headers={"WWW-Authenticate": 'Bearer realm="neurohub"'})
    return token.strip()


# Tokens already verified in this process -> (principal, exp). A station sends the same token
# with every completion, so the signature and claims are checked once, the expiry every time.
_VERIFIED: dict[tuple[str, str], tuple[Principal, int]] = {}
_VERIFIED_MAX = 4096


def authenticate() -> Principal:
    """Decode and check the request's bearer token (signature, expiry, claims)."""
    token, secret = _bearer(), current_app.config["SECRET_KEY"]
    hit = _VERIFIED.get((secret, token))
    if hit is not None and hit[1] > time.time():
        g.principal = hit[0]
        return hit[0]
    principal, exp = _verify(token, secret)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[(secret, token)] = (principal, exp)
    g.principal = principal
    return principal


def _verify(token: str, secret: str) -> tuple[Principal, int]:
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub", "role"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired; log in again",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}",
                           headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
    role = claims.get("role")
    if role not in ROLE_RANK:
        raise Unauthorized("invalid token: unknown role")
    try:
        return Principal(int(claims["sub"]), str(claims.get("name", "")), role), int(claims["exp"])
    except (TypeError, ValueError):
        raise Unauthorized("invalid token: bad subject") from None


def require(min_role: str = "operator"):
    """Decorator: the caller must hold a valid token with at least ``min_role``."""
    needed = ROLE_RANK[min_role]

    def deco(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = authenticate()
            if ROLE_RANK[principal.role] < needed:
                raise Forbidden(f"requires role {min_role} or higher; you are {principal.role}")
            return view(*args, **kwargs)

        wrapper.required_role = min_role  # read by the OpenAPI builder
        return wrapper

    return deco


def current_principal() -> Principal | None:
    """The caller of this request, if authenticated."""
    return getattr(g, "principal", None)
