"""checkov over deploy/terraform/aws: no failed check; every skipped one carries its reason next to
the resource (`#checkov:skip=ID:reason`). checkov lives in a venv of its own (its pins clash with
the product's): CHECKOV, default .venv-checkov/bin/checkov (.ci/run makes it)."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.support.procs import ROOT

pytestmark = pytest.mark.deploy
CHECKOV = os.environ.get("CHECKOV", str(ROOT / ".venv-checkov" / "bin" / "checkov"))
TERRAFORM = ROOT / "deploy" / "terraform" / "aws"


def test_checkov_fails_nothing_and_every_skip_has_a_reason():
    r = subprocess.run([CHECKOV, "-d", str(TERRAFORM), "--framework", "terraform", "--quiet",
                        "--compact", "--skip-download", "-o", "json"], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "BC_SKIP_MAPPING": "TRUE"})
    report = json.loads(r.stdout)
    summary = report["summary"]
    failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["passed"] > 250
    for path in TERRAFORM.glob("*.tf"):
        for line in path.read_text().splitlines():
            m = re.search(r"#checkov:skip=([A-Z0-9_]+)(:?)(.*)", line)
            if m:
                assert m.group(2) == ":" and len(m.group(3).strip()) > 20, (path.name, line)
