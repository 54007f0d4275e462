"""deploy/prometheus/: the rules pass `promtool check rules` and their unit tests
(`promtool test rules deploy/prometheus/tests/*.yml`); every alert has a test where it fires and
one where it stays quiet, and those tests fail when the alert is broken; every alert carries a
severity, a summary and a runbook section; both scrape configs name the contract's jobs at the
ports the compose services and systemd units give their exporters. Debian's promtool 2.42, never
skipped."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.procs import ROOT

PROMTOOL = "/usr/bin/promtool"
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "rules.yml"
UNIT_TESTS = sorted((PROM / "tests").glob("*.yml"))
JOBS = {"prometheus", "neurohub-web", "neurohub-worker", "neurohub-worker-io", "neurohub-relay",
        "neurohub-beat", "flower"}
EXPORTERS = {"neurohub-worker": "worker", "neurohub-worker-io": "worker-io",
             "neurohub-relay": "relay", "neurohub-beat": "beat"}


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run Debian's promtool (a missing one fails the test: FileNotFoundError)."""
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def alerts(path: Path = RULES) -> dict[str, dict]:
    """alert name -> its rule."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_promtool_checks_the_rules():
    r = promtool("check", "rules", str(RULES))
    rules = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert r.returncode == 0 and f"SUCCESS: {rules} rules found" in r.stdout, r.stdout + r.stderr
    assert len(alerts()) >= 14


def test_promtool_unit_tests_pass():
    assert len(UNIT_TESTS) >= 4
    r = promtool("test", "rules", *map(str, UNIT_TESTS))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(UNIT_TESTS), r.stdout


def _cases() -> dict[str, dict[str, int]]:
    """alert name -> how many unit-test evaluations expect it firing / quiet."""
    seen: dict[str, dict[str, int]] = {}
    for path in UNIT_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                kind = "fires" if case.get("exp_alerts") else "quiet"
                counts = seen.setdefault(case["alertname"], {"fires": 0, "quiet": 0})
                counts[kind] += 1
    return seen


def test_every_alert_fires_and_stays_quiet_in_a_unit_test():
    cases = _cases()
    assert set(cases) <= set(alerts()), set(cases) - set(alerts())  # no test of a removed alert
    for name in alerts():
        assert cases.get(name, {}).get("fires") and cases[name]["quiet"], (name, cases.get(name))


@pytest.mark.parametrize("mutation", ["never", "always"])
def test_the_unit_tests_catch_a_broken_alert(tmp_path, mutation):
    """Every alert's expression replaced by one that never (always) fires: promtool's tests fail,
    on each alert by name. Tests that pass whatever the rule says would prove nothing. (All at
    once: promtool reports every failing case of a test group, and one run takes seconds.)"""
    shutil.copytree(PROM / "tests", tmp_path / "tests")
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["expr"] = "vector(1) == 0" if mutation == "never" else "vector(1)"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    r = promtool("test", "rules", *sorted(str(p) for p in (tmp_path / "tests").glob("*.yml")))
    out = r.stdout + r.stderr  # promtool writes the failures to stderr
    caught = set(re.findall(r"alertname: (\w+),", out))
    assert r.returncode != 0 and caught == set(alerts()), (mutation, set(alerts()) - caught)


def _runbook_sections() -> dict[str, str]:
    """GitHub anchor -> heading, of the ### sections under "## Alerts" in deploy/RUNBOOK.md."""
    text = (ROOT / "deploy" / "RUNBOOK.md").read_text()
    part = text.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    heads = re.findall(r"^### (.+)$", part, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-"): h for h in heads}


def test_every_alert_has_severity_summary_and_its_runbook_section():
    sections = _runbook_sections()
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert len(rule["annotations"]["summary"]) > 20, name
        page, anchor = rule["annotations"]["runbook_url"].split("#")
        assert page == "deploy/RUNBOOK.md" and sections.get(anchor) == name, (name, anchor)
    assert set(sections.values()) == set(alerts()), "a runbook section without its alert"


def _scrape(name: str) -> dict[str, tuple[str, list[str]]]:
    """job -> (metrics_path, targets) of a scrape config."""
    conf = yaml.safe_load((PROM / name).read_text())
    assert conf["rule_files"] == ["/etc/prometheus/rules.yml"]
    return {j["job_name"]: (j.get("metrics_path", "/metrics"),
                            [t for sc in j["static_configs"] for t in sc["targets"]])
            for j in conf["scrape_configs"]}


@pytest.mark.parametrize("name", ["prometheus.yml", "prometheus-systemd.yml"])
def test_promtool_checks_the_scrape_config(tmp_path, name):
    conf = tmp_path / name
    conf.write_text((PROM / name).read_text().replace("/etc/prometheus/rules.yml", str(RULES)))
    r = promtool("check", "config", str(conf))
    assert r.returncode == 0, r.stdout + r.stderr
    jobs = _scrape(name)
    assert set(jobs) == JOBS
    assert jobs["flower"][0] == "/flower/metrics" and jobs["neurohub-web"][0] == "/metrics"
    assert len(jobs["neurohub-web"][1]) == 2  # both web instances


def test_compose_exporters_are_where_prometheus_scrapes_them():
    jobs = _scrape("prometheus.yml")
    for f in ("docker-compose.onprem.yml", "docker-compose.aws.yml"):
        services = yaml.safe_load((ROOT / "deploy" / f).read_text())["services"]
        for job, service in EXPORTERS.items():
            assert jobs[job][1] == [f"{service}:9200"], job
            env = services[service]["environment"]
            assert env["METRICS_PORT"] == "9200" and env["METRICS_HOST"] == "0.0.0.0", (f, service)
            assert env["DATABASE_URL"] and env["SECRET_KEY"], (f, service)  # still the app's too
        assert jobs["neurohub-web"][1] == ["api1:8000", "api2:8000"]
        assert {"api1", "api2", "flower"} <= set(services)
        mounts = services["prometheus"]["volumes"]
        assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
        assert "./prometheus/rules.yml:/etc/prometheus/rules.yml:ro" in mounts


def test_systemd_exporters_are_where_prometheus_scrapes_them():
    jobs = _scrape("prometheus-systemd.yml")
    units = ROOT / "deploy" / "systemd"
    ports = []
    for job, service in EXPORTERS.items():
        text = (units / f"neurohub-{service}.service").read_text()
        (port,) = re.findall(r"^Environment=METRICS_PORT=(\d+)$", text, re.M)
        assert jobs[job][1] == [f"127.0.0.1:{port}"], job
        ports.append(port)
    assert ports == ["9201", "9202", "9203", "9204"]
    web = (units / "neurohub-web@.service").read_text()
    instances = re.findall(r"neurohub-web@(\d+)", web.split("\n[", 1)[0])
    assert jobs["neurohub-web"][1] == [f"127.0.0.1:{p}" for p in instances[:2]]
    assert "127.0.0.1:5555" in jobs["flower"][1] and "--port=5555" in \
        (units / "neurohub-flower.service").read_text()
