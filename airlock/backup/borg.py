"""BorgBackup, run as a subprocess with the environment that keeps it non-interactive and honest.

The passphrase reaches borg through BORG_PASSCOMMAND (read from a root-only file), never through an
argument or an environment value a process listing or a log could show.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

from airlock.backup.config import BackupConfig, Repository
from airlock.errors import AirlockError

ENCRYPTION = "repokey-blake2"  # AES-256-CTR + BLAKE2b MAC; the key sits in the repo, under the passphrase


class BorgError(AirlockError):
    def __init__(self, message: str, returncode: int = 2):
        super().__init__(message)
        self.returncode = returncode


class Borg:
    def __init__(self, config: BackupConfig, repository: Repository, borg: str = "borg"):
        self.config = config
        self.repo = repository
        self.borg = borg

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BORG_")}
        env.update(
            BORG_REPO=self.repo.location,
            BORG_PASSCOMMAND=f"cat {shlex.quote(str(self.repo.passphrase_file))}",
            BORG_RSH=self.config.ssh_command(),
            BORG_BASE_DIR=str(self.config.borg_base_dir),
            # Refuse, never ask: a repository that moved or lost its encryption is an incident.
            BORG_RELOCATED_REPO_ACCESS_IS_OK="no",
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="no",
            BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="NO",
            BORG_DELETE_I_KNOW_WHAT_I_AM_DOING="NO",
            LANG="C.UTF-8",
            TZ="UTC",  # archive times in UTC, like every other timestamp here
        )
        return env

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 6 * 3600, strict: bool = False
    ) -> str:
        """Run borg; rc 1 is a warning (a file changed while read) unless strict (check: 1 = damage found)."""
        if not self.repo.passphrase_file.is_file():
            raise BorgError(
                f"the passphrase of repository {self.repo.name!r} ({self.repo.passphrase_file}) is missing: "
                "restore it from the controller's escrow (the backup_client role installs it)"
            )
        # Timers and path units can start two classes at once: wait for the repository's lock.
        cmd = [self.borg, "--lock-wait", "900", *args]
        try:
            result = subprocess.run(
                cmd,
                env=self.env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise BorgError(
                "borg is not installed: apt-get install borgbackup (from the transfer bundle)"
            ) from None
        except subprocess.TimeoutExpired:
            raise BorgError(f"`borg {args[0]}` on {self.repo.name} timed out after {timeout:.0f}s") from None
        if result.returncode != 0 and (strict or result.returncode != 1):
            tail = result.stderr.strip().splitlines()[-3:]
            raise BorgError(
                f"`borg {args[0]}` on repository {self.repo.name!r} failed ({result.returncode}): "
                + " | ".join(tail),
                result.returncode,
            )
        return result.stdout

    def initialized(self) -> bool:
        try:
            self.run("info", "--json", timeout=120)
        except BorgError as exc:
            if "does not exist" in str(exc) or "is not a valid repository" in str(exc):
                return False
            raise
        return True

    def init(self) -> bool:
        """Create the repository if it is not there; False when it already was."""
        if self.initialized():
            return False
        self.run("init", f"--encryption={ENCRYPTION}", "--make-parent-dirs", timeout=300)
        return True

    def info(self) -> dict:
        return json.loads(self.run("info", "--json", timeout=300))

    def create(self, archive: str, paths: list[Path], excludes: tuple[str, ...] = ()) -> dict:
        args = ["create", "--json", "--compression", "zstd,3", "--one-file-system", "--exclude-caches"]
        for pattern in excludes:
            args += ["--exclude", pattern]
        return json.loads(self.run(*args, f"::{archive}", *[str(p) for p in paths]))

    def archives(self, prefix: str) -> list[dict]:
        """Archives of one series, oldest first (name, time as borg reports it, UTC)."""
        data = json.loads(self.run("list", "--json", "--glob-archives", f"{prefix}-*", timeout=600))
        return sorted(data["archives"], key=lambda a: a["time"])

    def prune(self, prefix: str, keep_within: str) -> str:
        out = self.run("prune", "--list", "--glob-archives", f"{prefix}-*", "--keep-within", keep_within)
        self.run("compact")
        return out

    def check(self, verify_data: bool = False) -> None:
        """Repository and archive consistency; with verify_data every chunk is decrypted and MAC-checked."""
        self.run("check", *(["--verify-data"] if verify_data else []), strict=True)

    def extract(self, archive: str, target: Path) -> None:
        """Restore an archive's absolute paths below target (/ for in place)."""
        self.run("extract", f"::{archive}", cwd=target)
