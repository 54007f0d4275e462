"""/api/v1/files/{area}/{key} on a local store: any key that resolves outside the store (through
a symlink planted in it) is "not found", in every area, never a 500 and never the outside file."""
from __future__ import annotations

import os

import pytest

from storage import LocalStorage, ObjectNotFound

from .api_helpers import assert_problem

AREAS = ("firmware", "backups")


@pytest.fixture()
def stores(app, tmp_path, monkeypatch):
    """Fresh local firmware and backup directories, a secret beside them, and planted links."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"SECRET")
    dirs = {}
    for area in AREAS:
        base = tmp_path / area
        (base / "real").mkdir(parents=True)
        (base / "real" / "ok.bin").write_bytes(b"inside")
        os.symlink(outside, base / "evil")                         # a directory outside
        os.symlink(outside / "secret.txt", base / "link.txt")      # a file outside
        os.symlink(outside / "missing.txt", base / "dangling.txt")  # nothing, outside
        os.symlink(base / "link.txt", base / "chain.txt")          # a link to a link outside
        os.symlink(tmp_path, base / "up")                          # the store's parent
        os.symlink(base / "real" / "ok.bin", base / "alias.bin")   # inside: allowed
        dirs[area] = base
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(dirs["firmware"]))
    monkeypatch.setitem(app.config, "BACKUP_DIR", str(dirs["backups"]))
    return dirs


ESCAPES = ("evil/secret.txt", "link.txt", "dangling.txt", "chain.txt", "up/outside/secret.txt",
           "evil/missing.txt")


@pytest.mark.parametrize("area", AREAS)
@pytest.mark.parametrize("key", ESCAPES)
def test_a_key_that_resolves_outside_the_store_is_404(client, auth, stores, area, key):
    resp = client.get(f"/api/v1/files/{area}/{key}", headers=auth("admin"))
    assert_problem(resp, 404)
    assert b"SECRET" not in resp.data


@pytest.mark.parametrize("area", AREAS)
def test_keys_inside_the_store_are_still_served(client, auth, stores, area):
    for key in ("real/ok.bin", "alias.bin"):
        resp = client.get(f"/api/v1/files/{area}/{key}", headers=auth("admin"))
        assert resp.status_code == 200 and resp.data == b"inside", (key, resp.status_code)


def test_local_store_reads_report_escapes_as_not_found(stores):
    store = LocalStorage(stores["firmware"])
    for key in ESCAPES:
        with pytest.raises(ObjectNotFound):
            store.stat(key)
        with pytest.raises(ObjectNotFound):
            store.open(key)
