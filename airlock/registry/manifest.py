"""The signed model manifest: `<root>/model_manifest.yaml` and its detached `model_manifest.yaml.sig`.

Layout under the registry root (default /srv/model_registry, or $AIRLOCK_REGISTRY_ROOT):

    base_models/<name>@<version>[.safetensors]                  base, refiner and vae models
    tenant_loras/<tenant or all_tenants>/<name>@<version>[...]   LoRAs, by the tenant they serve
    model_manifest.yaml                                          `models:` list, one entry per model
    model_manifest.yaml.sig                                      `ed25519 <fingerprint> <base64 sig>`

"@" appears in neither names nor versions, so two models can never map to the same path. The
signature covers the manifest's exact bytes; nothing in it is trusted until that check passes.

Commit protocol (a crash at any point leaves a state that either verifies with content that was
really signed, or fails closed): the new manifest is first written to `.model_manifest.yaml.pending`,
then the new signature replaces the old one, then the manifest replaces the old one, and the
pending copy is removed; every step is write-temp + fsync + rename + fsync-dir. A crash between
the signature and the manifest leaves an old manifest that no longer verifies (refused) next to a
pending copy that does: the next `airlock models import` finishes that commit first.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from airlock.audit.layout import fsync_dir, replace_atomically
from airlock.keys import Signer, Verifier
from airlock.registry.errors import RegistryError

DEFAULT_ROOT = Path("/srv/model_registry")
MANIFEST = "model_manifest.yaml"
SIGNATURE = "model_manifest.yaml.sig"
PENDING = ".model_manifest.yaml.pending"
BASE_DIR = "base_models"
LORA_DIR = "tenant_loras"
ALL_TENANTS = "all_tenants"
KINDS = ("base", "refiner", "lora", "vae")
FIELDS = (
    "name",
    "version",
    "checksum",
    "import_date",
    "approved_by",
    "restricted_to",
    "kind",
    "path",
    "source",
    "classification",
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHECKSUM = re.compile(r"^sha256:[0-9a-f]{64}$")
HEADER = (
    b"# Airlock model registry manifest, written by `airlock models import` and signed in\n"
    b"# model_manifest.yaml.sig (Ed25519 over these exact bytes): a hand edit breaks the signature.\n"
)


def registry_root() -> Path:
    return Path(os.environ.get("AIRLOCK_REGISTRY_ROOT", DEFAULT_ROOT))


@dataclass(frozen=True)
class ModelEntry:
    """One approved model, exactly as the signed manifest lists it (path is relative to the root)."""

    name: str
    version: str
    checksum: str
    import_date: str
    approved_by: str
    restricted_to: str
    kind: str
    path: str
    source: str
    classification: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def allowed_for(self, tenant: str | None) -> bool:
        """True for models open to all tenants, or restricted to this tenant (None: no tenant)."""
        return self.restricted_to == ALL_TENANTS or (tenant is not None and self.restricted_to == tenant)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def model_path(name: str, version: str, kind: str, restricted_to: str, folder: bool) -> str:
    """Where a model lives, relative to the registry root."""
    parent = f"{LORA_DIR}/{restricted_to}" if kind == "lora" else BASE_DIR
    return f"{parent}/{name}@{version}" + ("" if folder else ".safetensors")


def check_identity(name: str, version: str, kind: str, restricted_to: str) -> None:
    """Refuse names that could escape the layout or collide; RegistryError says the accepted form."""
    if not NAME.match(name or ""):
        raise RegistryError(
            f"model name {name!r}: use letters, digits, '_', '.', '-' (at most 128, no '@' or '/')"
        )
    if not VERSION.match(version or ""):
        raise RegistryError(f"version {version!r}: use letters, digits, '_', '.', '+', '-' (at most 64)")
    if kind not in KINDS:
        raise RegistryError(f"kind {kind!r}: use one of {', '.join(KINDS)}")
    if not TENANT.match(restricted_to or ""):
        raise RegistryError(
            f"tenant {restricted_to!r}: use letters, digits, '_', '.', '-' (like tenant_defense_a)"
        )


def _text(where: str, raw: dict, key: str) -> str:
    value = raw[key]
    if not isinstance(value, str) or not value.strip() or any(ord(c) < 32 for c in value):
        raise RegistryError(f"{where}: {key} must be a non-empty one-line string, got {value!r}")
    return value


def parse_entry(raw: object, where: str) -> ModelEntry:
    if not isinstance(raw, dict) or set(raw) != set(FIELDS):
        found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise RegistryError(
            f"{where}: an entry must have exactly the keys {', '.join(FIELDS)}; found {found}"
        )
    raw = dict(raw)
    when = raw["import_date"]
    if isinstance(when, dt.date) and not isinstance(when, dt.datetime):
        raw["import_date"] = when.isoformat()  # YAML reads an unquoted 2026-01-15 as a date
    if not isinstance(raw["version"], str):
        raise RegistryError(f'{where}: version must be a quoted string ("1.0"), got {raw["version"]!r}')
    entry = ModelEntry(**{key: _text(where, raw, key) for key in FIELDS})
    try:
        dt.date.fromisoformat(entry.import_date)
    except ValueError:
        raise RegistryError(f"{where}: import_date {entry.import_date!r} is not YYYY-MM-DD") from None
    if not CHECKSUM.match(entry.checksum):
        raise RegistryError(f"{where}: checksum {entry.checksum!r} is not sha256:<64 lower-case hex>")
    check_identity(entry.name, entry.version, entry.kind, entry.restricted_to)
    allowed = {
        model_path(entry.name, entry.version, entry.kind, entry.restricted_to, f) for f in (False, True)
    }
    if entry.path not in allowed:
        raise RegistryError(
            f"{where}: path {entry.path!r} is not where the layout puts it ({' or '.join(sorted(allowed))})"
        )
    return entry


def parse_manifest(data: bytes, source: Path) -> list[ModelEntry]:
    """Entries of a manifest whose signature was already checked; RegistryError on any structural fault."""
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RegistryError(f"{source} is not valid UTF-8 YAML: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"models"} or not isinstance(doc["models"], list):
        raise RegistryError(f"{source} must be a mapping with one key, `models:`, holding a list")
    entries = [parse_entry(raw, f"{source} entry {i + 1}") for i, raw in enumerate(doc["models"])]
    refs = [e.ref for e in entries]
    dupes = sorted({r for r in refs if refs.count(r) > 1})
    if dupes:
        raise RegistryError(f"{source} lists {', '.join(dupes)} more than once; restore it from backup")
    return entries


class _Dumper(yaml.SafeDumper):
    pass


class _Quoted(str):
    pass


# Versions are always written "quoted" (as in the requirements' example): 1.0 unquoted would be a float.
_Dumper.add_representer(_Quoted, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style='"'))


def dump_manifest(entries: list[ModelEntry]) -> bytes:
    models = []
    for entry in entries:
        row: dict[str, object] = entry.to_dict()
        row["version"] = _Quoted(entry.version)
        row["import_date"] = dt.date.fromisoformat(entry.import_date)  # written unquoted: 2026-01-15
        models.append(row)
    body = yaml.dump(
        {"models": models}, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return HEADER + body.encode("utf-8")


def signature_line(signer: Signer, data: bytes) -> bytes:
    return f"ed25519 {signer.fingerprint} {base64.b64encode(signer.sign(data)).decode()}\n".encode()


def _parse_signature(path: Path, raw: bytes) -> tuple[str, bytes]:
    fix = f"restore {MANIFEST} and {SIGNATURE} from backup"
    try:
        algorithm, fingerprint, encoded = raw.decode("ascii").split()
        if algorithm != "ed25519" or not raw.endswith(b"\n"):
            raise ValueError
        return fingerprint, base64.b64decode(encoded, validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise RegistryError(
            f"{path} is not a signature line `ed25519 <fingerprint> <base64>`; "
            f"the manifest cannot be trusted: {fix}"
        ) from None


@dataclass(frozen=True)
class Signed:
    """A manifest whose signature checked out: its bytes, its signature line and its entries."""

    data: bytes
    signature: bytes
    entries: list[ModelEntry]


def _read_pair(manifest: Path, sig: Path) -> tuple[bytes, bytes]:
    if not manifest.is_file():
        raise RegistryError(
            f"no model manifest at {manifest}: check --root / AIRLOCK_REGISTRY_ROOT, "
            "or import a first model with `airlock models import`"
        )
    data = manifest.read_bytes()
    if not sig.is_file():
        raise RegistryError(
            f"{sig} is missing, so {manifest} is unsigned and cannot be trusted: restore both files "
            "from backup, or rebuild the registry by re-running `airlock models import` for each model"
        )
    return data, sig.read_bytes()


def load_signed(root: Path, verifier: Verifier) -> Signed:
    """Read the manifest and refuse it unless the trusted key signed these exact bytes."""
    if not isinstance(verifier, Verifier):
        raise RegistryError(
            "loading the model manifest needs a trusted public key (airlock.keys.Verifier): "
            "pass --trust PUBKEY or load one with airlock.keys.load_verifier"
        )
    manifest, sig = root / MANIFEST, root / SIGNATURE
    for attempt in range(2):
        data, signature_bytes = _read_pair(manifest, sig)
        fingerprint, signature = _parse_signature(sig, signature_bytes)
        if fingerprint != verifier.fingerprint:
            raise RegistryError(
                f"{manifest} is signed by key {fingerprint}, not the trusted key {verifier.fingerprint} "
                f"({verifier.path}): pass --trust with the registry's signing key; if you do not know "
                "that key, treat the manifest as tampered and restore it from backup"
            )
        if verifier.verify(signature, data):
            return Signed(data, signature_bytes, parse_manifest(data, manifest))
        if attempt == 0:
            time.sleep(0.1)  # a concurrent import may be between its two renames: read the pair again
    pending = root / PENDING
    if pending.is_file() and verifier.verify(signature, pending.read_bytes()):
        raise RegistryError(
            f"{manifest} does not match its signature {sig}: an import was interrupted while committing "
            f"the manifest (the signed new version is in {pending}). Run `airlock models import` again "
            "(the same command will do: it finishes that commit first), then `airlock models verify`"
        )
    raise RegistryError(
        f"{manifest} does not match its signature {sig}: it was altered after signing (or an import "
        "was interrupted). It is refused: re-run the interrupted import, or restore "
        f"{MANIFEST} and {SIGNATURE} from backup and run `airlock models verify`"
    )


def finish_pending(root: Path, verifier: Verifier) -> bool:
    """Complete a commit cut short between signature and manifest; True if one was completed."""
    manifest, sig, pending = root / MANIFEST, root / SIGNATURE, root / PENDING
    if not (pending.is_file() and sig.is_file()):
        return False
    fingerprint, signature = _parse_signature(sig, sig.read_bytes())
    data = pending.read_bytes()
    current = manifest.read_bytes() if manifest.is_file() else None
    if current == data or fingerprint != verifier.fingerprint or not verifier.verify(signature, data):
        return False  # nothing to finish, or the pending copy is not what the signature vouches for
    replace_atomically(manifest, data, 0o644)
    pending.unlink()
    fsync_dir(root)
    return True


def _publish(root: Path, data: bytes, signature: bytes) -> None:
    replace_atomically(root / PENDING, data, 0o644)
    replace_atomically(root / SIGNATURE, signature, 0o644)
    replace_atomically(root / MANIFEST, data, 0o644)
    (root / PENDING).unlink()
    fsync_dir(root)


def commit(root: Path, data: bytes, signer: Signer) -> None:
    """Replace manifest and signature following the protocol in this module's docstring."""
    _publish(root, data, signature_line(signer, data))


def restore(root: Path, previous: Signed | None) -> None:
    """Put back the manifest and signature an import started from (None: there were none)."""
    if previous is not None:
        _publish(root, previous.data, previous.signature)  # same protocol: a crash here is recoverable too
        return
    for name in (MANIFEST, SIGNATURE, PENDING):
        (root / name).unlink(missing_ok=True)
    fsync_dir(root)
