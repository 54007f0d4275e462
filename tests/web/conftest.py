"""Fixtures shared by the web API and service tests."""
import pytest


@pytest.fixture()
def fw_dir(app, tmp_path, monkeypatch):
    """A fresh local firmware directory for this test."""
    monkeypatch.setitem(app.config, "FIRMWARE_DIR", str(tmp_path / "firmware"))
    return tmp_path / "firmware"
