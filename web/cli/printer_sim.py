"""``neurohub printer-sim``: the Zebra printer simulator (raw ZPL + ``~HS``, HTTP control)."""
from __future__ import annotations

import click


@click.command("printer-sim", context_settings={"ignore_unknown_options": True,
                                                "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def printer_sim_cmd(args):
    """Run the Zebra printer simulator (raw ZPL + ~HS on --port, HTTP control; --help)."""
    from printers.simulator import main as sim_main
    raise SystemExit(sim_main(list(args)))
