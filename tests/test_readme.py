"""README starts with the two commands, CI runs exactly the README's test command, and the
walk-through works as written against a running `neurohub up`."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.procs import Proc, embedded_env, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_run_and_test_commands():
    run, test = _commands()[:2]
    assert "neurohub up" in run and "pip install -e ." in run
    assert "pytest" in test and "[test]" in test
    # both create a venv, the walk-through uses curl: a fresh Debian has neither
    assert "python3 -m venv" in run and "python3 -m venv" in test
    assert "xargs -a deploy/apt-packages.txt apt-get install" in test
    packages = (ROOT / "deploy/apt-packages.txt").read_text().split()
    assert "python3-venv" in packages and "curl" in packages


def test_ci_runs_the_readme_test_command_verbatim():
    test = _commands()[1]
    lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert test in lines


def _walkthrough() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## A completion, by hand", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)[0]


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """README's run command on the embedded default: db upgrade, seed-demo, `neurohub up`."""
    home = tmp_path_factory.mktemp("readme")
    env, port, _sim_port = embedded_env(home)
    for args in (["db", "upgrade"], ["seed-demo"]):
        r = subprocess.run([sys.executable, "-m", "web.cli", *args], env=env, cwd=home,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
    up = Proc("up", [sys.executable, "-m", "web.cli", "up", "--port", str(port)], env, home,
              cwd=home).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(up, base)
        yield base, up
    finally:
        up.stop()


def _run(snippet: str, base: str, shell: str):
    assert "localhost:8000" in snippet
    script = snippet.replace("http://localhost:8000", base).replace("localhost:8000", base)
    return subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_walkthrough_shows_the_decided_completion_and_the_dhr(embedded, shell):
    base, up = embedded
    snippet = _walkthrough()
    assert "uuidgen" not in snippet  # not on Debian by default
    r = _run(snippet, base, shell)
    assert r.returncode == 0, r.stdout + r.stderr + up.output()
    lines = r.stdout.strip().splitlines()
    m = re.fullmatch(r"lot (\S+), completion (\d+): (\w+)", lines[0])
    assert m and m.group(3) == "accepted", r.stdout + r.stderr
    dhr = json.loads("\n".join(lines[1:]))
    assert m.group(1) in json.dumps(dhr) and "SMT" in json.dumps(dhr)
    assert r.stderr == "", r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_the_walkthrough_with_a_wrong_password_prints_the_problem_and_stops(embedded, shell):
    base, up = embedded
    snippet = _walkthrough()
    assert snippet.count('"password":"super-demo-pw"') == 1
    r = _run(snippet.replace('"password":"super-demo-pw"', '"password":"wrong-pw"'), base,
             shell)
    assert r.returncode != 0
    assert r.stdout == "", r.stdout
    assert r.stderr.startswith("error: 401 Unauthorized: "), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr and "KeyError" not in r.stderr


def test_the_walkthrough_says_what_happens_when_the_server_is_not_running():
    r = _run(_walkthrough(), f"http://127.0.0.1:{free_port()}", "bash")
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip() == "error: no JSON answer (is neurohub up running?)", r.stderr
