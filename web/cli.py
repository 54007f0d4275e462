"""The ``neurohub`` command: up, relay, create-user, seed-demo (plus ``db`` from Flask-Migrate)."""
from __future__ import annotations

import getpass
import logging
import signal
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

log = logging.getLogger("neurohub.cli")


def _create_app():
    from . import create_app
    return create_app()


NOT_INITIALISED = "database not initialised: run `neurohub db upgrade`"


def _missing_table(exc: Exception) -> bool:
    """True when a database error says a table does not exist (no `db upgrade` yet)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "42P01":  # PostgreSQL undefined_table
        return True
    return "no such table" in str(orig or exc)  # SQLite


class NeurohubGroup(FlaskGroup):
    """Flask's CLI group with only the product's own commands and options.

    The commands are registered on the group itself, so ``--help`` lists them without creating
    the app (which would write ``var/secret_key`` wherever it is run); Flask's ``-e/-A/--debug``
    and extension groups (``limiter``) are not for operators. A command run before
    ``db upgrade`` says so in one line instead of a traceback.
    """

    HIDDEN_PARAMS = ("env_file", "app", "debug")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.params = [p for p in self.params if p.name not in self.HIDDEN_PARAMS]

    def get_command(self, ctx, name):
        """Only the commands registered on this group (never loads the app)."""
        return click.Group.get_command(self, ctx, name)

    def list_commands(self, ctx):
        """Only the commands registered on this group (never loads the app)."""
        return click.Group.list_commands(self, ctx)

    def invoke(self, ctx):
        """Run the command; a missing schema becomes one line and exit code 1."""
        from sqlalchemy.exc import DBAPIError
        try:
            return super().invoke(ctx)
        except DBAPIError as exc:
            if not _missing_table(exc):
                raise
            click.echo(NOT_INITIALISED, err=True)
            ctx.exit(1)


@click.group(cls=NeurohubGroup, create_app=_create_app, add_version_option=False,
             add_default_commands=False, load_dotenv=False, set_debug_flag=False)
@click.version_option(package_name="neurohub-mes", prog_name="neurohub")
def main():
    """NeuroHub MES: manufacturing execution for the device line."""


@click.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "supervisor", "operator"]), required=True)
@click.option("--password", help="read from stdin when absent")
@with_appcontext
def create_user_cmd(name, role, password):
    """Create a user (the password is read from stdin when --password is absent)."""
    from .services.audit import CLI
    from .services.users import UserExists, create_user
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Repeat: ") != password:
                raise click.ClickException("passwords differ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    try:
        user = create_user(name, password, role, CLI)
    except (UserExists, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {role} {user.username!r} (id {user.id})")


DEMO_ROUTING = [
    {"step": "SMT", "name": "SMT assembly", "measurements": [], "requires_firmware": False,
     "label_template": "lot"},
    {"step": "FLASH", "name": "Firmware flashing", "measurements": [], "requires_firmware": True,
     "label_template": None},
    {"step": "FCT", "name": "Functional test", "requires_firmware": False, "label_template": "unit",
     "measurements": [{"name": "voltage", "unit": "V", "min": 3.2, "max": 3.4, "required": True},
                      {"name": "current_ma", "unit": "mA", "min": 30, "max": 50,
                       "required": True}]},
    {"step": "PACK", "name": "Packing", "measurements": [], "requires_firmware": False,
     "label_template": "box"},
]
DEMO_STATIONS = [("ST-01", "SMT line 1", ["SMT"]), ("ST-02", "SMT line 2", ["SMT"]),
                 ("ST-03", "Flashing 1", ["FLASH"]), ("ST-04", "Flashing 2", ["FLASH"]),
                 ("ST-05", "Functional test 1", ["FCT"]), ("ST-06", "Functional test 2", ["FCT"]),
                 ("ST-07", "Packing", ["PACK"])]
DEMO_USERS = [("admin", "admin", "admin-demo-pw"), ("supervisor", "supervisor", "super-demo-pw"),
              ("operator", "operator", "oper-demo-pw")]


@click.command("seed-demo")
@with_appcontext
def seed_demo_cmd():
    """Create the demo product NH-100, stations ST-01..ST-07, demo users and a released demo
    firmware verified on the FLASH stations ST-03/ST-04 (idempotent)."""
    from .services import products, stations, users
    from .services.audit import CLI
    if current_app.config["NEUROHUB_ENV"] == "production":
        raise click.ClickException("seed-demo creates users with known passwords; "
                                   "not in production")
    try:
        products.create_product("NH-100", "NeuroHub sensor module", DEMO_ROUTING, CLI)
        click.echo("product NH-100: SMT -> FLASH -> FCT -> PACK")
    except products.ProductExists:
        click.echo("product NH-100 exists")
    for code, name, steps in DEMO_STATIONS:
        try:
            # `neurohub up` runs the printer simulator on this port on the embedded default.
            printer = f"tcp://127.0.0.1:{current_app.config['PRINTER_SIM_PORT']}"
            stations.create_station(code, name, steps, printer, CLI)
        except stations.StationExists:
            pass
    click.echo("stations ST-01..ST-07")
    for username, role, password in DEMO_USERS:
        try:
            users.create_user(username, password, role, CLI)
            click.echo(f"user {username} / {password} ({role})")
        except users.UserExists:
            click.echo(f"user {username} exists")
    from .cli_firmware import seed_demo_firmware
    click.echo(seed_demo_firmware())


RELAY_BATCH = 500  # outbox rows per relay pass


@click.command("relay")
@click.option("--once", is_flag=True, help="one pass, then exit")
@with_appcontext
def relay_cmd(once):
    """Publish committed outbox messages to the broker (runs until SIGTERM)."""
    from workers.broker import publisher, queue_depth
    from workers.signals import lower_priority
    from .extensions import db
    from .services.outbox import relay_batch
    celery_app = current_app.extensions["celery"]
    lower_priority(current_app)
    interval = current_app.config["OUTBOX_RELAY_INTERVAL"]
    redispatch = current_app.config["OUTBOX_REDISPATCH_SECONDS"]
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    backoff = interval
    log.info("outbox relay started (interval %.3fs, redispatch after %.0fs)", interval, redispatch)
    with publisher(celery_app) as publish:  # one producer for the relay's life
        while not stopping:
            try:
                stats = relay_batch(publish, lambda q: queue_depth(celery_app, q),
                                    batch=RELAY_BATCH, redispatch_after=redispatch,
                                    window=current_app.config["RELAY_QUEUE_WINDOW"])
                # Straight on only while a full batch came back (a backlog); otherwise wait one
                # interval, so that what arrives meanwhile goes out together, coalesced per lot.
                busy = stats.fetched >= RELAY_BATCH
                if stats.errors:
                    log.warning("relay: broker error: %s", stats.errors[0])
                    backoff = min(backoff * 2 or 0.1, 5.0)
                else:
                    backoff = interval
            except Exception as exc:  # database down: keep trying, nothing is lost
                db.session.rollback()
                log.warning("relay: %s: %s", type(exc).__name__, exc)
                busy, backoff = 0, min(max(backoff, 0.1) * 2, 5.0)
            finally:
                db.session.remove()
            if once:
                break
            if not busy or backoff > interval:
                time.sleep(backoff)
    log.info("outbox relay stopped")


@click.command("printer-sim", context_settings={"ignore_unknown_options": True,
                                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def printer_sim_cmd(args):
    """Run the Zebra printer simulator (raw ZPL + ~HS on --port, HTTP control; --help)."""
    from printers.simulator import main as sim_main
    raise SystemExit(sim_main(list(args)))


def _commands() -> list[click.Command]:
    from .cli_backup import COMMANDS as BACKUP_COMMANDS
    from .cli_firmware import firmware_group, storage_group
    from .supervisor import up_cmd
    from .watchdog import worker_check_cmd
    return [create_user_cmd, seed_demo_cmd, relay_cmd, up_cmd, printer_sim_cmd, firmware_group,
            storage_group, worker_check_cmd, *BACKUP_COMMANDS]


def register_commands(app: Flask) -> None:
    """Add the product's commands to ``app.cli`` (for ``app.test_cli_runner()``)."""
    for cmd in _commands():
        app.cli.add_command(cmd)


def _register_on_main() -> None:
    from flask_migrate.cli import db as db_group
    for cmd in [*_commands(), db_group]:
        main.add_command(cmd)


_register_on_main()

if __name__ == "__main__":
    main()
