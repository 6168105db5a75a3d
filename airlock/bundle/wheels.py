"""The Python side of a bundle: wheels for the target host, pinned by requirements.lock.

Each lock entry is `name==version` plus `--hash=sha256:...` lines. Wheels live in a download cache
(`<cache>/wheels/`): a cached wheel whose hash the lock lists, and whose tags the target can install,
is reused and never downloaded again; the others are fetched one at a time with
`pip download --require-hashes --no-deps --only-binary=:all:` for the target's Python and platform
(not this machine's), into a temporary folder, and moved into the cache only once their hash
matches. An interrupted build therefore resumes where it stopped.

With python.requires the lock entries shipped are the roots' closure: each wheel's own Requires-Dist
(read from the wheel, never from this machine's installed packages), markers evaluated for the target,
extras followed; fetched round by round, since a wheel's dependencies are known only once it is here.
python.wheels (local wheels, e.g. `pip wheel .`) ship as they are, and are appended to the bundle's
requirements.lock with their hash so that one `pip install --require-hashes` checks everything.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version
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
    local: bool = False  # from python.wheels, not an index


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
        "python_full_version": target.python_full,
        "implementation_name": "cpython",
        "implementation_version": target.python_full,
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


def wheel_metadata(path: Path) -> Message | None:
    """The wheel's own `*.dist-info/METADATA` headers (None when it has none)."""
    with zipfile.ZipFile(path) as zf:
        name = next(
            (n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1), None
        )
        if name is None:
            return None
        return HeaderParser().parsestr(zf.read(name).decode("utf-8", errors="replace"))


def _metadata(wheel: Wheel) -> Message:
    meta = wheel_metadata(wheel.path)
    if meta is None:
        raise BundleError(f"{wheel.path} has no *.dist-info/METADATA: it is not a valid wheel")
    return meta


class _Fetcher:
    """Lock entries to wheels: the cache, else the downloader; one progress bar over every round."""

    def __init__(self, spec: Spec, cache: Path, downloader: Downloader, progress: Progress | None):
        self.spec, self.cache, self.downloader, self.progress = spec, cache, downloader, progress
        self.tags = set(supported_tags(spec))
        self.task, self.total = None, 0

    def __call__(self, entries: list[LockEntry]) -> list[Wheel]:
        wheels, missing = [], []
        for entry in entries:
            wheel = cached_wheel(self.cache, entry, self.tags)
            if wheel is None:
                missing.append(entry)
            else:
                wheels.append(wheel)
        if self.progress is not None and missing:
            self.total += len(missing)
            if self.task is None:
                self.task = self.progress.add_task("download wheels", total=self.total)
            self.progress.update(self.task, total=self.total)
        for entry in missing:
            with tempfile.TemporaryDirectory(dir=self.cache, prefix=".download-") as tmp:
                self.downloader(entry, self.spec, Path(tmp))
                for path in Path(tmp).glob("*.whl"):
                    shutil.move(path, self.cache / path.name)
            wheel = cached_wheel(self.cache, entry, self.tags)
            if wheel is None:
                raise BundleError(
                    f"the download of {entry.name}=={entry.version} produced no wheel matching the lock's "
                    "hash for the target's tags; check requirements.lock was made for "
                    f"{self.spec.target.python}"
                )
            wheels.append(wheel)
            if self.progress is not None and self.task is not None:
                self.progress.advance(self.task)
        return wheels


def local_wheels(spec: Spec, tags: set[Tag]) -> dict[str, Wheel]:
    """python.wheels by canonical name, each checked: installable on the target, METADATA agreeing."""
    found = {}
    for path in spec.local_wheels:
        name, version, _build, wheel_tags = parse_wheel_filename(path.name)
        if not wheel_tags & tags:
            raise BundleSpecError(
                f"python.wheels item {path.name} is built for {', '.join(sorted(map(str, wheel_tags)))}; "
                f"{spec.target.distribution}/{spec.target.architecture} CPython {spec.target.python} "
                "installs none of these tags: build it for the target (pure Python: py3-none-any)"
            )
        wheel = Wheel(name, str(version), path, sha256_file(path), local=True)
        meta = _metadata(wheel)
        if canonicalize_name(meta.get("Name", "")) != name or Version(meta.get("Version", "0")) != version:
            raise BundleSpecError(
                f"python.wheels item {path.name}: its METADATA says {meta.get('Name')} "
                f"{meta.get('Version')}, not the file name's: rebuild the wheel, do not rename it"
            )
        found[name] = wheel
    return found


def _clash(local: dict[str, Wheel], entries: list[LockEntry], where: str) -> None:
    both = sorted(set(local) & {e.name for e in entries})
    if both:
        raise BundleSpecError(
            f"python.wheels holds {', '.join(both)}, which {where} also pins: ship one of them (drop the "
            "local wheel, or take the name out of requirements.in and run `make lock`)"
        )


