"""Console pages, one module per area; each attaches its routes to the console blueprint."""


def load() -> tuple:
    """Import every page module (their routes go on the blueprint at import)."""
    from . import auth, backups, firmware, lots, overview, printers, stations, users
    return auth, backups, firmware, lots, overview, printers, stations, users
