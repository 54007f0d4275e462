"""Configuration: the embedded default, switching backends by environment, production refusals."""
import stat

import pytest

from web.config import CONFIG_EXIT_STATUS, ConfigError, load_config


def test_no_environment_means_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={})
    data = tmp_path / "var"
    assert cfg["NEUROHUB_DATA_DIR"] == str(data)
    assert cfg["DATABASE_URL"] == f"sqlite:///{data / 'neurohub.sqlite3'}"
    assert cfg["CELERY_BROKER_URL"] == f"nhsqla+sqlite:///{data / 'broker.sqlite3'}"
    assert (cfg["FIRMWARE_DIR"], cfg["BACKUP_DIR"]) == (str(data / "firmware"),
                                                         str(data / "backups"))
    assert cfg["EMBEDDED"] is True and cfg["RATELIMIT_STORAGE_URI"] == "memory://"


def test_generated_secret_is_private_stable_and_strong(tmp_path):
    env = {"NEUROHUB_DATA_DIR": str(tmp_path)}
    first, second = load_config(environ=env), load_config(environ=env)
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 48
    mode = stat.S_IMODE((tmp_path / "secret_key").stat().st_mode)
    assert mode == 0o600
    other = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path / "other")})
    assert other["SECRET_KEY"] != first["SECRET_KEY"]


def test_database_and_redis_urls_switch_backends(tmp_path):
    cfg = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path),
                               "DATABASE_URL": "postgres://u:p@db/mes",
                               "REDIS_URL": "redis://cache:6379/0"})
    assert cfg["DATABASE_URL"] == "postgresql+psycopg://u:p@db/mes"
    assert cfg["CELERY_BROKER_URL"] == "redis://cache:6379/0"
    assert cfg["RATELIMIT_STORAGE_URI"] == "redis://cache:6379/0"
    assert cfg["EMBEDDED"] is False
    cfg = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path),
                               "REDIS_URL": "redis://cache:6379/0",
                               "CELERY_BROKER_URL": "amqp://guest@mq//"})
    assert cfg["CELERY_BROKER_URL"] == "amqp://guest@mq//"


def test_typed_values_from_the_environment(tmp_path):
    cfg = load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path), "USE_S3": "true",
                               "ACCESS_TOKEN_EXPIRE_MINUTES": "5", "API_PORT": "9000"})
    assert (cfg["USE_S3"], cfg["ACCESS_TOKEN_EXPIRE_MINUTES"], cfg["API_PORT"]) == (True, 5, 9000)
    with pytest.raises(ConfigError, match="API_PORT='eighty' must be a whole number"):
        load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path), "API_PORT": "eighty"})


GOOD_PROD = {"NEUROHUB_ENV": "production", "SECRET_KEY": "kq3V9-xTz_LmR8pW2cYbN4uHf7JdG0sA5eQ1oKiZ",
             "DATABASE_URL": "postgresql+psycopg://mes@db/mes", "REDIS_URL": "redis://r/0",
             "FLOWER_BASIC_AUTH": "ops:secret"}


@pytest.mark.parametrize("change, message", [
    ({"SECRET_KEY": ""}, "SECRET_KEY"),
    ({"SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"DATABASE_URL": ""}, "SQLite"),
    ({"FLOWER_BASIC_AUTH": ""}, "FLOWER_BASIC_AUTH"),
])
def test_production_refuses_unsafe_settings(tmp_path, change, message):
    env = dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path), **change)
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env)
    assert not (tmp_path / "secret_key").exists()  # production never invents a key


def test_production_with_safe_settings_starts(tmp_path):
    cfg = load_config(environ=dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path)))
    assert cfg["NEUROHUB_ENV"] == "production" and cfg["EMBEDDED"] is False