def _applies(req: Requirement, extras: frozenset[str], env: dict[str, str]) -> bool:
    """Requires-Dist applies on the target with these extras asked ("" stands for none)."""
    return req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", *extras))


def resolve(
    spec: Spec,
    entries: list[LockEntry],
    local: dict[str, Wheel],
    fetch: Callable[[list[LockEntry]], list[Wheel]],
) -> tuple[list[LockEntry], list[Wheel]]:
    """python.requires and everything they need on the target: lock entries and local wheels."""
    target = spec.target
    env = target_environment(target)
    pinned = {e.name: e for e in entries}
    where = f"{spec.lock} for {target.distribution}/{target.architecture} CPython {target.python_full}"
    wanted: dict[str, set[str]] = {}  # name -> the extras asked of it so far
    done: dict[str, frozenset[str]] = {}  # name -> the extras its Requires-Dist was read for
    root_extras: dict[str, set[str]] = {}

    def need(req: Requirement, who: str) -> None:
        name = canonicalize_name(req.name)
        if name not in pinned and name not in local:
            raise BundleSpecError(
                f"{name} is needed by {who} but is not in {where} (nor in python.wheels): "
                "add it to requirements.in and run `make lock`"
            )
        version = local[name].version if name in local else pinned[name].version
        if not req.specifier.contains(version, prereleases=True):
            raise BundleSpecError(
                f"{who} needs {req}, but {name} is pinned at {version}: update requirements.in and run "
                "`make lock`"
            )
        wanted.setdefault(name, set()).update(canonicalize_name(x) for x in req.extras)

    for root in spec.requires or ():
        req = Requirement(root)
        need(req, "python.requires")
        root_extras.setdefault(canonicalize_name(req.name), set()).update(
            canonicalize_name(x) for x in req.extras
        )

    found = dict(local)
    # Rounds: fetch what is wanted but not here yet, then read the Requires-Dist of everything whose
    # extras grew; stop when a round adds nothing.
    while todo := sorted(n for n in wanted if done.get(n) != wanted[n]):
        found.update((w.name, w) for w in fetch([pinned[n] for n in todo if n not in found]))
        for name in todo:
            extras = done[name] = frozenset(wanted[name])
            wheel = found[name]
            meta = _metadata(wheel)
            provided = {canonicalize_name(x) for x in meta.get_all("Provides-Extra") or []}
            unknown = sorted(root_extras.get(name, set()) - provided)
            if unknown:
                raise BundleSpecError(
                    f"python.requires asks {name} for extra(s) {', '.join(unknown)}, which it does not "
                    f"provide (it provides: {', '.join(sorted(provided)) or 'none'}): fix python.requires"
                )
            for line in meta.get_all("Requires-Dist") or []:
                try:
                    req = Requirement(line)
                except InvalidRequirement as exc:
                    raise BundleError(f"{wheel.path.name}: bad Requires-Dist {line!r}: {exc}") from exc
                if _applies(req, extras, env):
                    need(req, f"{name} {wheel.version} (Requires-Dist: {line})")
    unused = sorted(set(local) - set(wanted))
    if unused:
        raise BundleSpecError(
            f"python.wheels holds {', '.join(unused)}, which nothing in python.requires needs: add it to "
            "python.requires (so its dependencies ship too), or drop it from python.wheels"
        )
    chosen = [pinned[n] for n in wanted if n in pinned]
    return chosen, [found[n] for n in wanted]


def fetch_wheels(
    spec: Spec, cache: Path, downloader: Downloader = pip_download, progress: Progress | None = None
) -> tuple[list[Wheel], str]:
    """The wheels for the spec (from the cache, else downloaded; plus python.wheels) and the text of the
    bundle's requirements.lock: the lock entries shipped, then a hash-pinned line per local wheel."""
    if spec.lock is None:
        raise BundleSpecError("the spec has no python.lock: there are no wheels to fetch")
    entries = parse_lock(spec.lock, spec.target)
    cache.mkdir(parents=True, exist_ok=True)
    fetch = _Fetcher(spec, cache, downloader, progress)
    local = local_wheels(spec, fetch.tags)
    if spec.requires is None:
        entries = select(entries, spec.only, spec.lock)
        _clash(local, entries, "python.only" if spec.only is not None else "python.lock")
        wheels = fetch(entries) + list(local.values())
    else:
        # Either could satisfy a dependency: a name must come from one place only.
        _clash(local, entries, "python.lock")
        entries, wheels = resolve(spec, entries, local, fetch)
    subset = "".join(e.text for e in sorted(entries, key=lambda e: e.name))
    header = (
        "# The bundle's subset of requirements.lock; install on the target with\n"
        "# pip install --no-index --find-links . --require-hashes --no-deps -r requirements.lock\n"
    )
    if local:
        subset += "# python.wheels: built locally, not from an index\n" + "".join(
            f"{w.name}=={w.version} --hash=sha256:{w.sha256}\n"
            for w in sorted(local.values(), key=lambda w: w.name)
        )
    return sorted(wheels, key=lambda w: w.name), header + subset
