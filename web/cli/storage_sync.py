"""``neurohub storage sync``: copy stored objects between local disk and S3, verified."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from storage import AREAS


@click.group("storage")
def storage_group():
    """Object storage maintenance."""


@storage_group.command("sync")
@click.option("--from", "source", type=click.Choice(["local", "s3"]), required=True)
@click.option("--to", "target", type=click.Choice(["local", "s3"]), required=True)
@click.option("--area", type=click.Choice(sorted(AREAS)), multiple=True,
              help="area to copy (repeatable; default: all)")
@with_appcontext
def sync_cmd(source, target, area):
    """Copy every object of an area between backends, sha256-verified on both sides.

    Restartable: objects already identical at the destination are skipped. Exits 1 when any
    object could not be copied and verified.
    """
    from sqlalchemy import select

    from ..extensions import db
    from ..models import Firmware
    from ..services.storage_sync import area_storage, sync_area
    if source == target:
        raise click.ClickException("--from and --to must differ")
    failed = False
    for name in area or sorted(AREAS):
        try:
            src, dst = area_storage(name, source), area_storage(name, target)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        expected = dict(db.session.execute(select(Firmware.storage_key, Firmware.sha256)).all()) \
            if name == "firmware" else None
        db.session.rollback()
        click.echo(f"{name}: {src!r} -> {dst!r}")
        report = sync_area(src, dst, name, expected, lambda key, what: click.echo(
            f"  {what:<7} {key}", err=what == "failed"))
        click.echo(f"{name}: {report.copied} copied ({report.bytes_copied} bytes), "
                   f"{report.skipped} already identical, {len(report.failed)} failed")
        for key, error in report.failed:
            click.echo(f"  FAILED {key}: {error}", err=True)
        failed |= not report.ok
    if failed:
        raise SystemExit(1)
