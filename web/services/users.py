"""Users: creation and password checks."""
from __future__ import annotations

from functools import cache

from flask import current_app
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ROLES, User
from .audit import Actor, record



@cache
def _dummy_hash(method: str) -> str:
    """Checked when the user does not exist, so a miss costs as much as a hit (no user probing)."""
    return generate_password_hash("not-a-real-password", method=method)


def normalize_username(name: str) -> str:
    """The one spelling of a username: login, its rate limit and user creation all use it."""
    return name.strip()


class UserExists(ValueError):
    """The username is taken."""


def create_user(username: str, password: str, role: str, actor: Actor) -> User:
    """Create a user with a hashed password; audited."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    username = normalize_username(username)
    if not username or len(username) > 64:
        raise ValueError("username must be 1-64 characters")
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserExists(f"user {username!r} already exists")
    user = User(username=username, password_hash=generate_password_hash(
        password, method=current_app.config["PASSWORD_HASH_METHOD"]), role=role)
    db.session.add(user)
    db.session.flush()
    record(actor, "user.created", "user", user.id, after={"username": username, "role": role})
    db.session.commit()
    return user


def check_credentials(username: str, password: str) -> User | None:
    """The active user with this username and password, or None."""
    user = db.session.scalar(select(User).where(User.username == username))
    if user is None or not user.active:
        check_password_hash(_dummy_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None
