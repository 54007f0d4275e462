"""Products and their routing revisions."""
from flask import Blueprint

from ..auth import require
from ..openapi import spec
from ..services import products as svc
from . import actor
from .schemas import PageQuery, ProductIn, ProductOut, ProductPage, RoutingIn

bp = Blueprint("products", __name__, url_prefix="/api/v1/products")


@bp.post("")
@require("admin")
@spec(body=ProductIn, responses={201: ProductOut}, tags=["products"], errors=(409,))
def create(body: ProductIn):
    """Create a product with routing revision 1."""
    data = body.model_dump()
    product = svc.create_product(body.code, body.name, data["routing"], actor())
    return svc.product_dict(svc.get_product(product.code)), 201


@bp.post("/<code>/routing")
@require("admin")
@spec(body=RoutingIn, responses={201: ProductOut}, tags=["products"])
def revise(code: str, body: RoutingIn):
    """Add a new routing revision; existing lots keep theirs."""
    svc.add_revision(code, body.model_dump()["routing"], actor())
    return svc.product_dict(svc.get_product(code)), 201


@bp.get("")
@require("operator")
@spec(query=PageQuery, responses={200: ProductPage}, tags=["products"])
def index(query: PageQuery):
    """List products with their current routing."""
    rows, nxt = svc.list_products(query.cursor, query.limit)
    return {"items": [svc.product_dict(p) for p in rows], "next_cursor": nxt}


@bp.get("/<code>")
@require("operator")
@spec(responses={200: ProductOut}, tags=["products"])
def show(code: str):
    """One product with its current routing."""
    return svc.product_dict(svc.get_product(code))
