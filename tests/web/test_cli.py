"""The `neurohub` command as a new user meets it: help, version, and commands before `db upgrade`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.backupdata import scratch_database
from tests.support.procs import ROOT

NOT_INITIALISED = "database not initialised: run `neurohub db upgrade`"


def _neurohub(tmp_path, *args, **env):
    """Run `neurohub ARGS` from an empty folder with nothing configured (plus ``env``)."""
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
            "LANG": "C.UTF-8", **env}
    return subprocess.run([sys.executable, "-m", "web.cli", *args], env=base, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_help_shows_only_the_products_commands_and_writes_nothing(tmp_path):
    r = _neurohub(tmp_path, "--help")
    assert r.returncode == 0, r.stderr
    for flask_only in ("--env-file", "-e,", "--app", "-A,", "--debug", "limiter"):
        assert flask_only not in r.stdout, r.stdout
    for command in ("up", "db", "seed-demo", "create-user", "backup", "restore", "firmware"):
        assert f"\n  {command} " in r.stdout, r.stdout
    assert "--version" in r.stdout
    for sub in (["up", "--help"], ["backup", "--help"], ["db", "--help"]):
        assert _neurohub(tmp_path, *sub).returncode == 0
    assert os.listdir(tmp_path) == []  # no var/secret_key, no database file


def test_version(tmp_path):
    from importlib.metadata import version
    r = _neurohub(tmp_path, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"neurohub, version {version('neurohub-mes')}"


@pytest.mark.parametrize("args", [["seed-demo"], ["create-user", "ann", "--role", "operator",
                                                  "--password", "a-long-password-1"],
                                  ["backup", "list"], ["firmware", "list"]])
def test_a_command_before_db_upgrade_says_so_in_one_line_on_sqlite(tmp_path, args):
    r = _neurohub(tmp_path, *args)
    assert r.returncode == 1
    assert r.stderr.strip() == NOT_INITIALISED, r.stderr


def test_a_command_before_db_upgrade_says_so_in_one_line_on_postgresql(tmp_path):
    from tests.conftest import TEST_CONFIG
    with scratch_database("nh_cli_empty") as url:
        r = _neurohub(tmp_path, "seed-demo", DATABASE_URL=url,
                      SECRET_KEY=TEST_CONFIG["SECRET_KEY"])
        assert r.returncode == 1
        assert r.stderr.strip() == NOT_INITIALISED, r.stderr
        up = _neurohub(tmp_path, "db", "upgrade", DATABASE_URL=url,
                       SECRET_KEY=TEST_CONFIG["SECRET_KEY"])
        assert up.returncode == 0, up.stderr
        again = _neurohub(tmp_path, "seed-demo", DATABASE_URL=url,
                          SECRET_KEY=TEST_CONFIG["SECRET_KEY"])
        assert again.returncode == 0, again.stderr
