"""Configuration: code defaults + environment (12-factor), with the embedded default.

With no environment at all the product runs on one PC: SQLite, kombu's SQLAlchemy transport on a
SQLite file (a server-less Celery broker) and local storage, all under ``NEUROHUB_DATA_DIR``.
``DATABASE_URL`` / ``REDIS_URL`` switch to PostgreSQL / Redis with no code change.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Mapping

SECRET_FILE = "secret_key"  # generated under the data dir when SECRET_KEY is not set
MIN_SECRET_LENGTH = 32


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message says what to change."""


def _bool(value: Any) -> bool:
    """Read a boolean the way operators write it in .env files."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "yes", "on"}


# name -> (default, converter); a default of None means "derived below" or "unset".
_ENV: dict[str, tuple[Any, Any]] = {
    "NEUROHUB_ENV": ("development", str),
    "NEUROHUB_DATA_DIR": ("./var", str),
    "DATABASE_URL": (None, str),
    "REDIS_URL": (None, str),
    "CELERY_BROKER_URL": (None, str),
    "SECRET_KEY": (None, str),
    "ACCESS_TOKEN_EXPIRE_MINUTES": (30, int),
    "API_HOST": ("127.0.0.1", str),
    "API_PORT": (8000, int),
    "USE_S3": (False, _bool),
    "S3_BUCKET": (None, str),
    "AWS_REGION": (None, str),
    "AWS_ENDPOINT_URL": (None, str),
    "FIRMWARE_DIR": (None, str),
    "BACKUP_DIR": (None, str),
    "BACKUP_RETENTION_DAYS": (30, int),
    # Backups and housekeeping (beat/schedule.py reads the *_CRON overrides; cron times are UTC).
    "BACKUP_CRON": (None, str),
    "LIFECYCLE_CRON": (None, str),
    "RESTORE_DRILL_CRON": (None, str),
    "BACKUP_KEEP_MIN": (3, int),
    "NONCURRENT_VERSION_DAYS": (30, int),
    "BACKUP_STALE_HOURS": (26.0, float),
    "BACKUP_TMP_DIR": (None, str),
    "RESTORE_DRILL_URL": (None, str),
    "STATION_OFFLINE_MINUTES": (5, int),
    "CANARY_STALE_SECONDS": (180.0, float),
    # `neurohub up` restarts a worker when its canary has not come through in this long (0: off).
    "WORKER_CANARY_TIMEOUT": (20.0, float),
    # Largest firmware image accepted by POST /api/v1/firmware (bytes of the file part).
    "MAX_FIRMWARE_BYTES": (64 * 1024 * 1024, int),
    # Lifetime of the presigned S3 URL a firmware download redirects to (seconds).
    "FIRMWARE_URL_EXPIRES": (300, int),
    "LOT_TIMEZONE": (None, str),
    "LOGIN_RATE_LIMIT": ("10 per minute", str),
    "MAX_CONTENT_LENGTH": (1024 * 1024, int),
    "OUTBOX_REDISPATCH_SECONDS": (30, float),
    # Between relay passes: what arrives meanwhile goes out together, one task per lot.
    "OUTBOX_RELAY_INTERVAL": (0.1, float),
    # Messages allowed to wait in a broker queue; the rest wait (and coalesce) in the outbox.
    "RELAY_QUEUE_WINDOW": (64, int),
    "DB_POOL_SIZE": (10, int),
    "LABEL_MAX_ATTEMPTS": (5, int),
    "PRINTER_CONNECT_TIMEOUT": (3.0, float),
    "PRINTER_STATUS_TIMEOUT": (2.0, float),
    "PRINTER_SIM_PORT": (9100, int),
    "FLOWER_BASIC_AUTH": (None, str),
    "WEB_WORKERS": (2, int),
    # Threads per web worker (gunicorn gthread): keeps station connections alive between
    # requests instead of a TCP handshake per completion, and overlaps database round trips.
    "WEB_THREADS": (4, int),
    "WORKER_CONCURRENCY": (2, int),
    # CPU niceness of the Celery workers, beat and the outbox relay (0 = the web's): on a shared
    # machine an operator's request gets a core before background work does.
    "BACKGROUND_NICE": (5, int),
    # werkzeug's default (scrypt); tests may choose a cheaper method to keep the suite fast.
    "PASSWORD_HASH_METHOD": ("scrypt", str),
}


def load_config(environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Build the configuration from code defaults, the environment and test overrides."""
    env = os.environ if environ is None else environ
    cfg: dict[str, Any] = {}
    for name, (default, conv) in _ENV.items():
        raw = env.get(name)
        cfg[name] = conv(raw) if raw not in (None, "") else default
    cfg.update(overrides or {})

    data_dir = Path(cfg["NEUROHUB_DATA_DIR"]).expanduser().resolve()
    cfg["NEUROHUB_DATA_DIR"] = str(data_dir)
    if not cfg["SECRET_KEY"] and cfg["NEUROHUB_ENV"] != "production":
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
    validate(cfg)
    return cfg


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


def validate(cfg: Mapping[str, Any]) -> None:
    """Stop start-up when a production deployment is configured unsafely."""
    if cfg["NEUROHUB_ENV"] != "production":
        return
    problems = []
    if not cfg["SECRET_KEY"] or len(cfg["SECRET_KEY"]) < MIN_SECRET_LENGTH:
        problems.append("SECRET_KEY must be set to a random value of at least 32 characters "
                        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)")
    if cfg["DATABASE_URL"].startswith("sqlite"):
        problems.append("DATABASE_URL must point at PostgreSQL (postgresql+psycopg://...); "
                        "SQLite is the single-PC embedded default only")
    if not cfg.get("FLOWER_BASIC_AUTH"):
        problems.append("FLOWER_BASIC_AUTH must be set (user:password) so Flower is not open")
    if problems:
        raise ConfigError("NEUROHUB_ENV=production refuses to start:\n  - " + "\n  - ".join(problems))


def is_postgres(url: str) -> bool:
    """True when the database URL names PostgreSQL."""
    return url.startswith("postgresql")
