"""Generated images encrypted at rest: envelope encryption under per-tenant KEKs.

store = OutputStore(root, FileKeks(kek_dir), audit_log)
ref = store.put("healthcare_system_b", "job-0001.0", png_bytes, {"seed": 1234})
data, metadata = store.get("healthcare_system_b", "job-0001.0")
"""

from airlock.store.errors import (
    InvalidInput,
    KekError,
    KekInUse,
    OutputExists,
    OutputNotFound,
    OutputTampered,
    StoreError,
    UnwrapFailed,
)
from airlock.store.kek import DEFAULT_KEK_DIR, FileKeks, KekProvider
from airlock.store.store import DEFAULT_STORE, OutputRef, OutputStore, Purged, Rotated

__all__ = [
    "DEFAULT_KEK_DIR",
    "DEFAULT_STORE",
    "FileKeks",
    "InvalidInput",
    "KekError",
    "KekInUse",
    "KekProvider",
    "OutputExists",
    "OutputNotFound",
    "OutputRef",
    "OutputStore",
    "OutputTampered",
    "Purged",
    "Rotated",
    "StoreError",
    "UnwrapFailed",
]
