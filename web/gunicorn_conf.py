"""gunicorn settings the web app relies on: ``gunicorn -c python:web.gunicorn_conf …``.

``on_starting`` checks the configuration in the master, before any worker is forked: an error is
one line and exit status 4, instead of every worker failing at once (gunicorn's master dies with a
traceback when a second worker exits "app failed to load" while it is stopping; gunicorn #2186).
``pre_request`` lets the app have a connection closed, with ``Connection: close`` in the answer,
when it refused a request whose body it will not read (see web/bodies.py).
"""
import sys

from web.config import CONFIG_EXIT_STATUS, ConfigError, load_config
from web.bodies import gunicorn_pre_request as pre_request  # noqa: F401  (read by gunicorn)


def on_starting(server):
    """Refuse to start on a configuration error: one line on stderr, exit status 4."""
    try:
        load_config()
    except ConfigError as exc:
        print(exc.code, file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_EXIT_STATUS) from None
