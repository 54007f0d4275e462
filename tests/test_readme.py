"""README starts with the two commands, and CI runs exactly the README's test command."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands():
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_readme_starts_with_run_and_test_commands():
    run, test = _commands()[:2]
    assert "neurohub up" in run and "pip install -e ." in run
    assert "pytest" in test and "[test]" in test


def test_ci_runs_the_readme_test_command_verbatim():
    test = _commands()[1]
    lines = [ln.strip() for ln in (ROOT / ".ci/run").read_text().splitlines()]
    assert test in lines
