"""The Python side of a bundle: wheels for the target host, pinned by requirements.lock.

Each lock entry is `name==version` plus `--hash=sha256:...` lines. Wheels live in a download cache
(`<cache>/wheels/`): a cached wheel whose hash the lock lists, and whose tags the target can install,
is reused and never downloaded again; the others are fetched one at a time with
`pip download --require-hashes --no-deps --only-binary=:all:` for the target's Python and platform
(not this machine's), into a temporary folder, and moved into the cache only once their hash
matches. An interrupted build therefore resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from rich.progress import Progress

from airlock.bundle.errors import BundleError, BundleSpecError
from airlock.bundle.spec import Spec, Target

HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
CHUNK = 1 << 20


@dataclass(frozen=True)
class LockEntry:
    name: str  # canonical (PEP 503)
    version: str
    hashes: frozenset[str]
    text: str  # the entry as written in the lock (pin, marker, hash lines)


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str
    path: Path
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def target_environment(target: Target) -> dict[str, str]:
    """PEP 508 marker values on the target host (not on this machine)."""
    return {
        "python_version": target.python,
        "python_full_version": f"{target.python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": target.machine,
        "extra": "",
    }


def parse_lock(path: Path, target: Target) -> list[LockEntry]:
    """Entries of a pip-compile style lock that apply to the target; each pinned with a hash."""
    text = path.read_text(encoding="utf-8")
    entries = []
    for block in re.split(r"\n(?=\S)", text):
        lines = [line for line in block.splitlines() if not line.lstrip().startswith("#")]
        joined = " ".join(line.rstrip("\\ ").strip() for line in lines).strip()
        if not joined:
            continue
        requirement_text = joined.split("--hash", 1)[0].strip()
        try:
            req = Requirement(requirement_text)
        except InvalidRequirement as exc:
            raise BundleSpecError(f"{path}: {requirement_text!r} is not a requirement: {exc}") from exc
        pins = [s for s in req.specifier if s.operator == "=="]
        hashes = frozenset(HASH.findall(joined))
        if len(pins) != 1 or len(req.specifier) != 1 or not hashes:
            raise BundleSpecError(
                f"{path}: {requirement_text!r} must be pinned with == and carry --hash=sha256:... lines "
                "(regenerate the lock with `make lock`)"
            )
        if req.marker is not None and not Marker(str(req.marker)).evaluate(target_environment(target)):
            continue  # not for this target (e.g. a Windows-only dependency)
        entries.append(LockEntry(canonicalize_name(req.name), pins[0].version, hashes, block.rstrip() + "\n"))
    return entries


def select(entries: list[LockEntry], only: tuple[str, ...] | None, lock: Path) -> list[LockEntry]:
    if only is None:
        return entries
    wanted = {canonicalize_name(n) for n in only}
    missing = sorted(wanted - {e.name for e in entries})
    if missing:
        raise BundleSpecError(
            f"python.only names {', '.join(missing)}, not in {lock} (for this target): "
            "add them to requirements.in and run `make lock`, or drop them from python.only"
        )
    return [e for e in entries if e.name in wanted]


def supported_tags(spec: Spec) -> list[Tag]:
    target = spec.target
    version = tuple(int(p) for p in target.python.split("."))
    platforms = list(spec.platforms) or target.platforms()
    platforms.append(f"linux_{target.machine}")  # wheels built locally for this architecture
    return [
        *cpython_tags(version, abis=[target.python_tag], platforms=platforms),
        *compatible_tags(version, target.python_tag, platforms),
    ]


def _candidates(cache: Path, entry: LockEntry, tags: set[Tag]) -> list[Path]:
    found = []
    for path in sorted(cache.glob("*.whl")):
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        if name == entry.name and str(version) == entry.version and wheel_tags & tags:
            found.append(path)
    return found


def cached_wheel(cache: Path, entry: LockEntry, tags: set[Tag]) -> Wheel | None:
    """A cached wheel for the entry whose hash the lock lists; stale copies are removed."""
    for path in _candidates(cache, entry, tags):
        digest = sha256_file(path)
        if digest in entry.hashes:
            return Wheel(entry.name, entry.version, path, digest)
        path.unlink()  # a partial or replaced download: fetch it again
    return None


def pip_download(entry: LockEntry, spec: Spec, dest: Path) -> None:
    """Fetch one pinned wheel for the target into dest (pip checks the hash)."""
    lock = dest / "requirement.txt"
    hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(entry.hashes))
    lock.write_text(f"{entry.name}=={entry.version} {hashes}\n")
    platforms = list(spec.platforms) or spec.target.platforms()
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
        "--only-binary=:all:", "--python-version", spec.target.python, "--implementation", "cp",
        "--abi", spec.target.python_tag, *[f"--platform={p}" for p in platforms],
        "-r", str(lock), "-d", str(dest),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise BundleError(
            f"pip could not download {entry.name}=={entry.version} for {spec.target.distribution}/"
            f"{spec.target.architecture} CPython {spec.target.python}: {' '.join(detail)}. Check the "
            "package index is reachable and that a wheel exists for the target (sdists are not bundled)"
        )


Downloader = Callable[[LockEntry, Spec, Path], None]


def fetch_wheels(
    spec: Spec, cache: Path, downloader: Downloader = pip_download, progress: Progress | None = None
) -> tuple[list[Wheel], str]:
    """The wheels for the spec's lock subset (from the cache, else downloaded) and that subset's text."""
    if spec.lock is None:
        raise BundleSpecError("the spec has no python.lock: there are no wheels to fetch")
    entries = select(parse_lock(spec.lock, spec.target), spec.only, spec.lock)
    cache.mkdir(parents=True, exist_ok=True)
    tags = set(supported_tags(spec))
    wheels, missing = [], []
    for entry in entries:
        wheel = cached_wheel(cache, entry, tags)
        if wheel is None:
            missing.append(entry)
        else:
            wheels.append(wheel)
    task = progress.add_task("download wheels", total=len(missing)) if progress and missing else None
    for entry in missing:
        with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
            downloader(entry, spec, Path(tmp))
            for path in Path(tmp).glob("*.whl"):
                shutil.move(path, cache / path.name)
        wheel = cached_wheel(cache, entry, tags)
        if wheel is None:
            raise BundleError(
                f"the download of {entry.name}=={entry.version} produced no wheel matching the lock's "
                f"hash for the target's tags; check requirements.lock was made for {spec.target.python}"
            )
        wheels.append(wheel)
        if progress is not None and task is not None:
            progress.advance(task)
    subset = "".join(e.text for e in sorted(entries, key=lambda e: e.name))
    header = (
        "# The bundle's subset of requirements.lock; install on the target with\n"
        "# pip install --no-index --find-links . --require-hashes --no-deps -r requirements.lock\n"
    )
    return sorted(wheels, key=lambda w: w.name), header + subset
