"""Lots: creation with generated numbers, listing, and supervisor state changes."""
from __future__ import annotations


from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import ACTIVE_STATUSES, Lot, LotSequence, LotUnit, Product, RoutingRevision
from ..problems import Conflict, NotFound
from .audit import Actor, record
from .plumbing import page
from .plant_time import plant_now
from .products import UnknownProduct


class LotExists(Conflict, ValueError):
    """The lot number (or a unit serial) is taken."""


class LotNotFound(NotFound, LookupError):
    """No lot has this number."""

    def __init__(self, lot_no: str):
        super().__init__(f"unknown lot {lot_no!r}")


class LotStateError(Conflict, ValueError):
    """The lot's status does not allow this change."""


def lot_day() -> str:
    """Today's date in the factory's time zone, as YYYYMMDD for lot numbers."""
    return plant_now().strftime("%Y%m%d")


def _bump_sequence(day: str) -> int:
    """Atomically take the next number of the day (upsert; the row lock serialises callers)."""
    dialect = db.session.get_bind().dialect.name
    ins = (postgresql if dialect == "postgresql" else sqlite).insert(LotSequence)
    stmt = ins.values(day=day, last=1).on_conflict_do_update(
        index_elements=["day"], set_={"last": LotSequence.last + 1}).returning(LotSequence.last)
    return db.session.execute(stmt).scalar_one()


def _lot_no_taken(lot_no: str) -> bool:
    return db.session.scalar(select(Lot.id).where(Lot.lot_no == lot_no)) is not None


def create_lot(product_code: str, quantity: int, lot_no: str | None, serials: list[str] | None,
               actor: Actor) -> Lot:
    """Create a lot at the first step of the product's current routing; audited."""
    product = db.session.scalar(select(Product).where(Product.code == product_code))
    if product is None:
        raise UnknownProduct(product_code)
    revision = db.session.scalar(select(RoutingRevision).where(
        RoutingRevision.product_id == product.id,
        RoutingRevision.revision == product.current_revision).options(
        selectinload(RoutingRevision.steps)))
    first = revision.steps[0]
    if serials:
        taken = db.session.scalars(select(LotUnit.serial).where(LotUnit.serial.in_(serials))).all()
        if taken:
            raise LotExists(f"unit serials already belong to a lot: {', '.join(sorted(taken)[:10])}")
    if lot_no is not None:
        if _lot_no_taken(lot_no):
            raise LotExists(f"lot {lot_no!r} already exists")
    else:
        day = lot_day()
        lot_no = f"LOT-{day}-{_bump_sequence(day):04d}"
        while _lot_no_taken(lot_no):  # a hand-entered number may have used it already
            lot_no = f"LOT-{day}-{_bump_sequence(day):04d}"
    lot = Lot(lot_no=lot_no, product_id=product.id, routing_revision_id=revision.id,
              quantity=quantity, qty_good=quantity, step_passed=0, status="created",
              current_seq=first.seq, current_step=first.code, created_by=actor.name)
    lot.units = [LotUnit(serial=s) for s in serials or []]
    db.session.add(lot)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise LotExists(f"lot {lot_no!r} or one of its serials already exists") from None
    record(actor, "lot.created", "lot", lot_no, lot_id=lot.id,
           after={"product": product_code, "quantity": quantity, "revision": revision.revision,
                  "serials": len(serials or [])})
    db.session.commit()
    return lot


def get_lot(lot_no: str, *, for_update: bool = False) -> Lot:
    """The lot with this number."""
    stmt = select(Lot).where(Lot.lot_no == lot_no)
    if for_update:
        stmt = stmt.with_for_update()
    lot = db.session.scalar(stmt)
    if lot is None:
        raise LotNotFound(lot_no)
    return lot


def list_lots(status: str | None, product: str | None, step: str | None, cursor: str | None,
              limit: int, *, lot_no: str | None = None, serial: str | None = None,
              created_from=None, created_before=None):
    """A page of lots filtered by status / product code / current step, newest first.

    The console's search adds: a lot number prefix, a unit serial (the lot holding it) and a
    creation time range (aware datetimes).
    """
    stmt = select(Lot).options(selectinload(Lot.product), selectinload(Lot.revision))
    if lot_no:  # a prefix: the unique index on lot_no answers it
        stmt = stmt.where(Lot.lot_no.startswith(lot_no, autoescape=True))
    if serial:
        stmt = stmt.where(Lot.id == select(LotUnit.lot_id).where(
            LotUnit.serial == serial).scalar_subquery())
    if created_from is not None:
        stmt = stmt.where(Lot.created_at >= created_from)
    if created_before is not None:
        stmt = stmt.where(Lot.created_at < created_before)
    if status:
        stmt = stmt.where(Lot.status == status)
    if product:  # the id first: the newest lots of a product then come in order from an index
        stmt = stmt.where(Lot.product_id == select(Product.id).where(
            Product.code == product).scalar_subquery())
    if step:
        stmt = stmt.where(Lot.current_step == step)
    return page(db.session, stmt, Lot.id, cursor, limit)


_TRANSITIONS = {
    "hold": (ACTIVE_STATUSES, "on_hold"),
    "release": (("on_hold",), "in_process"),
    "scrap": (ACTIVE_STATUSES + ("on_hold",), "scrapped"),
}


def allowed_actions(status: str) -> list[str]:
    """The state changes (hold, release, scrap) a lot in ``status`` may take."""
    return [action for action, (allowed, _target) in _TRANSITIONS.items() if status in allowed]


def change_state(lot_no: str, action: str, reason: str, actor: Actor) -> Lot:
    """Hold, release (rework at the same step) or scrap a lot; audited."""
    allowed, target = _TRANSITIONS[action]
    lot = get_lot(lot_no, for_update=True)
    if lot.status not in allowed:
        raise LotStateError(f"cannot {action} a lot that is {lot.status}")
    before = {"status": lot.status, "step": lot.current_step}
    lot.status = target
    lot.hold_reason = reason if target == "on_hold" else None
    record(actor, f"lot.{action}", "lot", lot.lot_no, lot_id=lot.id, before=before,
           after={"status": target, "step": lot.current_step, "reason": reason})
    db.session.commit()
    return lot


def lot_serials(lot_id: int) -> list[str]:
    """A lot's unit serials in the order they were given (the serials only, no ORM objects)."""
    return db.session.connection().scalars(
        select(LotUnit.serial).where(LotUnit.lot_id == lot_id).order_by(LotUnit.id)).all()


def lot_dict(lot: Lot, completions: list[dict] | None = None) -> dict:
    """A lot as the API shows it (optionally with its completions, as dhr.lot_completions)."""
    out = {"lot_no": lot.lot_no, "product": lot.product.code, "quantity": lot.quantity,
           "qty_good": lot.qty_good, "step_passed": lot.step_passed, "status": lot.status,
           "current_step": lot.current_step, "routing_revision": lot.revision.revision,
           "hold_reason": lot.hold_reason, "created_at": lot.created_at.isoformat()}
    if completions is not None:
        out["serials"] = lot_serials(lot.id)
        out["completions"] = completions
    return out
