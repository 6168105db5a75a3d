"""The tamper-evident audit log (seed section 3.5): hash-chained records, signed daily seals,
fail-closed writes, verification, prompt purging and monthly archives."""

from airlock.audit.records import CATEGORIES, AuditRecordError
from airlock.audit.writer import AuditLog, AuditWriteError, Receipt

__all__ = ["CATEGORIES", "AuditLog", "AuditRecordError", "AuditWriteError", "Receipt"]
