"""firmware.distribute: a release is distributed; storage trouble is retried, then failed."""
from __future__ import annotations

import io
import os

import pytest
from sqlalchemy import select

from storage import StorageError
from tests.support.firmwaredata import image
from web.models import Firmware, OutboxMessage
from web.services import firmware as svc
from web.services.audit import Actor
from web.services.storage_sync import area_storage

ADMIN = Actor(None, "test:admin")
FLASH = [{"step": "FLASH", "name": "Flash", "requires_firmware": True}]


@pytest.fixture()
def release(app, db, factory, tmp_path, monkeypatch):
    """A released (not yet distributed) firmware for one flashing station: its id."""
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(tmp_path / "firmware"))
    product = factory.product(routing=FLASH)
    factory.station(steps=["FLASH"])
    fw = svc.upload(product, "1.0.0", svc.measure(io.BytesIO(image()), "fw.bin"), ADMIN)
    svc.release(fw.id, ADMIN)
    return fw.id


def _loop_the_stored_object(db, firmware_id: int) -> None:
    """Make the stored object unreadable (a symlink loop): a storage error, not a missing one."""
    key = db.session.get(Firmware, firmware_id).storage_key
    db.session.rollback()
    path = os.path.join(area_storage("firmware").base_dir, *key.split("/"))
    os.replace(path, path + ".moved")
    os.symlink(os.path.basename(path), path)


def test_a_release_is_distributed_once(app, db, release):
    from tasks.firmware import distribute
    assert distribute(release).startswith("distributed")
    assert distribute(release) == "skipped"  # a duplicate message changes nothing
    assert db.session.scalar(select(OutboxMessage)) is None


def test_storage_trouble_is_retried_and_the_release_stays_released(app, db, release):
    from tasks.firmware import distribute
    _loop_the_stored_object(db, release)
    distribute.push_request(retries=0)
    try:
        with pytest.raises(StorageError):  # called directly, retry() re-raises it
            distribute(release)
    finally:
        distribute.pop_request()
    fw = db.session.get(Firmware, release)
    assert (fw.state, fw.distributed_at, fw.release_error) == ("released", None, None)


def test_when_the_retries_are_spent_the_release_fails_visibly(app, db, release):
    from tasks.firmware import distribute
    _loop_the_stored_object(db, release)
    distribute.push_request(retries=distribute.max_retries)
    try:
        assert distribute(release) == "failed"
    finally:
        distribute.pop_request()
    fw = db.session.get(Firmware, release)
    assert fw.state == "draft" and fw.release_error.startswith("distribution failed: ")
    assert "Too many levels of symbolic links" in fw.release_error
    assert db.session.scalar(select(OutboxMessage)) is None  # nothing left to redeliver
