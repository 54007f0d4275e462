"""The simulator's HTTP control endpoint and its command-line entry point."""
import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from printers import (PrinterNotReady, PrinterSimulator, PrinterUnreachable, printer_for_uri,
                      send_job)

ROOT = Path(__file__).resolve().parents[2]
LABEL = b"^XA^FO40,40^BY2^BCN,80,Y,N,N^FDCTRL-1^FS^XZ"


def call(port, method, path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_control_switches_faults(tmp_path):
    with PrinterSimulator(out_dir=str(tmp_path), control_port=0, render=True) as sim:
        printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
        code, body = call(sim.control_port, "GET", "/status")
        assert code == 200 and body["faults"] == [] and body["port"] == sim.port

        assert call(sim.control_port, "POST", "/fault/paper_out")[1]["faults"] == ["paper_out"]
        with pytest.raises(PrinterNotReady, match="paper_out"):
            send_job(printer, LABEL)
        call(sim.control_port, "POST", "/fault/head_open")
        with pytest.raises(PrinterNotReady) as info:
            send_job(printer, LABEL)
        assert set(info.value.reasons) == {"paper_out", "head_open"}
        assert call(sim.control_port, "DELETE", "/fault/paper_out")[1]["faults"] == ["head_open"]
        assert call(sim.control_port, "POST", "/clear")[1]["faults"] == []
        send_job(printer, LABEL)

        code, labels = call(sim.control_port, "GET", "/labels")
        assert code == 200 and len(labels) == 1
        assert labels[0]["index"] == 1 and labels[0]["bytes"] == len(LABEL)
        assert labels[0]["rendered"] and labels[0]["render_error"] is None
        assert os.path.exists(labels[0]["png_path"])
        assert call(sim.control_port, "GET", "/status")[1]["label_count"] == 1

        assert call(sim.control_port, "POST", "/fault/down")[0] == 200
        with pytest.raises(PrinterUnreachable):
            printer.status()
        assert call(sim.control_port, "POST", "/clear")[0] == 200  # control stays up
        assert printer.status().ready
        printer.close()

        assert call(sim.control_port, "POST", "/fault/on_fire")[0] == 400
        assert call(sim.control_port, "GET", "/nothing")[0] == 404


def test_render_failure_is_recorded_not_fatal(tmp_path):
    with PrinterSimulator(out_dir=str(tmp_path), render=True) as sim:
        printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
        send_job(printer, b"^XA^FO20,20^A@N,30,30,E:NOFONT.TTF^FDx^FS^XZ")
        send_job(printer, LABEL)
        first, second = sim.labels()
        assert first.render_error and "NOFONT" in first.render_error and not first.png_path
        assert second.render_error is None and second.png_path.endswith("000002.png")
        assert sorted(os.listdir(tmp_path)) == ["000001.zpl", "000002.png", "000002.zpl"]


def test_main_runs_as_a_separate_process_until_sigterm(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from printers.simulator import main; "
         "sys.exit(main(sys.argv[1:]))", "--port", "0", "--control-port", "0",
         "--dir", str(tmp_path), "--no-render"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"tcp://127\.0\.0\.1:(\d+), control http://127\.0\.0\.1:(\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        port, control = int(match[1]), int(match[2])
        call(control, "POST", "/fault/ribbon_out")
        printer = printer_for_uri(f"tcp://127.0.0.1:{port}")
        with pytest.raises(PrinterNotReady, match="ribbon_out"):
            send_job(printer, LABEL)
        call(control, "POST", "/clear")
        send_job(printer, LABEL)
        assert call(control, "GET", "/status")[1]["label_count"] == 1
        assert (tmp_path / "000001.zpl").read_bytes() == LABEL
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "stopped after 1 labels" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
