"""Debian's nginx running deploy/nginx/neurohub.conf on loopback ports, in front of given backends.

The config file is used as written; only what names the compose network is put to this machine:
the two API servers, Flower, the listening ports and the certificate's folder.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.procs import ROOT, Proc, free_port, wait_until

CONF = ROOT / "deploy" / "nginx" / "neurohub.conf"
NGINX = "/usr/sbin/nginx"


def self_signed(folder: Path) -> Path:
    """tls.crt/tls.key for localhost in ``folder`` (deploy/nginx/make-cert.sh)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["sh", str(ROOT / "deploy/nginx/make-cert.sh"), str(folder)], check=True,
                   env={"PATH": "/usr/bin:/bin", "TLS_COMMON_NAME": "localhost"},
                   capture_output=True)
    return folder


def site_config(api: list[str], flower: str, http_port: int, https_port: int, certs: Path) -> str:
    """neurohub.conf with this machine's addresses in place of the compose network's."""
    text = CONF.read_text()
    servers = re.findall(r"server (api\d:8000)", text)
    assert servers == ["api1:8000", "api2:8000"], servers
    for name, addr in zip(servers, api):
        text = text.replace(f"server {name}", f"server {addr}")
    text = text.replace("server flower:5555;", f"server {flower};")
    text = re.sub(r"listen (\[::\]:)?80;", lambda m: "" if m.group(1) else f"listen 127.0.0.1:{http_port};", text)
    text = re.sub(r"listen (\[::\]:)?443 ssl http2;",
                  lambda m: "" if m.group(1) else f"listen 127.0.0.1:{https_port} ssl http2;", text)
    return text.replace("/etc/nginx/certs/", f"{certs}/")


def main_config(prefix: Path, site: Path) -> str:
    """A minimal nginx.conf of our own: everything under ``prefix``, the site included."""
    return f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


class Nginx:
    """nginx -c our config, in the foreground as a child process."""

    def __init__(self, prefix: Path, api: list[str], flower: str | None = None):
        self.prefix = prefix
        prefix.mkdir(parents=True, exist_ok=True)
        self.http_port, self.https_port = free_port(), free_port()
        certs = self_signed(prefix / "certs")
        site = prefix / "neurohub.conf"
        site.write_text(site_config(api, flower or f"127.0.0.1:{free_port()}", self.http_port,
                                    self.https_port, certs))
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(main_config(prefix, site))
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.cert = str(certs / "tls.crt")
        self.proc = Proc("nginx", [NGINX, "-p", str(prefix), "-c", str(self.conf)], {}, prefix)

    def test_config(self) -> subprocess.CompletedProcess:
        """nginx -t on this configuration."""
        return subprocess.run([NGINX, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
                              capture_output=True, text=True)

    def start(self) -> "Nginx":
        """Start and wait until the HTTPS port accepts connections."""
        import socket
        self.proc.start()

        def listening():
            try:
                socket.create_connection(("127.0.0.1", self.https_port), 0.5).close()
                return True
            except OSError:
                return False
        try:
            wait_until(listening, 20, 0.05, "nginx to listen")
        except AssertionError:
            raise AssertionError(self.proc.output()) from None
        return self

    def stop(self) -> None:
        """Stop nginx (SIGTERM, fast shutdown)."""
        self.proc.stop(10)
