"""``neurohub backup now|list`` and ``neurohub restore BACKUP_ID`` (DESIGN section 5, RUNBOOK)."""
from __future__ import annotations

import sys
import time

import click
from flask.cli import with_appcontext

from ..services.audit import CLI


def _human(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class ProgressLine:
    """One status line on stderr: rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self, label: str, every: float = 5.0):
        self.label, self.every, self.last = label, every, 0.0
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, done: int, total_or_seconds: float | int) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < self.every:
            return
        self.last = now
        if isinstance(total_or_seconds, int) and total_or_seconds > 0:  # download: bytes of total
            pct = 100.0 * done / total_or_seconds
            text = f"{self.label}: {_human(done)} of {_human(total_or_seconds)} ({pct:.0f}%)"
        else:  # dump: bytes after seconds
            secs = float(total_or_seconds)
            rate = done / secs if secs > 0 else 0
            text = f"{self.label}: {_human(done)} in {secs:.1f}s ({_human(int(rate))}/s)"
        click.echo(("\r" + text.ljust(70)) if self.tty else text, err=True, nl=not self.tty)
        self.shown = True

    def end(self) -> None:
        """Finish the line on a terminal."""
        if self.tty and self.shown:
            click.echo("", err=True)
        self.shown = False


@click.group("backup")
def backup_group():
    """Database backups: take one now, list them."""


@backup_group.command("now")
@with_appcontext
def backup_now_cmd():
    """Snapshot the database now (in this process), verify it, and print the result."""
    from ..services import backups
    from ..services.backups import redact
    from flask import current_app
    click.echo(f"snapshot of {redact(current_app.config['DATABASE_URL'])} ...")
    progress = ProgressLine("dumping")
    try:
        b = backups.snapshot_now(CLI, progress=progress)
    except backups.SnapshotBusy as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        progress.end()
    if b.state != "done":
        raise click.ClickException(f"backup {b.id} failed: {b.error}")
    rows = sum((b.row_counts or {}).values())
    click.echo(f"backup {b.id} done: {b.storage_key}")
    click.echo(f"  size {_human(b.size)} ({b.size} bytes), sha256 {b.sha256}")
    click.echo(f"  {b.server_version}, schema {b.schema_revision}, {rows} rows in "
               f"{len(b.row_counts or {})} tables (counted in the dumped snapshot)")
    click.echo(f"  verified: stored object re-read and hashed, archive checked "
               f"({b.verified_at.isoformat()})")


@backup_group.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--storage", "from_storage", is_flag=True,
              help="list what the storage holds (manifests), not the database catalog")
@with_appcontext
def backup_list_cmd(limit, from_storage):
    """List backups, newest first."""
    from ..services import backups
    from ..services.plant_time import shown
    if from_storage:
        store = backups.backup_storage()
        keys = sorted((o for o in store.list("db/") if o.key.endswith((".dump", ".sqlite3"))),
                      key=lambda o: o.key, reverse=True)[:limit]
        for o in keys:
            try:
                m = backups.read_manifest(store, o.key)
                note = f"sha256 {m['sha256'][:16]}… schema {m.get('schema_revision')} " \
                       f"id {m.get('backup_id')}"
            except backups.BackupError as exc:
                note = f"INCOMPLETE: {exc}"
            click.echo(f"{o.key}  {_human(o.size):>10}  {note}")
        return
    rows, _ = backups.list_backups(None, None, None, limit)
    if not rows:
        click.echo("no backups")
        return
    click.echo(f"{'id':>5}  {'kind':9}  {'state':7}  {'finished':25}  {'size':>10}  "
               f"{'verified':8}  {'drill':6}  key")
    for b in rows:
        finished = shown(b.finished_at) or "-"  # the plant's clock, with its offset
        state = "expired" if b.expired_at else b.state
        click.echo(f"{b.id:>5}  {b.kind:9}  {state:7}  {finished:25}  {_human(b.size):>10}  "
                   f"{'yes' if b.verified_at else 'no':8}  {b.drill_result or '-':6}  "
                   f"{b.storage_key or b.error or ''}")


@click.command("restore")
@click.argument("backup_id")
@click.option("--target-url", help="database to restore into (default: DATABASE_URL)")
@click.option("--force", is_flag=True, help="replace a database that is not empty")
@with_appcontext
def restore_cmd(backup_id, target_url, force):
    """Restore BACKUP_ID (an id, or a storage key when the catalog is lost) into a database.

    The download is checked against the recorded sha256 before the target is touched; the
    restore is one transaction that also checks every table's row count.
    """
    from ..services.backups import restore
    progress = ProgressLine("downloading")
    try:
        report = restore.restore(backup_id, target_url, force=force, actor=CLI,
                                 say=lambda m: (progress.end(), click.echo(m)),
                                 progress=progress)
    except restore.RestoreRefused as exc:
        progress.end()
        raise click.ClickException(f"refused: {exc}") from None
    except restore.RestoreFailed as exc:
        progress.end()
        raise click.ClickException(str(exc)) from None
    click.echo(f"restore of backup {report['backup_id'] or report['key']} into "
               f"{report['target']} complete")


COMMANDS = (backup_group, restore_cmd)  # registered by ``web.cli``
