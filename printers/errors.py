"""Exceptions raised by the printer drivers; every one is a PrinterError."""
from __future__ import annotations


class PrinterError(Exception):
    """Base class: the label was not (confirmed) handed to the printer."""


class PrinterUnreachable(PrinterError):
    """The printer could not be connected to (refused, timed out, no route, bad directory)."""


class PrinterOffline(PrinterError):
    """The printer accepted a connection but did not answer (or stopped answering) in time."""


class StatusError(PrinterError, ValueError):
    """A ~HS host status answer was malformed or incomplete."""


class PrinterNotReady(PrinterError):
    """The printer answered but reports a condition that stops printing (paper out, ...)."""

    def __init__(self, status, message: str | None = None):
        self.status = status
        self.reasons = list(status.reasons)
        super().__init__(message or "printer not ready: " + ", ".join(self.reasons or ["unknown"]))
