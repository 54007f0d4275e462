"""Users: creation and password checks."""
from __future__ import annotations

from functools import cache

from flask import current_app
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from ..models import ROLES, User
from ..problems import Conflict, NotFound
from .audit import Actor, record


@cache
def _dummy_hash(method: str) -> str:
    """Checked when the user does not exist, so a miss costs as much as a hit (no user probing)."""
    return generate_password_hash("not-a-real-password", method=method)


def normalize_username(name: str) -> str:
    """The one spelling of a username: login, its rate limit and user creation all use it."""
    return name.strip()


class UserExists(Conflict, ValueError):
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


class UserNotFound(NotFound, LookupError):
    """No user has this id."""


def _user(user_id: int) -> User:
    user = db.session.get(User, user_id, with_for_update=True)
    if user is None:
        raise UserNotFound(f"unknown user {user_id}")
    return user


def list_users() -> list[User]:
    """Every user, by name (a plant has tens of them, not thousands)."""
    return list(db.session.scalars(select(User).order_by(User.username)))


def set_role(user_id: int, role: str, actor: Actor) -> User:
    """Change a user's role; audited. Bearer tokens already issued keep their role until expiry."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    user = _user(user_id)
    before = user.role
    user.role = role
    record(actor, "user.role_set", "user", user.id, before={"role": before},
           after={"role": role})
    db.session.commit()
    return user


def set_active(user_id: int, active: bool, actor: Actor) -> User:
    """Disable or re-enable an account (a disabled user cannot log in); audited."""
    if not active and actor.id == user_id:
        raise ValueError("you cannot disable your own account")
    user = _user(user_id)
    before = user.active
    user.active = active
    record(actor, "user.enabled" if active else "user.disabled", "user", user.id,
           before={"active": before}, after={"active": active})
    db.session.commit()
    return user


def reset_password(user_id: int, password: str, actor: Actor) -> User:
    """Set a new password (same length rule as creation); audited without the password."""
    if len(password) < 8:
        raise ValueError("password must be at least 8 characters")
    user = _user(user_id)
    user.password_hash = generate_password_hash(
        password, method=current_app.config["PASSWORD_HASH_METHOD"])
    record(actor, "user.password_reset", "user", user.id)
    db.session.commit()
    return user


def get_active_user(user_id: int) -> User | None:
    """The user with this id if the account is still active (a console session's check)."""
    user = db.session.get(User, user_id)
    return user if user is not None and user.active else None
