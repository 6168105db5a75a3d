"""The OS side of a bundle: .deb files and the flat apt repository made from them (`apt/`).

The repository is `apt/*.deb` + `Packages` and `Packages.gz` written by `dpkg-scanpackages`
(Debian's dpkg-dev) + a `Release` file with their hashes. It is unsigned on purpose: the bundle's
signature covers it, so the target uses it as `deb [trusted=yes] file:<store>/<sha>/apt ./`.

Packages named under `os_packages.apt` are fetched with `apt-get download`, with every dependency
(`apt-cache depends --recurse`), for this machine's release: so the build must run on a machine of
the target's distribution and architecture. They are cached in `<cache>/apt/` by file name and hash.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airlock.bundle.errors import BundleError
from airlock.bundle.spec import Spec
from airlock.bundle.wheels import sha256_file


@dataclass(frozen=True)
class Deb:
    name: str
    version: str
    architecture: str
    path: Path
    sha256: str

    @property
    def filename(self) -> str:
        """apt's own naming: an epoch's ':' is written '%3a'."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BundleError(f"{name} is not installed: apt-get install -y {package}")
    return found


def read_deb(path: Path, architecture: str) -> Deb:
    """Name, version and architecture from the package's control file (`dpkg-deb -f`)."""
    result = subprocess.run(
        [_tool("dpkg-deb", "dpkg"), "-f", str(path), "Package", "Version", "Architecture"],
        capture_output=True,
        text=True,
        check=False,
    )
    fields = dict(re.findall(r"^(\w+): (.+)$", result.stdout, re.M))
    if result.returncode != 0 or set(fields) != {"Package", "Version", "Architecture"}:
        raise BundleError(
            f"{path} is not a readable .deb package: {result.stderr.strip() or 'fields missing'}"
        )
    if fields["Architecture"] not in (architecture, "all"):
        raise BundleError(
            f"{path} is for {fields['Architecture']}, the target is {architecture}: "
            f"use the {architecture} build"
        )
    return Deb(fields["Package"], fields["Version"], fields["Architecture"], path, sha256_file(path))


def _host_release() -> tuple[str, str]:
    release = dict(re.findall(r'^(\w+)="?([^"\n]*)"?$', Path("/etc/os-release").read_text(), re.M))
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True)
    return f"{release.get('ID')}-{release.get('VERSION_ID')}", arch.stdout.strip()


def apt_download(spec: Spec, cache: Path) -> list[Path]:
    """The named packages and all their dependencies as .deb files in the cache (reused by hash)."""
    host = _host_release()
    wanted = (spec.target.distribution, spec.target.architecture)
    if host != wanted:
        raise BundleError(
            f"os_packages.apt fetches packages for this machine ({'/'.join(host)}), but the target is "
            f"{'/'.join(wanted)}: build on a {'/'.join(wanted)} machine, "
            "or list the .debs under os_packages.debs"
        )
    depends = subprocess.run(
        [_tool("apt-cache", "apt"), "depends", "--recurse", "--no-recommends", "--no-suggests",
         "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--", *spec.apt],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if depends.returncode != 0:
        raise BundleError(f"apt-cache depends failed: {depends.stderr.strip()}; run apt-get update first?")
    names = sorted({line for line in depends.stdout.splitlines() if re.match(r"^[a-z0-9]", line)})
    uris = subprocess.run(
        ["apt-get", "download", "--print-uris", *names], capture_output=True, text=True, check=False
    )
    if uris.returncode != 0:
        raise BundleError(f"apt-get download --print-uris failed: {uris.stderr.strip()}")
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for _uri, filename, _size, digest in re.findall(
        r"^'(\S+)' (\S+) (\d+) SHA256:([0-9a-f]{64})$", uris.stdout, re.M
    ):
        path = cache / filename
        if not (path.is_file() and sha256_file(path) == digest):
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                name, version = filename.split("_")[:2]
                got = subprocess.run(
                    ["apt-get", "download", f"{name}={version.replace('%3a', ':')}"],
                    cwd=tmp, capture_output=True, text=True, check=False,
                )  # fmt: skip
                fetched = Path(tmp, filename)
                if got.returncode != 0 or not fetched.is_file() or sha256_file(fetched) != digest:
                    raise BundleError(
                        f"apt-get download {name} failed: {got.stderr.strip() or 'hash mismatch'}"
                    )
                os.replace(fetched, path)
        paths.append(path)
    return paths


def collect_debs(spec: Spec, cache: Path) -> list[Deb]:
    paths = list(spec.debs) + (apt_download(spec, cache) if spec.apt else [])
    debs: dict[str, Deb] = {}
    for path in paths:
        deb = read_deb(path, spec.target.architecture)
        if deb.filename in debs and debs[deb.filename].sha256 != deb.sha256:
            raise BundleError(
                f"{path} and {debs[deb.filename].path} are both {deb.name} {deb.version} "
                f"({deb.architecture}) but differ: keep one"
            )
        debs[deb.filename] = deb
    return [debs[name] for name in sorted(debs)]


def _release(files: dict[str, bytes], architecture: str, created: int, label: str) -> bytes:
    lines = [
        "Origin: Airlock",
        f"Label: {label}",
        "Suite: airlock",
        "Codename: airlock",
        f"Date: {email.utils.formatdate(created, usegmt=True)}",
        f"Architectures: {architecture} all",
        "Description: Airlock transfer bundle packages (the bundle signature covers this repository)",
    ]
    lines.append("SHA256:")  # apt checks SHA256 only; MD5 and SHA1 are long deprecated
    lines += [
        f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}" for name, data in sorted(files.items())
    ]
    return ("\n".join(lines) + "\n").encode()


def apt_index(debs: list[Deb], architecture: str, created: int, label: str) -> dict[str, bytes]:
    """Packages, Packages.gz and Release for a flat repository of these debs (same bytes every time)."""
    scan = _tool("dpkg-scanpackages", "dpkg-dev")
    with tempfile.TemporaryDirectory(prefix="airlock-apt-") as tmp:
        for deb in debs:
            os.symlink(deb.path.resolve(), Path(tmp, deb.filename))
        result = subprocess.run(
            [scan, "--multiversion", ".", "/dev/null"], cwd=tmp, capture_output=True, check=False
        )
    if result.returncode != 0:
        raise BundleError(f"dpkg-scanpackages failed: {result.stderr.decode(errors='replace').strip()}")
    packages = result.stdout
    files = {"Packages": packages, "Packages.gz": gzip.compress(packages, compresslevel=9, mtime=0)}
    return {**files, "Release": _release(files, architecture, created, label)}
