"""The firmware page: streamed upload with the token in a header, release and revoke, the
stations' assignment states; admins change, supervisors read, operators see nothing."""
from __future__ import annotations

import hashlib
import io

from sqlalchemy import select

from tests.support.firmwaredata import image
from web.models import Firmware
from web.services import firmware as fw_svc

from .conftest import csrf_token

ROUTING = [{"step": "SMT", "name": "SMT"},
           {"step": "FLASH", "name": "Flash", "requires_firmware": True}]


def _upload(client, token, product, version, data, **headers):
    form = {"product": product, "version": version, "file": (io.BytesIO(data), "fw.bin")}
    return client.post("/console/firmware", data=form, content_type="multipart/form-data",
                       headers=({"X-CSRFToken": token} if token else {}) | headers)


def test_upload_release_revoke(app, console, factory, fw_dir, db):
    product = factory.product(routing=ROUTING)
    station = factory.station(steps=["FLASH"])
    client = console("admin")
    token = csrf_token(client, "/console/firmware")
    data = image(200_000, seed=b"console")
    assert _upload(client, None, product, "1.0.0", data).status_code == 403  # no token
    resp = _upload(client, token, product, "1.0.0", data)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.get_json()["sha256"] == hashlib.sha256(data).hexdigest()
    again = _upload(client, token, product, "1.0.0", data)
    assert again.status_code == 409 and "already" in again.get_json()["detail"]
    bad = _upload(client, token, product, "not-semver", data)
    assert bad.status_code == 422 and "version" in bad.get_json()["detail"]
    fw_id = resp.get_json()["id"]
    page = client.get("/console/firmware").get_data(as_text=True)
    assert f'id="firmware-{fw_id}"' in page and "data-confirm" in page
    assert client.post(f"/console/firmware/{fw_id}/release",
                       data={"csrf_token": token}).status_code == 302
    with app.app_context():
        fw_svc.distribute(fw_id)  # what the io worker does after the release
    page = client.get("/console/firmware").get_data(as_text=True)
    section = page.split(f'id="firmware-{fw_id}"')[1]
    assert station in section and "pending" in section
    assert client.post(f"/console/firmware/{fw_id}/revoke", data={
        "csrf_token": token, "reason": "배터리 드레인 버그"}).status_code == 302
    db.session.expire_all()
    fw = db.session.scalar(select(Firmware).where(Firmware.id == fw_id))
    assert (fw.state, fw.revoke_reason) == ("revoked", "배터리 드레인 버그")


def test_upload_limit_is_the_apis(app, console, factory, fw_dir, monkeypatch):
    product = factory.product(routing=ROUTING)
    monkeypatch.setitem(app.config, "MAX_FIRMWARE_BYTES", 10_000)
    client = console("admin")
    token = csrf_token(client, "/console/firmware")
    resp = _upload(client, token, product, "1.0.0", image(50_000))
    assert resp.status_code == 413 and "MAX_FIRMWARE_BYTES" in resp.get_json()["detail"]


def test_roles_on_the_firmware_page(console, factory, fw_dir):
    sup = console("supervisor")
    page = sup.get("/console/firmware")
    assert page.status_code == 200 and 'id="firmware-upload"' not in page.get_data(as_text=True)
    token = csrf_token(sup, "/console/firmware")
    assert _upload(sup, token, factory.product(routing=ROUTING), "1.0.0",
                   image(1000)).status_code == 403
