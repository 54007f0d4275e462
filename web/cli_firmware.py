"""``neurohub firmware upload|list`` and ``neurohub storage sync``: firmware and storage admin."""
from __future__ import annotations

import hashlib
import io
import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from storage import AREAS


class _Progress(io.RawIOBase):
    """A readable file that advances a click progress bar as it is read."""

    def __init__(self, fh, bar):
        self._fh, self._bar = fh, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._fh.readinto(buffer)
        self._bar.update(n or 0)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._bar.update(len(data))
        return data


@click.group("firmware")
def firmware_group():
    """Firmware images: upload (optionally release) and list."""


@firmware_group.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--product", required=True, help="product code, e.g. NH-100")
@click.option("--version", "version", required=True, help="semantic version, e.g. 1.4.2")
@click.option("--sha256", help="expected sha256; the upload is refused if the file differs")
@click.option("--notes", help="release notes")
@click.option("--release", is_flag=True, help="release it at once (stations get assignments)")
@with_appcontext
def upload_cmd(file, product, version, sha256, notes, release):
    """Upload FILE as a firmware draft of PRODUCT (streamed, hashed, size-limited)."""
    from .services import firmware as svc
    from .services.audit import CLI
    limit, err = current_app.config["MAX_FIRMWARE_BYTES"], sys.stderr
    size = os.path.getsize(file)
    if size > limit:
        raise click.ClickException(f"{file} is {size} bytes; MAX_FIRMWARE_BYTES is {limit}")
    with open(file, "rb") as fh:
        try:
            with click.progressbar(length=size, label="checking ", file=err) as bar:
                incoming = svc.measure(fh, os.path.basename(file), limit, bar.update)
            svc.check_upload(product, version, incoming, sha256)
            with click.progressbar(length=size, label="uploading", file=err) as bar:
                incoming.stream = io.BufferedReader(_Progress(fh, bar), 1024 * 1024)
                fw = svc.upload(product, version, incoming, CLI, expected_sha256=sha256,
                                notes=notes)
        except svc.UnknownProduct:
            raise click.ClickException(f"unknown product {product!r}") from None
        except (svc.VersionExists, svc.InvalidImage, svc.TooLarge) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"firmware {fw.id}: {product} {version} ({fw.size} bytes, sha256 {fw.sha256}) "
               f"stored as {fw.storage_key} [draft]")
    if release:
        svc.release(fw.id, CLI)
        click.echo(f"firmware {fw.id} released; the io worker distributes it to the stations")


@firmware_group.command("list")
@click.option("--product", help="only this product")
@click.option("--state", type=click.Choice(["draft", "released", "revoked"]))
@with_appcontext
def list_cmd(product, state):
    """List firmware, newest first."""
    from .services import firmware as svc
    cursor, rows = None, []
    while True:
        page, cursor = svc.list_firmware(product, state, cursor, 200)
        rows += [svc.firmware_dict(fw) for fw in page]
        if not cursor:
            break
    if not rows:
        click.echo("no firmware")
        return
    click.echo(f"{'ID':>5}  {'PRODUCT':<12} {'VERSION':<16} {'STATE':<9} {'SIZE':>11}  SHA256")
    for r in rows:
        note = f"  ! {r['release_error']}" if r["release_error"] else ""
        click.echo(f"{r['id']:>5}  {r['product']:<12} {r['version']:<16} {r['state']:<9} "
                   f"{r['size']:>11}  {r['sha256']}{note}")


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

    from .extensions import db
    from .models import Firmware
    from .services.storage_sync import area_storage, sync_area
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


# --- the demo line's firmware (used by `neurohub seed-demo`) ---------------------------------

DEMO_FIRMWARE = ("NH-100", "1.0.0")
DEMO_FLASH_STATIONS = ("ST-03", "ST-04")


def demo_image(size: int = 256 * 1024) -> bytes:
    """A small, deterministic demo image (same bytes on every install, so the same sha256)."""
    header = b"NEUROHUB-DEMO-FIRMWARE NH-100 1.0.0 -- not for devices\n"
    out, block = bytearray(header), hashlib.sha256(header).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def seed_demo_firmware() -> str:
    """Upload + release the demo image, distribute it now and record the demo stations' acks.

    The acks are demo data (recorded as system:cli with ``demo: true``): a real station proves
    its copy by downloading it and acknowledging the sha256 it computed.
    """
    from .services import firmware as svc
    from .services import firmware_assignments as asg
    from .services.audit import CLI, Actor
    product, version = DEMO_FIRMWARE
    image = demo_image()
    try:
        fw = svc.upload(product, version, svc.measure(io.BytesIO(image), "nh100-demo.bin"), CLI,
                        notes="demo image generated by seed-demo")
    except svc.VersionExists:
        return f"firmware {product} {version} exists"
    svc.release(fw.id, CLI)
    svc.distribute(fw.id)  # the task body, run here so the demo line works without a worker
    demo = Actor(None, "system:cli (seed-demo: demo acknowledgement)")
    for a in asg.firmware_assignments(fw.id):
        if a.station.code in DEMO_FLASH_STATIONS:
            asg.ack(a.station.code, a.id, hashlib.sha256(image).hexdigest(), demo)
    return (f"firmware {product} {version} released and verified on "
            f"{', '.join(DEMO_FLASH_STATIONS)} (demo acknowledgements)")


__all__ = ["firmware_group", "storage_group", "seed_demo_firmware", "demo_image"]
