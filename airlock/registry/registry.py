"""The registry as the inference engine uses it: signed entries in, verified paths out."""

from __future__ import annotations

from pathlib import Path

from airlock.keys import Verifier
from airlock.registry.checksum import tree_checksum
from airlock.registry.errors import ModelIntegrityError, ModelRestrictedError, RegistryError
from airlock.registry.manifest import ModelEntry, load_signed

REIMPORT = (
    "do not use it: re-import it from the verified transfer bundle and investigate (audit log, file history)"
)


class Registry:
    """The models a signed manifest approves. Loading refuses an unsigned, altered or foreign-signed manifest.

    `get` names a model by `name`, or `name@version` when several versions are registered. A tenant
    of None (no tenant context) may use only models open to all tenants.
    """

    def __init__(self, root: Path, verifier: Verifier):
        self.root = Path(root).absolute()
        self.verifier = verifier
        self._entries = tuple(load_signed(self.root, verifier).entries)

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def get(self, name: str, *, tenant: str | None = None, kind: str | None = None) -> ModelEntry:
        wanted, _, version = name.partition("@")
        matches = [e for e in self._entries if e.name == wanted and (not version or e.version == version)]
        # Only names this tenant may use: the message can reach the tenant's API client.
        known = sorted({e.ref for e in self._entries if e.allowed_for(tenant)})
        missing = (
            f"no model {name!r} in the registry {self.root}; known: {', '.join(known) or 'none'}. "
            "Import it with `airlock models import` or fix the model name"
        )
        if not matches:
            raise RegistryError(missing)
        if len(matches) > 1:
            versions = ", ".join(e.ref for e in matches)
            raise RegistryError(f"model {name!r} has several versions ({versions}): name one as name@version")
        entry = matches[0]
        if not entry.allowed_for(tenant):
            # Word for word a missing model's message: another tenant's model must not be an oracle.
            raise ModelRestrictedError(missing)
        if kind is not None and entry.kind != kind:
            raise RegistryError(
                f"model {entry.ref} is a {entry.kind} model, not a {kind}: pick a {kind} model"
            )
        return entry

    def verified_path(self, entry: ModelEntry) -> Path:
        """The model's absolute path, after re-hashing it now (nothing is cached between calls)."""
        if entry not in self._entries:
            raise RegistryError(
                f"{entry.ref} is not an entry of the signed manifest in {self.root}: "
                "get entries from Registry.get"
            )
        path = self.root / entry.path
        if not path.exists() and not path.is_symlink():
            raise ModelIntegrityError(
                f"model {entry.ref} is missing: expected {path} with checksum {entry.checksum}, "
                f"actual: no such file; {REIMPORT}"
            )
        try:
            actual = tree_checksum(path)
        except (RegistryError, OSError) as exc:
            raise ModelIntegrityError(
                f"model {entry.ref} at {path} cannot be checked (expected checksum {entry.checksum}): "
                f"{exc}; {REIMPORT}"
            ) from exc
        if actual != entry.checksum:
            raise ModelIntegrityError(
                f"model {entry.ref} at {path} fails its integrity check: expected {entry.checksum}, "
                f"actual {actual}; {REIMPORT}"
            )
        return path
