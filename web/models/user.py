"""Users and their roles."""
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .types import UtcDateTime, utcnow

ROLES = ("operator", "supervisor", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}


class User(db.Model):
    """A person who logs in; the role decides what they may change."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[object] = mapped_column(UtcDateTime, default=utcnow)
