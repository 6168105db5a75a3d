"""Offline by construction: call force_offline() before importing any Hugging Face library.

The libraries read these variables at import time; with them set, a missing file is an error
instead of a download attempt, and nothing phones home (telemetry, version checks)."""

from __future__ import annotations

import os
import tempfile

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}


def force_offline() -> None:
    """Set the offline switches (overriding anything else) and an empty HF_HOME if none is set."""
    os.environ.update(OFFLINE_ENV)
    if "HF_HOME" not in os.environ:
        os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="airlock-hf-home-")
