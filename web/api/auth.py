"""POST /api/v1/auth/token: exchange username + password for a bearer token."""
from flask import Blueprint, current_app, request
from flask_limiter.util import get_remote_address

from ..auth import issue_token
from ..errors import Unauthorized
from ..extensions import limiter
from ..openapi import spec
from ..services.users import check_credentials, normalize_username
from .schemas import TokenRequest, TokenResponse

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _account_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _address_limit() -> str:
    return current_app.config["LOGIN_IP_RATE_LIMIT"]


def _username_key() -> str:
    """Limit guesses per account too, so spreading them over addresses does not help.

    The key is the username as login reads it (normalize_username), so `" admin"` or
    `"admin\\t"` count against admin's bucket instead of opening a fresh one.
    """
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return f"user:{normalize_username(name)[:64]}" if isinstance(name, str) else "user:"


def _address_key() -> str:
    """The client address (ProxyFix has taken it from X-Forwarded-For for trusted hops)."""
    return f"ip:{get_remote_address()}"


@bp.post("/token")
# Per address higher than per account: one user's wrong passwords lock that account, not
# everyone else who logs in from the same PC or network.
@limiter.limit(_address_limit, key_func=_address_key)
@limiter.limit(_account_limit, key_func=_username_key)
@spec(body=TokenRequest, responses={200: TokenResponse}, tags=["auth"], public=True,
      errors=(401, 429))
def token(body: TokenRequest):
    """Exchange username and password for a bearer token."""
    user = check_credentials(normalize_username(body.username), body.password)
    if user is None:
        raise Unauthorized("wrong username or password")
    access, ttl = issue_token(user.id, user.username, user.role)
    return {"access_token": access, "token_type": "bearer", "expires_in": ttl}
