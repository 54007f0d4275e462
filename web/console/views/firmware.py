"""Firmware: upload (streamed, the API's parser and limits) with a progress bar, release and
revoke after a confirmation, and each station's assignment and verification state."""
from __future__ import annotations

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from pydantic import ValidationError

from ...api import actor
from ...api.firmware import FORM_SLACK, parse_upload
from ...bodies import body_limit
from ...problems import ApiError
from ...services import firmware as svc
from ...services.firmware import assignments as asg
from ..blueprint import attempt, bp, csrf_from_header
from ..session import login_required

SHOWN = 50


@bp.get("/firmware")
@login_required("supervisor")
def firmware():
    """Firmware images, newest first, with their station assignments."""
    rows, nxt = svc.list_firmware(request.args.get("product") or None, None,
                                  request.args.get("cursor") or None, SHOWN)
    return render_template("console/firmware.html", rows=[
        (fw, asg.firmware_assignments(fw.id)) for fw in rows], next_cursor=nxt,
        max_bytes=current_app.config["MAX_FIRMWARE_BYTES"])


@bp.post("/firmware")
@body_limit("MAX_FIRMWARE_BYTES", FORM_SLACK, streamed=True)
@csrf_from_header  # the body is streamed to storage: the token comes in X-CSRFToken
@login_required("admin")
def firmware_upload():
    """Upload an image (multipart, streamed and hashed; answered as JSON to the page's script)."""
    if request.mimetype != "multipart/form-data":
        return jsonify(detail="send multipart/form-data"), 415
    spools: list = []
    try:
        fields, incoming = parse_upload(current_app.config["MAX_FIRMWARE_BYTES"], spools)
        fw = svc.upload(fields.product, fields.version, incoming, actor(),
                        expected_sha256=fields.sha256, notes=fields.notes)
    except ApiError as exc:
        errors = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors or [])
        return jsonify(detail=exc.detail or exc.title, errors=errors), exc.status
    except ValidationError as exc:
        return jsonify(detail="; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                        for e in exc.errors())), 422
    finally:
        for spool in spools:
            spool.close()
    flash(("ok", "firmware.uploaded"))
    return jsonify(id=fw.id, sha256=fw.sha256, redirect=url_for("console.firmware")), 201


def _change(fn, ok_key: str):
    """Release or revoke, then back to the firmware page."""
    attempt(fn, ok_key)
    return redirect(url_for("console.firmware"))


@bp.post("/firmware/<int:firmware_id>/release")
@login_required("admin")
def firmware_release(firmware_id: int):
    """Release a draft (an io worker re-checks the bytes and assigns the stations)."""
    return _change(lambda: svc.release(firmware_id, actor()), "firmware.released")


@bp.post("/firmware/<int:firmware_id>/revoke")
@login_required("admin")
def firmware_revoke(firmware_id: int):
    """Revoke a firmware with a reason (its assignments are revoked, flashing refused)."""
    reason = request.form.get("reason", "").strip()
    if not reason or len(reason) > 500:
        flash(("error", "lots.reason_required"))
        return redirect(url_for("console.firmware"))
    return _change(lambda: svc.revoke(firmware_id, reason, actor()), "firmware.revoked")