def test_create_app_refuses_production_sqlite(tmp_path, monkeypatch, capsys):
    from web import create_app
    monkeypatch.setenv("NEUROHUB_ENV", "production")
    monkeypatch.setenv("NEUROHUB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(SystemExit) as refused:
        create_app()
    assert refused.value.code == CONFIG_EXIT_STATUS
    err = capsys.readouterr().err
    assert err.startswith("configuration error: ") and "SQLite" in err and err.count("\n") == 1


def test_neurohub_up_runs_the_web_threaded_with_few_malloc_arenas(tmp_path):
    from web.config import load_config
    from web.cli.supervisor import plan
    cfg = load_config(overrides={"NEUROHUB_DATA_DIR": str(tmp_path), "WEB_THREADS": 6})
    web = next(c for c in plan(cfg, "127.0.0.1", 8000, flower=False, printer_sim=False)
               if c.name == "web")
    assert web.argv[web.argv.index("-k") + 1] == "gthread"  # keep-alive for station PCs
    assert web.argv[web.argv.index("--threads") + 1] == "6"
    assert web.env["MALLOC_ARENA_MAX"] == "2"


def test_label_font_is_bundled_found_by_name_or_refused_naming_the_setting(tmp_path,
                                                                          monkeypatch):
    env = {"NEUROHUB_DATA_DIR": str(tmp_path)}
    bundled = load_config(environ=env)["LABEL_FONT"]
    assert bundled.endswith("printers/data/NanumSquareR.ttf")  # no system package needed
    fonts = tmp_path / "share" / "fonts" / "truetype"
    fonts.mkdir(parents=True)
    (fonts / "FactoryKR.ttf").write_bytes(open(bundled, "rb").read())
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    assert load_config(environ=env | {"LABEL_FONT": "FactoryKR.ttf"})["LABEL_FONT"] == \
        str(fonts / "FactoryKR.ttf")  # a file name is looked up in the font directories
    with pytest.raises(ConfigError, match="LABEL_FONT: no font file Nope.ttf in .*share/fonts"):
        load_config(environ=env | {"LABEL_FONT": "Nope.ttf"})
    with pytest.raises(ConfigError, match="LABEL_FONT: no font file .*missing.ttf"):
        load_config(environ=env | {"LABEL_FONT": str(tmp_path / "missing.ttf")})
    ttc = tmp_path / "cjk.ttc"
    ttc.write_bytes(b"ttcf" + b"\0" * 64)
    with pytest.raises(ConfigError, match="LABEL_FONT: .*collection"):
        load_config(environ=env | {"LABEL_FONT": str(ttc)})


# --- production refusals: a real secret, Redis, one line ---------------------------------------

@pytest.mark.parametrize("key", [" " * 40, "x" * 40, "ab" * 20, "abcd" * 10, "0" * 64,
                                 "password" * 5])
def test_production_refuses_a_secret_key_without_entropy(tmp_path, key):
    env = dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path), SECRET_KEY=key)
    with pytest.raises(ConfigError, match="SECRET_KEY must be random"):
        load_config(environ=env)


def test_production_accepts_generated_secret_keys(tmp_path):
    import secrets
    for _ in range(100):  # the rule must never refuse what the documented recipes produce
        for key in (secrets.token_urlsafe(48), secrets.token_hex(16), secrets.token_hex(32),
                    secrets.token_urlsafe(24)):
            load_config(environ=dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path), SECRET_KEY=key))


def test_production_refuses_to_start_without_redis(tmp_path):
    env = dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path), REDIS_URL="")
    with pytest.raises(ConfigError, match="REDIS_URL must be set"):
        load_config(environ=env)


def test_a_configuration_error_is_one_line_naming_every_problem(tmp_path):
    env = dict(GOOD_PROD, NEUROHUB_DATA_DIR=str(tmp_path), SECRET_KEY="x" * 40, REDIS_URL="",
               FLOWER_BASIC_AUTH="")
    with pytest.raises(ConfigError) as refused:
        load_config(environ=env)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("configuration error: ")
    assert all(name in message for name in ("SECRET_KEY", "REDIS_URL", "FLOWER_BASIC_AUTH"))


@pytest.mark.parametrize("name, value, message", [
    ("API_PORT", "80.5", "API_PORT='80.5' must be a whole number"),
    ("BACKUP_STALE_HOURS", "a day", "BACKUP_STALE_HOURS='a day' must be a number"),
    ("USE_S3", "ture", "USE_S3='ture' must be true or false"),
    ("BACKUP_CRON", "every night", "BACKUP_CRON: not a schedule"),
    ("CANARY_CRON", "61 * * * *", "CANARY_CRON: bad crontab"),
    ("PLANT_TIMEZONE", "Asia/Sejong", "PLANT_TIMEZONE='Asia/Sejong' is not an IANA time zone"),
])
def test_a_bad_value_is_a_configuration_error_naming_the_variable(tmp_path, name, value,
                                                                   message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        load_config(environ={"NEUROHUB_DATA_DIR": str(tmp_path), name: value})


def test_use_s3_without_the_extra_names_the_extra(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without [s3] has
    env = {"NEUROHUB_DATA_DIR": str(tmp_path), "USE_S3": "true", "S3_BUCKET": "b"}
    with pytest.raises(ConfigError, match=r"pip install 'neurohub-mes\[s3\]'"):
        load_config(environ=env)
    from storage import S3Storage
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'neurohub-mes\[s3\]'"):
        S3Storage("b")


# --- the plant time zone ------------------------------------------------------------------------

def test_plant_timezone_falls_back_to_the_older_lot_timezone(tmp_path):
    base = {"NEUROHUB_DATA_DIR": str(tmp_path)}
    assert load_config(environ=dict(base, LOT_TIMEZONE="Asia/Seoul"))["PLANT_TIMEZONE"] == \
        "Asia/Seoul"
    both = dict(base, LOT_TIMEZONE="Asia/Seoul", PLANT_TIMEZONE="Europe/Berlin")
    assert load_config(environ=both)["PLANT_TIMEZONE"] == "Europe/Berlin"
    import tzlocal
    assert load_config(environ=base)["PLANT_TIMEZONE"] == (tzlocal.get_localzone_name() or "UTC")
