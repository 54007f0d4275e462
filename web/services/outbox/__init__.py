"""The transactional outbox: enqueue in the caller's transaction, relay to the broker after commit.

PostgreSQL (not Redis) is the source of truth. A message stays in the table until the worker
commits its effect and deletes it in that same transaction. The relay (``outbox.relay``)
publishes due messages and pushes their next due time back with exponential backoff; a message
that is still here after that (broker flushed, worker killed with the message reserved) is
published again. Duplicates are harmless because task bodies are idempotent under row locks.

This package is the only code that reads or writes ``outbox_messages``. What the relay does with
one task's messages beyond that (coalescing, waiting for an in-flight one, a dead letter's
consequence) is that task's ``Policy``, registered by the domain that owns the task.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from flask import current_app
from sqlalchemy import delete, func, select, update

from ...extensions import db
from ...logs import current_request_id
from ...models import OutboxMessage, utcnow
from ..plumbing import add_row, collecting

CLAIMED = "outbox_claimed"
_OUTBOX = OutboxMessage.__table__


@dataclass(frozen=True)
class Policy:
    """How the relay treats one task's messages (registered by the domain owning the task).

    ``group_arg``: the position of an integer id in the message's args (a lot) whose messages
    are serial: one publish of the newest covers the older ones (the task handles every pending
    item of that id, in order), and new ones wait while one is in flight. ``on_dead(args,
    reason)``: records the failure on the message's subject, in the relay's transaction, when the
    message is dead-lettered (never processed after the relay's last attempt).
    """

    group_arg: int | None = None
    on_dead: Callable[[list, str], None] | None = None


_POLICIES: dict[str, Policy] = {}
DEFAULT_POLICY = Policy()


def register(task: str, policy: Policy) -> None:
    """Declare how the relay treats ``task``'s messages (called by the task's domain)."""
    _POLICIES[task] = policy


def policy_for(task: str) -> Policy:
    """The registered policy of a task (plain: every message on its own, dropped when dead)."""
    return _POLICIES.get(task, DEFAULT_POLICY)


def grouped_tasks() -> tuple[tuple[str, int], ...]:
    """(task, group_arg) of every task whose messages are serial per id, sorted."""
    return tuple(sorted((t, p.group_arg) for t, p in _POLICIES.items() if p.group_arg is not None))


def enqueue(task: str, args: list, queue: str, dedup_key: str, *,
            publish: bool = True, request_id: str | None = None) -> None:
    """Add a message to the current transaction; it is published only after commit.

    Inside ``claiming()`` the caller publishes it itself right after its commit: the row is
    stored as already dispatched, due again only after the redispatch delay, so the relay
    publishes it only if that publish never happened (process killed, broker down).
    ``publish=False`` claims it without publishing: for a message whose work another claimed
    message of the same transaction covers.

    The message carries ``request_id``, by default the current one (the POST's in the web, the
    task's in a worker): a label job carries the request id of the completion that earned it.
    """
    now = utcnow()
    request_id = request_id or current_request_id()
    row = {"task": task, "args": args, "queue": queue, "dedup_key": dedup_key,
           "created_at": now, "available_at": now, "dispatched_at": None, "attempts": 0,
           "request_id": request_id}
    claimed = db.session.info.get(CLAIMED)
    if claimed is not None:
        delay = timedelta(seconds=current_app.config["OUTBOX_REDISPATCH_SECONDS"])
        row.update(available_at=now + delay, dispatched_at=now, attempts=1)
        if publish:
            claimed.append((task, list(args), queue, dedup_key, request_id))
    add_row(OutboxMessage, row)  # one INSERT for a whole batch inside batched()


def insert_from(source: str, *, args: str, dedup_key: str) -> str:
    """PostgreSQL that enqueues one message per row of ``source`` (a CTE of the caller's
    statement), with ``args`` and ``dedup_key`` SQL expressions over it; the statement's
    parameters include ``insert_params(task, queue)``.

    For a hot path that stores its row and its message in one statement (one round trip); the
    message is due at once, as from ``enqueue``, and carries the current request id as well.
    """
    return (f"INSERT INTO {_OUTBOX.name} (task, args, queue, dedup_key, created_at, available_at,"
            f" attempts, request_id) SELECT %(outbox_task)s, {args}, %(outbox_queue)s,"
            f" {dedup_key}, now(), now(), 0, %(outbox_request_id)s FROM {source}")


def insert_params(task: str, queue: str) -> dict:
    """The psycopg parameters an ``insert_from`` statement needs: the message's task and queue,
    and the current request id."""
    return {"outbox_task": task, "outbox_queue": queue, "outbox_request_id": current_request_id()}


def batched(*models):
    """Outbox rows (and rows of ``models``) enqueued in this block go in at its end, one INSERT
    per table: for the hot paths that enqueue a message per item of a batch."""
    return collecting(OutboxMessage, *models)


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


def done(dedup_keys: list[str]) -> dict[str, str | None]:
    """Delete messages whose effect is being committed in the current transaction; returns the
    request id of each deleted one by its key (the effect's log lines name it)."""
    if not dedup_keys:
        return {}
    # Core, not the ORM's DELETE: outbox rows are never loaded as objects by these callers,
    # and the ORM layer costs more than the statement. The flush first (what the ORM's
    # execute would do) makes a row added earlier in this transaction go too.
    session = db.session
    session.flush()
    return dict(session.connection().execute(
        delete(_OUTBOX).where(_OUTBOX.c.dedup_key.in_(dedup_keys))
        .returning(_OUTBOX.c.dedup_key, _OUTBOX.c.request_id)).all())


def retry_in(dedup_keys: list[str], seconds: float) -> None:
    """Publish these messages again after ``seconds``, in the current transaction.

    For a task that ran and asks to run again later (its printer or lock was busy): the message
    was processed, so the relay's backoff for unprocessed messages starts over. Keeping the
    count would push the next redispatch of a message lost after such a retry (a broker
    restarted meanwhile) out by minutes.
    """
    if dedup_keys:
        db.session.connection().execute(update(_OUTBOX).where(
            _OUTBOX.c.dedup_key.in_(dedup_keys)).values(
            available_at=utcnow() + timedelta(seconds=seconds), dispatched_at=None, attempts=0))


def pending_keys(dedup_keys: list[str]) -> set[str]:
    """Those of ``dedup_keys`` whose message is still in the outbox (its effect not committed)."""
    if not dedup_keys:
        return set()
    return set(db.session.connection().execute(select(_OUTBOX.c.dedup_key).where(
        _OUTBOX.c.dedup_key.in_(dedup_keys))).scalars())


def pending_count() -> int:
    """How many messages wait for their effect (for metrics and readiness detail)."""
    return db.session.scalar(select(func.count()).select_from(OutboxMessage)) or 0


def pending_by_task() -> list[tuple[str, int]]:
    """(task, messages waiting for their effect) for each task that has any (metrics)."""
    m = OutboxMessage
    return [tuple(r) for r in db.session.execute(
        select(m.task, func.count()).group_by(m.task))]


def oldest_due(now):
    """When the oldest message that is due (``available_at`` passed) became due, or None.

    What a stopped relay leaves behind; a message postponed on purpose (a printer out of paper,
    a redispatch delay) is not due, so not late. Read from the (available_at, id) index.
    """
    m = OutboxMessage
    return db.session.scalar(select(func.min(m.available_at)).where(m.available_at <= now))


__all__ = ["Policy", "register", "policy_for", "grouped_tasks", "enqueue", "insert_from",
           "insert_params", "batched", "claiming", "done", "retry_in", "pending_keys",
           "pending_count", "pending_by_task", "oldest_due"]
