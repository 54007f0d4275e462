"""Configuration: code defaults + environment (12-factor), with the embedded default.

With no environment at all the product runs on one PC: SQLite, kombu's SQLAlchemy transport on a
SQLite file (a server-less Celery broker) and local storage, all under ``NEUROHUB_DATA_DIR``.
``DATABASE_URL`` / ``REDIS_URL`` switch to PostgreSQL / Redis with no code change.

``SETTINGS`` is the one list of every variable the server reads: its default, its type and what
it means. ``deploy/.env.reference.example`` is generated from it (``python -m web.config``) and a
test checks that the code reads exactly these variables. Adding a setting is one line there.
"""
from __future__ import annotations

import math
import os
import secrets
import shlex
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

SECRET_FILE = "secret_key"  # generated under the data dir when SECRET_KEY is not set
# A production SECRET_KEY must have at least this many characters, this many different ones,
# and this many bits by a Shannon estimate (length x entropy of its own character frequencies):
# `secrets.token_urlsafe(48)` gives ~350 bits, `token_hex(16)` >= 96; 40 spaces or "ab" * 20
# give 0 and 40.
MIN_SECRET_LENGTH = 32
MIN_SECRET_DISTINCT = 8
MIN_SECRET_BITS = 80
S3_EXTRA = "pip install 'neurohub-mes[s3]'"
# Exit status of a process refused by its configuration: gunicorn's "app failed to load" (its
# master then stops rather than re-forking workers); any other caller just sees non-zero.
CONFIG_EXIT_STATUS = 4


class ConfigError(SystemExit):
    """The configuration cannot be used; the message says what to change.

    A SystemExit, so every process (gunicorn's worker, celery, the ``neurohub`` command) that
    meets it prints this one line and exits with status 1 instead of a traceback.
    """

    def __init__(self, message: str):
        super().__init__(f"configuration error: {message}")


