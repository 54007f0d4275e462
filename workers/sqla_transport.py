"""The embedded default's server-less broker: kombu's SQLAlchemy transport on a SQLite file.

Two fixes over the stock transport: it forwards every transport option to ``create_engine``
(so ``polling_interval`` and ``visibility_timeout`` crash it), and it opens SQLite without a busy
timeout or WAL, so the web, relay, beat and worker processes would trip over each other's locks.
"""
from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as _Channel
from kombu.transport.sqlalchemy import Transport as _Transport
from sqlalchemy import create_engine, event

ALIAS = "nhsqla"
_NOT_ENGINE_OPTIONS = {"polling_interval", "visibility_timeout", "queue_tablename",
                       "message_tablename", "callback", "errback", "max_retries",
                       "interval_start", "interval_step", "interval_max", "retry_errors"}


class Channel(_Channel):
    """SQLAlchemy channel that builds a SQLite engine fit for several processes."""

    def _engine_from_config(self):
        conninfo = self.connection.client
        url = conninfo.hostname
        options = {k: v for k, v in conninfo.transport_options.items()
                   if k not in _NOT_ENGINE_OPTIONS}
        if url.startswith("sqlite"):
            options.setdefault("connect_args", {"timeout": 30})
            engine = create_engine(url, **options)

            @event.listens_for(engine, "connect")
            def _wal(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
            return engine
        return create_engine(url, **options)


class Transport(_Transport):
    """Registered as ``nhsqla+sqlite:///path`` broker URLs."""

    Channel = Channel


def register() -> None:
    """Make ``nhsqla+...`` URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
