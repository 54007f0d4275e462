"""``neurohub firmware upload|list``: firmware images from the command line."""
from __future__ import annotations

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
    from ..services import firmware as svc
    from ..services.audit import CLI
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
    from ..services import firmware as svc
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
