"""The registry's exceptions; each message names the file or model and says what to do."""

from __future__ import annotations

from airlock.errors import AirlockError


class RegistryError(AirlockError):
    """The registry cannot be used as asked (no manifest, bad signature, unknown model...)."""


class AdmissionError(RegistryError):
    """A model file or folder fails the admission policy (policies/models.yml)."""


class ModelIntegrityError(RegistryError):
    """A registered model's bytes no longer match the checksum in the signed manifest."""


class ModelRestrictedError(RegistryError):
    """The model is restricted to another tenant (its message is a missing model's: no oracle)."""
