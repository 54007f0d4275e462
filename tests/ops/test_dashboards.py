"""Every PromQL expression of the Grafana dashboards (deploy/grafana/dashboards/) and of the rules
(deploy/prometheus/rules.yml), run against a real Prometheus 2.42 scraping the series the product
exports (tests/ops/contract.py: the issue #16 contract, served per scrape job): none may fail to
parse or evaluate, each dashboard query returns series carrying the labels its legend names, no
alert is even pending against a healthy plant, and every metric named is one the product exports.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.ops import contract
from tests.ops.promrun import RULES, ContractExporters
from tests.ops.queries import (DASHBOARDS, all_named, check_queries, dashboard_targets, panels,
                               rules)
from tests.support.procs import wait_until
from tests.support.prometheus import BINARY, Prometheus


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """Prometheus 2.42 scraping the contract's exporters every second, the rules loaded; once
    every target was scraped three times (rates need two samples)."""
    assert Path(BINARY).exists(), "Debian's prometheus package (deploy/apt-packages.txt)"
    work = tmp_path_factory.mktemp("prometheus")
    with ContractExporters() as exporters:
        prom = Prometheus(exporters.targets, work, work, rule_files=(RULES,)).start()
        try:
            wait_until(lambda: (prom.value("min(count_over_time(up[1m])) and min(up) == 1")
                                or 0) >= 3, 30, 0.25, lambda: prom.proc.output())
            yield prom
        finally:
            prom.stop()


def test_four_dashboards_with_well_formed_panels():
    assert [d.stem for d in DASHBOARDS] == ["neurohub-backups", "neurohub-line",
                                            "neurohub-pipeline", "neurohub-printers"]
    uids = [json.loads(d.read_text())["uid"] for d in DASHBOARDS]
    assert uids == [d.stem for d in DASHBOARDS]
    for d in DASHBOARDS:
        cells, ids = set(), set()
        for p in panels(d):
            assert p["id"] not in ids and p["title"] and p["targets"], (d.name, p)
            ids.add(p["id"])
            g = p["gridPos"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert g["x"] + g["w"] <= 24 and not area & cells, (d.name, p["title"], "overlaps")
            cells |= area
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), (d.name, p["title"])


def test_every_query_evaluates_with_its_legend_labels(prometheus):
    """Against the contract every series has a value: each dashboard query returns some."""
    failures = check_queries(prometheus.url, [t for _, t in dashboard_targets()],
                             [r["expr"] for r in rules()], require_series=True)
    assert not failures, "\n".join(map(str, failures))


def test_every_rule_evaluates_without_error(prometheus):
    def evaluated() -> list[dict]:
        groups = prometheus.api("rules")["groups"]
        got = [r for g in groups for r in g["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001") for r in got)
        return got if done and len(got) == len(rules()) else []
    got = wait_until(evaluated, 20, 0.5, "every rule evaluated once")
    broken = [(r["name"], r.get("lastError")) for r in got if r["health"] != "ok"]
    assert not broken, broken


def test_no_alert_is_pending_against_a_healthy_plant(prometheus):
    time.sleep(2)  # two more rule evaluations on the scraped series
    assert prometheus.query("ALERTS") == []
    # ...and the shift's recording rule has a value (1 or 0) the dashboards read.
    assert prometheus.value("neurohub:shift_active") in (0, 1)


def test_every_metric_named_is_exported(prometheus):
    exported = set(prometheus.api("label/__name__/values"))
    recorded = {r["record"] for r in rules() if "record" in r}
    named = all_named()
    assert {"up", "neurohub_outbox_oldest_age_seconds", "neurohub:shift_active"} <= named
    unknown = named - recorded - {"up"} - contract.names()
    assert not unknown, sorted(unknown)
    assert named <= exported, sorted(named - exported)


def test_the_dashboards_and_rules_read_every_metric_of_the_contract():
    """A series the product exports and nobody looks at is a dashboard missing a panel."""
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in contract.names()}
    read = {re.sub(r"_(bucket|sum|count)$", "", n) for n in all_named()}
    assert families - read == set(), sorted(families - read)
