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


def _dead_letter(msg, reason: str) -> None:
    """A message that never got processed: record the failure on its subject and drop it."""
    log.error("outbox message %s (%s %s) dead-lettered: %s", msg.id, msg.task, msg.args, reason)
    if msg.task == COMPLETION_TASK:
        db.session.execute(update(Completion).where(
            Completion.id == msg.args[0], Completion.status == "received").values(
            status="failed", error=reason, processed_at=utcnow()))
    db.session.execute(delete(OutboxMessage).where(OutboxMessage.id == msg.id))


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
    """
    stats = RelayStats()
    session = db.session
    now = utcnow()
    m = OutboxMessage
    stmt = (select(m.id, m.task, m.args, m.queue, m.dedup_key, m.attempts, m.dispatched_at)
            .where(m.available_at <= now, not_(_waits_for_its_lot(now)))
            .order_by(m.available_at, m.id).limit(batch))
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)  # concurrent relays split the work
    rows = session.execute(stmt).all()
    stats.fetched = len(rows)
    if not rows:
        session.rollback()
        return stats
    depths: dict[str, int | None] = {}
    sent: dict[int, list[int]] = defaultdict(list)  # attempts before -> ids (one UPDATE each)
    deferred: list[int] = []
    held: list[int] = []
    due = []
    for msg in rows:
        if msg.dispatched_at is not None:
            if msg.attempts >= max_attempts:
                _dead_letter(msg, f"not processed after {msg.attempts} dispatches")
                stats.dead += 1
                continue
            if msg.queue not in depths:
                depths[msg.queue] = queue_depth(msg.queue)
            overdue = (now - msg.dispatched_at).total_seconds() > 10 * redispatch_after
            if depths[msg.queue] and not overdue:
                # Workers still have a backlog: the message is most likely still queued.
                deferred.append(msg.id)
                continue
        due.append(msg)
    for members in _coalesce(due):
        head = members[-1]
        if window and head.dispatched_at is None:
            if head.queue not in depths:
                depths[head.queue] = queue_depth(head.queue)
            if (depths[head.queue] or 0) >= window:
                # Step aside briefly so the next passes read other due messages, not these.
                held.extend(msg.id for msg in members)
                continue
            depths[head.queue] = (depths[head.queue] or 0) + 1
        try:
            publish(head.task, list(head.args), head.queue, head.dedup_key.replace(":", "-"))
        except Exception as exc:  # broker down: keep the rest for the next pass
            stats.errors.append(f"{type(exc).__name__}: {exc}")
            session.execute(update(m).where(m.id == head.id).values(last_error=str(exc)[:500]))
            break
        for msg in members:
            if msg.dispatched_at is None:
                stats.published += 1
            else:
                stats.republished += 1
            sent[msg.attempts].append(msg.id)
    for attempts, ids in sent.items():
        delay = min(redispatch_after * 2 ** attempts, MAX_BACKOFF_SECONDS)
        session.execute(update(m).where(m.id.in_(ids)).values(
            attempts=attempts + 1, dispatched_at=now,
            available_at=now + timedelta(seconds=delay)), execution_options={
            "synchronize_session": False})
    if held:
        session.execute(update(m).where(m.id.in_(held)).values(
            available_at=now + timedelta(seconds=HOLD_SECONDS)),
            execution_options={"synchronize_session": False})
        stats.held = len(held)
    if deferred:
        session.execute(update(m).where(m.id.in_(deferred)).values(
            available_at=now + timedelta(seconds=redispatch_after)),
            execution_options={"synchronize_session": False})
        stats.deferred = len(deferred)
    session.commit()
    return stats


def pending_count() -> int:
    """How many messages wait for their effect (for metrics and readiness detail)."""
    return db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
