"""The outbox relay: publishes committed outbox messages to the broker, once, with backoff.

A pass reads due rows without locks, asks the queue depths, claims what it publishes in one short
transaction and publishes after its commit; a message still in the table after its redispatch
delay (broker flushed, worker killed with the message reserved) is published again, up to a
bound after which it is dead-lettered. ``Relay`` runs passes: as the relay process's loop, or as
the beat sweep's drain. What a pass does with one task's messages beyond that is the task's
``outbox.Policy``.
"""
from __future__ import annotations

import functools
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from sqlalchemy import and_, bindparam, delete, false, not_, or_, select, update
from sqlalchemy.orm import aliased

from ...extensions import db
from ...models import OutboxMessage, utcnow
from . import grouped_tasks, policy_for

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 600.0
HOLD_SECONDS = 0.25  # how long a message held back by a full queue steps aside
RELAY_BATCH = 500  # outbox rows per relay pass

# publish(task, args, queue, task_id, request_id): the request id goes in the message's headers.
Publish = Callable[[str, list, str, str, "str | None"], None]
QueueDepth = Callable[[str], "int | None"]


@dataclass
class RelayStats:
    """What one relay pass did."""

    fetched: int = 0  # due rows read (== batch: there is more waiting)
    published: int = 0
    republished: int = 0
    deferred: int = 0
    held: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)


def _dead_letter(msg, now, reason: str) -> bool:
    """A message that never got processed: drop it and let its task's policy record why.

    Only while the row is as this pass read it (another relay may have claimed it since).
    """
    gone = db.session.execute(delete(OutboxMessage).where(
        OutboxMessage.id.in_(_still_due([msg.id], now))).returning(OutboxMessage.id)).first()
    if gone is None:
        return False
    log.error("outbox message %s (%s %s) dead-lettered: %s", msg.id, msg.task, msg.args, reason)
    on_dead = policy_for(msg.task).on_dead
    if on_dead is not None:
        on_dead(list(msg.args), reason)
    return True


def _group_id(msg):
    """The id a message is serial on under its task's policy, or None."""
    arg = policy_for(msg.task).group_arg
    return msg.args[arg] if arg is not None and len(msg.args) > arg else None


def _coalesce(due: list) -> list[list]:
    """Group due messages so one publish covers each group; groups in id order.

    A task with a ``group_arg`` handles every pending item of the id it is given, in order (the
    completion worker decides every pending completion of the lot), so one message for the
    newest covers the older ones: under load that is one task per lot per pass instead of one
    per completion. The covered messages stay in the outbox until the worker commits their
    effect, so a lost message is still republished.
    """
    groups: dict[tuple, list] = {}
    for msg in due:
        gid = _group_id(msg)
        key = (msg.task, gid) if gid is not None else ("msg", msg.id)
        groups.setdefault(key, []).append(msg)
    return sorted((sorted(g, key=lambda r: r.id) for g in groups.values()),
                  key=lambda g: g[-1].id)


def _waits_in_line(now, task: str, arg: int):
    """A new message of ``task`` whose id (args[arg]) has one published and not yet processed.

    The worker deletes a message's rows when it commits, so a dispatched row that is not due
    again means its task is still queued or running.
    """
    m, busy = OutboxMessage, aliased(OutboxMessage)
    key, busy_key = m.args[arg].as_integer(), busy.args[arg].as_integer()
    in_flight = select(busy_key).where(
        busy.task == task, busy.dispatched_at.is_not(None), busy.available_at > now,
        busy_key.is_not(None))  # no NULL in the list: IN would then never be plainly false
    return and_(m.task == task, m.dispatched_at.is_(None), key.is_not(None), key.in_(in_flight))


@functools.cache
def _due_statement(grouped: tuple[tuple[str, int], ...]):
    """The relay's read for these serial tasks, built once: the relay runs it ten times a
    second, and building it (aliased subqueries) cost more CPU than running it on an empty
    outbox."""
    m = OutboxMessage
    now = bindparam("now", type_=m.available_at.type)
    waiting = or_(false(), *(_waits_in_line(now, task, arg) for task, arg in grouped))
    return (select(m.id, m.task, m.args, m.queue, m.dedup_key, m.attempts, m.dispatched_at,
                   m.request_id)
            .where(m.available_at <= now, not_(waiting))
            .order_by(m.available_at, m.id).limit(bindparam("batch")))


def _read_due(now, batch: int) -> list:
    """Due rows, read outside any transaction: no row or write lock is taken."""
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(_due_statement(grouped_tasks()), {"now": now, "batch": batch}).all()


def _still_due(ids: list[int], now):
    """Those of ``ids`` that are still due (nobody claimed them since our read), row-locked.

    SKIP LOCKED: a row another relay is claiming right now is left to it, so two relays never
    wait for each other (nor deadlock on rows locked in different orders).
    """
    m = OutboxMessage
    return (select(m.id).where(m.id.in_(ids), m.available_at <= now)
            .with_for_update(skip_locked=True))


