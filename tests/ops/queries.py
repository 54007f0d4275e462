"""The PromQL of the Grafana dashboards (deploy/grafana/dashboards/) and of the rules
(deploy/prometheus/rules.yml), and one check that runs it all on a Prometheus: for
tests/ops/test_dashboards.py (against the contract's exposition) and the test against the
running product."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import requests
import yaml

from tests.ops.promrun import RULES
from tests.support.procs import ROOT

DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Grafana's built-in variables, as Grafana would expand them for a 1-hour view.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# A metric name: ours (and recording rules') or `up`; never a prefix of a longer name or a function.
NAME = re.compile(r"(?<![A-Za-z0-9_:])(neurohub[_:][A-Za-z0-9_:]*|up)(?![A-Za-z0-9_:(])")


def panels(path: Path) -> list[dict]:
    """The dashboard's panels."""
    return json.loads(path.read_text())["panels"]


def dashboard_targets() -> list[tuple[str, dict]]:
    """(where, target) of every query of every dashboard."""
    return [(f"{d.name}: {p['title']}", t) for d in DASHBOARDS for p in panels(d)
            for t in p["targets"]]


def rules() -> list[dict]:
    """Every rule of rules.yml (alerts and recording rules)."""
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def promql(expr: str) -> str:
    """The expression as Grafana sends it: its built-in variables expanded."""
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"an unexpanded variable in {expr!r}"
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads (ours and `up`; not label names or functions)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(NAME.findall(without_strings))


def all_named() -> set[str]:
    """Every metric name the dashboards and the rules read."""
    exprs = [t["expr"] for _, t in dashboard_targets()] + [r["expr"] for r in rules()]
    return set().union(*map(metric_names, exprs))


def answer(base: str, path: str, **params) -> dict:
    """Prometheus' answer to GET /api/v1/<path>, error or not (an error is what we look for)."""
    return requests.get(f"{base}/api/v1/{path}", params=params, timeout=10).json()


def check_queries(base: str, targets: list[dict], exprs: list[str],
                  require_series: bool) -> list:
    """Run the dashboards' targets (instant and range) and the rules' expressions on the
    Prometheus at ``base``; the failures: errors, targets without series (if required), series
    without the labels their legend names."""
    failures = []
    for target in targets:
        expr, now = promql(target["expr"]), time.time()
        got = answer(base, "query", query=expr)
        ranged = answer(base, "query_range", query=expr, start=now - 20, end=now, step=2)
        if got["status"] != "success" or ranged["status"] != "success":
            failures.append((expr, got.get("error"), ranged.get("error")))
            continue
        result = got["data"]["result"]
        wanted = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
        missing = [(s["metric"], w) for s in result for w in wanted if w not in s["metric"]]
        if missing or (require_series and not result):
            failures.append((expr, missing or "no series"))
    for expr in exprs:
        got = answer(base, "query", query=expr)
        if got["status"] != "success":
            failures.append((expr, got.get("error")))
    return failures
