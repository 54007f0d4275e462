"""Flower behind nginx: the auth_request check that lets supervisors read and only admins control.

nginx asks ``GET /internal/flower-auth`` before every request to ``/flower/``
(deploy/nginx/neurohub.conf), passing the original method and URI, and answers the client 401 or
403 when this does. People log in with their NeuroHub account: HTTP basic in the browser's
prompt, or ``Authorization: Bearer`` with a token from /api/v1/auth/token in scripts. Reading
(pages, the GET API) needs supervisor; everything else needs admin. That is deny by default: a
control route a future Flower adds is admin-only without a change here. On success the answer
carries Flower's own credential (FLOWER_BASIC_AUTH), which nginx sends on instead of the
person's, so Flower keeps its basic auth against the rest of the internal network.

Not in the OpenAPI document: nginx answers 404 for /internal/ from outside.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import time

from flask import Blueprint, current_app, g, request
from limits import parse

from ..auth import Principal, authenticate
from ..errors import Forbidden, Unauthorized
from ..extensions import db, limiter
from ..models import ROLE_RANK
from ..services.audit import Actor, record
from ..services.users import check_credentials, normalize_username

bp = Blueprint("flower_auth", __name__)
READ_ROLE, CONTROL_ROLE = "supervisor", "admin"
PREFIX = "/flower/"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# POSTs that only read: the tasks page's table asks for its rows with a POST. Compared with the
# raw path Flower receives, so an encoded or dotted spelling is a control request (admin).
READ_POSTS = frozenset({"/flower/tasks/datatable"})
CHALLENGE = {"WWW-Authenticate": 'Basic realm="NeuroHub Flower", charset="UTF-8"'}
# A checked basic credential is remembered this long: one Flower page loads a dozen assets, each
# checked here, and a password hash costs tens of milliseconds of CPU. A deactivated user or a
# changed role takes effect within this window (a bearer token: within its own lifetime).
CACHE_SECONDS = 60.0
_CACHE: dict[str, tuple[Principal, float]] = {}
_CACHE_MAX = 1024


@bp.get("/internal/flower-auth")
def flower_auth():
    """nginx's check for /flower/: 204 with Flower's credential, 401 or 403."""
    principal = _principal()
    method = request.headers.get("X-Original-Method", "").upper()
    uri = request.headers.get("X-Original-URI", "")
    control = not is_read(method, uri)
    needed = CONTROL_ROLE if control else READ_ROLE
    if ROLE_RANK[principal.role] < ROLE_RANK[needed]:
        raise Forbidden(f"Flower {'control' if control else 'access'} requires role {needed}; "
                        f"you are {principal.role}")
    if control:
        # Who revoked or resized what: Flower itself records nothing.
        target = uri.split("?", 1)[0].removeprefix(PREFIX)[:64]
        record(Actor(principal.id, principal.username, g.get("request_id")), "flower.control",
               "flower", target, after={"method": method, "uri": uri[:1000]})
        db.session.commit()
    return "", 204, {"X-Flower-Authorization": flower_credential()}


def is_read(method: str, uri: str) -> bool:
    """True when a request to Flower only reads (supervisor may); anything else is control."""
    path = uri.split("?", 1)[0]
    if not path.startswith(PREFIX):
        return False
    return method in READ_METHODS or (method == "POST" and path in READ_POSTS)


def flower_credential() -> str:
    """The Authorization header Flower expects (its first FLOWER_BASIC_AUTH pair), or ""."""
    pair = (current_app.config["FLOWER_BASIC_AUTH"] or "").split(",")[0].strip()
    return "Basic " + base64.b64encode(pair.encode()).decode() if pair else ""


def _principal() -> Principal:
    """The caller, from a bearer token or basic credentials; 401 with a basic challenge else."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return authenticate()
    if scheme.lower() != "basic" or not value.strip():
        raise Unauthorized("log in with your NeuroHub account", headers=CHALLENGE)
    return _basic(value.strip())


def _basic(value: str) -> Principal:
    """Check basic credentials against the users (remembered CACHE_SECONDS), rate-limited."""
    secret = current_app.config["SECRET_KEY"]
    key = hashlib.sha256(f"{secret}\0{value}".encode()).hexdigest()
    hit = _CACHE.get(key)
    if hit is not None and hit[1] > time.monotonic():
        return hit[0]
    try:
        name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized("malformed basic credentials", headers=CHALLENGE) from None
    name = normalize_username(name)
    limits = _limits(name)
    # The same limits as /api/v1/auth/token: this must not be a way around them.
    if not all(limiter.limiter.test(item, "flower-auth", who) for item, who in limits):
        raise Forbidden("too many failed logins; wait a minute and try again")
    user = check_credentials(name, password)
    principal = Principal(user.id, user.username, user.role) if user else None
    db.session.rollback()  # a read: end it before the next request's check
    if principal is None:
        for item, who in limits:
            limiter.limiter.hit(item, "flower-auth", who)
        raise Unauthorized("wrong username or password", headers=CHALLENGE)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[key] = (principal, time.monotonic() + CACHE_SECONDS)
    return principal


def _limits(name: str) -> list:
    """(limit, key) for the account and for the client address (ProxyFix'd)."""
    cfg = current_app.config
    return [(parse(cfg["LOGIN_RATE_LIMIT"]), f"user:{name[:64]}"),
            (parse(cfg["LOGIN_IP_RATE_LIMIT"]), f"ip:{request.remote_addr}")]
