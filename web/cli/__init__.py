"""The ``neurohub`` command (``python -m web.cli``): the group, and its commands by area.

``supervisor`` (up), ``relay``, ``users`` (create-user), ``demo`` (seed-demo and its data),
``firmware``, ``storage_sync``, ``backup`` (backup, restore), ``printer_sim``, the watchdog's
``worker-check``, and ``db`` from Flask-Migrate.
"""
from __future__ import annotations

import click
from flask import Flask
from flask.cli import FlaskGroup


def _create_app():
    from .. import create_app
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


def _commands() -> list[click.Command]:
    from ..watchdog import worker_check_cmd
    from .backup import COMMANDS as BACKUP_COMMANDS
    from .demo import seed_demo_cmd
    from .firmware import firmware_group
    from .printer_sim import printer_sim_cmd
    from .relay import relay_cmd
    from .storage_sync import storage_group
    from .supervisor import up_cmd
    from .users import create_user_cmd
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
