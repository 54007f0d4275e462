"""HTTP API v1: one blueprint per resource, registered by ``register_api``."""
import re

from flask import Flask, g, request

from ..auth import current_principal
from ..errors import NotFound
from ..models.types import int_column_max
from ..services.audit import Actor

_INT_ARG = re.compile(r"<int(?:\([^)]*\))?:(\w+)>")


def actor() -> Actor:
    """The acting user of this request, for audit rows."""
    p = current_principal()
    return Actor(p.id, p.username, getattr(g, "request_id", None)) if p else Actor(None, "anonymous")


def _path_id_columns() -> dict:
    """Every integer path parameter of the API and the column its value is looked up in."""
    from ..models import (Backup, Completion, Firmware, FirmwareAssignment, LabelJob,
                          LabelTemplate, User)
    return {"backup_id": Backup.id, "completion_id": Completion.id, "firmware_id": Firmware.id,
            "assignment_id": FirmwareAssignment.id, "job_id": LabelJob.id,
            # the console's user pages and template previews
            "user_id": User.id, "version": LabelTemplate.version}


def path_id_limits(app: Flask) -> dict[str, int]:
    """Largest value of each integer path parameter; fails if a route's parameter has none."""
    limits = {name: int_column_max(col) for name, col in _path_id_columns().items()}
    for rule in app.url_map.iter_rules():
        for name in _INT_ARG.findall(rule.rule):
            if name not in limits:
                raise RuntimeError(f"path id <{name}> of {rule.rule} names no column: "
                                   f"add it to web.api._path_id_columns")
    return limits


def _reject_ids_out_of_range(app: Flask) -> None:
    """An id past its column's range names nothing: 404, like an id that does not exist.

    It must not reach the database: PostgreSQL refuses to compare it ("integer out of range")
    and SQLite cannot even bind an integer past 64 bits.
    """
    limits = path_id_limits(app)

    @app.before_request  # after the request id is set, so the 404 carries it
    def _ids_in_range():
        for name, value in (request.view_args or {}).items():
            top = limits.get(name)
            if top is not None and isinstance(value, int) and value > top:
                raise NotFound(f"no {name.removesuffix('_id')} {value}")


def register_api(app: Flask) -> None:
    """Attach every API blueprint to the app."""
    from . import (auth, backups, completions, firmware, flower_auth, health, labels, lots,
                   products, stations)
    for module in (auth, backups, completions, firmware, flower_auth, health, labels, lots,
                   products, stations):
        app.register_blueprint(module.bp)
    _reject_ids_out_of_range(app)
