"""Request bodies: each endpoint's size limit, chunked bodies, and what a refused request left
unread on a kept-alive connection.

* A body over its endpoint's limit is refused with 413 before the view runs, whether it announces
  its length or arrives chunked. (Werkzeug's own limit stops reading a chunked body at the limit
  and hands the first part on as if it were the whole body.) A chunked body is read into memory,
  up to the limit, so that everything after this sees an ordinary body with a Content-Length;
  views marked ``streamed`` (the firmware upload) read and bound theirs themselves.
* A body the app left unread (a request refused with 401, 403, 404 or 413 before its body was
  read) is drained before the response when it is within the limit, so the client's next request
  on the same connection is read from the right place. A larger one is not read: the server is
  told to close the connection and to answer ``Connection: close``, which gunicorn does when it
  runs with ``-c python:web.gunicorn_conf`` (else it drains 64 KiB itself, then closes anyway).
"""
from __future__ import annotations

import io
import json
import threading
import time
from typing import Callable

from flask import Flask, current_app, request

from .errors import ContentTooLarge

LIMIT_KEY = "neurohub.body_limit"
DRAIN_BLOCK = 64 * 1024
DRAIN_SECONDS = 5.0  # a client that sends its (bounded) rest slower than this is cut off
_server = threading.local()  # the gunicorn request this thread serves (see gunicorn_pre_request)


def body_limit(config_key: str, slack: int = 0, *, streamed: bool = False) -> Callable:
    """Decorator: this view takes bodies up to ``config[config_key] + slack`` bytes.

    ``streamed``: the view reads the input itself, bounded, and refuses more (no buffering).
    """
    def deco(view):
        view.body_limit = (config_key, slack, streamed)
        return view
    return deco


def _limit_of(app: Flask, endpoint: str | None) -> tuple[int, str, bool]:
    view = app.view_functions.get(endpoint) if endpoint else None
    key, slack, streamed = getattr(view, "body_limit", ("MAX_CONTENT_LENGTH", 0, False))
    return int(app.config[key]) + slack, key, streamed


def _chunked(environ) -> bool:
    return "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()


def _too_large(limit: int, key: str) -> ContentTooLarge:
    return ContentTooLarge(f"the body may be at most {limit} bytes on this endpoint ({key})",
                           errors=[{"field": "body", "message": f"larger than {limit} bytes"}])


def _check_body() -> None:
    """Before every view: refuse a body over the endpoint's limit; buffer a chunked one."""
    env = request.environ
    limit, key, streamed = _limit_of(current_app, request.endpoint)
    env[LIMIT_KEY] = limit
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit, key)
    if length is not None or streamed or not _chunked(env) \
            or not env.get("wsgi.input_terminated"):
        return  # no body, a known length within the limit, or the view bounds it itself
    data, read = bytearray(), env["wsgi.input"].read
    while len(data) <= limit and (block := read(min(DRAIN_BLOCK, limit + 1 - len(data)))):
        data += block
    if len(data) > limit:
        raise _too_large(limit, key)
    env["wsgi.input"] = io.BytesIO(bytes(data))
    env["CONTENT_LENGTH"] = str(len(data))
    del env["HTTP_TRANSFER_ENCODING"]
    request.__dict__.pop("content_length", None)  # cached from the headers above


def json_with_long_numbers(raw: bytes):
    """Parse JSON whose number literals are too long for pydantic's parser (thousands of digits).

    They are valid JSON; each becomes ±infinity, which every numeric field refuses under its own
    name (422), instead of the whole body being called malformed. Raises ValueError if the
    body is not JSON.
    """
    def integer(text: str):
        if len(text) <= 1000:
            return int(text)
        return float("-inf") if text.startswith("-") else float("inf")
    return json.loads(raw, parse_int=integer)


class _CountedInput:
    """The server's input stream, counting what the app read and noting its end."""

    def __init__(self, stream):
        self.stream, self.read_bytes, self.ended = stream, 0, False

    def _count(self, data: bytes, size) -> bytes:
        self.read_bytes += len(data)
        if not data and size != 0:
            self.ended = True
        return data

    def read(self, size=-1) -> bytes:
        """Read like the server's stream, counting."""
        return self._count(self.stream.read(size), size)

    def readline(self, size=-1) -> bytes:
        """Read a line like the server's stream, counting."""
        return self._count(self.stream.readline(size), size)

    def __iter__(self):
        while line := self.readline():
            yield line


class BodyGuard:
    """WSGI middleware: before the response starts, drain what the app left of a body within
    its limit; for anything else, have the server close the connection (and say so)."""

    def __init__(self, app: Flask):
        self.app, self.wsgi_app = app, app.wsgi_app

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH", "")
        length = int(length) if length.isdigit() else None
        if _chunked(environ):
            length = None
        elif not length:
            return self.wsgi_app(environ, start_response)  # no body: nothing to guard
        counted = _CountedInput(environ["wsgi.input"])
        environ["wsgi.input"] = counted

        def start(status, headers, exc_info=None):
            if not self._finish(environ, counted, length):
                _close_connection(counted.stream)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, start)

    def _finish(self, environ, counted: _CountedInput, length: int | None) -> bool:
        """Drain the rest of a body within the limit; False if the connection cannot be kept."""
        if counted.ended or (length is not None and counted.read_bytes >= length):
            return True
        limit = environ.get(LIMIT_KEY) or int(self.app.config["MAX_CONTENT_LENGTH"])
        end = length if length is not None else limit + 1  # chunked: more than this is too much
        if end > limit and length is not None:
            return False
        deadline = time.monotonic() + DRAIN_SECONDS
        # A client that stalls must not hold this thread: bound each read by the time left.
        sock = environ.get("gunicorn.socket")
        prior = sock.gettimeout() if sock is not None else None
        try:
            while counted.read_bytes < end and (left := deadline - time.monotonic()) > 0:
                if sock is not None:
                    sock.settimeout(left)
                if not counted.read(min(DRAIN_BLOCK, end - counted.read_bytes)):
                    return True
        except Exception:  # timed out, or the client went away mid-body: nothing to keep
            return False
        finally:
            if sock is not None:
                sock.settimeout(prior)
        return length is not None and counted.read_bytes >= length


def gunicorn_pre_request(worker, req) -> None:
    """gunicorn hook: remember the request this thread serves, so the app can close it."""
    _server.request = req


def _close_connection(server_input) -> None:
    """Have gunicorn answer ``Connection: close`` and close (if its hook is installed)."""
    req = getattr(_server, "request", None)
    if req is not None and getattr(req, "body", None) is server_input:
        req.force_close()


def guard_bodies(app: Flask) -> None:
    """Install the body limit check (before every view) and the drain-or-close middleware."""
    app.before_request(_check_body)
    app.wsgi_app = BodyGuard(app)
