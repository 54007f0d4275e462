"""Logging for every process: one JSON line per record (readable text on a terminal), each
stamped with the process's role and the id of the request that caused it.

Fields of a JSON line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``role`` (web, worker,
worker-io, beat, relay, cli), ``request_id`` (null outside a request's work), ``message``, and
``exc_info`` when an exception is logged; anything passed as ``extra`` comes along.

The request id is the station's X-Request-ID (when it is safe to store and log) or a new one. It
lives in a context variable: the web binds it per request (``web._install_hooks``), the outbox
stores it on each message's row, the Celery message carries it in its headers and the worker
binds it per task (``workers.request_ids``), so one grep follows a completion from its POST to
its printed label. ``ContextFilter`` stamps it on every record our handlers emit.

``create_app`` configures this for the web's gunicorn workers, the Celery processes (whose own
logging setup is switched off by ``workers.request_ids``) and the ``neurohub`` command; gunicorn's
error and access logs go through ``gunicorn_logger_class`` (web/gunicorn_conf.py).
"""
from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from queues import worker_role

FORMATS = ("json", "text", "auto")
REQUEST_ID_MAX = 64  # the audit table's request_id column, and the outbox's
# Letters, digits and . _ : - only: an id is written into log lines, headers and rows, where
# spaces, quotes or control characters from a client could forge or break them.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,%d}" % REQUEST_ID_MAX)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(role)s %(name)s: %(message)s"

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def new_request_id() -> str:
    """A fresh request id (uuid4 hex)."""
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> str:
    """``value`` when it is a safe id (bounded, letters, digits and ``._:-``), else a new one."""
    if value and _SAFE_ID.fullmatch(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """The request id of the work this thread (or task) is doing now, if any."""
    return _request_id.get()


def bind_request_id(value: str | None):
    """Make ``value`` the current request id; returns the token ``reset_request_id`` takes."""
    return _request_id.set(value)


def reset_request_id(token) -> None:
    """Restore the request id that was current before ``bind_request_id`` returned ``token``."""
    _request_id.reset(token)


@contextmanager
def request_id_bound(value: str | None):
    """``value`` is the current request id inside this block, the previous one after it."""
    token = _request_id.set(value)
    try:
        yield value
    finally:
        _request_id.reset(token)


def _queues(args: list[str]) -> set[str]:
    """The queues of a ``celery worker`` command line (-Q a,b / -Qa,b / --queues=a,b)."""
    for i, arg in enumerate(args):
        if arg in ("-Q", "--queues") and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith("--queues="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-Q") and len(arg) > 2:
            value = arg[2:]
        else:
            continue
        return {q.strip() for q in value.split(",") if q.strip()}
    return set()


def guess_role(argv: list[str]) -> str:
    """This process's role from its command line: gunicorn, celery worker|beat, neurohub relay."""
    prog, args = (argv[0] if argv else ""), argv[1:]
    if "gunicorn" in prog:
        return "web"
    if "celery" in prog:
        if "beat" in args:
            return "beat"
        if "flower" in args:
            return "flower"
        if "worker" in args:
            return worker_role(_queues(args))
        return "cli"
    return "relay" if "relay" in args else "cli"


_role = guess_role(sys.argv)


def role() -> str:
    """This process's role, as its log lines name it."""
    return _role


def set_role(name: str) -> None:
    """Name this process's role (when its command line does not tell)."""
    global _role
    _role = name


class ContextFilter(logging.Filter):
    """Stamps ``role`` and ``request_id`` on every record; an explicit ``extra={"request_id":
    ...}`` (the relay publishing a row's message) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.role = _role
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


def iso_utc(created: float) -> str:
    """A record's time as ISO 8601 in UTC with milliseconds (2026-12-06T09:00:00.123Z)."""
    return datetime.fromtimestamp(created, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with our field names, ``time`` first."""

    def __init__(self):
        # UTF-8, not \u escapes: lot numbers, product names and printers' reasons are often
        # Korean, and a grep for them must find the line.
        super().__init__("%(levelname)s %(name)s %(role)s %(request_id)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"},
                         json_ensure_ascii=False)

    def add_fields(self, log_data, record, message_dict):
        """``time`` first (a reader scans by it), then the library's fields."""
        log_data["time"] = iso_utc(record.created)
        super().add_fields(log_data, record, message_dict)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: the request id at the end, when there is one."""

    def __init__(self):
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line, with `` [request <id>]`` when the record carries one."""
        line = super().formatMessage(record)
        rid = getattr(record, "request_id", None)
        return f"{line} [request {rid}]" if rid else line


def choose_format(setting: str | None, stream=None) -> str:
    """``json`` or ``text``: LOG_FORMAT's choice; ``auto`` (or unset) is text on a terminal.

    An interactive ``neurohub up`` keeps readable lines (its children share its terminal), while
    systemd, containers and tests, whose stderr is a pipe or a file, get JSON.
    """
    choice = (setting or "auto").strip().lower()
    if choice in ("json", "text"):
        return choice
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):  # no stream, or a closed one
        return "json"


_format = "text"  # until configure() chooses


def current_format() -> str:
    """``json`` or ``text``: what ``configure`` chose for this process."""
    return _format


def formatter(kind: str) -> logging.Formatter:
    """The formatter for ``json`` or ``text``."""
    return JsonFormatter() if kind == "json" else TextFormatter()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record, as logging's last
    resort does: one replaced after set-up (pytest's capture, a daemon's redirect) still works."""

    def __init__(self, level=logging.NOTSET):
        logging.Handler.__init__(self, level)

    @property
    def stream(self):
        """``sys.stderr`` now."""
        return sys.stderr


def configure(level: str | int = "INFO", log_format: str | None = "auto",
              role_name: str | None = None) -> logging.Handler:
    """Send this process's records to stderr as JSON or text, stamped with role and request id.

    Idempotent: the handler a previous call installed is replaced, not doubled (tests create
    many apps in one process).
    """
    if role_name:
        set_role(role_name)
    global _format
    _format = choose_format(log_format)
    handler = _StderrHandler()
    handler.setFormatter(formatter(_format))
    handler.addFilter(ContextFilter())
    handler._neurohub = True  # marks ours, for the next configure() to replace
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_neurohub", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # plugin chatter on every start
    logging.captureWarnings(True)  # Python's warnings as lines of the same kind, not raw text
    return handler


def _header(headers, name: str) -> str | None:
    """A header's value from gunicorn's list of (name, value) pairs."""
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def gunicorn_logger_class():
    """gunicorn's Logger with our formatter and filter on its error and access logs.

    Access lines carry the request id the app answered with, and the time the request arrived
    (as Apache's access log does) rather than the time it ended: a trace sorted by time then
    starts with the request, before the relay publishes what the request stored.
    """
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):
        """JSON (or text) lines from gunicorn's master and workers."""

        def _set_handler(self, log, output, fmt, stream=None):
            kind = choose_format(os.environ.get("LOG_FORMAT"))
            super()._set_handler(log, output, formatter(kind) if kind == "json" else fmt,
                                 stream)
            handler = self._get_gunicorn_handler(log)
            if handler is not None:
                handler.addFilter(ContextFilter())

        def access(self, resp, req, environ, request_time):
            """One line per request, with its request id and arrival time."""
            if not self.access_log_enabled:
                return
            atoms = self.atoms_wrapper_class(self.atoms(resp, req, environ, request_time))
            record = self.access_log.makeRecord(
                self.access_log.name, logging.INFO, __file__, 0, self.cfg.access_log_format,
                (atoms,), None, extra={"request_id": _header(resp.headers, "X-Request-ID")})
            record.created = time.time() - request_time.total_seconds()
            record.msecs = (record.created - int(record.created)) * 1000
            self.access_log.handle(record)

    return GunicornLogger
