"""Storage down: a firmware upload answers 503 + Retry-After naming storage, /readyz says so."""
import time

import pytest
from sqlalchemy import func, select

from tests.storage.conftest import FAKE_AWS_ENV, aws_env, s3_bucket, s3_client, s3_endpoint  # noqa: F401
from tests.support.firmwaredata import image
from tests.support.procs import free_port
from web.models import AuditEvent, Firmware

from .api_helpers import PROBLEM

ROUTING = [{"step": "SMT", "name": "SMT"},
           {"step": "FLASH", "name": "Flash", "requires_firmware": True}]


def _use_s3(app, monkeypatch, endpoint, bucket):
    for k, v in {"USE_S3": True, "S3_BUCKET": bucket, "AWS_ENDPOINT_URL": endpoint,
                 "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setitem(app.config, k, v)


@pytest.fixture()
def s3_down(app, aws_env, monkeypatch):  # noqa: F811
    """USE_S3=true on an endpoint nobody listens on."""
    _use_s3(app, monkeypatch, f"http://127.0.0.1:{free_port()}", "nh-unreachable")
    return app


def _upload(client, headers, product):
    import io
    form = {"product": product, "version": "1.0.0",
            "file": (io.BytesIO(image(200_000)), "fw.bin")}
    return client.post("/api/v1/firmware", headers=headers, data=form,
                       content_type="multipart/form-data")


def test_firmware_upload_with_s3_unreachable_is_503_naming_storage(s3_down, client, db, factory):
    product = factory.product(routing=ROUTING)
    t0 = time.monotonic()
    r = _upload(client, factory.headers("admin"), product)
    assert r.status_code == 503, r.get_data(as_text=True)
    assert r.mimetype == PROBLEM
    assert r.headers["Retry-After"].isdigit()
    body = r.get_json()
    assert body["service"] == "storage" and "storage" in body["detail"]
    assert time.monotonic() - t0 < 60
    assert db.session.scalar(select(func.count()).select_from(Firmware)) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "firmware.uploaded")) == 0


def test_readyz_checks_storage_and_is_503_while_s3_is_unreachable(s3_down, client, db):
    t0 = time.monotonic()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"].isdigit()
    body = r.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["storage"].startswith("error")
    assert (body["checks"]["database"], body["checks"]["broker"]) == ("ok", "ok")
    assert time.monotonic() - t0 < 15  # the probe fails fast, it does not wait out retries


def test_readyz_storage_ok_on_a_live_s3_bucket(app, client, db, monkeypatch, s3_endpoint,  # noqa: F811
                                               s3_bucket):  # noqa: F811
    _use_s3(app, monkeypatch, s3_endpoint, s3_bucket)
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["checks"]["storage"] == "ok"


def test_readyz_is_503_when_the_local_store_is_unusable(app, client, db, monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the firmware directory should be")
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(blocker))
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"]["storage"].startswith("error")
