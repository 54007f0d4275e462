"""Static checks of everything under deploy/ (seconds, in the normal suite): hadolint, both compose
files through `docker-compose config`, shellcheck on every script, yamllint, promtool, Grafana's
provisioning, the Terraform parsed by python-hcl2 (its lifecycle rules equal to the app's),
Railway's config files, and every path the runbook names."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.hcl import load, one
from tests.support.procs import ROOT

DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent
COMPOSE_ENV = {"SECRET_KEY": "x" * 48, "POSTGRES_PASSWORD": "pg", "REDIS_PASSWORD": "redis",
               "FLOWER_BASIC_AUTH": "ops:pw"}


def run(*argv, env=None, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_hadolint():
    for f in ("Dockerfile", "deploy/podman/Containerfile.services"):
        r = run(str(VENV_BIN / "hadolint"), f)
        assert r.returncode == 0, r.stdout + r.stderr


def test_the_image_gets_every_package_setup_cfg_installs():
    """A new top-level package must reach the image: past .dockerignore and copied by the
    Dockerfile (a package missing from either failed the image build only in the deploy step)."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    packages = {p.strip() for p in cfg["options.packages.find"]["include"].split()
                if p.strip() and "." not in p}
    allowed = {ln[1:].strip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.startswith("!")}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M))
    assert "queues" in packages and packages <= allowed, sorted(packages - allowed)
    assert packages <= copied, sorted(packages - copied)