def _bool(value: Any) -> bool:
    """Read a boolean the way operators write it in .env files; a typo is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError("true or false")


def _networks(value: Any) -> str:
    """Check a comma-separated list of CIDRs (10.0.0.0/8,::1/128); kept as written."""
    import ipaddress
    text = str(value)
    try:
        for part in text.split(","):
            ipaddress.ip_network(part.strip(), strict=False)
    except ValueError:
        raise ValueError("comma-separated networks such as 127.0.0.0/8,10.0.0.0/8") from None
    return text


def _log_level(value: Any) -> str:
    """A logging level name; a typo is an error, not a traceback at the first log line."""
    text = str(value).strip().upper()
    if text not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return text


def _log_format(value: Any) -> str:
    """json, text or auto (web/logs.py decides auto per process)."""
    text = str(value).strip().lower()
    if text not in ("json", "text", "auto"):
        raise ValueError("json, text or auto")
    return text


@dataclass(frozen=True)
class Setting:
    """One environment variable: default (None: unset or derived), converter, meaning."""

    name: str
    default: Any
    type: Callable[[Any], Any]
    meaning: str


def _schedule_settings() -> list[Setting]:
    """The beat schedule's overrides (BACKUP_CRON ...), one per entry, default from beat."""
    from beat.schedule import SCHEDULE
    out: dict[str, Setting] = {}
    for name, entry in SCHEDULE.items():
        if entry.override and entry.override not in out:
            out[entry.override] = Setting(
                entry.override, entry.when, str,
                f"when beat sends {entry.task}: 5 crontab fields in PLANT_TIMEZONE, @daily, "
                "@every 10s or off")
    return list(out.values())


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("NEUROHUB_ENV", "development", str,
      "development or production (production refuses to start with unsafe settings)"),
    S("NEUROHUB_DATA_DIR", "./var", str,
      "folder of the embedded default: SQLite files, generated secret_key, firmware, backups"),
    S("DATABASE_URL", None, str,
      "postgresql+psycopg://user:pw@host/db (required in production); unset: SQLite in the data dir"),
    S("REDIS_URL", None, str,
      "redis:// or rediss:// URL: broker and login rate limits (required in production)"),
    S("CELERY_BROKER_URL", None, str, "broker URL when it is not REDIS_URL (e.g. amqp://)"),
    S("SECRET_KEY", None, str,
      "token signing key; production: >= 32 characters, >= 8 distinct, >= 80 bits "
      "(python -c 'import secrets; print(secrets.token_urlsafe(48))'); unset: generated once"),
    S("ACCESS_TOKEN_EXPIRE_MINUTES", 30, int, "lifetime of a bearer token"),
    S("LOGIN_RATE_LIMIT", "10 per minute", str, "login attempts allowed per account"),
    S("LOGIN_IP_RATE_LIMIT", "60 per minute", str,
      "login attempts allowed per client address (keep it above LOGIN_RATE_LIMIT)"),
    S("TRUSTED_PROXY_HOPS", 0, int,
      "reverse proxies in front of the web (nginx, a load balancer) whose X-Forwarded-For and "
      "X-Forwarded-Proto are trusted; 0 trusts none"),
    S("READYZ_DETAIL_NETWORKS", "127.0.0.0/8,::1/128", _networks,
      "client networks (comma-separated CIDRs) that get /readyz's detail without an admin "
      "token: this host by default; add the monitoring network, never the stations'"),
    S("PLANT_TIMEZONE", None, str,
      "the plant's IANA time zone (Asia/Seoul): beat's crontabs, lot and label dates, times "
      "shown to people; unset: LOT_TIMEZONE, else the host's zone"),
    S("LOT_TIMEZONE", None, str, "older name of PLANT_TIMEZONE (still read when that is unset)"),
    S("API_HOST", "127.0.0.1", str,
      "address `neurohub up` binds the web to (0.0.0.0 behind a load balancer)"),
    S("API_PORT", 8000, int, "port `neurohub up` binds the web to"),
    S("WEB_WORKERS", 2, int, "gunicorn worker processes started by `neurohub up`"),
    S("WEB_THREADS", 4, int,
      "threads per web worker (gthread keeps station connections alive between requests)"),
    S("WORKER_CONCURRENCY", 2, int, "Celery worker processes per queue group"),
    S("BACKGROUND_NICE", 5, int,
      "CPU niceness of workers, beat and relay (0 = the web's; not applied on the embedded "
      "SQLite, where workers hold the write lock the web waits for): requests get a core first"),
    S("MALLOC_ARENA_MAX", "2", str, "glibc malloc arenas per web process (memory of threads)"),
    S("LOG_LEVEL", "INFO", _log_level,
      "logging level of the web, the relay and the CLI (workers and beat: their -l option)"),
    S("LOG_FORMAT", "auto", _log_format,
      "json (one JSON object a line: time, level, logger, role, request_id, message), text, or "
      "auto: text when stderr is a terminal (an interactive `neurohub up`), else json"),
    S("MAX_CONTENT_LENGTH", 1024 * 1024, int, "largest JSON request body (bytes)"),
    S("MAX_FIRMWARE_BYTES", 64 * 1024 * 1024, int, "largest firmware image uploaded (bytes)"),
    S("FIRMWARE_URL_EXPIRES", 300, int,
      "lifetime of the presigned S3 URL a firmware download redirects to (seconds)"),
    S("DB_POOL_SIZE", 10, int, "PostgreSQL connections pooled per process"),
    S("USE_S3", False, _bool,
      f"firmware and backups in S3 instead of local folders (needs `{S3_EXTRA}`)"),
    S("S3_BUCKET", None, str, "bucket for firmware/ and backups/ (required with USE_S3)"),
    S("AWS_REGION", None, str, "region of the bucket"),
    S("AWS_ENDPOINT_URL", None, str, "S3-compatible endpoint (MinIO, a test server); unset: AWS"),
    S("AWS_ENDPOINT_URL_S3", None, str, "endpoint for S3 only; wins over AWS_ENDPOINT_URL"),
    S("FIRMWARE_DIR", None, str, "local firmware folder; unset: <data dir>/firmware"),
    S("BACKUP_DIR", None, str, "local backup folder; unset: <data dir>/backups"),
    S("BACKUP_TMP_DIR", None, str, "scratch folder for dumps; unset: the system temp folder"),
    S("BACKUP_RETENTION_DAYS", 30, int, "backups older than this are expired"),
    S("BACKUP_KEEP_MIN", 3, int, "newest verified backups kept whatever their age"),
    S("NONCURRENT_VERSION_DAYS", 30, int, "S3 noncurrent object versions kept this many days"),
    S("BACKUP_STALE_HOURS", 26.0, float, "/readyz reports backups stale after this many hours"),
    S("RESTORE_DRILL_URL", None, str,
      "scratch PostgreSQL database the weekly restore drill restores into; unset: no drill"),
    S("STATION_OFFLINE_MINUTES", 5, int, "a station without heartbeat this long is offline"),
    S("CANARY_STALE_SECONDS", 180.0, float, "a worker canary older than this is stale"),
    S("WORKER_CANARY_TIMEOUT", 20.0, float,
      "`neurohub up` restarts a worker whose canary has not come through its queue in this "
      "many seconds (0: off)"),
    S("WORKER_SELF_WATCH_SECONDS", 90.0, float,
      "a worker exits (code 70, for its supervisor to restart it) when a canary through one of "
      "its queues is this many seconds late while it runs no task (0: off; `neurohub up` "
      "watches its workers itself)"),
    S("WORKER_BUSY_DIR", None, str,
      "folder where a worker's pool children mark the task they run, so `neurohub up`'s canary "
      "watch does not restart a worker whose canary waits behind a long task (`neurohub up` "
      "sets it per worker; unset: no markers)"),
    S("OUTBOX_REDISPATCH_SECONDS", 30, float, "an unfinished outbox message is resent after"),
    S("COMPLETIONS_SOFT_TIME_LIMIT", 20.0, float,
      "seconds one completions.process run may take; past it the run is retried, never marked "
      "failed (its hard limit is 10 s more)"),
    S("OUTBOX_RELAY_INTERVAL", 0.1, float,
      "seconds between relay passes (what arrives meanwhile goes out together)"),
    S("RELAY_QUEUE_WINDOW", 64, int,
      "messages allowed to wait in a broker queue; the rest wait and coalesce in the outbox"),
    S("LABEL_MAX_ATTEMPTS", 5, int, "tries to print a label before it is failed"),
    S("PRINTER_CONNECT_TIMEOUT", 3.0, float, "seconds to connect to a label printer"),
    S("PRINTER_STATUS_TIMEOUT", 2.0, float, "seconds to wait for a printer's ~HS status"),
    S("PRINTER_SIM_PORT", 9100, int, "port of the printer simulator `neurohub up` starts"),
    S("LABEL_FONT", "", str,
      "TrueType font of label text (Hangul included), downloaded once to each printer: a path, "
      "a file name in the system font folders, or unset: the bundled NanumSquare"),
    S("FLOWER_BASIC_AUTH", None, str,
      "user:password Flower itself checks; nginx sends it once the person's NeuroHub login "
      "passed, so nobody types it (required in production)"),
    S("METRICS_ENABLED", True, _bool,
      "Prometheus metrics: the web's GET /metrics, the exporters of workers, relay and beat, "
      "and the counting behind them (false: all of it off)"),
    S("METRICS_PORT", None, int,
      "port of this worker's, relay's or beat's metrics exporter (0: none); unset: worker 9201, "
      "worker-io 9202, relay 9203, beat 9204 (the web serves /metrics on its own port)"),
    S("METRICS_HOST", "127.0.0.1", str,
      "address the metrics exporters bind (0.0.0.0 where Prometheus scrapes from another "
      "container or host)"),
    S("PROMETHEUS_MULTIPROC_DIR", None, str,
      "folder where the processes of one service (gunicorn's workers, a Celery pool) write their "
      "metrics: one per service, emptied at its start (`neurohub up`, the container entrypoint "
      "and the systemd units set it); unset: gunicorn and a worker make a temporary one"),
    S("PASSWORD_HASH_METHOD", "scrypt", str, "werkzeug password hash method"),
    S("CONSOLE_IDLE_MINUTES", 30, int,
      "the admin console (/console) logs a user out after this many minutes without a request"),
    S("CONSOLE_SECURE_COOKIE", None, _bool,
      "send the console's session cookie over HTTPS only; unset: on in production"),
    *_schedule_settings(),
)
# Keys the app derives or Flask extensions read; set in code, never from the environment.
DERIVED = ("SQLALCHEMY_DATABASE_URI", "SQLALCHEMY_ENGINE_OPTIONS", "EMBEDDED",
           "RATELIMIT_STORAGE_URI", "RATELIMIT_HEADERS_ENABLED")


