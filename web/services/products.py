"""Products and their versioned routings."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ..extensions import db
from ..models import Product, RoutingRevision, RoutingStep
from ..problems import Conflict, FieldError, NotFound
from .audit import Actor, record
from .plumbing import page


class ProductExists(Conflict, ValueError):
    """The product code is taken."""


class ProductNotFound(NotFound, LookupError):
    """No product has this code."""

    def __init__(self, code: str):
        super().__init__(f"unknown product {code!r}")


class UnknownProduct(FieldError, LookupError):
    """A request names a product code that does not exist (a lot's, a firmware's)."""

    def __init__(self, code: str):
        super().__init__("product", f"unknown product {code!r}")


def _steps(routing: list[dict]) -> list[RoutingStep]:
    return [RoutingStep(seq=i, code=s["step"], name=s["name"],
                        measurements=[dict(m) for m in s.get("measurements", [])],
                        requires_firmware=bool(s.get("requires_firmware", False)),
                        label_template=s.get("label_template"))
            for i, s in enumerate(routing)]


def create_product(code: str, name: str, routing: list[dict], actor: Actor) -> Product:
    """Create a product with routing revision 1; audited."""
    if db.session.scalar(select(Product.id).where(Product.code == code)) is not None:
        raise ProductExists(f"product {code!r} already exists")
    product = Product(code=code, name=name, current_revision=1)
    product.revisions.append(RoutingRevision(revision=1, created_by=actor.name,
                                             steps=_steps(routing)))
    db.session.add(product)
    db.session.flush()
    record(actor, "product.created", "product", code,
           after={"name": name, "revision": 1, "routing": routing})
    db.session.commit()
    return product


def add_revision(code: str, routing: list[dict], actor: Actor) -> RoutingRevision:
    """Add a new routing revision; existing lots keep the revision they pinned."""
    product = db.session.scalar(select(Product).where(Product.code == code).with_for_update())
    if product is None:
        raise ProductNotFound(code)
    before = product.current_revision
    product.current_revision = before + 1
    rev = RoutingRevision(product=product, revision=before + 1, created_by=actor.name,
                          steps=_steps(routing))
    db.session.add(rev)
    db.session.flush()
    record(actor, "product.routing_revised", "product", code, before={"revision": before},
           after={"revision": rev.revision, "routing": routing})
    db.session.commit()
    return rev


def get_product(code: str) -> Product:
    """The product with this code, with its revisions loaded."""
    product = db.session.scalar(select(Product).where(Product.code == code).options(
        selectinload(Product.revisions).selectinload(RoutingRevision.steps)))
    if product is None:
        raise ProductNotFound(code)
    return product


def list_products(cursor: str | None, limit: int):
    """A page of products, newest first."""
    stmt = select(Product).options(
        selectinload(Product.revisions).selectinload(RoutingRevision.steps))
    return page(db.session, stmt, Product.id, cursor, limit)


def step_dict(step: RoutingStep) -> dict:
    """A routing step as the API shows it."""
    return {"step": step.code, "name": step.name, "seq": step.seq,
            "measurements": step.measurements, "requires_firmware": step.requires_firmware,
            "label_template": step.label_template}


def product_dict(product: Product) -> dict:
    """A product with its current routing, as the API shows it."""
    current = next(r for r in product.revisions if r.revision == product.current_revision)
    return {"code": product.code, "name": product.name, "revision": current.revision,
            "routing": [step_dict(s) for s in current.steps],
            "revisions": [r.revision for r in product.revisions]}
