"""What the output store raises. Messages name the tenant and object, never content or key bytes."""

from __future__ import annotations

from airlock.errors import AirlockError


class StoreError(AirlockError):
    """A store operation was refused; the message says why and what to do."""


class InvalidInput(StoreError, ValueError):
    """A tenant id, object id, metadata or retention period the store cannot accept."""


class OutputNotFound(StoreError, LookupError):
    """No such object for this tenant. Raised, with the same message, for another tenant's object:
    the error must not tell a caller that an id exists elsewhere."""

    def __init__(self, tenant: str, object_id: str):
        super().__init__(f"no output {object_id!r} for tenant {tenant!r}")


class OutputExists(StoreError):
    """Outputs are write-once: a second put under the same id is refused."""


class OutputTampered(StoreError):
    """An object's ciphertext or key file failed authentication (or is missing a part)."""

    def __init__(self, tenant: str, object_id: str, reason: str):
        self.tenant, self.object_id, self.reason = tenant, object_id, reason
        super().__init__(
            f"output {tenant}/{object_id} failed its integrity check ({reason}); nothing was returned. "
            "It is recorded in the audit log (system_events); restore it from backup or delete it with "
            f"`airlock outputs delete --tenant {tenant} --id {object_id}`"
        )


class KekError(StoreError):
    """A key-encryption key is missing, unreadable or stored unsafely."""


class KekInUse(KekError):
    """Retiring a KEK that still wraps data keys (they would become undecryptable)."""


class UnwrapFailed(StoreError):
    """A provider could not unwrap a data key: it does not authenticate under the KEK, or it names a
    KEK the tenant does not have. The store reports it as OutputTampered."""
