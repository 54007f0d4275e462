"""Opaque keyset cursors for list endpoints (newest first)."""
from __future__ import annotations

import base64

from sqlalchemy import Select

from ..models.types import int_column_max


class BadCursor(ValueError):
    """The cursor was not produced by this API."""


def encode_cursor(last_id: int) -> str:
    """Turn the last id of a page into an opaque cursor."""
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Read a cursor back into the id to continue below."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = raw.partition(":")
        if prefix != "id":
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise BadCursor("cursor is not valid; use next_cursor from a previous page") from None


def page(session, stmt: Select, id_col, cursor: str | None, limit: int):
    """Run a keyset-paginated query; returns (rows, next_cursor)."""
    if cursor:
        last = decode_cursor(cursor)
        if abs(last) > int_column_max(id_col):  # never issued; the database cannot compare it
            raise BadCursor("cursor is not valid; use next_cursor from a previous page")
        stmt = stmt.where(id_col < last)
    rows = list(session.scalars(stmt.order_by(id_col.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