def _convert(setting: Setting, raw: str) -> Any:
    try:
        return setting.type(raw)
    except ValueError as exc:
        kind = {int: "a whole number", float: "a number"}.get(setting.type, str(exc))
        raise ConfigError(f"{setting.name}={raw!r} must be {kind}") from None


def load_config(environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration from code defaults, the environment and test overrides."""
    env = os.environ if environ is None else environ
    cfg: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.name)
        cfg[setting.name] = _convert(setting, raw) if raw not in (None, "") else setting.default
    cfg.update(overrides or {})

    data_dir = Path(cfg["NEUROHUB_DATA_DIR"]).expanduser().resolve()
    cfg["NEUROHUB_DATA_DIR"] = str(data_dir)
    cfg["PLANT_TIMEZONE"] = plant_zone_name(cfg)
    if cfg["NEUROHUB_ENV"] == "production":
        validate(cfg)  # before anything is written: production never invents a key
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _local_secret(data_dir)
    cfg["DATABASE_URL"] = cfg["DATABASE_URL"] or f"sqlite:///{data_dir / 'neurohub.sqlite3'}"
    # Heroku/Railway style URLs name the driver loosely; we always use psycopg 3.
    for prefix in ("postgres://", "postgresql://"):
        if cfg["DATABASE_URL"].startswith(prefix):
            cfg["DATABASE_URL"] = "postgresql+psycopg://" + cfg["DATABASE_URL"][len(prefix):]
    cfg["CELERY_BROKER_URL"] = (cfg["CELERY_BROKER_URL"] or cfg["REDIS_URL"]
                                or f"nhsqla+sqlite:///{data_dir / 'broker.sqlite3'}")
    cfg["FIRMWARE_DIR"] = cfg["FIRMWARE_DIR"] or str(data_dir / "firmware")
    cfg["BACKUP_DIR"] = cfg["BACKUP_DIR"] or str(data_dir / "backups")
    cfg["RATELIMIT_STORAGE_URI"] = cfg.get("RATELIMIT_STORAGE_URI") or cfg["REDIS_URL"] or "memory://"
    cfg["SQLALCHEMY_DATABASE_URI"] = cfg["DATABASE_URL"]
    cfg["EMBEDDED"] = cfg["DATABASE_URL"].startswith("sqlite")
    cfg["LABEL_FONT"] = _label_font(cfg["LABEL_FONT"])
    _check_schedule(cfg)
    _check_extras(cfg)
    return cfg


def plant_zone_name(cfg: Mapping[str, Any]) -> str:
    """PLANT_TIMEZONE, else the older LOT_TIMEZONE, else the host's zone; checked to exist."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
    name = cfg.get("PLANT_TIMEZONE") or cfg.get("LOT_TIMEZONE")
    if not name:
        import tzlocal
        name = tzlocal.get_localzone_name() or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"PLANT_TIMEZONE={name!r} is not an IANA time zone "
                          "(e.g. Asia/Seoul)") from None
    return name


