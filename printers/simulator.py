"""A Zebra-like raw TCP printer (port 9100 style) with an HTTP control endpoint, for tests.

``PrinterSimulator`` accepts ZPL on any number of concurrent connections (each connection has
its own framer, so labels never interleave), stores ``~DY`` TrueType fonts and answers ``^HW``
about them, answers ``~HS`` from a ``SimulatedPrinter`` state
machine (the same class behind ``sim://``), stores every label as ``NNNNNN.zpl`` (+ ``.png``
when rendering) and can be switched into faults at run time, in-process (``set_fault``) or from
another process over HTTP on ``control_port``::

    GET /status          JSON: counts, faults, notes, ports, and the stored files (fonts
                         received with ~DY: bytes, sha256, how many times each was downloaded)
    GET /labels          JSON: one summary per stored label
    POST /fault/<name>   set paper_out | head_open | paused | ribbon_out | offline | down
    DELETE /fault/<name> clear one fault
    POST /clear          clear every fault

The control endpoint has no authentication: it binds to ``host`` (loopback by default).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .simstate import SimulatedPrinter

STATUS_SPLIT_MODES = (False, True, "bytes")


class PrinterSimulator:
    """A TCP printer simulator; ``start()`` binds ``port`` (0 picks a free one)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, out_dir: str | None = None,
                 dpi: int = 203, render: bool = True, control_port: int | None = None,
                 split_status_segments: bool | str = False, segment_delay: float = 0.005,
                 state: SimulatedPrinter | None = None, **state_options):
        if split_status_segments not in STATUS_SPLIT_MODES:
            raise ValueError("split_status_segments must be False, True or 'bytes'")
        self.host, self.port, self.control_port = host, port, control_port
        self.split_status_segments, self.segment_delay = split_status_segments, segment_delay
        self.state = state or SimulatedPrinter("tcp", out_dir=out_dir, dpi=dpi, render=render,
                                               **state_options)
        self._listener: socket.socket | None = None
        self._http: ThreadingHTTPServer | None = None
        self._conns: dict[int, socket.socket] = {}
        self._conn_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._running = False
        self._threads: list[threading.Thread] = []
        self.state.observe(self._on_fault_change)

    # Convenience pass-throughs so callers can treat the simulator as the printer.
    def set_fault(self, name: str, on: bool = True) -> None:
        """Switch a fault on/off (``down`` closes the listener, clearing it reopens)."""
        self.state.set_fault(name, on)

    def clear_faults(self) -> None:
        """Clear every fault."""
        self.state.clear_faults()

    @property
    def label_count(self) -> int:
        """Labels printed so far."""
        return self.state.label_count

    def labels(self):
        """Stored labels (SimLabel records) in print order."""
        return self.state.labels()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> "PrinterSimulator":
        """Bind the ZPL port (and the control port, if any) and serve in background threads."""
        self._stopping.clear()
        self._running = True
        self._open_listener()
        if self.control_port is not None:
            self._http = ThreadingHTTPServer((self.host, self.control_port), _ControlHandler)
            self._http.daemon_threads = True
            self._http.simulator = self
            self.control_port = self._http.server_address[1]
            self._spawn(self._http.serve_forever, "printer-sim-http")
        return self

    def stop(self) -> None:
        """Close the listener, every connection and the control endpoint."""
        self._stopping.set()
        self._running = False
        self._close_listener()
        with self._lock:
            conns = list(self._conns.values())
        for conn in conns:
            _quiet_close(conn)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads = [t for t in self._threads if t.is_alive()]

    def __enter__(self) -> "PrinterSimulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _open_listener(self) -> None:
        with self._lock:
            if self._listener is not None or self.state.is_set("down"):
                return
            listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(128)
            listener.settimeout(0.2)  # the accept loop polls so stop()/down are prompt
            self.port = listener.getsockname()[1]
            self._listener = listener
        self._spawn(self._accept_loop, "printer-sim-accept", listener)

    def _close_listener(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # Linux: stop listening now
            except OSError:
                pass
            listener.close()

    def _on_fault_change(self, state: SimulatedPrinter) -> None:
        if not self._running:
            return
        if state.is_set("down"):
            # Power off: refuse new connections and drop the open ones.
            self._close_listener()
            with self._lock:
                conns = list(self._conns.values())
            for conn in conns:
                _quiet_close(conn)
        else:
            self._open_listener()

    # -- serving --------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set() and self._listener is listener:
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn_id = next(self._conn_ids)
            with self._lock:
                self._conns[conn_id] = conn
            self._spawn(self._serve, f"printer-sim-conn-{conn_id}", conn, conn_id)

    def _serve(self, conn: socket.socket, conn_id: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # real small segments
        conn.settimeout(0.5)
        stream = self.state.open_stream()
        try:
            while not self._stopping.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                for answer in self.state.receive(stream, data, conn_id):
                    self._send_answer(conn, answer)
        except OSError:
            pass  # peer reset, or we were powered "down"
        finally:
            self.state.end_stream(stream, conn_id)
            with self._lock:
                self._conns.pop(conn_id, None)
            _quiet_close(conn)

    def _send_answer(self, conn: socket.socket, answer: bytes) -> None:
        if not self.split_status_segments:
            conn.sendall(answer)
            return
        if self.split_status_segments == "bytes":
            pieces = [answer[i:i + 1] for i in range(len(answer))]
        else:
            pieces = [s + b"\x03\r\n" for s in answer.split(b"\x03\r\n") if s]
        for piece in pieces:
            conn.sendall(piece)
            time.sleep(self.segment_delay)


def _quiet_close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _ControlHandler(BaseHTTPRequestHandler):
    """HTTP control endpoint: JSON in, JSON out."""

    def log_message(self, *args) -> None:
        """Silence per-request logging (keeps test and CLI output clean)."""

    def _reply(self, code: int, body) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _snapshot(self) -> dict:
        sim = self.server.simulator
        return dict(sim.state.snapshot(), port=sim.port, control_port=sim.control_port)

    def do_GET(self) -> None:
        """``/status`` and ``/labels``."""
        sim = self.server.simulator
        if self.path == "/status":
            self._reply(200, self._snapshot())
        elif self.path == "/labels":
            self._reply(200, [label.to_dict() for label in sim.labels()])
        else:
            self._reply(404, {"error": f"no such resource {self.path}"})

    def _fault(self, on: bool) -> None:
        parts = self.path.strip("/").split("/")
        try:
            if parts == ["clear"] and on:
                self.server.simulator.clear_faults()
            elif len(parts) == 2 and parts[0] == "fault":
                self.server.simulator.set_fault(parts[1], on)
            else:
                return self._reply(404, {"error": f"no such resource {self.path}"})
        except ValueError as exc:
            return self._reply(400, {"error": str(exc)})
        self._reply(200, self._snapshot())

    def do_POST(self) -> None:
        """``/fault/<name>`` sets a fault, ``/clear`` clears all."""
        self._fault(True)

    def do_DELETE(self) -> None:
        """``/fault/<name>`` clears one fault."""
        if self.path == "/clear":
            return self._reply(405, {"error": "use POST /clear"})
        self._fault(False)


def main(argv: list[str] | None = None) -> int:
    """``neurohub printer-sim``: run a simulator until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="neurohub printer-sim",
                                     description="Zebra-like ZPL printer simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="ZPL port (0: any free port)")
    parser.add_argument("--dir", help="store labels here as NNNNNN.zpl/.png (default: memory)")
    parser.add_argument("--control-port", type=int, default=9101,
                        help="HTTP control port (0: any free port)")
    parser.add_argument("--no-control", action="store_true", help="no HTTP control endpoint")
    parser.add_argument("--no-render", action="store_true", help="do not render PNG previews")
    parser.add_argument("--dpi", type=int, default=203)
    parser.add_argument("--nice", type=int, default=0,
                        help="lower this process's CPU priority by N (it stands in for a "
                             "printer, which has a CPU of its own)")
    parser.add_argument("--split-status", choices=("none", "strings", "bytes"), default="none",
                        help="send ~HS answers in separate TCP segments")
    args = parser.parse_args(argv)
    if args.nice > 0 and hasattr(os, "nice"):
        os.nice(args.nice)
    split = {"none": False, "strings": True, "bytes": "bytes"}[args.split_status]
    sim = PrinterSimulator(args.host, args.port, out_dir=args.dir, dpi=args.dpi,
                           render=not args.no_render,
                           control_port=None if args.no_control else args.control_port,
                           split_status_segments=split)
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    sim.start()
    control = f"http://{args.host}:{sim.control_port}" if sim.control_port is not None else "off"
    print(f"printer simulator: ZPL on tcp://{args.host}:{sim.port}, control {control}, "
          f"labels {'in ' + args.dir if args.dir else 'in memory'}, "
          f"render {'off' if args.no_render else 'on'}", flush=True)
    try:
        while not done.wait(0.5):
            pass
    finally:
        sim.stop()
    print(f"printer simulator: stopped after {sim.label_count} labels", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