def _postpone(ids: list[int], now, until) -> None:
    """Make rows that are still due (nobody claimed them meanwhile) due again at ``until``."""
    if ids:
        m = OutboxMessage
        db.session.execute(update(m).where(m.id.in_(_still_due(ids, now))).values(
            available_at=until), execution_options={"synchronize_session": False})


def _claim(groups: list[list], now, redispatch_after: float) -> list[list]:
    """Mark the groups' rows dispatched in the current transaction; returns what this pass got.

    A row another relay claimed after our read (no longer due) is left out, so no row is
    published by two relays. Rows are claimed before they are published, so a relay killed in
    between loses nothing: the claimed rows are due again after the redispatch delay.
    """
    m = OutboxMessage
    by_attempts: dict[int, list[int]] = defaultdict(list)
    for members in groups:
        for msg in members:
            by_attempts[msg.attempts].append(msg.id)
    got: set[int] = set()
    for attempts, ids in by_attempts.items():
        delay = min(redispatch_after * 2 ** attempts, MAX_BACKOFF_SECONDS)
        got.update(db.session.scalars(update(m).where(m.id.in_(_still_due(ids, now)))
                                      .values(attempts=attempts + 1, dispatched_at=now,
                                              available_at=now + timedelta(seconds=delay))
                                      .returning(m.id),
                                      execution_options={"synchronize_session": False}))
    claimed = [[msg for msg in members if msg.id in got] for members in groups]
    return [members for members in claimed if members]


def _unclaim(groups: list[list], now, error: str) -> None:
    """Give back claimed rows whose publish did not happen: due again now, attempts as before."""
    m = OutboxMessage
    by_state: dict[tuple, list[int]] = defaultdict(list)
    for members in groups:
        for msg in members:
            by_state[(msg.attempts, msg.dispatched_at)].append(msg.id)
    for (attempts, dispatched_at), ids in by_state.items():
        db.session.execute(update(m).where(m.id.in_(ids), m.dispatched_at == now).values(
            attempts=attempts, dispatched_at=dispatched_at, available_at=now),
            execution_options={"synchronize_session": False})
    head = groups[0][-1]
    db.session.execute(update(m).where(m.id == head.id).values(last_error=error[:500]))


def relay_batch(publish: Publish, queue_depth: QueueDepth, *, batch: int = RELAY_BATCH,
                redispatch_after: float = 30.0, max_attempts: int = 10,
                window: int | None = None) -> RelayStats:
    """Publish due outbox messages once; safe to run in several processes at the same time.

    ``window`` bounds how many messages may wait in a queue: beyond it new messages stay in the
    outbox (durable) instead of piling up in the broker, where they coalesce (``Policy.group_arg``)
    so one task decides many completions in one transaction when the workers are behind.

    A serial id's new messages (a lot's completions) also wait while its previous one is in
    flight (queued or running): published once that task has committed, they go as one message
    covering all that arrived meanwhile. At light load a task ends within a pass and nothing waits; when workers
    fall behind, each task decides more completions, so the per-task cost stops growing the
    backlog. A lost in-flight message becomes due after ``redispatch_after`` and then goes out
    together with the waiting ones.

    No database transaction is open while the broker is asked anything: the due rows are read
    without locks, queue depths asked, the rows to publish claimed in one short transaction,
    and published after its commit. On the embedded SQLite a transaction holds the database's
    write lock, so a broker that is slow to answer never stalls the web or the workers.
    """
    stats = RelayStats()
    now = utcnow()
    rows = _read_due(now, batch)
    stats.fetched = len(rows)
    if not rows:
        return stats
    depth = _DepthCache(queue_depth)
    dead, deferred, due = _triage(rows, now, depth, max_attempts, redispatch_after)
    groups, held = _admit(_coalesce(due), depth, window)
    for msg in dead:
        stats.dead += _dead_letter(msg, now, f"not processed after {msg.attempts} dispatches")
    _postpone(held, now, now + timedelta(seconds=HOLD_SECONDS))
    _postpone(deferred, now, now + timedelta(seconds=redispatch_after))
    stats.held, stats.deferred = len(held), len(deferred)
    groups = _claim(groups, now, redispatch_after)
    db.session.commit()
    _publish(groups, publish, now, stats)
    return stats


class _DepthCache:
    """Queue depths asked once per pass, counting what this pass adds to them."""

    def __init__(self, ask: QueueDepth):
        self.ask, self.known = ask, {}

    def __call__(self, queue: str) -> int | None:
        if queue not in self.known:
            self.known[queue] = self.ask(queue)
        return self.known[queue]

    def add(self, queue: str) -> None:
        self.known[queue] = (self(queue) or 0) + 1


