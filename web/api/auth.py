"""POST /api/v1/auth/token: exchange username + password for a bearer token."""
from flask import Blueprint, current_app, request
from flask_limiter.util import get_remote_address

from ..auth import issue_token
from ..errors import Unauthorized
from ..extensions import limiter
from ..openapi import spec
from ..services.users import check_credentials
from .schemas import TokenRequest, TokenResponse

bp = Blueprint("auth", __name__, url_prefix="/api/v1/auth")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


def _username_key() -> str:
    """Limit guesses per account too, so spreading them over addresses does not help."""
    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    return f"user:{str(name)[:64]}"


@bp.post("/token")
@limiter.limit(_login_limit, key_func=get_remote_address)
@limiter.limit(_login_limit, key_func=_username_key)
@spec(body=TokenRequest, responses={200: TokenResponse}, tags=["auth"], public=True,
      errors=(401, 429))
def token(body: TokenRequest):
    """Exchange username and password for a bearer token."""
    user = check_credentials(body.username, body.password)
    if user is None:
        raise Unauthorized("wrong username or password")
    access, ttl = issue_token(user.id, user.username, user.role)
    return {"access_token": access, "token_type": "bearer", "expires_in": ttl}
