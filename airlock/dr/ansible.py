"""Run playbooks and one-off commands on inventory hosts from the controller, for the drill."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from airlock.errors import AirlockError


@dataclass(frozen=True)
class Ansible:
    inventory: Path
    root: Path  # the checkout: playbooks/ and the venv's ansible-playbook
    timeout: float = 3600

    def _bin(self, name: str) -> str:
        beside = Path(sys.executable).parent / name
        found = str(beside) if beside.exists() else shutil.which(name)
        if not found:
            raise AirlockError(f"{name} is not installed here: `make venv` installs Ansible into .venv")
        return found

    def _env(self, **extra: str) -> dict[str, str]:
        # The playbooks call the controller's airlock (bundle import): the one beside this Python first.
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "PATH": path, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1", **extra}

    def playbook(self, name: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [
            self._bin("ansible-playbook"),
            "-i",
            str(self.inventory),
            str(self.root / "playbooks" / name),
            *args,
        ]
        return subprocess.run(
            cmd, cwd=self.root, env=self._env(), capture_output=True, text=True, timeout=self.timeout
        )

    def command(self, host: str, argv: list[str], become_user: str | None = None) -> tuple[int, str]:
        """Run one command on a host (as root, or as become_user); returns (rc, stdout)."""
        args = ["-b", "-m", "ansible.builtin.command", "-a", json.dumps({"argv": argv})]
        if become_user:
            args += ["--become-user", become_user]
        with tempfile.TemporaryDirectory(prefix="airlock-dr-") as tree:  # --tree: each host's JSON result
            result = subprocess.run(
                [self._bin("ansible"), host, "-i", str(self.inventory), "--tree", tree, *args],
                cwd=self.root,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.timeout,
            )
            try:
                outcome = json.loads((Path(tree) / host).read_text())
            except (OSError, ValueError):
                raise AirlockError(
                    f"could not run {argv[0]} on {host}: {(result.stderr or result.stdout).strip()[-500:]}"
                ) from None
        if outcome.get("unreachable"):
            raise AirlockError(f"{host} is unreachable: {outcome.get('msg', '')}")
        return int(outcome.get("rc", 1)), outcome.get("stdout", "")

    def host_address(self, host: str) -> str:
        """The host's ansible_host from the inventory (its name when it has none)."""
        result = subprocess.run(
            [self._bin("ansible-inventory"), "-i", str(self.inventory), "--host", host],
            cwd=self.root,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise AirlockError(f"{host} is not in {self.inventory}: {result.stderr.strip()[-300:]}")
        return json.loads(result.stdout).get("ansible_host", host)
