"""The domain model, one module per aggregate."""
from .audit import AuditEvent
from .backup import BACKUP_KINDS, BACKUP_STATES, Backup, PeriodicRun
from .completion import COMPLETION_STATUSES, Completion
from .firmware import (ASSIGNMENT_STATES, FIRMWARE_STATES, LIVE_ASSIGNMENT_STATES, Firmware,
                       FirmwareAssignment)
from .label import LABEL_JOB_STATES, LabelJob, LabelTemplate, Printer
from .lot import ACTIVE_STATUSES, LOT_STATUSES, Lot, LotSequence, LotUnit
from .outbox import OutboxMessage
from .product import Product, RoutingRevision, RoutingStep
from .station import Station
from .types import utcnow
from .user import ROLE_RANK, ROLES, User

__all__ = [
    "AuditEvent", "COMPLETION_STATUSES", "LABEL_JOB_STATES", "LabelJob", "LabelTemplate", "Printer", "Completion", "ACTIVE_STATUSES", "LOT_STATUSES", "Lot",
    "LotSequence", "LotUnit", "OutboxMessage", "Product", "RoutingRevision", "RoutingStep",
    "Station", "utcnow", "ROLE_RANK", "ROLES", "User",
    "ASSIGNMENT_STATES", "FIRMWARE_STATES", "LIVE_ASSIGNMENT_STATES", "Firmware",
    "FirmwareAssignment",
    "BACKUP_KINDS", "BACKUP_STATES", "Backup", "PeriodicRun",
]
