"""`bundle.yaml`: what goes into a transfer bundle. Paths in it are relative to the spec file.

    name: airlock-enclave
    version: 0.1.0
    target: {distribution: debian-12, architecture: amd64, python: "3.11"}   # optional glibc: "2.36",
                                                                             #   python_full: "3.11.2"
    python: {lock: requirements.lock, requires: ["airlock[service]"],        # or only: [typer, rich];
             wheels: [dist/airlock-0.1.0-py3-none-any.whl]}                  # optional platforms: [...]
    os_packages: {debs: [dist/a.deb], apt: [nftables]}
    models: {registry: .cache/lab-artifacts/registry, trust: .cache/lab-artifacts/org-keys/signing.pub}
    files: [{src: tls/ca.crt, dest: config/ca.crt}]

Every section but name, version and target is optional; unknown keys are refused (a typo must not
silently leave something out of the bundle). python.requires ships its roots and what they need on the
target (by each wheel's Requires-Dist, pinned by the lock); python.only ships exactly the names given;
with neither, the whole lock ships. python.wheels: local wheel files (not from an index), shipped too.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from airlock.bundle.errors import BundleSpecError

IDENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
PYTHON = re.compile(r"^3\.\d{1,2}$")
# glibc of each distribution's release: the newest manylinux tag its hosts can run.
GLIBC = {
    "debian-11": "2.31",
    "debian-12": "2.36",
    "debian-13": "2.41",
    "ubuntu-22.04": "2.35",
    "ubuntu-24.04": "2.39",
}
# The distribution's python3 (major.minor.micro): markers such as `python_full_version < "3.11.3"`
# must see the hosts' interpreter, not "3.11.0".
PYTHON_FULL = {
    "debian-11": "3.9.2",
    "debian-12": "3.11.2",
    "debian-13": "3.13.5",
    "ubuntu-22.04": "3.10.12",
    "ubuntu-24.04": "3.12.3",
}
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}  # Debian architecture -> wheel platform machine
# manylinux aliases from before PEP 600 (PEP 513/571/599), by the glibc minor they stand for.
LEGACY = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
KEYS = {"name", "version", "target", "python", "os_packages", "models", "files"}


@dataclass(frozen=True)
class Target:
    distribution: str
    architecture: str
    python: str
    glibc: str
    python_full: str  # what PEP 508 markers see as python_full_version

    @property
    def machine(self) -> str:
        return MACHINE[self.architecture]

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    def platforms(self) -> list[str]:
        """Wheel platform tags the target runs, newest first (pip does not expand manylinux_2_X)."""
        top = int(self.glibc.split(".")[1])
        tags = []
        for minor in range(top, 4, -1):
            tags.append(f"manylinux_2_{minor}_{self.machine}")
            if minor in LEGACY and (minor == 17 or self.machine in ("x86_64", "i686")):
                tags.append(f"{LEGACY[minor]}_{self.machine}")
        return tags

    def to_dict(self) -> dict[str, str]:
        return {"distribution": self.distribution, "architecture": self.architecture, "python": self.python}


@dataclass(frozen=True)
class FileItem:
    src: Path
    dest: str  # relative, POSIX; lands at files/<dest> in the bundle


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    version: str
    target: Target
    lock: Path | None = None
    only: tuple[str, ...] | None = None
    requires: tuple[str, ...] | None = None  # roots: name or name[extra,...]
    local_wheels: tuple[Path, ...] = ()  # python.wheels
    platforms: tuple[str, ...] = ()
    debs: tuple[Path, ...] = ()
    apt: tuple[str, ...] = ()
    registry: Path | None = None
    registry_trust: Path | None = None
    files: tuple[FileItem, ...] = ()

    def inputs(self) -> list[Path]:
        """The local files the spec names (for the `created` time when SOURCE_DATE_EPOCH is unset)."""
        lock = [self.lock] if self.lock else []
        return [self.path, *lock, *self.local_wheels, *self.debs, *(f.src for f in self.files)]


def _mapping(value: object, where: str, allowed: set[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleSpecError(f"{where} must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise BundleSpecError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    return value


def _text(value: object, where: str, pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BundleSpecError(f'{where} must be a non-empty string (quote numbers: "3.11"), got {value!r}')
    if pattern is not None and not pattern.match(value):
        raise BundleSpecError(f"{where} {value!r}: use letters, digits, '.', '_', '+', '-'")
    return value


def _strings(value: object, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BundleSpecError(f"{where} must be a list")
    return tuple(_text(v, f"{where} item") for v in value)


def _existing(base: Path, value: object, where: str, *, folder: bool = False) -> Path:
    path = (base / _text(value, where)).resolve()
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        raise BundleSpecError(f"{where}: {path} is not an existing {'folder' if folder else 'file'}")
    return path


def safe_relative(value: str, where: str) -> str:
    """A relative POSIX path that stays inside its folder (no '..', no absolute path)."""
    norm = posixpath.normpath(value)
    if value.startswith("/") or norm != value.rstrip("/") or norm in ("", ".") or ".." in norm.split("/"):
        raise BundleSpecError(
            f"{where} {value!r} must be a plain relative path (no '/' first, no '.' or '..')"
        )
    if any(ord(c) < 32 or c == "\\" for c in value):
        raise BundleSpecError(f"{where} {value!r} holds a control character or a backslash")
    return norm


def _roots(value: object) -> tuple[str, ...]:
    roots = _strings(value, "python.requires")
    if not roots:
        raise BundleSpecError("python.requires is empty: name at least one root, or drop it")
    for root in roots:
        try:
            req = Requirement(root)
        except InvalidRequirement as exc:
            raise BundleSpecError(f"python.requires item {root!r} is not a requirement: {exc}") from exc
        if req.specifier or req.marker or req.url:
            raise BundleSpecError(
                f"python.requires item {root!r}: give a name with optional [extras] only "
                "(versions come from python.lock)"
            )
    return roots


def _local_wheels(base: Path, value: object) -> tuple[Path, ...]:
    paths, names = [], {}
    for item in _strings(value, "python.wheels"):
        path = _existing(base, item, "python.wheels item")
        try:
            name = parse_wheel_filename(path.name)[0]
        except InvalidWheelFilename as exc:
            raise BundleSpecError(
                f"python.wheels item {item!r} is not a wheel file name "
                f"(name-version-python-abi-platform.whl): {exc}"
            ) from exc
        if name in names:
            raise BundleSpecError(f"python.wheels: {names[name]} and {item} are both {name}: keep one")
        names[name] = item
        paths.append(path)
    return tuple(paths)


def _target(raw: object) -> Target:
    doc = _mapping(raw, "target", {"distribution", "architecture", "python", "glibc", "python_full"})
    distribution = _text(doc.get("distribution"), "target.distribution", IDENT)
    architecture = _text(doc.get("architecture"), "target.architecture")
    if architecture not in MACHINE:
        raise BundleSpecError(f"target.architecture {architecture!r}: use one of {', '.join(MACHINE)}")
    python = _text(doc.get("python"), "target.python")
    if not PYTHON.match(python):
        raise BundleSpecError(f'target.python {python!r}: give major.minor, quoted ("3.11")')
    glibc = doc.get("glibc", GLIBC.get(distribution))
    if glibc is None:
        raise BundleSpecError(
            f"target.distribution {distribution!r} has no known glibc version: add target.glibc "
            f'(e.g. "2.36"), or use one of {", ".join(GLIBC)}'
        )
    if not re.match(r"^2\.\d{1,2}$", _text(glibc, "target.glibc")):
        raise BundleSpecError(f'target.glibc {glibc!r}: give it as "2.NN"')
    known = PYTHON_FULL.get(distribution, "")
    full = _text(
        doc.get("python_full", known if known.startswith(python + ".") else f"{python}.0"),
        "target.python_full",
    )
    if not (full.startswith(python + ".") and re.match(r"^3\.\d{1,2}\.\d{1,3}$", full)):
        raise BundleSpecError(
            f'target.python_full {full!r}: give the hosts\' python3 version as "{python}.N" '
            "(it must start with target.python)"
        )
    return Target(distribution, architecture, python, glibc, full)


def load_spec(path: Path) -> Spec:
    """Read and check bundle.yaml; BundleSpecError names the key to fix."""
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BundleSpecError(f"cannot read the bundle spec {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleSpecError(f"{path} is not valid UTF-8 YAML: {exc}") from exc
    doc = _mapping(doc, str(path), KEYS)
    base = path.parent
    python = _mapping(doc.get("python"), "python", {"lock", "only", "requires", "wheels", "platforms"})
    os_packages = _mapping(doc.get("os_packages"), "os_packages", {"debs", "apt"})
    models = _mapping(doc.get("models"), "models", {"registry", "trust"})
    if python and "lock" not in python:
        raise BundleSpecError("python: give the pinned lock file as python.lock (requirements.lock)")
    if "only" in python and "requires" in python:
        raise BundleSpecError(
            "python: give either only (exactly these lock entries) or requires (these roots and their "
            "dependencies), not both: drop python.only"
        )
    if models and not ("registry" in models and "trust" in models):
        raise BundleSpecError(
            "models: give both registry (the signed registry folder) and trust (its public key, "
            "checked before the registry is bundled)"
        )
    files = []
    raw_files = doc.get("files") or []
    if not isinstance(raw_files, list):
        raise BundleSpecError("files must be a list of {src, dest}")
    for i, item in enumerate(raw_files, 1):
        item = _mapping(item, f"files item {i}", {"src", "dest"})
        files.append(
            FileItem(
                _existing(base, item.get("src"), f"files item {i} src"),
                safe_relative(_text(item.get("dest"), f"files item {i} dest"), f"files item {i} dest"),
            )
        )
    dests = [f.dest for f in files]
    dupes = sorted({d for d in dests if dests.count(d) > 1})
    if dupes:
        raise BundleSpecError(f"files: dest {', '.join(dupes)} given more than once")
    return Spec(
        path=path,
        name=_text(doc.get("name"), "name", IDENT),
        version=_text(doc.get("version"), "version", IDENT),
        target=_target(doc.get("target")),
        lock=_existing(base, python["lock"], "python.lock") if python else None,
        only=_strings(python["only"], "python.only") if "only" in python else None,
        requires=_roots(python["requires"]) if "requires" in python else None,
        local_wheels=_local_wheels(base, python.get("wheels")),
        platforms=_strings(python.get("platforms"), "python.platforms"),
        debs=tuple(
            _existing(base, d, "os_packages.debs item")
            for d in _strings(os_packages.get("debs"), "os_packages.debs")
        ),
        apt=_strings(os_packages.get("apt"), "os_packages.apt"),
        registry=_existing(base, models["registry"], "models.registry", folder=True) if models else None,
        registry_trust=_existing(base, models["trust"], "models.trust") if models else None,
        files=tuple(files),
    )