def _check_schedule(cfg: Mapping[str, Any]) -> None:
    from beat.schedule import SCHEDULE, ScheduleError, resolve
    for name, entry in SCHEDULE.items():
        try:
            resolve(name, cfg)
        except ScheduleError as exc:
            raise ConfigError(f"{entry.override}: {exc}") from None


def _check_extras(cfg: Mapping[str, Any]) -> None:
    """A setting that needs an optional extra names the extra, not a ModuleNotFoundError."""
    if cfg["USE_S3"]:
        try:
            import boto3  # noqa: F401
        except ImportError:
            raise ConfigError(f"USE_S3=true needs the s3 extra: {S3_EXTRA}") from None


def _local_secret(data_dir: Path) -> str:
    """A random signing key kept in the data dir (0600), shared by every process of one install.

    A constant development key would let anyone on the factory network forge admin tokens for
    an embedded installation; a generated one is as safe as a configured one.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / SECRET_FILE
    if not path.exists():
        # Written whole to a private temp file, then linked into place: processes starting at
        # the same time either win the link or read the winner's complete key.
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".secret-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(48))
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()


def _label_font(name: str) -> str:
    """The label font's path; ConfigError naming LABEL_FONT when it is missing or unfit."""
    from printers.fonts import FontError, find_font
    try:
        return find_font(name)
    except FontError as exc:
        raise ConfigError(f"LABEL_FONT: {exc}. Set LABEL_FONT to a TrueType .ttf with Hangul "
                          "(a path, or a file name in the font directories), or leave it unset "
                          "for the bundled NanumSquare") from None


