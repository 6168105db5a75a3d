#!/usr/bin/python3
"""Runs ON an Airlock host (as root, sent by playbooks/evidence.yml through `ansible.builtin.script`):
reads the live system and prints one JSON object, {"artifacts": {name: {...}}}, that the controller
splits into the pack's raw/<host>/ files. Standard library only (the host's own /usr/bin/python3).

Every artifact records the exact command or read that produced it, its exit status and stderr, so an
auditor can rerun it. Nothing here decides pass or fail (compliance/checks.py does, on the controller).
Secrets never leave the host: key files are stat()ed, never read; URLs in the config lose passwords;
the API key store is listed through `airlock apikeys list` (ids and hashes' metadata, no secrets).
"""

from __future__ import annotations

import base64
import concurrent.futures
import glob
import grp
import json
import os
import pwd
import re
import socket
import stat
import struct
import subprocess
import sys
import time

VERSION = "2"  # 2: backup status and the backup timers
TIMEOUT = 600  # audit verification of a large log is the long pole
# `airlock backup run CLASS` runs from these (roles' backup client); shown with the config's timers.
BACKUP_TIMERS = (
    "airlock-backup-models.timer",
    "airlock-backup-config.timer",
    "airlock-backup-outputs.timer",
    "airlock-backup-audit.timer",
    "airlock-backup-keys.timer",
    "airlock-backup-check.timer",
)


def backup_status_path(cfg: dict) -> str:
    """Where each backup run records its outcome (the controller's checks name the same path)."""
    return cfg.get("backup_status") or f"{cfg['state_dir']}/backup/status.json"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run(argv: list[str], env: dict | None = None) -> dict:
    started = now()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=TIMEOUT, env=env
        )
        rc, out, err = done.returncode, done.stdout, done.stderr
    except FileNotFoundError as exc:
        rc, out, err = 127, "", str(exc)
    except subprocess.TimeoutExpired:
        rc, out, err = 124, "", f"timed out after {TIMEOUT} s"
    return {
        "source": " ".join(argv),
        "rc": rc,
        "content": out,
        "stderr": err[-4000:],
        "collected_at": started,
    }


def read(path: str, transform=None) -> dict:
    started = now()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        rc, err = 0, ""
    except OSError as exc:
        text, rc, err = "", 1, str(exc)
    if transform and rc == 0:
        text = transform(text)
    return {"source": f"read {path}", "rc": rc, "content": text, "stderr": err, "collected_at": started}


def result(source: str, value) -> dict:
    return {
        "source": source,
        "rc": 0,
        "content": json.dumps(value, indent=2, sort_keys=True) + "\n",
        "stderr": "",
        "collected_at": now(),
    }


def redact_urls(text: str) -> str:
    """scheme://user:password@host -> scheme://user:***@host (Redis URLs carry a password)."""
    return re.sub(r"(://[^:/@\s\"']*:)[^@\s\"']+@", r"\1***@", text)


def file_modes(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)  # what a reader reaches: a symlinked release folder's own mode
        except OSError as exc:
            out.append({"path": path, "exists": False, "error": exc.strerror})
            continue
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        try:
            owner = pwd.getpwuid(st.st_uid).pw_name
        except KeyError:
            owner = str(st.st_uid)
        try:
            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        out.append(
            {
                "path": path,
                "exists": True,
                "type": kind,
                "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                "owner": owner,
                "group": group,
            }
        )
    return out


IMAGE_MAGIC = {b"\x89PNG": "png", b"\xff\xd8\xff": "jpeg", b"RIFF": "webp", b"GIF8": "gif"}
ENVELOPE = b"ALOUT01\n"  # airlock.store.envelope.MAGIC: every stored object starts with it


