"""gunicorn settings the web app relies on: ``gunicorn -c python:web.gunicorn_conf …``.

``on_starting`` checks the configuration in the master, before any worker is forked: an error is
one line and exit status 4, instead of every worker failing at once (gunicorn's master dies with a
traceback when a second worker exits "app failed to load" while it is stopping; gunicorn #2186).
``pre_request`` lets the app have a connection closed, with ``Connection: close`` in the answer,
when it refused a request whose body it will not read (see web/bodies.py).
``post_worker_init`` freezes the loaded app's objects out of the garbage collector's sight.
Metrics (web/metrics): the master makes and empties the workers' PROMETHEUS_MULTIPROC_DIR (a
temporary one when unset) before any worker imports prometheus_client; ``child_exit`` tells it a
worker is gone.
"""
import gc
import sys

from web.config import CONFIG_EXIT_STATUS, ConfigError, load_config
from web.bodies import gunicorn_pre_request as pre_request  # noqa: F401  (read by gunicorn)
from web.logs import gunicorn_logger_class as logger_class  # noqa: F401  (JSON error/access lines)


def on_starting(server):
    """Refuse to start on a configuration error: one line on stderr, exit status 4."""
    try:
        cfg = load_config()
    except ConfigError as exc:
        print(exc.code, file=sys.stderr, flush=True)
        raise SystemExit(CONFIG_EXIT_STATUS) from None
    if cfg["METRICS_ENABLED"]:
        from web.metrics.core import ensure_multiproc_dir
        _made.append(ensure_multiproc_dir("web"))


_made: list = []  # the temporary metrics folder on_starting made, removed on_exit


def on_exit(server):
    """Remove the temporary metrics folder, if on_starting made one."""
    from web.metrics.core import remove_dir
    for path in _made:
        remove_dir(path)


def child_exit(server, worker):
    """A worker exited: its live gauges (database pool use) no longer count."""
    from web.metrics.core import mark_dead
    mark_dead(worker.pid)


def post_worker_init(worker):
    """Exclude the loaded app from garbage collection passes (``gc.freeze``).

    The app, SQLAlchemy and their imports are hundreds of thousands of objects that live as long
    as the worker; every full collection walked them all, a pause of tens of milliseconds in
    whichever request happened to allocate enough (a DHR of a big lot: 45 -> 80 ms).
    """
    gc.freeze()
    from web.metrics import start_process
    start_process("web")  # its metrics: build_info, the database pool gauge
    from web import sqlite
    sqlite.foreground()  # on the embedded SQLite, stations' requests go before the workers' writes
