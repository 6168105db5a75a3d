"""`airlock models verify`: the signed manifest against what is on disk, every byte re-hashed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from airlock.keys import Verifier
from airlock.registry.checksum import Advance, tree_checksum, tree_size
from airlock.registry.errors import RegistryError
from airlock.registry.manifest import BASE_DIR, LORA_DIR, MANIFEST, load_signed


@dataclass(frozen=True)
class Finding:
    kind: str  # manifest | missing | altered | unlisted
    path: str  # relative to the registry root
    detail: str


@dataclass
class VerifyReport:
    root: str
    trusted_key: str
    models: int = 0
    bytes_hashed: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _on_disk(root: Path) -> list[str]:
    """Every model-level path under base_models/ and tenant_loras/<tenant>/: each must be an entry."""
    found = []
    base = root / BASE_DIR
    if base.is_dir():
        found += [f"{BASE_DIR}/{p.name}" for p in base.iterdir()]
    loras = root / LORA_DIR
    if loras.is_dir():
        for tenant in loras.iterdir():
            if tenant.is_dir() and not tenant.is_symlink():
                found += [f"{LORA_DIR}/{tenant.name}/{p.name}" for p in tenant.iterdir()]
            else:
                found.append(f"{LORA_DIR}/{tenant.name}")  # only tenant folders belong here
    return sorted(found)


def total_bytes(root: Path, verifier: Verifier) -> int:
    """What verify will hash (for a progress bar); 0 when the manifest cannot be loaded."""
    try:
        entries = load_signed(root, verifier).entries
    except RegistryError:
        return 0
    total = 0
    for entry in entries:
        try:
            total += tree_size(root / entry.path)
        except (RegistryError, OSError):
            continue  # missing or odd: verify reports it
    return total


def verify_registry(root: Path, verifier: Verifier, advance: Advance | None = None) -> VerifyReport:
    """Check the manifest signature, re-hash every entry and look for files no entry lists."""
    root = Path(root)
    report = VerifyReport(str(root), verifier.fingerprint)
    try:
        entries = load_signed(root, verifier).entries
    except RegistryError as exc:
        report.findings.append(Finding("manifest", MANIFEST, str(exc)))
        return report  # nothing in an untrusted manifest can be checked against
    report.models = len(entries)

    def counted(n: int) -> None:
        report.bytes_hashed += n
        if advance is not None:
            advance(n)

    for entry in entries:
        full = root / entry.path
        if not full.exists() and not full.is_symlink():
            report.findings.append(Finding("missing", entry.path, f"{entry.ref} is listed but not on disk"))
            continue
        try:
            actual = tree_checksum(full, counted)
        except (RegistryError, OSError) as exc:
            report.findings.append(Finding("altered", entry.path, f"{entry.ref}: {exc}"))
            continue
        if actual != entry.checksum:
            report.findings.append(
                Finding("altered", entry.path, f"{entry.ref}: expected {entry.checksum}, actual {actual}")
            )
    listed = {entry.path for entry in entries}
    for rel in _on_disk(root):
        if rel not in listed:
            report.findings.append(
                Finding("unlisted", rel, "not in the signed manifest: import it properly or remove it")
            )
    return report
