"""The embedded default's server-less broker: kombu's SQLAlchemy transport on a SQLite file.

What changes over the stock transport, and why:
- It forwards every transport option to ``create_engine`` (so ``polling_interval`` crashes it),
  and opens SQLite without a busy timeout or WAL, so the web, relay, beat and worker processes
  would trip over each other's locks.
- It keeps every delivered message (``visible = 0``) forever, so the file grows with every task
  ever sent. Here a message is deleted as it is taken, in one statement, which is what marking
  it invisible meant: the stock transport never shows an invisible message again either, and
  unacknowledged messages go back through ``_put`` when a worker stops, as before.
- Each poll went through the ORM: the queue's row looked up again, an explicit ``BEGIN
  IMMEDIATE`` (the broker file's write lock) and a commit, even for an empty queue, about 20
  times a second per worker. Here queue ids are cached, a poll of an empty queue only reads,
  and a message is taken by one ``DELETE ... RETURNING``.
- ``synchronous=NORMAL``: the broker is not the record. Every task that matters is in the
  outbox until its effect commits, and the relay publishes it again if the broker lost it (a
  power cut may lose the last broker commits; the application database keeps full sync).
"""
from __future__ import annotations

import os
import weakref
from json import dumps, loads
from queue import Empty

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport.sqlalchemy import Channel as _Channel
from kombu.transport.sqlalchemy import Transport as _Transport
from kombu.utils.encoding import bytes_to_str
from sqlalchemy import create_engine, event

ALIAS = "nhsqla"
_NOT_ENGINE_OPTIONS = {"polling_interval", "visibility_timeout", "queue_tablename",
                       "message_tablename", "callback", "errback", "max_retries",
                       "interval_start", "interval_step", "interval_max", "retry_errors"}
_SQLITE_ENGINES: "weakref.WeakSet" = weakref.WeakSet()


def _dispose_after_fork() -> None:
    """A forked child (a prefork pool process publishing a label job) opens its own SQLite
    connections: one carried over from the parent must never be used by both."""
    for engine in list(_SQLITE_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_dispose_after_fork)


class Channel(_Channel):
    """SQLAlchemy channel that builds a SQLite engine fit for several processes."""

    def __init__(self, connection, **kwargs):
        self._queue_ids: dict[str, int] = {}
        self._auto = None
        super().__init__(connection, **kwargs)

    def _engine_from_config(self):
        conninfo = self.connection.client
        url = conninfo.hostname
        options = {k: v for k, v in conninfo.transport_options.items()
                   if k not in _NOT_ENGINE_OPTIONS}
        if not url.startswith("sqlite"):
            return create_engine(url, **options)
        options.setdefault("connect_args", {"timeout": 30})
        engine = create_engine(url, **options)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        _SQLITE_ENGINES.add(engine)
        return engine

    def _open(self):
        fresh = self.connection.client.hostname not in self._engines
        engine, session_cls = super()._open()
        if fresh and engine.dialect.name == "sqlite":
            table = self.message_tablename
            with engine.begin() as conn:
                conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS ix_{table}_queue_visible_id "
                                     f"ON {table} (queue_id, visible, id)")
                # Delivered messages the stock transport kept: never read again.
                conn.exec_driver_sql(f"DELETE FROM {table} WHERE visible = 0")
        return engine, session_cls

    # -- the fast paths (SQLite); anything else keeps kombu's own -------------------------
    def _sqlite(self):
        """The broker engine in autocommit (each statement its own transaction), or None when
        the broker is not SQLite."""
        if self._auto is None:
            engine = self._open()[0]
            if engine.dialect.name != "sqlite":
                return None
            self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._auto

    def _queue_id(self, queue: str) -> int:
        """The queue's row id (rows are never deleted, so it is looked up once)."""
        qid = self._queue_ids.get(queue)
        if qid is None:
            qid = self._get_or_create(queue).id
            self.session.commit()  # end the lookup's read transaction: it would pin the WAL
            self._queue_ids[queue] = qid
        return qid

    def _get(self, queue, timeout=None):
        auto = self._sqlite()
        if auto is None:
            return super()._get(queue)
        qid, table = self._queue_id(queue), self.message_tablename
        oldest = f"SELECT id FROM {table} WHERE queue_id = ? AND visible = 1 ORDER BY id LIMIT 1"
        with auto.connect() as conn:
            # The read takes no lock; only a queue with something in it costs a write.
            if conn.exec_driver_sql(oldest, (qid,)).first() is None:
                raise Empty()
            payload = conn.exec_driver_sql(
                f"DELETE FROM {table} WHERE id = ({oldest}) RETURNING payload", (qid,)).scalar()
        if payload is None:  # another consumer took it between the two statements
            raise Empty()
        return loads(bytes_to_str(payload))

    def _put(self, queue, payload, **kwargs):
        auto = self._sqlite()
        if auto is None:
            return super()._put(queue, payload, **kwargs)
        qid = self._queue_id(queue)
        with auto.connect() as conn:
            conn.exec_driver_sql(
                f"INSERT INTO {self.message_tablename} (queue_id, visible, payload, version) "
                "VALUES (?, 1, ?, 1)", (qid, dumps(payload)))

    def _size(self, queue):
        auto = self._sqlite()
        if auto is None:
            return super()._size(queue)
        with auto.connect() as conn:
            return conn.exec_driver_sql(
                f"SELECT count(*) FROM {self.message_tablename} "
                "WHERE queue_id = ? AND visible = 1", (self._queue_id(queue),)).scalar()

    def _purge(self, queue):
        auto = self._sqlite()
        if auto is None:
            return super()._purge(queue)
        with auto.connect() as conn:
            return conn.exec_driver_sql(f"DELETE FROM {self.message_tablename} WHERE queue_id = ?",
                                        (self._queue_id(queue),)).rowcount


class Transport(_Transport):
    """Registered as ``nhsqla+sqlite:///path`` broker URLs."""

    Channel = Channel


def register() -> None:
    """Make ``nhsqla+...`` URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES[ALIAS] = f"{__name__}:Transport"
