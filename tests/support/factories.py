"""Factories for the domain models, built through the real services (so audit rows exist too)."""
from __future__ import annotations

import itertools
import uuid

from web.auth import issue_token
from web.services import lots, products, stations, users
from web.services.audit import Actor

FCT_ROUTING = [
    {"step": "SMT", "name": "SMT assembly"},
    {"step": "FCT", "name": "Functional test", "measurements": [
        {"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4},
        {"name": "current_ma", "unit": "mA", "min": 30, "max": 50}]},
    {"step": "PACK", "name": "Packing", "label_template": "box"},
]
SYSTEM = Actor(None, "system:test")
_seq = itertools.count(1)


class Factory:
    """Creates users, products, stations and lots in the test database."""

    def __init__(self, app):
        self.app = app
        self._users: dict[str, tuple[int, str]] = {}

    def user(self, role: str = "operator", username: str | None = None,
             password: str = "correct-horse-battery") -> tuple[int, str]:
        """A new user; returns (id, username)."""
        username = username or f"{role}-{next(_seq)}"
        with self.app.app_context():
            u = users.create_user(username, password, role, SYSTEM)
            return u.id, u.username

    def headers(self, role: str = "operator") -> dict:
        """Authorization headers for a (cached) user of this role."""
        if role not in self._users:
            self._users[role] = self.user(role)
        uid, name = self._users[role]
        with self.app.app_context():
            token, _ = issue_token(uid, name, role)
        return {"Authorization": f"Bearer {token}"}

    def product(self, code: str | None = None, routing: list[dict] | None = None) -> str:
        """A product with the given routing (default SMT -> FCT -> PACK)."""
        code = code or f"P-{next(_seq)}"
        with self.app.app_context():
            products.create_product(code, f"Product {code}", routing or FCT_ROUTING, SYSTEM)
        return code

    def station(self, code: str | None = None, steps: list[str] | None = None,
                printer_uri: str | None = "sim://") -> str:
        """A station serving the given steps."""
        code = code or f"ST-{next(_seq)}"
        with self.app.app_context():
            stations.create_station(code, f"Station {code}", steps or ["SMT"], printer_uri, SYSTEM)
        return code

    def lot(self, product: str | None = None, quantity: int = 10, lot_no: str | None = None,
            serials: list[str] | None = None) -> str:
        """A lot at the first step of its product's routing."""
        product = product or self.product()
        with self.app.app_context():
            return lots.create_lot(product, quantity, lot_no, serials, SYSTEM).lot_no


def post_completion(client, headers, lot_no, step, station, **extra) -> int:
    """A completion through the API (202, a fresh Idempotency-Key), as a station sends it."""
    resp = client.post("/api/v1/completions", headers=headers | {
        "Idempotency-Key": uuid.uuid4().hex},
        json={"lot_no": lot_no, "step": step, "station": station} | extra)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()["id"]