def store_scan(roots: list[str]) -> dict:
    """The encrypted stores file by file: each object (.enc) must be an envelope, each .key a wrapped
    data key (JSON by design, no content); anything else, or an image's bytes anywhere, is listed."""
    found: dict = {
        "roots": roots,
        "files": 0,
        "envelopes": 0,
        "wrapped_keys": 0,
        "not_envelope": [],
        "unexpected": [],
        "plaintext_like": {},
    }
    for root in roots:
        for dirpath, _dirs, files in os.walk(root):
            if os.path.basename(dirpath) == ".locks":
                continue
            for name in files:
                path = os.path.join(dirpath, name)
                found["files"] += 1
                try:
                    with open(path, "rb") as f:
                        head = f.read(16)
                except OSError:
                    continue
                kind = next((k for magic, k in IMAGE_MAGIC.items() if head.startswith(magic)), None)
                if kind:
                    found["plaintext_like"].setdefault(kind, []).append(path)
                elif name.endswith(".enc") and head.startswith(ENVELOPE):
                    found["envelopes"] += 1
                elif name.endswith(".enc"):
                    found["not_envelope"].append(path)
                elif name.endswith(".key") and head.startswith(b"{"):
                    found["wrapped_keys"] += 1
                else:
                    found["unexpected"].append(path)
    return found


def authorized_keys() -> list[dict]:
    keys = []
    for user in sorted(pwd.getpwall(), key=lambda u: u.pw_name):
        for path in (f"{user.pw_dir}/.ssh/authorized_keys", f"{user.pw_dir}/.ssh/authorized_keys2"):
            if not os.path.isfile(path):
                continue
            listed = run(["ssh-keygen", "-l", "-E", "sha256", "-f", path])
            for line in listed["content"].splitlines():
                bits, fp, *rest = line.split(" ")
                comment = " ".join(rest[:-1]) if rest else ""
                kind = rest[-1].strip("()") if rest else ""
                keys.append(
                    {
                        "user": user.pw_name,
                        "file": path,
                        "fingerprint": fp,
                        "bits": bits,
                        "type": kind,
                        "comment": comment,
                    }
                )
    return keys


def sudoers() -> list[dict]:
    lines = []
    for path in ["/etc/sudoers", *sorted(glob.glob("/etc/sudoers.d/*"))]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    text = line.strip()
                    if text and not (text.startswith("#") and not text.startswith("#include")):
                        lines.append({"file": path, "line": text})
        except OSError as exc:
            lines.append({"file": path, "error": exc.strerror})
    return lines


def audit_samples(root: str) -> list[dict]:
    """The newest record of each category on the newest day (sanitized by the service already)."""
    days = sorted(d for d in glob.glob(os.path.join(root, "[0-9]" * 4 + "-*")) if os.path.isdir(d))
    samples = []
    for day in reversed(days):
        for path in sorted(glob.glob(os.path.join(day, "*.jsonl"))):
            with open(path, "rb") as f:
                lines = f.read().splitlines()
            if lines:
                samples.append({"file": path, "record": json.loads(lines[-1])})
        if samples:
            break
    return samples


# ---- egress probe: each target either answers (reached) or does not ------------------------------


