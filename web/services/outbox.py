"""The transactional outbox: enqueue in the caller's transaction, relay to the broker after commit.

PostgreSQL (not Redis) is the source of truth. A message stays in the table until the worker
commits its effect and deletes it in that same transaction. The relay publishes due messages and
pushes their next due time back with exponential backoff; a message that is still here after that
(broker flushed, worker killed with the message reserved) is published again. Duplicates are
harmless because task bodies are idempotent under row locks.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

from flask import current_app
from sqlalchemy import and_, delete, func, not_, select, update
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Completion, OutboxMessage, utcnow
from .bulk import add_row

log = logging.getLogger(__name__)

COMPLETION_TASK = "completions.process"
COMPLETION_QUEUE = "completions"
MAX_BACKOFF_SECONDS = 600.0
HOLD_SECONDS = 0.25  # how long a message held back by a full queue steps aside


CLAIMED = "outbox_claimed"
_OUTBOX = OutboxMessage.__table__


def enqueue(task: str, args: list, queue: str, dedup_key: str, *,
            publish: bool = True) -> None:
    """Add a message to the current transaction; it is published only after commit.

    Inside ``claiming()`` the caller publishes it itself right after its commit: the row is
    stored as already dispatched, due again only after the redispatch delay, so the relay
    publishes it only if that publish never happened (process killed, broker down).
    ``publish=False`` claims it without publishing: for a message whose work another claimed
    message of the same transaction covers.
    """
    now = utcnow()
    row = {"task": task, "args": args, "queue": queue, "dedup_key": dedup_key,
           "created_at": now, "available_at": now, "dispatched_at": None, "attempts": 0}
    claimed = db.session.info.get(CLAIMED)
    if claimed is not None:
        delay = timedelta(seconds=current_app.config["OUTBOX_REDISPATCH_SECONDS"])
        row.update(available_at=now + delay, dispatched_at=now, attempts=1)
        if publish:
            claimed.append((task, list(args), queue, dedup_key))
    add_row(OutboxMessage, row)  # one INSERT for a whole batch inside bulk.collecting()


@contextmanager
def claiming():
    """Collect the messages enqueued in this block for the caller to publish after its commit.

    Saves the relay's round trips and its polling delay on worker-to-worker hops (a label job
    queued by the completion worker); only the caller's committed messages may be published.
    """
    claimed: list[tuple] = []
    db.session.info[CLAIMED] = claimed
    try:
        yield claimed
    finally:
        db.session.info.pop(CLAIMED, None)


def done(dedup_keys: list[str]) -> None:
    """Delete messages whose effect is being committed in the current transaction."""
    if dedup_keys:
        # Core, not the ORM's DELETE: outbox rows are never loaded as objects by these callers,
        # and the ORM layer costs more than the statement. The flush first (what the ORM's
        # execute would do) makes a row added earlier in this transaction go too.
        session = db.session
        session.flush()
        session.connection().execute(delete(_OUTBOX).where(_OUTBOX.c.dedup_key.in_(dedup_keys)))


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
    """A message that never got processed: record the failure on its subject and drop it.

    Only while the row is as this pass read it (another relay may have claimed it since).
    """
    gone = db.session.execute(delete(OutboxMessage).where(
        OutboxMessage.id.in_(_still_due([msg.id], now))).returning(OutboxMessage.id)).first()
    if gone is None:
        return False
    log.error("outbox message %s (%s %s) dead-lettered: %s", msg.id, msg.task, msg.args, reason)
    if msg.task == COMPLETION_TASK:
        db.session.execute(update(Completion).where(
            Completion.id == msg.args[0], Completion.status == "received").values(
            status="failed", error=reason, processed_at=utcnow()))
    return True


def _coalesce(due: list) -> list[list]:
    """Group due messages so one publish covers each group; groups in id order.

    The worker decides every pending completion of the lot it is given, in order, so one
    message for a lot's newest completion covers the lot's older ones: under load that is one
    task per lot per pass instead of one per completion. The covered messages stay in the outbox
    until the worker commits their effect, so a lost message is still republished.
    """
    groups: dict[tuple, list] = {}
    for msg in due:
        lot = msg.args[1] if msg.task == COMPLETION_TASK and len(msg.args) > 1 else None
        groups.setdefault(("lot", lot) if lot is not None else ("msg", msg.id), []).append(msg)
    return sorted((sorted(g, key=lambda r: r.id) for g in groups.values()),
                  key=lambda g: g[-1].id)


def _waits_for_its_lot(now):
    """A new completion message whose lot has one published and not yet processed.

    The worker deletes a message's rows when it commits, so a dispatched row that is not due
    again means its task is still queued or running.
    """
    m, busy = OutboxMessage, aliased(OutboxMessage)
    lot, busy_lot = m.args[1].as_integer(), busy.args[1].as_integer()
    in_flight = select(busy_lot).where(
        busy.task == COMPLETION_TASK, busy.dispatched_at.is_not(None), busy.available_at > now,
        busy_lot.is_not(None))  # no NULL in the list: IN would then never be plainly false
    return and_(m.task == COMPLETION_TASK, m.dispatched_at.is_(None), lot.is_not(None),
                lot.in_(in_flight))


def _read_due(now, batch: int) -> list:
    """Due rows, read outside any transaction: no row or write lock is taken."""
    m = OutboxMessage
    stmt = (select(m.id, m.task, m.args, m.queue, m.dedup_key, m.attempts, m.dispatched_at)
            .where(m.available_at <= now, not_(_waits_for_its_lot(now)))
            .order_by(m.available_at, m.id).limit(batch))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.execute(stmt).all()


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


def relay_batch(publish: Callable[[str, list, str, str], None],
                queue_depth: Callable[[str], int | None], *, batch: int = 500,
                redispatch_after: float = 30.0, max_attempts: int = 10,
                window: int | None = None) -> RelayStats:
    """Publish due outbox messages once; safe to run in several processes at the same time.

    ``window`` bounds how many messages may wait in a queue: beyond it new messages stay in the
    outbox (durable) instead of piling up in the broker, where they coalesce per lot so one task
    decides many completions in one transaction when the workers are behind.

    A lot's new completions also wait while its previous message is still in flight (queued or
    running): published once that task has committed, they go as one message covering all that
    arrived meanwhile. At light load a task ends within a pass and nothing waits; when workers
    fall behind, each task decides more completions, so the per-task cost stops growing the
    backlog. A lost in-flight message becomes due after ``redispatch_after`` and then goes out
    together with the waiting ones.

    No database transaction is open while the broker is asked anything: the due rows are read
    without locks, queue depths asked, the rows to publish claimed in one short transaction,
    and published after its commit. On the embedded SQLite a transaction holds the database's
    write lock, so a broker that is slow to answer never stalls the web or the workers.
    """
    stats = RelayStats()
    session = db.session
    now = utcnow()
    rows = _read_due(now, batch)
    stats.fetched = len(rows)
    if not rows:
        return stats
    depths: dict[str, int | None] = {}

    def depth(queue: str) -> int | None:
        if queue not in depths:
            depths[queue] = queue_depth(queue)
        return depths[queue]

    dead, deferred, held, due = [], [], [], []
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
    groups = []
    for members in _coalesce(due):
        head = members[-1]
        if window and head.dispatched_at is None:
            if (depth(head.queue) or 0) >= window:
                # Step aside briefly so the next passes read other due messages, not these.
                held.extend(msg.id for msg in members)
                continue
            depths[head.queue] = (depths[head.queue] or 0) + 1
        groups.append(members)
    for msg in dead:
        stats.dead += _dead_letter(msg, now, f"not processed after {msg.attempts} dispatches")
    _postpone(held, now, now + timedelta(seconds=HOLD_SECONDS))
    _postpone(deferred, now, now + timedelta(seconds=redispatch_after))
    stats.held, stats.deferred = len(held), len(deferred)
    groups = _claim(groups, now, redispatch_after)
    session.commit()
    for i, members in enumerate(groups):
        head = members[-1]  # the newest: the worker decides the lot's older ones first
        try:
            publish(head.task, list(head.args), head.queue, head.dedup_key.replace(":", "-"))
        except Exception as exc:  # broker down: give the rest back for the next pass
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            _unclaim(groups[i:], now, str(exc))
            session.commit()
            break
        for msg in members:
            if msg.dispatched_at is None:
                stats.published += 1
            else:
                stats.republished += 1
    return stats


def pending_count() -> int:
    """How many messages wait for their effect (for metrics and readiness detail)."""
    return db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