@pytest.mark.parametrize("name", ["docker-compose.onprem.yml", "docker-compose.aws.yml"])
def test_compose_config(name):
    r = run("docker-compose", "-f", str(DEPLOY / name), "--profile", "sim", "--profile",
            "grafana", "config", "-q", env={"PATH": os.environ["PATH"], **COMPOSE_ENV})
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load((DEPLOY / name).read_text())["services"]
    assert [s for s, body in services.items() if body.get("command") == ["beat"]] == ["beat"]
    for s in ("api1", "api2", "worker", "worker-io", "beat", "relay", "flower", "migrate", "nginx",
              "postgres", "redis"):
        assert s in services, s
        assert services[s].get("mem_limit"), s  # the seed's memory limits
    assert services["api1"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"


def test_compose_onprem_redis_keeps_queued_tasks_and_postgres_is_15():
    services = yaml.safe_load((DEPLOY / "docker-compose.onprem.yml").read_text())["services"]
    cmd = services["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "noeviction" in cmd
    assert services["postgres"]["image"].endswith(":-postgres:15}")
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def scripts() -> list[Path]:
    """Every shell script of the repository (tracked or new, not ignored)."""
    out = run("git", "ls-files", "-co", "--exclude-standard", "*.sh").stdout.split()
    return sorted(ROOT / p for p in out)


def test_shellcheck_every_script():
    assert len(scripts()) >= 5
    r = run("shellcheck", *map(str, scripts()))
    assert r.returncode == 0, r.stdout


def test_yamllint():
    files = [str(p) for p in DEPLOY.rglob("*.yml")]
    config = ("{extends: default, rules: {line-length: {max: 130}, document-start: disable, "
              "truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}")
    r = run(str(VENV_BIN / "yamllint"), "-s", "-d", config, *files)
    assert r.returncode == 0, r.stdout


def test_promtool():
    r = run("promtool", "check", "rules", str(DEPLOY / "prometheus" / "rules.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    # The config names the rules at their path in the container; check a copy that points here.
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text().replace(
        "/etc/prometheus/rules.yml", str(DEPLOY / "prometheus" / "rules.yml"))
    conf = ROOT / "var" / "promtool-check.yml"
    conf.parent.mkdir(exist_ok=True)
    conf.write_text(text)
    try:
        r = run("promtool", "check", "config", str(conf))
    finally:
        conf.unlink()
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning_is_consistent():
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/neurohub.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    grafana = yaml.safe_load((DEPLOY / "docker-compose.onprem.yml").read_text())["services"]["grafana"]
    assert f"./grafana/dashboards:{path}:ro" in grafana["volumes"]
    dashboards = list((DEPLOY / "grafana/dashboards").glob("*.json"))
    assert len(dashboards) == 4, dashboards
    # Their PromQL is run against a real Prometheus by tests/ops/test_dashboards.py.
    for d in dashboards:
        for panel in json.loads(d.read_text())["panels"]:
            assert panel["datasource"]["uid"] == source["uid"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"] and "neurohub" in target["expr"]


def test_every_worker_starts_without_mingle_and_gossip():
    """Worker-to-worker sync that nothing uses: with Redis it could hang a worker at start-up,
    deaf to SIGTERM (the stack test saw one killed after 30 s)."""
    from web.cli import supervisor
    starts = re.findall(r"worker -Q.*?(?:;;|$)", (DEPLOY / "container/entrypoint.sh").read_text(),
                        re.S)
    starts += [u.read_text() for u in (DEPLOY / "systemd").glob("neurohub-worker*.service")
               if " worker -Q" in u.read_text()]
    source = Path(supervisor.__file__).read_text()
    starts += re.findall(r'Child\("worker.*?\]\)', source, re.S)
    assert len(starts) == 6, starts
    for text in starts:
        assert "--without-mingle" in text and "--without-gossip" in text or "*quiet" in text, text
    assert 'quiet = ["--without-mingle", "--without-gossip"]' in source


def test_systemd_units_verify():
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {"neurohub-web@.service", "neurohub-worker.service",
                                       "neurohub-worker-io.service", "neurohub-beat.service",
                                       "neurohub-relay.service", "neurohub-flower.service"}
    for u in units:
        if u.name == "neurohub-worker-check.service":
            continue  # a oneshot as root: it restarts units
        text = u.read_text()
        for key in ("User=neurohub", "ProtectSystem=strict", "NoNewPrivileges=yes"):
            assert key in text, (u.name, key)
    # verify needs the binaries the units name: a scratch root with the venv's path linked in.
    others = sorted((DEPLOY / "systemd").glob("*.t*"))  # the target and the timer
    r = run("bash", str(ROOT / "tests/deploy/verify_units.sh"), *map(str, units + others))
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def _lifecycle_as_app_writes_it(rule: dict, variables: dict) -> dict:
    def value(v):
        m = re.fullmatch(r"\$\{var\.(\w+)\}", str(v))
        return int(variables[m.group(1)]["default"]) if m else v
    out = {"ID": rule["id"], "Status": rule["status"],
           "Filter": {"Prefix": one(rule["filter"])["prefix"]}}
    exp = one(rule["expiration"])
    out["Expiration"] = ({"Days": value(exp["days"])} if "days" in exp else
                         {"ExpiredObjectDeleteMarker": exp["expired_object_delete_marker"]})
    if "noncurrent_version_expiration" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": value(
            one(rule["noncurrent_version_expiration"])["noncurrent_days"])}
    out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": value(
        one(rule["abort_incomplete_multipart_upload"])["days_after_initiation"])}
    return out


def test_terraform_lifecycle_rules_are_the_apps():
    from web.config import load_config
    from web.services.backups.lifecycle import check_rules, our_rules
    tf = load()
    cfg = load_config(environ={})
    assert tf["variable"]["backup_retention_days"]["default"] == cfg["BACKUP_RETENTION_DAYS"]
    assert tf["variable"]["noncurrent_version_days"]["default"] == cfg["NONCURRENT_VERSION_DAYS"]
    rules = tf["resource"]["aws_s3_bucket_lifecycle_configuration"]["files"]["rule"]
    declared = [_lifecycle_as_app_writes_it(r, tf["variable"]) for r in rules]
    assert declared == our_rules(cfg["BACKUP_RETENTION_DAYS"], cfg["NONCURRENT_VERSION_DAYS"])
    check_rules(declared)  # none of them can expire firmware/


def test_terraform_resources_and_settings():
    tf = load()
    r = tf["resource"]
    db = r["aws_db_instance"]["main"]
    assert db["engine"] == "postgres" and db["engine_version"].startswith("15")
    assert db["multi_az"] is True and db["storage_encrypted"] is True
    assert db["backup_retention_period"] == 7 and db["publicly_accessible"] is False
    assert db["password"] == "${random_password.db.result}"  # never a literal
    assert "aws_elasticache_cluster" not in r
    cache = r["aws_elasticache_replication_group"]["main"]
    assert cache["engine"] == "redis" and cache["engine_version"].startswith("7")
    assert cache["num_cache_clusters"] >= 2 and cache["automatic_failover_enabled"] is True
    assert r["aws_s3_bucket_versioning"]["files"]["versioning_configuration"][0]["status"] == \
        "Enabled"
    sse = one(one(r["aws_s3_bucket_server_side_encryption_configuration"]["files"]["rule"])[
        "apply_server_side_encryption_by_default"])
    assert sse["sse_algorithm"] == "aws:kms"
    pab = r["aws_s3_bucket_public_access_block"]["files"]
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy",
                                        "ignore_public_acls", "restrict_public_buckets"))
    tg = r["aws_lb_target_group"]["web"]
    assert one(tg["health_check"])["path"] == "/readyz"
    assert r["aws_lb_listener"]["https"]["protocol"] == "HTTPS"
    assert r["aws_ecs_service"]["role"]["launch_type"] == "FARGATE"
    assert {"web", "worker", "worker-io", "beat", "relay", "migrate"} <= set(
        str(tf["locals"]["roles"]).replace("'", " ").split())
    assert r["aws_cloudwatch_log_group"]["service"]["retention_in_days"]
    iam = str(tf["data"]["aws_iam_policy_document"]["task"])
    objects = re.findall(r"files\.arn\}/([a-z]+)/\*", iam)
    assert set(objects) == {"firmware", "backups"}  # no other prefix of the bucket
    for ingress in ("db_from_app", "cache_from_app"):
        rule = r["aws_vpc_security_group_ingress_rule"][ingress]
        assert rule["referenced_security_group_id"] == "${aws_security_group.app.id}"
        assert "cidr_ipv4" not in rule
    for name in ("alb_dns_name", "bucket", "rds_endpoint", "redis_primary_endpoint"):
        assert name in tf["output"]


def test_railway_config_per_service():
    for service, start in (("web", "web"), ("worker", "worker"), ("beat", "beat"),
                           ("relay", "relay")):
        conf = json.loads((DEPLOY / "railway" / f"{service}.json").read_text())
        assert conf["build"]["builder"] == "DOCKERFILE"
        assert conf["deploy"]["startCommand"].split()[-1] == start
    web = json.loads((DEPLOY / "railway" / "web.json").read_text())
    assert web["deploy"]["healthcheckPath"] == "/readyz"
    beat = json.loads((DEPLOY / "railway" / "beat.json").read_text())
    assert beat["deploy"]["numReplicas"] == 1


def test_runbook_paths_exist():
    text = (DEPLOY / "RUNBOOK.md").read_text()
    paths = set(re.findall(r"`((?:deploy|bench|web|tests|workers|storage)/[^` ]+)`", text))
    assert len(paths) >= 8, paths
    missing = [p for p in paths if not (ROOT / p.split("#")[0].rstrip("/")).exists()]
    assert not missing, missing


def test_toml_and_json_parse():
    for p in DEPLOY.rglob("*.toml"):
        tomllib.loads(p.read_text())
    for p in DEPLOY.rglob("*.json"):
        json.loads(p.read_text())
