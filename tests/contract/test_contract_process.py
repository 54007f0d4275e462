"""Under pytest-xdist: the schemathesis contract (test_schemathesis.py) in a pytest process of its
own, without xdist (see UNDER_XDIST_ONLY in conftest.py)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support.procs import ROOT


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_schemathesis_contract_passes_in_its_own_process():
    module = ROOT / "tests" / "contract" / "test_schemathesis.py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider",
                        "-q", "-s", str(module)], cwd=ROOT, capture_output=True, text=True,
                       timeout=880)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    counts = {role: int(n) for role, n in re.findall(r"schemathesis as (\w+): (\d+) cases",
                                                      r.stdout)}
    assert set(counts) == {"admin", "operator"} and sum(counts.values()) >= 1000, r.stdout[-3000:]
    assert re.search(r"\b\d+ passed\b", r.stdout) and " failed" not in r.stdout, r.stdout[-3000:]
