"""The bundle's exceptions; each message names the file or setting and says what to do."""

from __future__ import annotations

from airlock.errors import AirlockError


class BundleError(AirlockError):
    """A bundle cannot be built, verified or imported as asked (the CLI exits 1)."""


class BundleSpecError(BundleError):
    """bundle.yaml (or an option) is wrong: a usage error (the CLI exits 2)."""
