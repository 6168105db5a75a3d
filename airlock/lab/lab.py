"""Bring the lab up, take it down, say what is up.

Everything `up` creates is written to a state file under /run *before* it is created, so `down`
can remove exactly that after any failure, even a killed `up`. `down` also removes lab namespaces
and lab processes it finds by their names when the state file is gone. Nothing here touches the
machine's own network namespace, firewall or /etc: links are created directly inside the lab's
namespaces (`ip link add ... netns X type veth peer ... netns Y`).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from airlock.lab import LabError, rootfs
from airlock.lab.topology import (
    INTERNAL,
    INTERNET_STANDIN_IP,
    INTERNET_STANDIN_IP6,
    MACHINE_PREFIX,
    MGMT,
    NETWORKS,
    OUTSIDE,
    Host,
    Topology,
    default_topology,
)

STATE_DIR = Path("/run/airlock-lab")
STATE_FILE = STATE_DIR / "state.json"
CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")
SERVICES_MODULE = "airlock.lab.services"
CLONE_NEWNET = 0x40000000  # <sched.h>: setns() into a network namespace

Say = Callable[[str], None]


@dataclass(frozen=True)
class LabPaths:
    root: Path  # the Airlock checkout

    @property
    def cache(self) -> Path:
        return self.root / ".cache" / "lab"

    @property
    def hosts_dir(self) -> Path:
        return self.cache / "hosts"

    @property
    def ssh_dir(self) -> Path:
        return self.cache / "ssh"

    @property
    def key(self) -> Path:
        return self.ssh_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def passwords(self) -> Path:
        return self.ssh_dir / "passwords.json"

    @property
    def inventory(self) -> Path:
        return self.root / "inventory" / "lab" / "hosts.yml"

    def rootfs(self, host: Host) -> Path:
        return self.hosts_dir / host.name / "rootfs"

    def console_log(self, host: Host) -> Path:
        return self.hosts_dir / host.name / "console.log"

    def service_log(self, namespace: str) -> Path:
        return self.cache / f"service-{namespace}.log"


# ---------------------------------------------------------------- state ----------------------------


def load_state() -> dict | None:
    try:
        return json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        return None


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(STATE_FILE)


def record(state: dict, key: str, item) -> None:
    """Note something in the state file before it is created."""
    state.setdefault(key, []).append(item)
    save_state(state)


# ---------------------------------------------------------------- helpers --------------------------


def run(cmd: list[str], *, input: str | None = None, timeout: float = 60) -> str:
    try:
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(cmd)}` timed out after {timeout:.0f}s") from exc
    if result.returncode != 0:
        raise LabError(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def existing_namespaces() -> set[str]:
    out = run(["ip", "netns", "list"])
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def is_ours(pid: int, marker: str) -> bool:
    """A PID is still the process we started only if its command line still carries our marker."""
    return marker in cmdline(pid)


def find_processes(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid() and marker in cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def stop_process(pid: int, marker: str, grace: float = 20.0) -> None:
    if not is_ours(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_ours(pid, marker):
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        time.sleep(0.2)
    if is_ours(pid, marker):
        os.kill(pid, signal.SIGKILL)


def cgroup_roots() -> list[Path]:
    roots = [r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()]
    if not roots and Path("/sys/fs/cgroup/cgroup.procs").exists():  # pure cgroup v2
        roots = [Path("/sys/fs/cgroup")]
    return roots


def remove_cgroup(path: Path) -> None:
    """rmdir a cgroup and the empty ones nspawn leaves below it (payload/, supervisor/)."""
    if not path.is_dir():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            child.rmdir()
    path.rmdir()


def mounted_below(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(prefix)]


# ---------------------------------------------------------------- up -------------------------------


def preflight(need_mmdebstrap: bool) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, systemd-nspawn): run it with sudo")
    tools = ["ip", "systemd-nspawn", "ssh", "ssh-keygen", "tar", "zstd", "chroot"]
    if need_mmdebstrap:
        tools.append("mmdebstrap")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise LabError(
            f"missing tools: {', '.join(missing)}; install them with "
            "apt-get install iproute2 systemd-container openssh-client zstd mmdebstrap"
        )


def ensure_controller_key(paths: LabPaths) -> str:
    paths.ssh_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.key.exists():
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "airlock-lab-controller",
                "-f",
                str(paths.key),
            ]
        )
    return paths.key.with_suffix(".pub").read_text()


def create_network(state: dict, topology: Topology) -> None:
    for ns in topology.namespaces:
        record(state, "namespaces", ns)
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    for net in NETWORKS:
        run(["ip", "-n", net.name, "link", "add", net.bridge, "type", "bridge"])
        run(["ip", "-n", net.name, "addr", "add", f"{net.service_ip}/{net.prefixlen}", "dev", net.bridge])
        run(["ip", "-n", net.name, "addr", "add", f"{net.service_ip6}/64", "dev", net.bridge, "nodad"])
        run(["ip", "-n", net.name, "link", "set", net.bridge, "up"])
        for host in topology.hosts:
            peer = host.veth_peer(net)
            run(
                [
                    "ip",
                    "link",
                    "add",
                    peer,
                    "netns",
                    net.name,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    net.host_iface,
                    "netns",
                    host.name,
                ]
            )
            run(["ip", "-n", net.name, "link", "set", peer, "master", net.bridge, "up"])
            run(
                [
                    "ip",
                    "-n",
                    host.name,
                    "addr",
                    "add",
                    f"{host.ip(net)}/{net.prefixlen}",
                    "dev",
                    net.host_iface,
                ]
            )
            run(["ip", "-n", host.name, "addr", "add", f"{host.ip6(net)}/64", "dev", net.host_iface, "nodad"])
            run(["ip", "-n", host.name, "link", "set", net.host_iface, "up"])
    for host in topology.hosts:
        run(["ip", "-n", host.name, "route", "add", "default", "via", host.default_gateway])
        run(["ip", "-n", host.name, "-6", "route", "add", "default", "via", host.default_gateway6])
    run(["ip", "-n", OUTSIDE.name, "addr", "add", f"{INTERNET_STANDIN_IP}/32", "dev", "lo"])
    run(["ip", "-n", OUTSIDE.name, "addr", "add", f"{INTERNET_STANDIN_IP6}/128", "dev", "lo", "nodad"])


def start_services(state: dict, paths: LabPaths, topology: Topology) -> None:
    specs = {
        INTERNAL.name: ["--zone", json.dumps(topology.dns_zone())],
        OUTSIDE.name: ["--wildcard", INTERNET_STANDIN_IP],
    }
    for ns, extra in specs.items():
        cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", SERVICES_MODULE, "--name", ns, *extra]
        with open(paths.service_log(ns), "w") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        record(state, "processes", {"pid": proc.pid, "marker": f"{SERVICES_MODULE} --name {ns}"})


def boot_host(
    state: dict, paths: LabPaths, host: Host, tarball: Path, topology: Topology, pubkey: str
) -> tuple[str, str]:
    root = paths.rootfs(host)
    record(state, "host_dirs", str(root.parent))
    if root.parent.exists():
        shutil.rmtree(root.parent)
    rootfs.extract(tarball, root)
    host_key, password = rootfs.bake(root, host, topology, pubkey)
    cgroups = [r / host.machine for r in cgroup_roots()]
    for cg in cgroups:
        record(state, "cgroups", str(cg))
        cg.mkdir(exist_ok=True)

    def enter_cgroups() -> None:
        # nspawn --keep-unit makes payload/ and supervisor/ below its own cgroup: give each host one.
        for cg in cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    cmd = [
        "systemd-nspawn",
        "-b",
        "-D",
        str(root),
        f"--machine={host.machine}",
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{host.name}",
        "--capability=CAP_NET_ADMIN",
        "--resolv-conf=off",
        "--console=read-only",
    ]
    env = {**os.environ, "SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
    with open(paths.console_log(host), "w") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=enter_cgroups,
            start_new_session=True,
        )
    record(state, "processes", {"pid": proc.pid, "marker": f"--machine={host.machine}"})
    return host_key, password


def write_access_files(
    paths: LabPaths, topology: Topology, host_keys: dict[str, str], passwords: dict[str, str]
) -> None:
    lines, known = [], []
    for host in topology.hosts:
        ip = host.ip(MGMT)
        lines += [
            f"Host {host.name} {ip}",
            f"  HostName {ip}",
            f"  User {rootfs.ADMIN_USER}",
            f"  IdentityFile {paths.key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {paths.known_hosts}",
            "  StrictHostKeyChecking yes",
            "  PasswordAuthentication no",
            "  BatchMode yes",
            "  ConnectTimeout 5",
            "  LogLevel ERROR",
            "",
        ]
        known.append(f"{host.name},{ip} {host_keys[host.name]}")
    paths.ssh_config.write_text("\n".join(lines))
    paths.known_hosts.write_text("\n".join(known) + "\n")
    paths.passwords.write_text(json.dumps(passwords))
    paths.passwords.chmod(0o600)

    groups: dict[str, list[Host]] = {}
    for host in topology.hosts:
        for group in host.groups:
            groups.setdefault(group, []).append(host)
    inv = [
        "---",
        "# Written by `airlock lab up`, removed by `airlock lab down`. Do not edit.",
        "all:",
        "  vars:",
        f"    ansible_ssh_private_key_file: {paths.key}",
        f'    ansible_ssh_common_args: "-F {paths.ssh_config}"',
        "  children:",
    ]
    for group, members in groups.items():
        inv += [f"    {group}:", "      hosts:"]
        inv += [f"        {h.name}:\n          ansible_host: {h.ip(MGMT)}" for h in members]
    paths.inventory.parent.mkdir(parents=True, exist_ok=True)
    paths.inventory.write_text("\n".join(inv) + "\n")


def ssh_argv(paths: LabPaths, host: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", MGMT.name, "ssh", "-F", str(paths.ssh_config), host, *command]


def wait_ready(paths: LabPaths, host: Host, timeout: float, state: dict) -> str:
    """Wait until SSH answers and systemd has finished booting; return the system state."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        nspawn = [p for p in state["processes"] if p["marker"] == f"--machine={host.machine}"]
        if nspawn and not is_ours(nspawn[0]["pid"], nspawn[0]["marker"]):
            raise LabError(f"{host.name}: systemd-nspawn exited; see {paths.console_log(host)}")
        result = subprocess.run(
            ssh_argv(paths, host.name, ["systemctl", "is-system-running", "--wait"]),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        last = result.stdout.strip() or result.stderr.strip()
        if last in ("running", "degraded"):
            return last
        time.sleep(0.5)
    tail = paths.console_log(host).read_text(errors="replace")[-1500:]
    raise LabError(f"{host.name} not ready after {timeout:.0f}s (last: {last!r}); console:\n{tail}")


def up(
    paths: LabPaths,
    gpu_hosts: int = 1,
    boot_timeout: float = 120,
    say: Say = print,
    tarball: Path | None = None,
) -> dict:
    topology = default_topology(gpu_hosts)
    preflight(need_mmdebstrap=tarball is None)
    if load_state() is not None or existing_namespaces() & set(topology.namespaces):
        raise LabError(
            "the lab is already up (or half up): run `airlock lab down` first, then `airlock lab up`"
        )
    if not (paths.root / "inventory").is_dir():
        raise LabError(f"{paths.root} is not an Airlock checkout (no inventory/): pass --root")
    started = time.monotonic()
    tarball = tarball or rootfs.ensure_cached(paths.cache, echo=say)
    pubkey = ensure_controller_key(paths)
    state: dict = {
        "gpu_hosts": gpu_hosts,
        "status": "starting",
        "root": str(paths.root),
        "created_dirs": [str(d) for d in (NSPAWN_RUNTIME.parent, NSPAWN_RUNTIME) if not d.exists()],
    }
    save_state(state)
    create_network(state, topology)
    say(f"namespaces {', '.join(topology.namespaces)} wired ({time.monotonic() - started:.1f}s)")
    start_services(state, paths, topology)
    host_keys, passwords = {}, {}
    for host in topology.hosts:
        host_keys[host.name], passwords[host.name] = boot_host(state, paths, host, tarball, topology, pubkey)
        say(f"{host.name}: booting {host.machine} ({time.monotonic() - started:.1f}s)")
    write_access_files(paths, topology, host_keys, passwords)
    for host in topology.hosts:
        system = wait_ready(paths, host, boot_timeout, state)
        say(f"{host.name}: systemd {system}, ssh ok ({time.monotonic() - started:.1f}s)")
    state["status"] = "up"
    save_state(state)
    return state


def rebuild(paths: LabPaths, name: str, boot_timeout: float = 120, say: Say = print) -> None:
    """Replace one host with a fresh one: its machine stopped, its root filesystem deleted and
    extracted again from the cached tarball, new SSH host keys, booted on the same addresses.
    What a disaster-recovery drill restores onto."""
    state = load_state()
    if not state or state.get("status") != "up":
        raise LabError("the lab is not up: run `airlock lab up` first")
    topology = default_topology(state.get("gpu_hosts", 1))
    try:
        host = topology.host(name)
    except KeyError as exc:
        raise LabError(exc.args[0]) from None
    marker = f"--machine={host.machine}"
    for proc in [p for p in state["processes"] if p["marker"] == marker]:
        stop_process(proc["pid"], proc["marker"])
    state["processes"] = [p for p in state["processes"] if p["marker"] != marker]
    save_state(state)
    for cg in (r / host.machine for r in cgroup_roots()):
        remove_cgroup(cg)
    if mounted_below(paths.rootfs(host).parent):
        raise LabError(f"{paths.rootfs(host)} still has mounts after its machine stopped; try again")
    say(f"{host.name}: destroyed (machine stopped, root filesystem removed)")
    tarball = rootfs.ensure_cached(paths.cache, echo=say)
    host_key, password = boot_host(state, paths, host, tarball, topology, ensure_controller_key(paths))
    known = [
        line for line in paths.known_hosts.read_text().splitlines() if not line.startswith(f"{host.name},")
    ]
    paths.known_hosts.write_text("\n".join([*known, f"{host.name},{host.ip(MGMT)} {host_key}"]) + "\n")
    passwords = json.loads(paths.passwords.read_text())
    passwords[host.name] = password
    paths.passwords.write_text(json.dumps(passwords))
    system = wait_ready(paths, host, boot_timeout, state)
    say(f"{host.name}: fresh root filesystem, new host key, systemd {system}, ssh ok")


def in_namespace(name: str) -> bool:
    """Whether this process already runs in the lab namespace `name` (e.g. under ip netns exec)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino == os.stat(f"/run/netns/{name}").st_ino
    except FileNotFoundError:
        return False


def enter_namespace(name: str) -> None:
    """Move this process into a lab network namespace (sockets and children it makes from now on),
    as `ip netns exec` would, without the new mount namespace that hides /sys/fs/cgroup from nspawn."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{name}") as fh:
        if libc.setns(fh.fileno(), CLONE_NEWNET) != 0:
            raise LabError(f"could not enter the lab namespace {name}: {os.strerror(ctypes.get_errno())}")