def dns_query(name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", 0x4E11, 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1"


def probe(target: dict) -> dict:
    proto, host, port = target["proto"], target["host"], target.get("port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    started = time.monotonic()
    try:
        if proto == "tcp":
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(3)
                s.connect((host, port))
        elif proto == "udp":  # a DNS question: only a server's answer counts as reached
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(3)
                s.sendto(dns_query(target.get("name", "airlock.invalid")), (host, port))
                s.recv(512)
        elif proto == "icmp":
            ping = subprocess.run(["ping", "-n", "-c", "1", "-W", "2", host], capture_output=True, timeout=10)
            if ping.returncode != 0:
                raise OSError(f"no echo reply (ping exit {ping.returncode})")
        else:
            raise ValueError(f"unknown probe protocol {proto!r}")
        reached, detail = True, "answered"
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        reached, detail = False, f"{type(exc).__name__}: {exc}"
    return {**target, "reached": reached, "detail": detail, "seconds": round(time.monotonic() - started, 2)}


def egress_probe(outside: list[dict], allowed: list[dict]) -> dict:
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return {
            "outside": list(pool.map(probe, outside)),  # must all be unreachable
            "allowed": list(pool.map(probe, allowed)),  # must answer, or the probe proves nothing
        }


def collect(cfg: dict) -> dict:
    cli, env = cfg["airlock"], {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    audit, registry, trust = cfg["audit_root"], cfg["registry_root"], cfg["trust_key"]
    state, conf = cfg["state_dir"], cfg["config_dir"]
    unit = cfg["service_unit"]
    timers = [*cfg["timers"], *(t for t in BACKUP_TIMERS if t not in cfg["timers"])]
    artifacts = {
        "os_release.txt": read("/etc/os-release"),
        "nft_ruleset.json": run(["nft", "-j", "list", "ruleset"]),
        "nftables.conf": read(cfg["nftables_conf"]),
        "sockets.txt": run(["ss", "-H", "-t", "-u", "-l", "-n"]),
        "service_unit.txt": run(["systemctl", "show", "--all", "--no-pager", unit]),  # --all: empty ones too
        "timers.txt": run(["systemctl", "show", "--no-pager", "-p", "Id,ActiveState,UnitFileState", *timers]),
        # Missing (no backup ever ran) is recorded as a failed read, not a crash: the check fails on it.
        "backup_status.json": read(backup_status_path(cfg), redact_urls),
        "sshd_effective.txt": run(["sshd", "-T"]),
        "journald.txt": run(["systemd-analyze", "cat-config", "systemd/journald.conf"]),
        "timesyncd.txt": run(["systemd-analyze", "cat-config", "systemd/timesyncd.conf"]),
        "issue.net": read("/etc/issue.net"),
        "airlock.toml": read(f"{conf}/airlock.toml", redact_urls),
        "prompts.yml": read(f"{conf}/prompts.yml"),
        "audit_verify.json": run(
            [cli, "audit", "verify", "--root", audit, "--trust", cfg["audit_trust"], "--json"], env
        ),
        "models_verify.txt": run([cli, "models", "verify", "--root", registry, "--trust", trust], env),
        "model_manifest.yaml": read(f"{registry}/model_manifest.yaml"),
        "apikeys.json": run([cli, "apikeys", "list", "--store", f"{state}/apikeys.json", "--json"], env),
        "bundle_manifest.yaml": read(f"{cfg['bundle_dir']}/manifest.yaml"),
    }
    modes = [
        conf,
        f"{conf}/airlock.toml",
        f"{conf}/prompts.yml",
        cfg["signing_key_dir"],
        f"{cfg['signing_key_dir']}/signing.key",
        f"{conf}/tls",
        f"{conf}/tls/server.key",
        f"{conf}/tls/server.crt",
        f"{state}/apikeys.json",
        f"{state}/kek",
        f"{state}/prompt-kek",
        f"{state}/outputs",
        f"{state}/prompts",
        audit,
        f"{audit}/integrity_hashes",
        registry,
        f"{registry}/model_manifest.yaml",
        trust,
        "/etc/ssh/sshd_config",
        cfg["nftables_conf"],
    ]
    artifacts["file_modes.json"] = result(
        "python3 os.stat on each path (symlinks followed, link_to recorded)", file_modes(modes)
    )
    artifacts["store_scan.json"] = result(
        f"python3 walk of {state}/outputs and {state}/prompts (first 8 bytes of each file)",
        store_scan([f"{state}/outputs", f"{state}/prompts"]),
    )
    artifacts["authorized_keys.json"] = result(
        "ssh-keygen -l -E sha256 -f ~USER/.ssh/authorized_keys", authorized_keys()
    )
    artifacts["sudoers.json"] = result("read /etc/sudoers and /etc/sudoers.d/* (comments dropped)", sudoers())
    artifacts["audit_samples.json"] = result(
        f"newest record per category under {audit}", audit_samples(audit)
    )
    artifacts["egress_probe.json"] = result(
        "python3 probes from this host: tcp connect, udp DNS question, icmp echo (3 s each)",
        egress_probe(cfg["egress_outside"], cfg["egress_allowed"]),
    )
    return {"probe_version": VERSION, "hostname": socket.gethostname(), "artifacts": artifacts}


if __name__ == "__main__":
    config = json.loads(base64.b64decode(sys.argv[1]))
    json.dump(collect(config), sys.stdout, sort_keys=True)