def _triage(rows, now, depth: _DepthCache, max_attempts: int, redispatch_after: float):
    """Split due rows into (dead, deferred ids, to publish)."""
    dead, deferred, due = [], [], []
    for msg in rows:
        if msg.dispatched_at is not None:
            if msg.attempts >= max_attempts:
                dead.append(msg)
                continue
            overdue = (now - msg.dispatched_at).total_seconds() > 10 * redispatch_after
            if depth(msg.queue) and not overdue:
                # Workers still have a backlog: the message is most likely still queued.
                deferred.append(msg.id)
                continue
        due.append(msg)
    return dead, deferred, due


def _admit(groups: list[list], depth: _DepthCache, window: int | None):
    """(groups to publish, ids held back): new messages wait while their queue is full."""
    admitted, held = [], []
    for members in groups:
        head = members[-1]
        if window and head.dispatched_at is None:
            if (depth(head.queue) or 0) >= window:
                # Step aside briefly so the next passes read other due messages, not these.
                held.extend(msg.id for msg in members)
                continue
            depth.add(head.queue)
        admitted.append(members)
    return admitted, held


def _publish(groups: list[list], publish: Publish, now, stats: RelayStats) -> None:
    """Publish each claimed group's newest message; on a broker error give the rest back."""
    for i, members in enumerate(groups):
        head = members[-1]  # the newest: the worker handles the group's older ones first
        task_id = head.dedup_key.replace(":", "-")
        try:
            publish(head.task, list(head.args), head.queue, task_id, head.request_id)
        except Exception as exc:  # broker down: give the rest back for the next pass
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            _unclaim(groups[i:], now, str(exc))
            db.session.commit()
            return
        _log_published(head, task_id, members)
        for msg in members:
            if msg.dispatched_at is None:
                stats.published += 1
            else:
                stats.republished += 1


def _log_published(head, task_id: str, members: list) -> None:
    """One line per published message, under the request id of the row it came from; a message
    covering others names their request ids too, so a grep for any of them finds it."""
    if not log.isEnabledFor(logging.INFO):  # the relay's hot loop: nothing built for nobody
        return
    extra = {"request_id": head.request_id}
    covered = sorted({m.request_id for m in members[:-1] if m.request_id} - {head.request_id})
    if covered:
        extra["covers"] = covered
    log.info("published %s %s as %s%s", head.task, list(head.args), task_id,
             f" (covers {len(members) - 1} earlier)" if len(members) > 1 else "", extra=extra)


class Relay:
    """Runs relay passes with the app's settings: the relay process's loop and the beat sweep.

    ``publish`` and ``queue_depth`` reach the broker; the caller owns them (one producer for
    the block they were made for).
    """

    def __init__(self, publish: Publish, queue_depth: QueueDepth, config, *,
                 batch: int = RELAY_BATCH):
        self.publish, self.queue_depth, self.batch = publish, queue_depth, batch
        self.interval = config["OUTBOX_RELAY_INTERVAL"]
        self.redispatch = config["OUTBOX_REDISPATCH_SECONDS"]
        self.window = config["RELAY_QUEUE_WINDOW"]

    def once(self) -> RelayStats:
        """One pass."""
        return relay_batch(self.publish, self.queue_depth, batch=self.batch,
                           redispatch_after=self.redispatch, window=self.window)

    def drain(self, max_passes: int) -> dict[str, int]:
        """Passes until nothing is left to do, a broker error, or ``max_passes``; the totals."""
        totals = {"published": 0, "republished": 0, "deferred": 0, "dead": 0}
        for _ in range(max_passes):
            stats = self.once()
            for k in totals:
                totals[k] += getattr(stats, k)
            if stats.errors or not sum(getattr(stats, k) for k in totals):
                break
        return totals

    def run(self, stopping: Callable[[], bool], once: bool = False) -> None:
        """Passes until ``stopping()``: straight on while a full batch came back (a backlog),
        else one interval apart, backing off up to 5 s while the broker or database fails."""
        backoff = self.interval
        while not stopping():
            try:
                stats = self.once()
                busy = stats.fetched >= self.batch
                if stats.errors:
                    log.warning("relay: broker error: %s", stats.errors[0])
                    backoff = min(backoff * 2 or 0.1, 5.0)
                else:
                    backoff = self.interval
            except Exception as exc:  # database down: keep trying, nothing is lost
                db.session.rollback()
                log.warning("relay: %s: %s", type(exc).__name__, exc)
                busy, backoff = False, min(max(backoff, 0.1) * 2, 5.0)
            finally:
                db.session.remove()
            if once:
                return
            # Waiting one interval lets what arrives meanwhile go out together, coalesced.
            if not busy or backoff > self.interval:
                time.sleep(backoff)
