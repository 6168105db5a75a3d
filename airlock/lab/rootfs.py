"""The lab hosts' Debian root filesystem: built once with mmdebstrap, cached as a tarball keyed on
its package list, extracted fresh for every `lab up`, then baked with the lab's identity (hostname,
/etc/hosts, resolver, the controller's SSH key, fresh host keys, an `ops` admin account)."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from airlock.lab import LabError
from airlock.lab.topology import INTERNAL, Host, Topology

SUITE = "bookworm"
VARIANT = "minbase"
# libpam-systemd: without it, restarting ssh leaves processes behind in the unit's cgroup.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "kmod",
    "openssh-server",
    "python3",
    "nftables",
    "iproute2",
    "curl",
    "iputils-ping",  # ICMP egress checks
    "systemd-timesyncd",  # what a standard Debian install syncs time with (pointed at the internal NTP)
    "sudo",
    "ca-certificates",
)
ADMIN_USER = "ops"


def cache_key(packages: tuple[str, ...] = PACKAGES) -> str:
    spec = f"{SUITE}\n{VARIANT}\n" + "\n".join(sorted(packages))
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def apt_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's own apt uses (the only one reachable here)."""
    if override := os.environ.get("AIRLOCK_LAB_MIRROR"):
        return override
    texts = []
    for path in [sources_dir / "sources.list", *sorted((sources_dir / "sources.list.d").glob("*"))]:
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):  # deb822 .sources
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1)
        for line in text.splitlines():  # one-line format
            match = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if match and match.group(2) == SUITE:
                return match.group(1)
    raise LabError(
        f"no Debian {SUITE} mirror found in {sources_dir}/sources.list*; "
        "set AIRLOCK_LAB_MIRROR=http://your-mirror/debian"
    )


def ensure_cached(cache_dir: Path, echo=print) -> Path:
    """Return the cached rootfs tarball, building it with mmdebstrap if it is missing."""
    tarball = cache_dir / f"rootfs-{SUITE}-{cache_key()}.tar.zst"
    if tarball.exists():
        return tarball
    if shutil.which("mmdebstrap") is None:
        raise LabError("mmdebstrap is not installed: apt-get install mmdebstrap (see .ci/run)")
    mirror = apt_mirror()
    tmp = cache_dir / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"partial-{tarball.name}"  # renamed when complete: no half-built cache
    echo(f"building the lab root filesystem from {mirror} (once; cached as {tarball.name})")
    cmd = [
        "mmdebstrap",
        f"--variant={VARIANT}",
        "--include=" + ",".join(PACKAGES),
        "--quiet",
        SUITE,
        str(partial),
        mirror,
    ]
    result = subprocess.run(cmd, env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, text=True)
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise LabError(f"mmdebstrap failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    partial.rename(tarball)
    return tarball


def extract(tarball: Path, root: Path) -> None:
    root.mkdir(parents=True)
    result = subprocess.run(
        ["tar", "-C", str(root), "--zstd", "-xpf", str(tarball)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise LabError(
            f"extracting {tarball} failed: {result.stderr.strip()[-1000:]} (delete it to rebuild the cache)"
        )


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.write_text(text)
    path.chmod(mode)


def bake(root: Path, host: Host, topology: Topology, controller_pubkey: str) -> tuple[str, str]:
    """Give an extracted rootfs the lab identity. Returns (host ed25519 public key, ops password)."""
    etc = root / "etc"
    _write(etc / "hostname", f"{host.name}\n")
    hosts = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback"]
    hosts += [f"{addr} {names}" for addr, names in topology.hosts_entries()]
    _write(etc / "hosts", "\n".join(hosts) + "\n")
    # The lab's own resolver: with the machine's resolv.conf copied in, fact gathering hangs ~10 s.
    _write(etc / "resolv.conf", f"nameserver {INTERNAL.service_ip}\noptions timeout:1 attempts:1\n")
    _write(etc / "machine-id", "")  # systemd generates a fresh one at boot

    password = secrets.token_urlsafe(18)
    chroot = ["chroot", str(root)]
    subprocess.run([*chroot, "useradd", "--create-home", "--shell", "/bin/bash", ADMIN_USER], check=True)
    # A real password exists so the test that sshd refuses password logins tries a valid one.
    subprocess.run([*chroot, "chpasswd"], input=f"{ADMIN_USER}:{password}\n", text=True, check=True)
    _write(etc / "sudoers.d" / ADMIN_USER, f"{ADMIN_USER} ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    ssh_dir = root / "home" / ADMIN_USER / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    _write(ssh_dir / "authorized_keys", controller_pubkey.strip() + "\n", 0o600)
    subprocess.run(
        [*chroot, "chown", "-R", f"{ADMIN_USER}:{ADMIN_USER}", f"/home/{ADMIN_USER}/.ssh"], check=True
    )
    _write(
        etc / "ssh" / "sshd_config.d" / "00-airlock-lab.conf",
        "# airlock lab baseline: keys only\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PermitRootLogin no\nUseDNS no\n",
    )
    for old in (etc / "ssh").glob("ssh_host_*"):
        old.unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-A", "-f", str(root)], check=True, capture_output=True
    )  # fresh host keys per lab
    host_key = (etc / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
    return f"{host_key[0]} {host_key[1]}", password
