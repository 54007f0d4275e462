"""The import rules of DESIGN.md section 3, as import-linter contracts in setup.cfg."""
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "setup.cfg"), no_cache=True) == 0


def test_contracts_cover_the_design_rules():
    text = (ROOT / "setup.cfg").read_text()
    for contract in ("stations-client-only", "storage-standalone", "beat-is-data",
                     "domain-below-delivery", "tasks-thin"):
        assert f"[importlinter:contract:{contract}]" in text
