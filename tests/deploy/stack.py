"""The on-prem compose stack on podman, for tests/deploy/test_stack.py (no registry here).

Images: the product's Dockerfile built on a debootstrap base (deploy/podman/base.sh, cached under
a content key), and stand-ins for the official postgres/redis/nginx/prometheus images
(deploy/podman/Containerfile.services). docker-compose 1.29 talks to `podman system service`.
podman runs healthchecks from systemd timers, and there is no systemd here: a thread runs them.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from tests.support.procs import ROOT, Proc, free_port, wait_until

COMPOSE_FILE = ROOT / "deploy" / "docker-compose.onprem.yml"
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
SERVICES = ("postgres", "redis", "nginx", "prometheus")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def podman_env() -> dict:
    """The environment every podman call runs with (runc, ulimits, CNI with dnsname)."""
    return dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run podman with this machine's containers.conf."""
    return subprocess.run(["podman", *args], env=podman_env(), capture_output=True, text=True,
                          check=check, timeout=timeout)


def base_image() -> str:
    """The debootstrap base image (built once, then cached by deploy/podman/base.sh)."""
    return subprocess.run(["bash", str(ROOT / "deploy/podman/base.sh")], env=podman_env(),
                          capture_output=True, text=True, check=True, timeout=900).stdout.strip()


def build_images(tag: str = "stack") -> dict:
    """Base (cached), the product's image and the service stand-ins; returns names and timings."""
    t0 = time.monotonic()
    base = base_image()
    t1 = time.monotonic()
    app = f"localhost/neurohub-mes:{tag}"
    secret = [f"--secret=id=pip_cert,src={CA_BUNDLE}"] if os.path.exists(CA_BUNDLE) else []
    podman("build", "--format", "docker", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", *secret,
           "-t", app, str(ROOT), timeout=1800)
    t2 = time.monotonic()
    images = {"NEUROHUB_IMAGE": app}
    for target in SERVICES:
        name = f"localhost/neurohub-test-{target}:{tag}"
        podman("build", "--format", "docker", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
               "--target", target, "-t", name, "-f",
               str(ROOT / "deploy/podman/Containerfile.services"), str(ROOT / "deploy/podman"),
               timeout=1800)
        images[f"{target.upper()}_IMAGE"] = name
    size = json.loads(podman("image", "inspect", app).stdout)[0]["Size"]
    return {"images": images, "base_seconds": t1 - t0, "app_build_seconds": t2 - t1,
            "app_size_bytes": size}


class PodmanService:
    """`podman system service` on a socket of our own: DOCKER_HOST for docker-compose."""

    def __init__(self, folder: Path):
        self.socket = folder / "podman.sock"
        self.proc = Proc("podman-service", ["podman", "system", "service", "--time=0",
                                            f"unix://{self.socket}"], podman_env(), folder)

    def start(self) -> "PodmanService":
        """Start and wait until the socket exists."""
        self.proc.start()
        wait_until(self.socket.exists, 30, 0.1, "podman's API socket")
        return self

    def stop(self) -> None:
        """Stop the API service (containers keep running until compose takes them down)."""
        self.proc.stop(10)


class HealthPump:
    """Runs the healthchecks of a project's containers, as Docker's daemon would: until a
    container's first success (its start period) a failure does not count, so until then the
    check runs with `podman exec`; after it, `podman healthcheck run` every configured interval.
    Each container's check runs in a thread of its own (a slow check holds up no other)."""

    def __init__(self, project: str, interval: float = 1.0):
        self.project, self.interval = project, interval
        self._stop = threading.Event()
        self._busy: set = set()
        self._started: set = set()
        self._next: dict = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _config(self, name: str) -> tuple[list[str], float] | None:
        out = podman("inspect", "--format", "{{json .Config.Healthcheck}}", name, check=False)
        conf = json.loads(out.stdout or "null") if out.returncode == 0 else None
        test = (conf or {}).get("Test") or []
        if not test or test[0] == "NONE":
            return None
        argv = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
        return argv, (conf.get("Interval") or 30e9) / 1e9

    def _check(self, name: str) -> None:
        try:
            conf = self._config(name)
            if conf is None:
                return
            argv, interval = conf
            if name not in self._started:
                if podman("exec", name, *argv, check=False, timeout=60).returncode != 0:
                    return
                self._started.add(name)
            podman("healthcheck", "run", name, check=False, timeout=60)
            self._next[name] = time.monotonic() + interval
        except subprocess.SubprocessError:
            pass
        finally:
            with self._lock:
                self._busy.discard(name)

    def forget(self, *names: str) -> None:
        """A restarted container begins a new start period."""
        for name in names:
            self._started.discard(name)
            self._next.pop(name, None)

    def forget_all(self) -> None:
        """After `down`/`up`: every container begins a new start period."""
        self.forget(*list(self._started))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                names = podman("ps", "--filter", f"label=com.docker.compose.project={self.project}",
                               "--filter", "health=starting", "--filter", "health=healthy",
                               "--filter", "health=unhealthy", "--format", "{{.Names}}",
                               check=False, timeout=60).stdout.split()
            except subprocess.SubprocessError:
                names = []
            now = time.monotonic()
            for name in names:
                with self._lock:
                    if name in self._busy or self._next.get(name, 0) > now:
                        continue
                    self._busy.add(name)
                threading.Thread(target=self._check, args=(name,), daemon=True).start()
            self._stop.wait(self.interval)

    def start(self) -> "HealthPump":
        """Start the thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()
        self._thread.join(60)


class Stack:
    """docker-compose -p PROJECT for deploy/docker-compose.onprem.yml, through podman's API."""

    def __init__(self, folder: Path, images: dict, project: str):
        self.folder, self.project = folder, project
        self.https_port, self.http_port = free_port(), free_port()
        self.env_file = folder / "compose.env"
        values = {"SECRET_KEY": "stack-test-secret-key-0123456789-abcdefghijklmnop",
                  "POSTGRES_PASSWORD": "stack-test-pg-password",
                  "REDIS_PASSWORD": "stack-test-redis-password",
                  "FLOWER_BASIC_AUTH": "ops:stack-test-flower", "TLS_COMMON_NAME": "localhost",
                  "HTTP_PORT": self.http_port, "HTTPS_PORT": self.https_port,
                  "PROMETHEUS_PORT": free_port(), "OUTBOX_REDISPATCH_SECONDS": 10, **images}
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.service = PodmanService(folder)
        self.pump = HealthPump(project)

    def compose(self, *args: str, timeout: float = 600, check: bool = True):
        """docker-compose with this stack's project, env file and the printer simulator."""
        env = dict(podman_env(), DOCKER_HOST=f"unix://{self.service.socket}",
                   COMPOSE_HTTP_TIMEOUT="300")
        r = subprocess.run(["docker-compose", "-p", self.project, "--env-file",
                            str(self.env_file), "-f", str(COMPOSE_FILE), "--profile", "sim", *args],
                           env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode:
            raise AssertionError(f"docker-compose {' '.join(args)}: {r.returncode}\n"
                                 f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        return r

    def container(self, service: str) -> str:
        """The container name of a service (docker-compose 1.x naming)."""
        return f"{self.project}_{service}_1"

    def logs(self, *services: str) -> str:
        """The last lines of some services' logs, for failure messages."""
        out = []
        for s in services:
            r = podman("logs", "--tail", "40", self.container(s), check=False)
            out.append(f"--- {s} ---\n{r.stdout}{r.stderr}")
        return "\n".join(out)
