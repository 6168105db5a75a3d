"""The host's backup plan, read from /etc/airlock/backup.toml (written by the backup_client role).

Loading fails closed: an unknown class or key, a class naming a repository that is not defined, a
relative path or a retention borg cannot express is refused with the fix named.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import AirlockError

DEFAULT_CONFIG = Path("/etc/airlock/backup.toml")
# The seed's asset classes (section 4.5). Container images are the transfer bundles: kept on the
# controller's bundle store, permanently, not on the GPU host.
CLASSES = ("models", "config", "outputs", "audit", "keys")
KEEP_WITHIN = re.compile(r"^[1-9][0-9]*[Hdwmy]$")  # borg prune --keep-within


class BackupConfigError(AirlockError):
    pass


@dataclass(frozen=True)
class Repository:
    name: str
    location: str  # a borg repository URL (ssh://user@host/path) or an absolute local path
    passphrase_file: Path


@dataclass(frozen=True)
class AssetClass:
    name: str
    repository: str
    paths: tuple[Path, ...]
    excludes: tuple[str, ...]
    interval_seconds: int  # how often it must succeed; evidence flags a class older than twice this
    keep_within: str | None  # None: kept permanently


@dataclass(frozen=True)
class Worm:
    """The write-once copy of sealed audit days: rsync to an rrsync -wo -no-del -no-overwrite drop box."""

    destination: str  # user@host: (the forced command fixes the folder)
    ssh_key: Path
    staging: Path


@dataclass(frozen=True)
class BackupConfig:
    host: str
    status_file: Path
    borg_base_dir: Path
    ssh_key: Path
    known_hosts: Path
    audit_root: Path
    outputs_dir: Path
    repositories: dict[str, Repository]
    classes: dict[str, AssetClass]
    worm: Worm | None

    def ssh_command(self, key: Path | None = None) -> str:
        """The ssh that borg and rsync use: this key only, the pinned host key, never a prompt."""
        return (
            f"ssh -i {key or self.ssh_key} -o IdentitiesOnly=yes -o BatchMode=yes"
            f" -o StrictHostKeyChecking=yes -o UserKnownHostsFile={self.known_hosts} -o ConnectTimeout=10"
        )


def _absolute(value: object, where: str) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise BackupConfigError(f"{where} must be an absolute path, got {value!r}")
    return Path(value)


def _only(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise BackupConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
        )


def parse(data: dict, source: str = "backup.toml") -> BackupConfig:
    _only(
        data,
        {
            "host",
            "status_file",
            "borg_base_dir",
            "ssh_key",
            "known_hosts",
            "audit_root",
            "outputs_dir",
            "repositories",
            "classes",
            "worm",
        },
        source,
    )
    try:
        repositories = {
            name: Repository(
                name,
                str(spec["location"]),
                _absolute(spec["passphrase_file"], f"repositories.{name}.passphrase_file"),
            )
            for name, spec in data["repositories"].items()
        }
        classes = {}
        for name, spec in data["classes"].items():
            where = f"classes.{name}"
            if name not in CLASSES:
                raise BackupConfigError(f"{where}: unknown asset class (known: {', '.join(CLASSES)})")
            _only(spec, {"repository", "paths", "excludes", "interval_seconds", "keep_within"}, where)
            if spec["repository"] not in repositories:
                raise BackupConfigError(
                    f"{where}.repository {spec['repository']!r} is not under [repositories]"
                )
            keep = spec.get("keep_within")
            if keep is not None and not KEEP_WITHIN.match(str(keep)):
                raise BackupConfigError(
                    f"{where}.keep_within {keep!r}: use a number and H, d, w, m or y (e.g. 30d)"
                )
            interval = int(spec["interval_seconds"])
            if interval <= 0:
                raise BackupConfigError(f"{where}.interval_seconds must be positive")
            paths = tuple(_absolute(p, f"{where}.paths") for p in spec["paths"])
            if not paths:
                raise BackupConfigError(f"{where}.paths is empty: a class must back something up")
            classes[name] = AssetClass(
                name, spec["repository"], paths, tuple(spec.get("excludes", ())), interval, keep
            )
        worm = None
        if "worm" in data:
            _only(data["worm"], {"destination", "ssh_key", "staging"}, "worm")
            worm = Worm(
                str(data["worm"]["destination"]),
                _absolute(data["worm"]["ssh_key"], "worm.ssh_key"),
                _absolute(data["worm"]["staging"], "worm.staging"),
            )
        return BackupConfig(
            host=str(data["host"]),
            status_file=_absolute(data["status_file"], "status_file"),
            borg_base_dir=_absolute(data["borg_base_dir"], "borg_base_dir"),
            ssh_key=_absolute(data["ssh_key"], "ssh_key"),
            known_hosts=_absolute(data["known_hosts"], "known_hosts"),
            audit_root=_absolute(data["audit_root"], "audit_root"),
            outputs_dir=_absolute(data["outputs_dir"], "outputs_dir"),
            repositories=repositories,
            classes=classes,
            worm=worm,
        )
    except KeyError as exc:
        raise BackupConfigError(f"{source}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise BackupConfigError(f"{source}: malformed ({exc})") from None


def load(path: Path = DEFAULT_CONFIG) -> BackupConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BackupConfigError(f"{path} is missing: provision backups with the backup_client role") from None
    except tomllib.TOMLDecodeError as exc:
        raise BackupConfigError(f"{path} is not valid TOML: {exc}") from None
    return parse(data, str(path))
