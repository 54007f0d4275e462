"""``python -m web.cli ...``: the ``neurohub`` command."""
from . import main

main()
