"""`airlock bundle build`: everything the enclave needs, as one signed, reproducible tar.

Order, and why:
1. gather the inputs (wheels from the cache or pip, python.wheels, .debs, the registry, files) and
   check them: the registry must verify with its trusted key, so a broken registry is never shipped;
2. `created` is SOURCE_DATE_EPOCH, else the newest input's mtime: it is the only time in the bundle;
3. write the data members in sorted order to `<out>.partial`, hashing each as it is written (a wheel
   that no longer matches the lock's hash fails the build); then sbom.cdx.json, and last
   checksums.txt, manifest.yaml and manifest.sig, which cover everything before them;
4. fsync and rename to `<out>`: a failed build leaves neither `<out>` nor the partial file.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import Progress

from airlock.audit.layout import fsync_dir
from airlock.bundle import debs as deb_tools
from airlock.bundle import manifest as mf
from airlock.bundle import wheels as wheel_tools
from airlock.bundle.archive import TarWriter
from airlock.bundle.errors import BundleError, BundleSpecError
from airlock.bundle.spec import Spec
from airlock.keys import Signer, Verifier, load_verifier
from airlock.registry.checksum import tree_files
from airlock.registry.manifest import ModelEntry, load_signed
from airlock.registry.verify import verify_registry

DEFAULT_CACHE = Path(".cache/bundle")
REGISTRY_DIR = "models/registry"
SBOM = "sbom.cdx.json"


@dataclass(frozen=True)
class Built:
    path: Path
    sha256: str
    size: int
    files: int
    manifest: dict


def created_time(paths: list[Path]) -> int:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            return int(epoch)
        except ValueError:
            raise BundleSpecError(f"SOURCE_DATE_EPOCH={epoch!r} is not whole seconds since 1970") from None
    return max(int(p.stat().st_mtime) for p in paths)


def rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def registry_contents(spec: Spec) -> tuple[list[tuple[str, Path]], list[ModelEntry]]:
    """Every file of the registry folder (as is) and its signed entries, after a full verify."""
    if spec.registry is None or spec.registry_trust is None:
        raise BundleSpecError("models: give both registry and trust")
    verifier: Verifier = load_verifier(spec.registry_trust)
    report = verify_registry(spec.registry, verifier)
    if not report.ok:
        first = report.findings[0]
        raise BundleError(
            f"the model registry {spec.registry} does not verify ({len(report.findings)} finding(s), first: "
            f"{first.kind} {first.path}: {first.detail}): run `airlock models verify --root {spec.registry}` "
            "and fix it before bundling"
        )
    entries = load_signed(spec.registry, verifier).entries
    return [(f"{REGISTRY_DIR}/{rel}", path) for rel, path in tree_files(spec.registry)], entries


def build_bundle(
    spec: Spec,
    out: Path,
    signer: Signer,
    *,
    creator: str,
    cache: Path = DEFAULT_CACHE,
    progress: Progress | None = None,
    downloader: wheel_tools.Downloader = wheel_tools.pip_download,
) -> Built:
    """Build the bundle the spec describes into `out`; returns its SHA-256 and manifest."""
    if not creator.strip():
        raise BundleSpecError("--creator must name who builds the bundle (recorded and signed)")
    cache = Path(cache)
    wheels, lock_text = [], None
    if spec.lock is not None:
        wheels, lock_text = wheel_tools.fetch_wheels(spec, cache / "wheels", downloader, progress)
    packages = deb_tools.collect_debs(spec, cache / "apt")
    registry_files, models = registry_contents(spec) if spec.registry is not None else ([], [])

    sources: dict[str, Path | bytes] = {}
    expected: dict[str, str] = {}  # names whose hash is already known: a change while writing fails
    for wheel in wheels:
        sources[f"wheels/{wheel.path.name}"] = wheel.path
        expected[f"wheels/{wheel.path.name}"] = wheel.sha256
    if lock_text is not None:
        sources["wheels/requirements.lock"] = lock_text.encode("utf-8")
    for deb in packages:
        sources[f"apt/{deb.filename}"] = deb.path
        expected[f"apt/{deb.filename}"] = deb.sha256
    sources.update(registry_files)
    sources.update({f"files/{item.dest}": item.src for item in spec.files})

    created = created_time([*spec.inputs(), *(p for p in sources.values() if isinstance(p, Path))])
    if packages:
        index = deb_tools.apt_index(packages, spec.target.architecture, created, spec.name)
        sources.update({f"apt/{name}": data for name, data in index.items()})
    try:  # the connected side's library: verify and import never need it
        from airlock.bundle.sbom import build_sbom
    except ImportError as exc:
        raise BundleSpecError(
            f"building the SBOM needs cyclonedx-python-lib ({exc.name} is missing): "
            "pip install --require-hashes --no-deps -r requirements.lock"
        ) from exc

    out = Path(out)
    partial = out.with_name(out.name + ".partial")
    total = sum(len(s) if isinstance(s, bytes) else s.stat().st_size for s in sources.values())
    task = progress.add_task(f"hash + write {out.name}", total=total) if progress else None

    def advance_write(n: int) -> None:
        if progress is not None and task is not None:
            progress.advance(task, n)

    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    writer = TarWriter(fd, created)
    try:
        digests: dict[str, str] = {}
        for name in sorted(sources):
            source = sources[name]
            if isinstance(source, bytes):
                digests[name] = writer.add_bytes(name, source)
                advance_write(len(source))
            else:
                digests[name] = writer.add_file(name, source, advance_write)
            if name in expected and digests[name] != expected[name]:
                raise BundleError(f"{source} changed while the bundle was being built: build again")
        # The SBOM follows the data: its serial number derives from every digest, so it is reproducible.
        seed = f"{spec.name}@{spec.version}:" + hashlib.sha256(mf.checksums_text(digests)).hexdigest()
        digests[SBOM] = writer.add_bytes(SBOM, build_sbom(spec, wheels, packages, models, created, seed))
        checksums = mf.checksums_text(digests)
        manifest = {
            "format": mf.FORMAT,
            "name": spec.name,
            "version": spec.version,
            "created": rfc3339(created),
            "creator": creator,
            "target": spec.target.to_dict(),
            "checksums_sha256": hashlib.sha256(checksums).hexdigest(),
            "components": components(wheels, packages, models, spec, digests),
        }
        manifest_bytes = mf.dump_manifest(manifest)
        writer.add_bytes(mf.CHECKSUMS, checksums)
        writer.add_bytes(mf.MANIFEST, manifest_bytes)
        writer.add_bytes(mf.SIGNATURE, mf.signature_line(signer, manifest_bytes))
        sha256 = writer.close()
        os.fsync(fd)
    except BaseException:
        writer.abort()
        os.close(fd)
        partial.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(partial, out)
    fsync_dir(out.parent)
    return Built(out, sha256, out.stat().st_size, len(digests) + len(mf.SIGNED), manifest)


def components(
    wheels: list[wheel_tools.Wheel],
    packages: list[deb_tools.Deb],
    models: list[ModelEntry],
    spec: Spec,
    digests: dict[str, str],
) -> list[dict]:
    rows = [
        {
            "kind": "wheel",
            "name": w.name,
            "version": w.version,
            "path": f"wheels/{w.path.name}",
            "sha256": w.sha256,
        }
        for w in wheels
    ]
    rows += [
        {"kind": "deb", "name": d.name, "version": d.version, "path": f"apt/{d.filename}", "sha256": d.sha256}
        for d in packages
    ]
    rows += [
        {
            "kind": "model",
            "name": m.name,
            "version": m.version,
            "path": f"{REGISTRY_DIR}/{m.path}",
            "sha256": m.checksum.removeprefix("sha256:"),
        }
        for m in models
    ]
    rows += [
        {
            "kind": "file",
            "name": f.dest,
            "version": spec.version,
            "path": f"files/{f.dest}",
            "sha256": digests[f"files/{f.dest}"],
        }
        for f in spec.files
    ]
    return sorted(rows, key=lambda r: (r["kind"], r["path"]))
