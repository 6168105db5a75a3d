"""`airlock bundle verify`: is this tar exactly what the trusted key signed? Nothing is extracted.

1. the headers only (archive.list_members): unsafe names, links, devices, oversized members and a
   cut-short archive are refused before a byte of data is read;
2. one sequential pass over the file: each member's data is hashed as it is read, and the whole file
   is hashed at the same time on a helper thread (the bundle's SHA-256, its content address);
3. manifest.sig over manifest.yaml with the trusted key, checksums.txt against the manifest's
   checksums_sha256, every file against checksums.txt (altered, missing, unlisted), and each
   manifest component against checksums.txt (a model folder's checksum is recomputed from it).
`extract` writes a verified bundle out, re-hashing every file against what verify saw.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airlock.audit.layout import fsync_dir
from airlock.bundle import manifest as mf
from airlock.bundle.archive import CHUNK, Advance, Limits, Member, ParallelSha256, list_members
from airlock.bundle.errors import BundleError
from airlock.keys import Verifier
from airlock.registry.checksum import listing_checksum

META_LIMIT = 64 << 20  # manifest, signature and checksums are read into memory: bounded


@dataclass(frozen=True)
class Finding:
    # unsafe | truncated | signature | manifest | checksums | altered | missing | unlisted
    # | malware | scan-error | registry
    kind: str
    path: str  # the member's name in the bundle, or (archive)
    detail: str


@dataclass
class VerifyReport:
    bundle: str
    trusted_key: str
    bundle_sha256: str | None = None
    name: str | None = None
    version: str | None = None
    created: str | None = None
    creator: str | None = None
    files: int = 0
    bytes_hashed: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # What extract needs (not part of the printed report): members and the hashes verify saw.
    members: list[Member] = field(default_factory=list, repr=False)
    hashes: dict[str, str] = field(default_factory=dict, repr=False)
    manifest: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        data = asdict(self)
        for internal in ("members", "hashes", "manifest"):
            data.pop(internal)
        return {**data, "ok": self.ok}


def _read_exact(fh, size: int, sink) -> bool:
    """Read size bytes, passing each chunk to sink; False if the file ended first."""
    left = size
    while left:
        chunk = fh.read(min(CHUNK, left))
        if not chunk:
            return False
        sink(chunk)
        left -= len(chunk)
    return True


def _stream(fh, size: int, members: list[Member], end: int, report: VerifyReport, advance: Advance | None):
    """Hash every member and the whole file in one pass; returns the metadata files' bytes."""
    whole = ParallelSha256()
    meta: dict[str, bytearray] = {}
    fh.seek(0)
    pos = 0
    try:
        for member in sorted((m for m in members if not m.folder), key=lambda m: m.offset):
            if not _read_exact(fh, member.offset - pos, whole.update):
                raise EOFError(member.name)
            digest = hashlib.sha256()
            keep = member.name in mf.SIGNED and member.size <= META_LIMIT
            if member.name in mf.SIGNED and not keep:
                report.findings.append(
                    Finding("unsafe", member.name, f"{member.size} bytes: too large for a {member.name}")
                )
            buffer = meta.setdefault(member.name, bytearray()) if keep else None

            def sink(chunk: bytes, digest=digest, buffer=buffer) -> None:
                digest.update(chunk)
                whole.update(chunk)
                if buffer is not None:
                    buffer += chunk
                if advance is not None:
                    advance(len(chunk))

            if not _read_exact(fh, member.size, sink):
                raise EOFError(member.name)
            report.hashes[member.name] = digest.hexdigest()
            report.bytes_hashed += member.size
            pos = member.offset + member.size
        if not _read_exact(fh, end - pos, whole.update):
            raise EOFError("(archive)")
        trailing = False
        while chunk := fh.read(CHUNK):  # after the end-of-archive marker only zero padding belongs
            whole.update(chunk)
            trailing = trailing or chunk.count(0) != len(chunk)
        if trailing:
            report.findings.append(
                Finding("unsafe", "(archive)", f"data after the end of the archive (byte {end} on)")
            )
    except EOFError as cut:
        report.findings.append(
            Finding(
                "truncated",
                str(cut),
                f"the file ended early (truncated, {size} bytes on disk): copy it again",
            )
        )
    finally:
        report.bundle_sha256 = whole.hexdigest()
    return {name: bytes(data) for name, data in meta.items()}


