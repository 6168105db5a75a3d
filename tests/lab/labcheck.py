"""Helpers for the lab tests: run the CLI, snapshot what the lab must never touch, list leftovers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from airlock.lab import lab
from airlock.lab.topology import MACHINE_PREFIX, default_topology

ROOT = Path(__file__).resolve().parents[2]
PATHS = lab.LabPaths(ROOT)


def airlock(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airlock.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def etc_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path("/etc").rglob("*")):
        digest.update(str(path).encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            try:
                digest.update(path.read_bytes())
            except PermissionError:
                digest.update(b"unreadable")
            digest.update(oct(path.stat().st_mode).encode())
    return digest.hexdigest()


def machine_snapshot() -> dict:
    """What the lab must never change: the machine's own firewall, network and /etc."""
    return {
        "nft": run("nft", "list", "ruleset"),
        "links": sorted(line.split(":")[1].strip() for line in run("ip", "-o", "link").splitlines()),
        "addresses": run("ip", "-o", "addr"),
        "routes": run("ip", "route"),
        "etc": etc_digest(),
    }


def leftovers() -> list[str]:
    """Everything a lab can leave behind; empty when it is fully down."""
    found = [f"namespace {ns}" for ns in lab.existing_namespaces() if ns in default_topology(9).namespaces]
    found += [
        f"process {pid}"
        for marker in (f"--machine={MACHINE_PREFIX}", lab.SERVICES_MODULE)
        for pid in lab.find_processes(marker)
    ]
    found += [f"cgroup {cg}" for root in lab.cgroup_roots() for cg in root.glob(f"{MACHINE_PREFIX}*")]
    found += [f"file {p}" for p in (lab.STATE_FILE, PATHS.inventory) if p.exists()]
    found += [f"rootfs {p}" for p in PATHS.hosts_dir.glob("*")] if PATHS.hosts_dir.exists() else []
    return found
