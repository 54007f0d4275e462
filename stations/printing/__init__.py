"""Local printing for ``station://`` printers: pull jobs from the server, print, acknowledge."""
from .service import LabelService, PrinterState
from .worker import LabelWorker

__all__ = ["LabelService", "LabelWorker", "PrinterState"]