# ---------------------------------------------------------------- down -----------------------------


def down(paths: LabPaths, say: Say = print) -> list[str]:
    """Remove everything the lab made. Safe to run twice and after a failed `up`."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, systemd-nspawn): run it with sudo")
    state = load_state() or {}
    removed: list[str] = []
    processes = list(state.get("processes", []))
    # Found by marker too, in case `up` was killed between starting a process and recording it.
    recorded = {p["pid"] for p in processes}
    for marker in (SERVICES_MODULE + " --name", f"--machine={MACHINE_PREFIX}"):
        processes += [{"pid": pid, "marker": marker} for pid in find_processes(marker) if pid not in recorded]
    for proc in reversed(processes):  # hosts first, then services
        if is_ours(proc["pid"], proc["marker"]):
            stop_process(proc["pid"], proc["marker"])
            removed.append(f"process {proc['pid']} ({proc['marker']})")

    known = set(default_topology(state.get("gpu_hosts", 1)).namespaces) | set(state.get("namespaces", []))
    for ns in sorted(known & existing_namespaces()):
        run(["ip", "netns", "delete", ns])
        removed.append(f"namespace {ns}")

    cgroups = {Path(c) for c in state.get("cgroups", [])}
    cgroups |= {cg for root in cgroup_roots() for cg in root.glob(f"{MACHINE_PREFIX}*")}
    for cg in sorted(cgroups):
        if cg.is_dir():
            remove_cgroup(cg)
            removed.append(f"cgroup {cg}")
    for d in sorted(state.get("created_dirs", []), key=len, reverse=True):
        directory = Path(d)
        if directory.is_dir() and not any(p.is_file() for p in directory.rglob("*")):
            shutil.rmtree(directory)
            removed.append(f"directory {directory}")

    host_dirs = {Path(d) for d in state.get("host_dirs", [])}
    host_dirs |= set(paths.hosts_dir.glob("*")) if paths.hosts_dir.is_dir() else set()
    for d in sorted(host_dirs):
        if d.exists():
            if mounted_below(d):
                raise LabError(
                    f"{d} still has mounts ({', '.join(mounted_below(d))}); "
                    "stop the process using it, then run `airlock lab down` again"
                )
            shutil.rmtree(d)
            removed.append(f"root filesystem {d}")
    for f in (paths.inventory, paths.ssh_config, paths.known_hosts, paths.passwords):
        if f.exists():
            f.unlink()
            removed.append(f"file {f}")
    STATE_FILE.unlink(missing_ok=True)
    if STATE_DIR.is_dir() and not any(STATE_DIR.iterdir()):
        STATE_DIR.rmdir()
    for line in removed:
        say(f"removed {line}")
    return removed


# ---------------------------------------------------------------- status ---------------------------


def status(paths: LabPaths) -> dict:
    """What is up: namespaces, processes, and whether each host answers over SSH."""
    state = load_state()
    present = existing_namespaces()
    topology = default_topology(state.get("gpu_hosts", 1) if state else 1)
    report: dict = {
        "state": state["status"] if state else "down",
        "namespaces": {ns: ns in present for ns in topology.namespaces},
        "processes": [],
        "hosts": {},
    }
    for proc in (state or {}).get("processes", []):
        report["processes"].append({**proc, "alive": is_ours(proc["pid"], proc["marker"])})
    for host in topology.hosts:
        answer = ""
        if state and host.name in present and paths.ssh_config.exists():
            result = subprocess.run(
                ssh_argv(paths, host.name, ["systemctl", "is-system-running"]),
                capture_output=True,
                text=True,
                timeout=30,
            )
            answer = result.stdout.strip() or "unreachable"
        report["hosts"][host.name] = {
            "mgmt_ip": host.ip(MGMT),
            "internal_ip": host.ip(INTERNAL),
            "systemd": answer or "absent",
        }
    healthy = (
        report["state"] == "up"
        and all(report["namespaces"].values())
        and all(p["alive"] for p in report["processes"])
        and all(h["systemd"] in ("running", "degraded") for h in report["hosts"].values())
    )
    report["healthy"] = healthy
    return report
