"""A real Prometheus for tests: Debian's /usr/bin/prometheus (2.42) on a free port, a temporary
storage folder, scraping the given targets every second; queried through its HTTP API."""
from __future__ import annotations

import json
from pathlib import Path

import requests

from tests.support.procs import Proc, free_port, wait_until

BINARY = "/usr/bin/prometheus"


def scrape_config(jobs: dict[str, list[str]], metrics_path: str = "/metrics") -> list[dict]:
    """One scrape job per name, each over its ``host:port`` targets."""
    return [{"job_name": name, "metrics_path": metrics_path,
             "static_configs": [{"targets": targets}]} for name, targets in jobs.items()]


class Prometheus:
    """Prometheus scraping ``jobs`` ({job name: ["127.0.0.1:port", ...]}) every second.

    ``rule_files``: alerting/recording rule files it loads (evaluated every second too).
    """

    def __init__(self, jobs: dict[str, list[str]], work_dir: Path, log_dir: Path,
                 rule_files: tuple[str | Path, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(work_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                             "evaluation_interval": "1s"},
                  "rule_files": [str(f) for f in rule_files],
                  "scrape_configs": scrape_config(jobs)}
        config_path = self.dir / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self.proc = Proc("prometheus", [
            BINARY, f"--config.file={config_path}", f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
            "--storage.tsdb.retention.time=1h"], {"PATH": "/usr/bin:/bin"}, log_dir,
            cwd=self.dir)

    def start(self) -> "Prometheus":
        """Start it and wait until it is ready."""
        self.proc.start()
        wait_until(self._ready, 60, 0.2, lambda: f"Prometheus to be ready\n{self.proc.output()}")
        return self

    def _ready(self) -> bool:
        if not self.proc.running():
            raise AssertionError(f"prometheus exited:\n{self.proc.output()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """Stop it (its storage goes with the test's temporary folder)."""
        self.proc.stop(10)

    def api(self, path: str, **params) -> dict:
        """GET /api/v1/<path>: its ``data`` (fails on an error answer)."""
        r = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = r.json()
        assert r.status_code == 200 and body.get("status") == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data)
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The value of a query that returns at most one series (None: no series)."""
        result = self.query(expr)
        assert len(result) <= 1, (expr, result)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, predicate, timeout: float = 60, what="") -> float:
        """Poll ``expr`` until ``predicate(value)`` holds; returns that value. ``what`` (text, or
        a callable giving it at the time of a failure) names what was awaited."""
        seen: list = [None]

        def holds():
            seen[0] = self.value(expr)
            return seen[0] is not None and predicate(seen[0])

        def message():
            text = what() if callable(what) else what
            return f"{expr}: {text} (last value: {seen[0]})"
        wait_until(holds, timeout, 0.5, message)
        return seen[0]

    def targets(self) -> dict[str, list[str]]:
        """Job name -> the health of each of its active targets ("up", "down", "unknown")."""
        out: dict[str, list[str]] = {}
        for t in self.api("targets", state="active")["activeTargets"]:
            out.setdefault(t["labels"]["job"], []).append(t["health"])
        return out

    def wait_up(self, jobs, timeout: float = 60) -> None:
        """Wait until every target of these jobs has been scraped successfully."""
        def all_up():
            health = self.targets()
            return all(health.get(j) and all(h == "up" for h in health[j]) for j in jobs)
        wait_until(all_up, timeout, 0.5, lambda: f"targets up: {self.targets()}")
