"""Users and audit (admin): create, set role, disable, reset password; the audit-log viewer."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for

from ...api import actor
from ...models import ROLES
from ...problems import ApiError
from ...services import audit, users as svc
from ..blueprint import attempt, bp
from ..session import login_required

AUDIT_PAGE = 50


def _done(fn, ok_key: str):
    """Run a user change; its refusal (ValueError, a service error) becomes a message."""
    attempt(fn, ok_key, refused=(ValueError, ApiError))
    return redirect(url_for("console.users"))


@bp.get("/users")
@login_required("admin")
def users():
    """Every user with role and state, and the forms to change them."""
    return render_template("console/users.html", users=svc.list_users(), roles=ROLES)


@bp.post("/users")
@login_required("admin")
def user_create():
    """Create a user (the same rules as the CLI: name, 8+ character password, a role)."""
    f = request.form
    return _done(lambda: svc.create_user(f.get("username", ""), f.get("password", ""),
                                         f.get("role", ""), actor()), "users.created")


@bp.post("/users/<int:user_id>/role")
@login_required("admin")
def user_role(user_id: int):
    """Set a user's role."""
    return _done(lambda: svc.set_role(user_id, request.form.get("role", ""), actor()),
                 "users.role_set")


@bp.post("/users/<int:user_id>/active")
@login_required("admin")
def user_active(user_id: int):
    """Disable or re-enable an account."""
    active = request.form.get("active") == "1"
    return _done(lambda: svc.set_active(user_id, active, actor()),
                 "users.enabled" if active else "users.disabled")


@bp.post("/users/<int:user_id>/password")
@login_required("admin")
def user_password(user_id: int):
    """Reset a user's password."""
    return _done(lambda: svc.reset_password(user_id, request.form.get("password", ""),
                                            actor()), "users.password_reset")


@bp.get("/audit")
@login_required("admin")
def audit_log():
    """The audit log, newest first, filtered by actor and entity (cursor paging)."""
    q = {k: request.args.get(k, "").strip() for k in ("actor", "entity_type", "entity_id")}
    rows, nxt = audit.list_events(q["actor"] or None, q["entity_type"] or None,
                                  q["entity_id"] or None, request.args.get("cursor") or None,
                                  AUDIT_PAGE)
    return render_template("console/audit.html", q=q, rows=rows, next_cursor=nxt)
