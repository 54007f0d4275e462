"""``neurohub create-user``: operator, supervisor and admin accounts."""
from __future__ import annotations

import getpass
import sys

import click
from flask.cli import with_appcontext


@click.command("create-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "supervisor", "operator"]), required=True)
@click.option("--password", help="read from stdin when absent")
@with_appcontext
def create_user_cmd(name, role, password):
    """Create a user (the password is read from stdin when --password is absent)."""
    from ..services.audit import CLI
    from ..services.users import UserExists, create_user
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
