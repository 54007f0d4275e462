"""Static exporters serving tests/ops/contract.py's exposition, one per process of the contract,
for a real Prometheus (tests/support/prometheus.py) to scrape."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.ops import contract
from tests.support.procs import free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"


def _server(job: str) -> ThreadingHTTPServer:
    """An HTTP server answering /metrics with ``job``'s exposition, one counter step per scrape."""
    scrapes = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path != "/metrics":
                self.send_error(404)
                return
            scrapes[0] += 1
            body = contract.render(job, scrapes[0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    return ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)


class ContractExporters:
    """One exporter per process of the contract; the web twice (api1 and api2 export the same
    database state, which the rules' max() must take in its stride)."""

    def __init__(self):
        self.servers = {job: [_server(job)] for job in contract.JOBS}
        self.servers["neurohub-web"].append(_server("neurohub-web"))

    @property
    def targets(self) -> dict[str, list[str]]:
        """Prometheus job name -> ["127.0.0.1:port", ...]."""
        return {job: [f"127.0.0.1:{s.server_address[1]}" for s in servers]
                for job, servers in self.servers.items()}

    def __enter__(self) -> "ContractExporters":
        for servers in self.servers.values():
            for s in servers:
                threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for servers in self.servers.values():
            for s in servers:
                s.shutdown()
                s.server_close()
