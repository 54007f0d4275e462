"""Zebra label printer drivers: ~HS status, tcp/file/sim backends, safe ZPL, previews, simulator.

A device-driver library used by the server's Celery workers and by the station app: it
imports only the standard library, and zplkit (lazily, for previews and label rendering).
"""
from .backends import (STATION_PULL, FilePrinter, Printer, SimPrinter, TcpPrinter, ensure_font,
                       printer_for_uri, ready_or_raise, send_job)
from .errors import (PrinterError, PrinterNotReady, PrinterOffline, PrinterUnreachable,
                     StatusError)
from .fonts import FONT_LETTER, FontError, LabelFont, load_font
from .simstate import SimLabel, SimulatedPrinter, reset_simulated_printers, simulated_printer
from .simulator import PrinterSimulator
from .status import PrinterStatus, format_host_status, parse_host_status, read_host_status
from .stream import ZplEvent, ZplStream
from .zpl import PreviewError, ascii_fallback, field_hex, preview_png, preview_safe, split_labels

__all__ = [
    "FONT_LETTER", "FilePrinter", "FontError", "LabelFont", "Printer", "PrinterError",
    "PrinterNotReady", "PrinterOffline", "PrinterSimulator", "PrinterStatus",
    "PrinterUnreachable", "PreviewError", "STATION_PULL", "SimLabel", "SimPrinter",
    "SimulatedPrinter",
    "StatusError", "TcpPrinter", "ZplEvent", "ZplStream", "ascii_fallback", "ensure_font",
    "field_hex", "format_host_status", "load_font", "parse_host_status", "preview_png",
    "preview_safe", "printer_for_uri", "read_host_status", "ready_or_raise",
    "reset_simulated_printers", "send_job", "simulated_printer", "split_labels",
]
