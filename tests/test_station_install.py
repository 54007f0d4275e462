"""README's station section as written: a fresh venv with only `pip install -e '.[station]'`
starts `neurohub-station` (offscreen), and the section installs Qt's system libraries."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.support.procs import ROOT, free_port, wait_until


def _station_block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Station app", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, re.S)[0]


def test_the_station_section_installs_qts_libraries_and_the_station_extra():
    block = _station_block()
    assert "xargs -a deploy/apt-packages.txt apt-get install" in block
    packages = (ROOT / "deploy/apt-packages.txt").read_text().split()
    for lib in ("fonts-noto-cjk", "libxcb-icccm4", "libxcb-image0", "libxcb-keysyms1",
                "libxcb-render-util0", "libxcb-xinerama0", "libxkbcommon-x11-0", "libgl1"):
        assert lib in packages
    assert ".venv/bin/pip install -e '.[station]'" in block


def test_the_station_package_ships_no_benchmark():
    """Operator PCs get the ``stations`` package; the station benchmark lives in bench/."""
    import pkgutil

    import stations
    modules = {m.name for m in pkgutil.walk_packages(stations.__path__, "stations.")}
    assert "stations.app" in modules  # (the walk sees the package)
    assert not [m for m in modules if "bench" in m.rsplit(".", 1)[-1]], modules
    assert (ROOT / "bench" / "bench_station.py").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fresh_venv_with_only_the_station_extra_starts_the_app(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Only what README says: no PYTHONPATH, nothing from the test venv. --no-compile only skips
    # writing .pyc files (Python compiles on import anyway).
    pip = subprocess.run([str(venv / "bin/pip"), "install", "--no-compile", "-q", "-e",
                          f"{ROOT}[station]"], capture_output=True, text=True, timeout=800)
    assert pip.returncode == 0, pip.stderr[-3000:]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "QT_QPA_PLATFORM": "offscreen"}
    log = tmp_path / "station.out"
    data = tmp_path / "station-data"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin/neurohub-station"), "--server",
                                 f"http://127.0.0.1:{free_port()}", "--station", "ST-01",
                                 "--data-dir", str(data), "--config",
                                 str(tmp_path / "station.ini")], env=env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # The window's context opened its queue: the app is up and waiting for a login.
        wait_until(lambda: proc.poll() is not None or (data / "queue.sqlite3").exists(), 120,
                   0.3, "the station app's start")
        time.sleep(3)
        output = log.read_text(errors="replace")
        assert proc.poll() is None, output
        assert (data / "queue.sqlite3").exists(), output
        assert "Traceback" not in output, output
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
