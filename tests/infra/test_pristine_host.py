"""A freshly booted lab host, before any role runs: a real systemd machine that the controller reaches
with its key only, and that can reach both the internal services and "the internet" (the egress
role is what must close the latter)."""

import os
import subprocess
from pathlib import Path

import paramiko
import pytest

ROOT = Path(__file__).resolve().parents[2]
SSH_CONFIG = ROOT / ".cache" / "lab" / "ssh" / "config"
DNS_QUERY = (
    "import socket,struct;"
    "q=struct.pack('!HHHHHH',7,256,1,0,0,0)+b''.join(bytes([len(p)])+p.encode() for p in '{name}'.split('.'))"
    "+b'\\0\\0\\1\\0\\1';"
    "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);s.sendto(q,('{server}',53));"
    "r=s.recv(512);print('.'.join(map(str,r[-4:])) if struct.unpack('!H',r[6:8])[0] else 'NXDOMAIN')"
)


def test_systemd_is_pid1_and_the_system_is_up(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    failed = host.run("systemctl list-units --failed --plain --no-legend").stdout.strip()
    assert failed == "", f"failed units: {failed}"


def test_sshd_accepts_the_controller_key(host):
    result = subprocess.run(
        ["ssh", "-F", str(SSH_CONFIG), host.backend.get_hostname(), "id", "-un"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ops"


def test_sshd_refuses_passwords_even_the_right_one(host, mgmt_address, lab_password):
    with paramiko.Transport((mgmt_address, 22)) as transport:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("ops", lab_password)
        assert refused.value.allowed_types == ["publickey"]


def test_sshd_effective_config_is_key_only(host):
    with host.sudo():
        effective = host.check_output("sshd -T")
    assert "passwordauthentication no" in effective
    assert "permitrootlogin no" in effective
    assert "kbdinteractiveauthentication no" in effective


def test_ansible_reaches_the_host_and_becomes_root(host):
    result = subprocess.run(
        [
            "ansible",
            host.backend.get_hostname(),
            "-i",
            "inventory/lab",
            "-m",
            "ansible.builtin.command",
            "-a",
            "id -u",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ANSIBLE_DEPRECATION_WARNINGS": "false"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0"


def test_internal_service_and_resolver_are_reachable(host):
    assert (
        host.check_output("curl -sS --max-time 5 http://internal.lab.airlock.test/") == "airlock-lab internal"
    )
    resolved = host.check_output(
        "python3 -c %s", DNS_QUERY.format(name="enclave.lab.airlock.test", server="10.231.1.1")
    )
    assert resolved == "10.231.1.10"
    unknown = host.check_output(
        "python3 -c %s", DNS_QUERY.format(name="nope.lab.airlock.test", server="10.231.1.1")
    )
    assert unknown == "NXDOMAIN"


def test_outside_is_reachable_before_any_firewall(host):
    with host.sudo():
        assert host.check_output("nft list ruleset") == ""
    assert host.check_output("curl -sS --max-time 5 http://203.0.113.80/") == "airlock-lab outside"
    route = host.check_output("ip route show default")
    assert route.startswith("default via 10.231.2.1")
