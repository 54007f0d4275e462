"""Backends: tcp against the simulator on a real port, file://, sim://, URI dispatch."""
import os
import re
import threading
from pathlib import Path

import pytest

from printers import (FilePrinter, PrinterNotReady, PrinterOffline, PrinterSimulator,
                      PrinterUnreachable, SimPrinter, TcpPrinter, field_hex, printer_for_uri,
                      ready_or_raise, reset_simulated_printers, send_job, simulated_printer,
                      split_labels)

LABEL = b"^XA^FO50,50^A0N,40,0^FDLOT-0001^FS^FO50,120^BY2^BCN,80,Y,N,N^FDLOT-0001^FS^XZ"


@pytest.fixture
def sim(tmp_path):
    with PrinterSimulator(out_dir=str(tmp_path / "labels"), render=False) as simulator:
        yield simulator


def test_one_label_is_stored_exactly_as_sent(sim):
    printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
    status = send_job(printer, LABEL)
    assert status.ready
    assert sim.label_count == 1
    stored = sim.labels()[0]
    assert stored.zpl == LABEL
    assert Path(stored.zpl_path).read_bytes() == LABEL
    assert os.path.basename(stored.zpl_path) == "000001.zpl"
    # status and label went over one connection
    assert {label.connection for label in sim.labels()} == {1}
    assert list(sim.state.control_commands) == ["HS"]


def test_paper_out_refuses_then_prints_after_clearing(sim):
    printer = printer_for_uri(f"tcp://127.0.0.1:{sim.port}")
    sim.set_fault("paper_out")
    with pytest.raises(PrinterNotReady) as info:
        send_job(printer, LABEL)
    assert info.value.reasons == ["paper_out"]
    assert info.value.status.paper_out
    assert sim.label_count == 0 and sim.state.discarded_count == 0
    sim.clear_faults()
    send_job(printer, LABEL)
    assert sim.label_count == 1


def test_ready_or_raise_is_the_gate_and_sends_nothing(sim):
    with printer_for_uri(f"tcp://127.0.0.1:{sim.port}") as printer:
        assert ready_or_raise(printer).ready
        sim.set_fault("head_open")
        with pytest.raises(PrinterNotReady) as info:
            ready_or_raise(printer)
    assert info.value.reasons == ["head_open"] and info.value.status.head_open
    assert sim.label_count == 0 and sim.state.discarded_count == 0
    assert list(sim.state.control_commands) == ["HS", "HS"]


@pytest.mark.parametrize("fault", ["head_open", "paused", "ribbon_out"])
def test_every_print_fault_blocks_the_job(sim, fault):
    sim.set_fault(fault)
    with pytest.raises(PrinterNotReady, match=fault):
        send_job(printer_for_uri(f"tcp://127.0.0.1:{sim.port}"), LABEL)
    assert sim.label_count == 0


def test_label_sent_while_faulted_is_discarded_with_a_note(sim):
    # Bypassing send_job (no status check) is exactly the bug the simulator must expose.
    printer = TcpPrinter("127.0.0.1", sim.port)
    sim.set_fault("head_open")
    printer.send(LABEL)
    printer.close()
    assert sim.label_count == 0
    assert sim.state.discarded_count == 1
    assert "head_open" in sim.state.notes[-1]


def test_silent_firmware_is_offline_not_ready(tmp_path):
    with PrinterSimulator(render=False, silent_when_faulted=True) as simulator:
        simulator.set_fault("paper_out")
        with pytest.raises(PrinterOffline):
            send_job(TcpPrinter("127.0.0.1", simulator.port, status_timeout=0.5), LABEL)
        assert simulator.label_count == 0


def test_unreachable_port_raises(sim):
    sim.set_fault("down")
    with pytest.raises(PrinterUnreachable):
        send_job(printer_for_uri(f"tcp://127.0.0.1:{sim.port}"), LABEL)


