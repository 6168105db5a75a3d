"""`airlock bundle import`: verify, extract into the content-addressed store, audit. Fail closed.

Order, and why:
1. under an exclusive lock on the store, verify the bundle (nothing is written for a bundle that
   does not verify, and the refusal is audited in system_events);
2. `<store>/<sha256>/` already there: the same bytes were imported before; nothing changes;
3. extract into `<store>/<sha256>.partial` from the same open file, re-hashing every file; then the
   optional ClamAV scan of that folder, and the bundled registry's own signature and checksums
   (the organisation's registry key);
4. write-ahead audit: one `model_changes` record per model and one `bundle.imported` system event,
   each with the chain of custody; if the audit log cannot take them the partial folder is removed;
5. rename to `<store>/<sha256>` (and, if asked, point the live registry symlink at its registry).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from airlock.audit import AuditLog
from airlock.audit.layout import RootLock, fsync_dir
from airlock.bundle.archive import Advance, Limits
from airlock.bundle.errors import BundleError, BundleSpecError
from airlock.bundle.scan import clamscan
from airlock.bundle.verify import Finding, VerifyReport, extract, verify_file
from airlock.errors import AirlockError
from airlock.keys import Verifier
from airlock.registry.importer import os_user
from airlock.registry.manifest import MANIFEST as REGISTRY_MANIFEST
from airlock.registry.manifest import load_signed
from airlock.registry.verify import verify_registry

DEFAULT_STORE = Path("/srv/airlock/bundles")
REGISTRY = "models/registry"


class BundleRefused(BundleError):
    """The bundle failed a check; `report.findings` names each problem and file."""

    def __init__(self, report: VerifyReport):
        first = report.findings[0]
        super().__init__(
            f"bundle {report.bundle} refused ({len(report.findings)} problem(s), first: {first.kind} "
            f"{first.path}: {first.detail}); nothing was imported"
        )
        self.report = report


@dataclass(frozen=True)
class Custody:
    """Who handled the media: recorded with every audit record of the import."""

    media_id: str
    courier: str
    received_by: str

    @classmethod
    def parse(cls, text: str) -> Custody:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or not all(parts):
            raise BundleSpecError(
                '--custody needs "MEDIA_ID, COURIER, RECEIVED_BY" (three comma-separated parts), '
                f"got {text!r}"
            )
        return cls(*parts)


@dataclass
class Imported:
    path: Path
    sha256: str
    already: bool
    report: VerifyReport
    models: list[dict] = field(default_factory=list)

    def where(self, part: str) -> Path | None:
        path = self.path / part
        return path if path.exists() else None


def default_actor() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or os_user()


def _audit_refusal(audit: AuditLog, report: VerifyReport, actor: str, custody: Custody) -> None:
    with contextlib.suppress(AirlockError):  # best effort: the refusal is what the caller must see
        audit.append(
            "system_events",
            "bundle.import_refused",
            outcome="failure",
            component="bundle",
            actor=actor,
            bundle=report.bundle,
            bundle_sha256=report.bundle_sha256,
            custody=asdict(custody),
            findings=[asdict(f) for f in report.findings[:20]],
        )


def _publish_registry(link: Path, target: Path) -> None:
    """Point `link` (a symlink, or nothing yet) at target, atomically."""
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.exists() and not link.is_symlink():
        raise BundleError(
            f"--registry-root {link} is a real folder, not a symlink: move it aside (it is the old "
            f"registry) and run the import again; the bundle itself is imported at {target.parent.parent}"
        )
    tmp = link.with_name(f".{link.name}.airlock-new")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def import_bundle(
    path: Path,
    verifier: Verifier,
    *,
    store: Path,
    custody: Custody,
    audit: AuditLog,
    actor: str | None = None,
    registry_verifier: Verifier | None = None,
    registry_root: Path | None = None,
    clamav_db: Path | None = None,
    limits: Limits | None = None,
    advance: Advance | None = None,
) -> Imported:
    """Import a bundle into `<store>/<sha256>/`; BundleRefused carries the report when a check fails."""
    actor = actor or default_actor()
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True, mode=0o755)
    with RootLock(store), open(path, "rb", buffering=0) as fh:
        report = verify_file(fh, str(path), verifier, limits, advance)
        if not report.ok:
            _audit_refusal(audit, report, actor, custody)
            raise BundleRefused(report)
        has_models = f"{REGISTRY}/{REGISTRY_MANIFEST}" in report.hashes
        if has_models and registry_verifier is None:
            raise BundleSpecError(
                "the bundle holds a model registry: pass --registry-trust with the organisation's "
                "registry public key so its signature can be checked"
            )
        final = store / str(report.bundle_sha256)
        if final.exists():
            if registry_root is not None and has_models:
                _publish_registry(registry_root, final / REGISTRY)
            return Imported(final, str(report.bundle_sha256), True, report)
        partial = store / f"{report.bundle_sha256}.partial"
        shutil.rmtree(partial, ignore_errors=True)  # left by a crash: it was never published
        try:
            extract(fh, report, partial, advance)
            models = _checked_contents(partial, report, registry_verifier, clamav_db)
            if report.findings:
                _audit_refusal(audit, report, actor, custody)
                raise BundleRefused(report)
            _audit(audit, report, actor, custody, models)
            os.rename(partial, final)
            fsync_dir(store)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    if registry_root is not None and has_models:
        _publish_registry(registry_root, final / REGISTRY)
    return Imported(final, str(report.bundle_sha256), False, report, models)


def _checked_contents(
    root: Path, report: VerifyReport, registry_verifier: Verifier | None, clamav_db: Path | None
) -> list[dict]:
    """Scan (if asked) and check the bundled registry; problems are added to the report."""
    if clamav_db is not None:
        findings, notes = clamscan(root, clamav_db)
        report.findings += findings
        report.notes += notes
    registry = root / REGISTRY
    if registry_verifier is None or not registry.is_dir():
        return []
    checked = verify_registry(registry, registry_verifier)
    report.findings += [Finding("registry", f"{REGISTRY}/{f.path}", f.detail) for f in checked.findings]
    if not checked.ok:
        return []
    return [e.to_dict() for e in load_signed(registry, registry_verifier).entries]


def _audit(audit: AuditLog, report: VerifyReport, actor: str, custody: Custody, models: list[dict]) -> None:
    bundle = {
        "name": report.name,
        "version": report.version,
        "created": report.created,
        "creator": report.creator,
    }
    common = {
        "actor": actor,
        "bundle": bundle,
        "bundle_sha256": report.bundle_sha256,
        "custody": asdict(custody),
    }
    for entry in models:
        audit.append(
            "model_changes",
            "model.imported",
            outcome="success",
            action="import",
            model={"name": entry["name"], "version": entry["version"], "checksum": entry["checksum"]},
            kind=entry["kind"],
            restricted_to=entry["restricted_to"],
            approved_by=entry["approved_by"],
            source=f"transfer bundle {report.name} {report.version}",
            **common,
        )
    audit.append(
        "system_events",
        "bundle.imported",
        outcome="success",
        component="bundle",
        files=report.files,
        models=len(models),
        **common,
    )
