"""Send the queue to the server in order, follow each completion to its decision, heartbeat.

``Syncer`` is plain Python (tested without Qt); ``SyncWorker`` runs it on its own QThread and
reports through signals. Order is kept by sending strictly oldest-first and stopping at the first
entry that cannot be sent; the server numbers completions in arrival order.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .api_client import ApiClient, ApiError, AuthError, NotLoggedIn, Offline
from .queue import CompletionQueue
from .qt import Signal
from .threads import LoopWorker

log = logging.getLogger(__name__)
APP_VERSION = "0.1.0"


@dataclass
class SyncState:
    """What the status bar shows."""

    online: bool | None = None  # None: not known yet (no answer or failure so far)
    pending: int = 0
    waiting_for: str | None = None  # operator whose queued work needs their login
    error: str | None = None


class Syncer:
    """One ``tick()`` = drain what can be sent, poll undecided completions, heartbeat if due."""

    def __init__(self, api: ApiClient, queue: CompletionQueue, heartbeat_s: float = 30.0,
                 clock=time.monotonic, printer_status=lambda: None, max_per_tick: int = 100,
                 probe_s: float | None = None):
        self.api, self.queue, self.heartbeat_s, self.clock = api, queue, heartbeat_s, clock
        # Without a probe an idle station only learns the server is gone at its next heartbeat.
        self.probe_s = probe_s
        self._next_probe = 0.0
        self._offline_seen = 0
        self.printer_status = printer_status
        self.max_per_tick = max_per_tick
        self.state = SyncState()
        self.on_decided = lambda entry: None
        self.on_state = lambda state: None
        self.on_auth_problem = lambda message: None
        self._next_hb = 0.0
        self._next_poll: dict[int, float] = {}
        self._since: dict[int, float] = {}
        self.heartbeats = 0

    def tick(self) -> bool:
        """Do one round; returns True while there is outstanding work (tick again soon)."""
        before = (self.state.online, self.state.pending, self.state.waiting_for)
        try:
            self._probe()
            self._drain()
            self._poll()
            self._heartbeat()
        except Offline as exc:
            if self.state.online is not False:
                log.warning("server unreachable: %s", exc.detail)
            self.state.online, self.state.error = False, exc.detail
        except NotLoggedIn:
            pass  # nothing can be sent until someone logs in; the queue keeps everything
        except AuthError as exc:  # the password stopped working (changed, user disabled)
            self.api.logout("auth")
            self.on_auth_problem(exc.detail)
        self.state.pending = self.queue.pending_count()
        if (self.state.online, self.state.pending, self.state.waiting_for) != before:
            self.on_state(self.state)
        return bool(self.state.pending or self._next_poll)

    def _ok(self) -> None:
        if self.state.online is not True:
            log.info("server reachable")
        self.state.online, self.state.error = True, None

    def _probe(self) -> None:
        """Ask the server's liveness endpoint every ``probe_s``, and at once after any request
        (a lookup on another thread, say) found it unreachable."""
        if self.probe_s is None:
            return
        now = self.clock()
        failures = getattr(self.api, "offline_events", 0)
        if failures == self._offline_seen and now < self._next_probe:
            return
        self._next_probe = now + self.probe_s
        try:
            self.api.ping()
        finally:  # the probe's own failure must not trigger the next probe
            self._offline_seen = getattr(self.api, "offline_events", 0)
        self._ok()

    def _drain(self) -> None:
        self.state.waiting_for = None
        for _ in range(self.max_per_tick):
            entry = self.queue.head()
            if entry is None:
                return
            if entry.operator != self.api.username:
                # The server records the operator from the token: only they may send it.
                self.state.waiting_for = entry.operator
                return
            try:
                receipt = self.api.post_completion(entry.body, entry.key)
            except (Offline, NotLoggedIn, AuthError):
                self.queue.note_error(entry.seq, "not sent: server unreachable or not logged in")
                raise
            except ApiError as exc:
                if exc.permanent:  # 400/404/422: the same bytes will always be refused
                    log.warning("completion #%d refused by the server: %s", entry.seq, exc)
                    self.queue.mark_invalid(entry.seq, exc.detail)
                    self._ok()
                    self.on_decided(self.queue.get(entry.seq))
                    continue
                log.info("completion #%d not taken yet, will retry: %s", entry.seq, exc)
                self.queue.note_error(entry.seq, str(exc))  # 409 in flight, 5xx: retry later
                return
            self._ok()
            self.queue.mark_sent(entry.seq, int(receipt["id"]))
            log.info("completion #%d sent: server id %s, request %s", entry.seq, receipt["id"],
                     self.api.request_id(entry.key))
            self._next_poll[entry.seq] = self.clock() + 0.03

    def _poll(self) -> None:
        now = self.clock()
        for entry in self.queue.undecided(limit=self.max_per_tick):
            due = self._next_poll.setdefault(entry.seq, now)
            if due > now:
                continue
            body = self.api.get_completion(entry.server_id)
            self._ok()
            if body["status"] in ("accepted", "rejected", "failed"):
                self.queue.mark_decided(entry.seq, body["status"], body.get("reasons"),
                                        body.get("error"))
                log.info("completion #%d %s: lot %s step %s%s", entry.seq, body["status"],
                         entry.body.get("lot_no"), entry.body.get("step"),
                         "".join(f"; {r.get('code')}: {r.get('detail')}"
                                 for r in body.get("reasons") or []))
                self._next_poll.pop(entry.seq, None)
                self._since.pop(entry.seq, None)
                self.on_decided(self.queue.get(entry.seq))
            else:
                # Fast at first (the pipeline usually decides in well under a second), then
                # back off so a stalled worker costs the server little.
                age = now - self._since.setdefault(entry.seq, now)
                self._next_poll[entry.seq] = now + (0.04 if age < 3 else 0.5 if age < 30 else 5)

    def _heartbeat(self) -> None:
        now = self.clock()
        if now < self._next_hb:
            return
        self._next_hb = now + self.heartbeat_s
        try:
            self.api.heartbeat(app_version=APP_VERSION,
                               offline_queue=self.queue.pending_count(),
                               printer_status=self.printer_status())
        except NotLoggedIn:
            self._next_hb = now  # beat as soon as an operator logs in
            raise
        except ApiError as exc:
            if isinstance(exc, (Offline, AuthError)):
                self._next_hb = now + min(self.heartbeat_s, 2.0)  # retry soon once back
                raise
            log.warning("heartbeat refused: %s", exc)
            return
        self.heartbeats += 1
        self._ok()


class SyncWorker(LoopWorker):
    """Runs a Syncer on its own thread; fast ticks while work is outstanding."""

    state_changed = Signal(object)
    decided = Signal(object)
    auth_problem = Signal(str)

    def __init__(self, syncer: Syncer):
        super().__init__(interval_ms=500, name="sync")
        self.syncer = syncer
        syncer.on_state = self.state_changed.emit
        syncer.on_decided = self.decided.emit
        syncer.on_auth_problem = self.auth_problem.emit

    def tick(self) -> None:
        """Drain, poll, heartbeat; tick every 40 ms while completions are in flight."""
        busy = self.syncer.tick()
        online = self.syncer.state.online
        self.set_interval(40 if busy and online else 1000 if busy else 500)
