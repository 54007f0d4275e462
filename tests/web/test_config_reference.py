"""One source of truth for configuration: every variable the server reads is in
``web.config.SETTINGS`` (default, type, meaning) and the deploy examples show exactly those."""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from beat.schedule import SCHEDULE
from web.config import DERIVED, SETTINGS, render_reference

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
REFERENCE = DEPLOY / ".env.reference.example"
# The server's packages. The station app (stations/) is a separate program on the line PCs
# with its own INI + NEUROHUB_* variables (stations/config.py); bench/ holds benchmarks.
SERVER_PACKAGES = ("web", "workers", "tasks", "beat", "storage", "printers", "queues")
# os.environ["X"], os.environ.get("X"), os.getenv("X"), env.get("X"), config["X"],
# current_app.config.get("X"), cfg["X"] ... but not an assignment (env["PGPASSWORD"] = ...).
READ = re.compile(r"""\b(?:environ|getenv|env|config|cfg)(?:\.get)?\s*[\[(]\s*["']([A-Z][A-Z0-9_]+)["']"""
                  r"""\s*(?:\](?!\s*=(?!=))|[,)])""")
BY_NAME = {s.name: s for s in SETTINGS}
# The operating system's own conventions, honoured but not ours to document: the freedesktop
# data folders where LABEL_FONT looks a font file name up (printers/fonts.py).
SYSTEM = {"XDG_DATA_HOME", "XDG_DATA_DIRS"}
# A request's WSGI environ (PEP 3333), read by web/bodies.py: CGI keys, not settings.
WSGI = {"CONTENT_LENGTH", "CONTENT_TYPE", "REQUEST_METHOD", "PATH_INFO", "QUERY_STRING"}


def variables_the_code_reads() -> set[str]:
    """Scan the server's source for environment and config reads."""
    found: set[str] = set()
    for package in SERVER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found.update(READ.findall(path.read_text(encoding="utf-8")))
    # beat reads each entry's override through env.get(entry.override): the names are data.
    found.update(e.override for e in SCHEDULE.values() if e.override)
    return found


def example_assignments(path: Path) -> dict[str, str]:
    """NAME -> value of every assignment in an env example (comments and quotes as a shell)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition("=")
        words = shlex.split(rest, comments=True)
        assert len(words) <= 1, f"{path.name}: {line!r} is not one shell word"
        out[name.strip()] = words[0] if words else ""
    return out


def test_the_code_reads_exactly_the_documented_settings():
    read = variables_the_code_reads()
    assert {"LOG_LEVEL", "AWS_ENDPOINT_URL_S3", "MALLOC_ARENA_MAX", "BACKUP_CRON"} <= read, \
        "the scan finds reads outside web/config.py"
    undocumented = {name for name in read - set(BY_NAME) - set(DERIVED) - SYSTEM - WSGI
                    if not name.startswith("HTTP_")}
    assert not undocumented, f"read but not in web.config.SETTINGS: {sorted(undocumented)}"
    unread = set(BY_NAME) - read
    assert not unread, f"in SETTINGS but read nowhere: {sorted(unread)}"
    assert all(s.meaning.strip() for s in SETTINGS)


def test_the_reference_example_shows_every_setting_with_its_default_and_meaning():
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), \
        "regenerate: python -m web.config > deploy/.env.reference.example"
    lines = REFERENCE.read_text(encoding="utf-8").splitlines()
    values = example_assignments(REFERENCE)
    assert list(values) == [s.name for s in SETTINGS]
    for s in SETTINGS:
        default = "" if s.default is None else str(s.default).lower() if isinstance(
            s.default, bool) else str(s.default)
        assert values[s.name] == default, s.name
        i = next(n for n, line in enumerate(lines) if line.startswith(f"{s.name}="))
        assert lines[i - 1] == f"# {s.meaning}", s.name


@pytest.mark.parametrize("path", sorted(DEPLOY.glob(".env.*.example")), ids=lambda p: p.name)
def test_every_example_sets_only_known_variables_with_valid_values(path):
    values = example_assignments(path)
    unknown = set(values) - set(BY_NAME)
    assert not unknown, f"{path.name} sets variables the code never reads: {sorted(unknown)}"
    for name, value in values.items():
        if value and "${{" not in value:  # Railway fills ${{...}} in
            BY_NAME[name].type(value)


@pytest.mark.parametrize("name", ["onprem", "aws", "reference"])
def test_the_examples_the_runbook_sources_are_valid_shell(name, tmp_path):
    path = DEPLOY / f".env.{name}.example"
    out = subprocess.run(["bash", "-c", 'set -ea; . "$1"; set +a; env -0', "-", str(path)],
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, check=True,
                         cwd=tmp_path)
    assert out.stderr == b""
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    for var, value in example_assignments(path).items():
        assert env[var] == value, var


def test_cloud_examples_are_reachable_behind_their_proxy():
    for name in ("aws", "railway"):
        values = example_assignments(DEPLOY / f".env.{name}.example")
        assert values["API_HOST"] == "0.0.0.0", f"a load balancer cannot reach {name}'s web"
        assert int(values["TRUSTED_PROXY_HOPS"]) >= 1
        assert values["USE_S3"] == "true"
        text = (DEPLOY / f".env.{name}.example").read_text(encoding="utf-8")
        assert "pip install 'neurohub-mes[s3]'" in text


def test_readme_configuration_points_at_the_reference_and_the_rules():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for needle in ("deploy/.env.reference.example", "pip install 'neurohub-mes[s3]'",
                   "REDIS_URL", "PLANT_TIMEZONE", "TRUSTED_PROXY_HOPS", "LOGIN_IP_RATE_LIMIT",
                   "32 characters", "8 different", "80 bits"):
        assert needle in section, needle


def _as_systemd_reads(line: str) -> tuple[str, str]:
    """KEY=VALUE as systemd's EnvironmentFile (and docker-compose 1.x's env_file) read it: the
    whole rest of the line is the value, one pair of surrounding quotes removed, no comments."""
    key, value = line.split("=", 1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return key.strip(), value


@pytest.mark.parametrize("path", sorted(DEPLOY.glob(".env.*.example")), ids=lambda p: p.name)
def test_systemd_and_compose_read_the_examples_as_the_shell_does(path):
    # An inline "# comment" after a value is part of the value to systemd (systemd#12527): the
    # on-prem example becomes /etc/neurohub/neurohub.env, read by every unit's EnvironmentFile=.
    values = example_assignments(path)
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = _as_systemd_reads(line)
            assert value == values[key], f"{path.name}: {line!r}"