def _check_signed(meta: dict[str, bytes], verifier: Verifier, report: VerifyReport) -> dict[str, str] | None:
    """The trusted checksums (path -> hex), or None after recording why nothing can be trusted."""
    for name in mf.SIGNED:
        if name not in meta:
            report.findings.append(
                Finding("missing", name, "the bundle has no " + name + ": it cannot be trusted")
            )
    if report.findings:
        return None
    check = mf.check_signature(verifier, meta[mf.MANIFEST], meta[mf.SIGNATURE])
    if not check.ok:
        report.findings.append(Finding("signature", mf.SIGNATURE, check.detail))
        return None
    try:
        manifest = mf.parse_manifest(meta[mf.MANIFEST])
    except (UnicodeDecodeError, ValueError) as exc:
        report.findings.append(Finding("manifest", mf.MANIFEST, f"signed but malformed: {exc}"))
        return None
    report.manifest = manifest
    for key in ("name", "version", "created", "creator"):
        setattr(report, key, str(manifest[key]))
    if hashlib.sha256(meta[mf.CHECKSUMS]).hexdigest() != manifest["checksums_sha256"]:
        report.findings.append(
            Finding(
                "checksums", mf.CHECKSUMS, "does not match checksums_sha256 in the signed manifest: altered"
            )
        )
        return None
    try:
        return mf.parse_checksums(meta[mf.CHECKSUMS])
    except (UnicodeDecodeError, ValueError) as exc:
        report.findings.append(Finding("checksums", mf.CHECKSUMS, f"signed but malformed: {exc}"))
        return None


def _compare(listed: dict[str, str], report: VerifyReport) -> None:
    for path in sorted(listed):
        actual = report.hashes.get(path)
        if actual is None:
            report.findings.append(Finding("missing", path, "listed in checksums.txt but not in the bundle"))
        elif actual != listed[path]:
            report.findings.append(
                Finding("altered", path, f"expected sha256 {listed[path]} (checksums.txt), actual {actual}")
            )
    for path in sorted(set(report.hashes) - set(listed) - set(mf.SIGNED)):
        report.findings.append(
            Finding("unlisted", path, "in the bundle but not in checksums.txt (added after signing?)")
        )
    for component in report.manifest["components"] if report.manifest else []:
        path, expected = component["path"], component["sha256"]
        if path in listed:
            actual = listed[path]
        else:  # a model folder: its listing checksum over the files under it
            under = [(p[len(path) + 1 :], d) for p, d in listed.items() if p.startswith(path + "/")]
            actual = listing_checksum(under).removeprefix("sha256:") if under else None
        if actual != expected:
            report.findings.append(
                Finding(
                    "manifest",
                    path,
                    f"{component['kind']} {component['name']} {component['version']}: "
                    "the manifest says sha256 "
                    f"{expected}, checksums.txt gives {actual or 'nothing'}",
                )
            )


def verify_file(
    fh, display: str, verifier: Verifier, limits: Limits | None = None, advance: Advance | None = None
) -> VerifyReport:
    """Verify the open bundle file fh (opened unbuffered, binary); `display` names it in the report."""
    report = VerifyReport(display, verifier.fingerprint)
    size = os.fstat(fh.fileno()).st_size
    members, end, problems = list_members(fh, size, limits or Limits())
    if problems:
        for p in problems:
            kind = "truncated" if "cut short" in p.detail else "unsafe"
            report.findings.append(Finding(kind, p.name, p.detail))
        return report  # nothing is read from an archive that could trick a reader
    report.members = members
    meta = _stream(fh, size, members, end, report, advance)
    report.files = len(report.hashes)
    if report.findings:
        return report
    listed = _check_signed(meta, verifier, report)
    if listed is not None:
        _compare(listed, report)
    return report


def verify_bundle(
    path: Path, verifier: Verifier, limits: Limits | None = None, advance: Advance | None = None
) -> VerifyReport:
    """Verify a bundle file; see the module docstring for what is checked."""
    try:
        with open(path, "rb", buffering=0) as fh:
            return verify_file(fh, str(path), verifier, limits, advance)
    except OSError as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc.strerror or exc}") from exc


def extract(fh, report: VerifyReport, dest: Path, advance: Advance | None = None) -> None:
    """Write a verified bundle's files under dest (which must not exist), each re-hashed against
    what verify saw: a file changed on the media since then fails the extraction."""
    if not report.ok or not report.members:
        raise BundleError("refusing to extract a bundle that did not verify")
    dest.mkdir(mode=0o755)
    folders = {dest}
    for member in sorted(report.members, key=lambda m: m.offset):
        target = dest / member.name
        if member.folder:
            target.mkdir(mode=0o755, exist_ok=True)
            folders.add(target)
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        folders.add(target.parent)
        fh.seek(member.offset)
        digest = hashlib.sha256()
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:

            def sink(chunk: bytes, digest=digest, fd=fd) -> None:
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                if advance is not None:
                    advance(len(chunk))

            complete = _read_exact(fh, member.size, sink)
            os.fsync(fd)
        finally:
            os.close(fd)
        if not complete or digest.hexdigest() != report.hashes[member.name]:
            raise BundleError(
                f"{member.name} changed on the media after it was verified: nothing was imported; "
                "copy the bundle to local disk and import again"
            )
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        fsync_dir(folder)