def test_fifty_concurrent_connections_store_fifty_intact_labels(sim):
    errors = []

    def job(index):
        payload = (b"^XA^FO20,20^A0N,30,0^FH\\^FD" + field_hex(f"JOB-{index:03d}").encode()
                   + b"^FS" + b"^FX" + b"padding " * 200 + b"^FS^XZ")
        try:
            send_job(TcpPrinter("127.0.0.1", sim.port, timeout=10), payload)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=job, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sim.state.wait_for_labels(50, timeout=5)
    labels = sim.labels()
    assert len(labels) == 50 and sim.label_count == 50
    assert len({label.connection for label in labels}) == 50  # really 50 connections
    seen = []
    for label in labels:
        assert split_labels(label.zpl) == [label.zpl]  # one complete ^XA...^XZ each
        indexes = re.findall(rb"JOB-(\d{3})", label.zpl)
        assert len(indexes) == 1
        seen.append(int(indexes[0]))
        assert Path(label.zpl_path).read_bytes() == label.zpl
    assert sorted(seen) == list(range(50))
    assert len(os.listdir(sim.state.out_dir)) == 50


def test_send_rejects_unterminated_and_empty_jobs(sim):
    printer = TcpPrinter("127.0.0.1", sim.port)
    with pytest.raises(ValueError, match="unterminated"):
        printer.send(b"^XA^FDno end^FS")
    with pytest.raises(ValueError):
        printer.send(b"  ")
    with pytest.raises(TypeError):
        printer.send("^XA^XZ")
    printer.close()
    assert sim.label_count == 0


def test_file_backend_writes_atomically(tmp_path):
    target = tmp_path / "spool" / "nested"
    printer = printer_for_uri(f"file://{target}")
    assert isinstance(printer, FilePrinter)
    assert send_job(printer, LABEL, job_id="job-42").ready
    assert (target / "job-42.zpl").read_bytes() == LABEL
    send_job(printer, LABEL.replace(b"0001", b"0002"), job_id="job-42")  # retry replaces
    assert (target / "job-42.zpl").read_bytes() == LABEL.replace(b"0001", b"0002")
    send_job(printer, LABEL)  # no job id: timestamp name
    names = sorted(os.listdir(target))
    assert len(names) == 2 and all(name.endswith(".zpl") for name in names)
    assert not [name for name in names if name.startswith(".")]  # no temp files left
    with pytest.raises(ValueError):
        printer.send(LABEL, job_id="../escape")


def test_file_backend_unusable_directory_is_unreachable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(PrinterUnreachable):
        FilePrinter(str(blocker / "dir")).status()


def test_sim_backend_shares_the_state_machine():
    reset_simulated_printers()
    printer = printer_for_uri("sim://line1")
    assert isinstance(printer, SimPrinter)
    device = simulated_printer("line1")
    assert printer.device is device
    send_job(printer, LABEL)
    assert device.label_count == 1 and device.labels()[0].zpl == LABEL
    device.set_fault("ribbon_out")
    with pytest.raises(PrinterNotReady, match="ribbon_out"):
        send_job(printer, LABEL)
    device.set_fault("offline")
    with pytest.raises(PrinterOffline):
        send_job(printer, LABEL)
    device.set_fault("down")
    with pytest.raises(PrinterUnreachable):
        printer.status()
    device.clear_faults()
    send_job(printer_for_uri("sim://"), LABEL)  # default name is a different device
    assert device.label_count == 1 and simulated_printer("default").label_count == 1
    reset_simulated_printers()


def test_uri_dispatch():
    tcp = printer_for_uri("tcp://printer-7.local")
    assert isinstance(tcp, TcpPrinter) and (tcp.host, tcp.port) == ("printer-7.local", 9100)
    tcp = printer_for_uri("tcp://[::1]:9200", connect_timeout=0.5, timeout=2)
    assert (tcp.host, tcp.port, tcp.connect_timeout, tcp.timeout) == ("::1", 9200, 0.5, 2)
    with pytest.raises(ValueError, match="lpd"):
        printer_for_uri("lpd://host/queue")
    with pytest.raises(ValueError, match="station"):
        printer_for_uri("station://")
    with pytest.raises(ValueError, match="station"):
        printer_for_uri("station://ST-01")
    with pytest.raises(ValueError):
        printer_for_uri("tcp://")
    with pytest.raises(ValueError):
        printer_for_uri("file://otherhost/dir")


def test_file_backend_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    printer = FilePrinter(str(tmp_path))
    send_job(printer, LABEL, job_id="keep")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(PrinterUnreachable, match="write failed"):
        printer.send(LABEL.replace(b"0001", b"0002"), job_id="keep")
    with pytest.raises(PrinterUnreachable):
        printer.send(LABEL, job_id="new")
    assert sorted(os.listdir(tmp_path)) == ["keep.zpl"]  # no temp files, no partial job
    assert (tmp_path / "keep.zpl").read_bytes() == LABEL  # the old job is untouched
