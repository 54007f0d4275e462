"""Column types that behave the same on PostgreSQL and on the embedded SQLite."""
from datetime import datetime, timezone

from sqlalchemy import JSON, BigInteger, DateTime, Integer, SmallInteger, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids fall back to INTEGER there.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def int_column_max(column) -> int:
    """The largest value an integer column holds on PostgreSQL (the stricter of our databases)."""
    kind = column.type
    bits = 64 if isinstance(kind, BigInteger) else 16 if isinstance(kind, SmallInteger) else 32
    return 2 ** (bits - 1) - 1


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp; SQLite stores it naive, so we re-attach UTC on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given; use utcnow()")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)