def secret_problem(key: str | None) -> str | None:
    """Why ``key`` is too weak to sign production tokens, or None when it is strong enough."""
    key = (key or "").strip()
    counts = Counter(key)
    bits = sum(n * math.log2(len(key) / n) for n in counts.values())
    if len(key) < MIN_SECRET_LENGTH or len(counts) < MIN_SECRET_DISTINCT or bits < MIN_SECRET_BITS:
        return (f"SECRET_KEY must be random: at least {MIN_SECRET_LENGTH} characters, "
                f"{MIN_SECRET_DISTINCT} different ones and {MIN_SECRET_BITS} bits of entropy "
                f"(this one: {len(key)}, {len(counts)}, {bits:.0f}); make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`")
    return None


def validate(cfg: Mapping[str, Any]) -> None:
    """Stop start-up when a production deployment is configured unsafely."""
    if cfg["NEUROHUB_ENV"] != "production":
        return
    problems = [p for p in [secret_problem(cfg["SECRET_KEY"])] if p]
    if not cfg["DATABASE_URL"] or cfg["DATABASE_URL"].startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL (postgresql+psycopg://...); "
                        "SQLite is the single-PC embedded default only")
    if not cfg["REDIS_URL"]:
        problems.append("REDIS_URL must be set (redis://...): every process shares the broker "
                        "and the login rate limits through it")
    if not cfg.get("FLOWER_BASIC_AUTH"):
        problems.append("FLOWER_BASIC_AUTH must be set (user:password) so Flower is not open")
    if problems:
        raise ConfigError("NEUROHUB_ENV=production refuses to start: " + "; ".join(problems))


def is_postgres(url: str) -> bool:
    """True when the database URL names PostgreSQL."""
    return url.startswith("postgresql")


def render_reference() -> str:
    """deploy/.env.reference.example: every setting with its default and meaning."""
    lines = ["# Every variable NeuroHub MES reads, with its default and meaning. An empty value",
             "# means the default. Generated from web/config.py SETTINGS: regenerate with",
             "#   python -m web.config > deploy/.env.reference.example", ""]
    for s in SETTINGS:
        default = "" if s.default is None else str(s.default).lower() if isinstance(
            s.default, bool) else str(s.default)
        # Quoted where a shell would split or glob it: the RUNBOOK sources these files.
        lines += [f"# {s.meaning}", f"{s.name}={shlex.quote(default) if default else ''}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_reference(), end="")
