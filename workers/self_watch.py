"""A worker watches itself: alive but taking nothing from its queues, it exits so that its
supervisor starts it again.

Under compose (and ECS, Railway) nothing else would: the healthcheck ``neurohub worker-check``
marks such a container unhealthy, and Docker and podman restart a container that exits, never one
that is unhealthy. A worker whose consumer lost Redis and never came back (issue #15) sat there
for good while completions waited. The watch is the canary of ``neurohub up`` (web/watchdog.py)
run from inside: a ``workers.canary`` through each of its queues every few seconds; when one has
been on its way longer than WORKER_SELF_WATCH_SECONDS while this worker runs no task (so it is
not a backlog or a long backup ahead of it), the worker stops with exit code 70, through Celery's
own shutdown flag, and if its loop does not see that flag either, by ``os._exit`` after a dump of
every thread's stack. ``neurohub up`` watches its workers itself and turns this off for them.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time

from celery.worker import state

log = logging.getLogger(__name__)
EXIT_CODE = 70  # EX_SOFTWARE: a failure, so systemd's Restart=on-failure restarts it too
STOP_GRACE = 20.0  # seconds for the warm shutdown before the hard exit
IDLE_CHECKS = 5  # consecutive one-second checks that find it stale and idle


def _exit(reason: str) -> None:
    """Celery's shutdown flag first (a warm shutdown); a hard exit if the loop never sees it."""
    log.critical("%s: stopping this worker (exit %d) for its supervisor to restart it",
                 reason, EXIT_CODE)
    state.should_stop = EXIT_CODE
    time.sleep(STOP_GRACE)
    log.critical("the worker did not stop in %.0fs: every thread's stack follows; exiting",
                 STOP_GRACE)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(EXIT_CODE)  # the pool's children die with it (Celery sets their PDEATHSIG)


def _watch(watch) -> None:
    """The loop of the verdict thread: stale and idle for IDLE_CHECKS seconds running: exit."""
    idle = 0
    while True:
        time.sleep(1.0)
        stale = watch.stale()
        idle = idle + 1 if stale and not state.active_requests else 0
        if idle >= IDLE_CHECKS:
            _exit(f"no canary came through {', '.join(sorted(stale))} in {watch.timeout:.0f}s "
                  f"and no task is running")


def start(app, queues: list[str]) -> bool:
    """Start the canaries and the verdict thread for a worker consuming ``queues``."""
    timeout = float(app.config.get("WORKER_SELF_WATCH_SECONDS") or 0)
    if timeout <= 0 or not queues:
        return False
    from web.watchdog import CanaryWatch
    watch = CanaryWatch(app.extensions["celery"], {q: q for q in queues}, timeout)
    for queue in queues:
        watch.started(queue)
    watch.start(app)
    threading.Thread(target=_watch, args=(watch,), name="self-watch", daemon=True).start()
    log.info("self-watch: a canary through %s every %.0fs; stale after %.0fs",
             ", ".join(queues), watch.interval, timeout)
    return True

