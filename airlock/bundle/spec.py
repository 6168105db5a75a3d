"""`bundle.yaml`: what goes into a transfer bundle. Paths in it are relative to the spec file.

    name: airlock-enclave
    version: 0.1.0
    target: {distribution: debian-12, architecture: amd64, python: "3.11"}   # optional glibc: "2.36"
    python: {lock: requirements.lock, only: [typer, rich]}                   # optional platforms: [...]
    os_packages: {debs: [dist/a.deb], apt: [nftables]}
    models: {registry: .cache/lab-artifacts/registry, trust: .cache/lab-artifacts/org-keys/signing.pub}
    files: [{src: tls/ca.crt, dest: config/ca.crt}]

Every section but name, version and target is optional; unknown keys are refused (a typo must not
silently leave something out of the bundle).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

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
    platforms: tuple[str, ...] = ()
    debs: tuple[Path, ...] = ()
    apt: tuple[str, ...] = ()
    registry: Path | None = None
    registry_trust: Path | None = None
    files: tuple[FileItem, ...] = ()

    def inputs(self) -> list[Path]:
        """The local files the spec names (for the `created` time when SOURCE_DATE_EPOCH is unset)."""
        return [self.path, *([self.lock] if self.lock else []), *self.debs, *(f.src for f in self.files)]


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


def _target(raw: object) -> Target:
    doc = _mapping(raw, "target", {"distribution", "architecture", "python", "glibc"})
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
    return Target(distribution, architecture, python, glibc)


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
    python = _mapping(doc.get("python"), "python", {"lock", "only", "platforms"})
    os_packages = _mapping(doc.get("os_packages"), "os_packages", {"debs", "apt"})
    models = _mapping(doc.get("models"), "models", {"registry", "trust"})
    if python and "lock" not in python:
        raise BundleSpecError("python: give the pinned lock file as python.lock (requirements.lock)")
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
