"""The import rules of DESIGN.md section 3, as import-linter contracts in setup.cfg."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # In a process of its own: import-linter's logging set-up (dictConfig) disables every logger
    # that exists in the process, which would silence the station log tests run after it.
    lint = Path(sys.executable).parent / "lint-imports"
    r = subprocess.run([str(lint), "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Contracts: 15 kept, 0 broken." in r.stdout, r.stdout


def test_contracts_cover_the_design_rules():
    text = (ROOT / "setup.cfg").read_text()
    for contract in ("stations-client-only", "storage-standalone", "beat-is-data",
                     "domain-below-delivery", "tasks-thin", "problems-plain",
                     "services-raise-problems", "queues-leaf", "tasks-publish-through-base",
                     "api-not-workers", "api-not-beat", "services-layers",
                     "metrics-no-celery", "metrics-below-services"):
        assert f"[importlinter:contract:{contract}]" in text
