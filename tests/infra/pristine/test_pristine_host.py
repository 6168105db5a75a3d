"""A freshly booted lab host, before any role runs: a real systemd machine that the controller reaches
with its key only, and that can reach both the internal services and "the internet" (the egress
role is what must close the latter)."""

import os
import subprocess
from pathlib import Path

import paramiko
import pytest
from reach import INTERNAL, OUTSIDE, dns, reaches

ROOT = Path(__file__).resolve().parents[3]


def test_systemd_is_pid1_and_the_system_is_up(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")
    failed = host.run("systemctl list-units --failed --plain --no-legend").stdout.strip()
    assert failed == "", f"failed units: {failed}"


def test_sshd_accepts_the_controller_key(controller_login):
    result = controller_login()
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
    assert dns(host, "10.231.1.1", "enclave.lab.airlock.test") == "10.231.1.10"
    assert dns(host, "10.231.1.1", "nope.lab.airlock.test") == "NXDOMAIN"
    assert [name for name, probe in INTERNAL.items() if not reaches(host, probe)] == []


def test_outside_is_reachable_before_any_firewall(host):
    """The negative control for the egress tests: without a firewall every probe gets an answer."""
    with host.sudo():
        assert host.check_output("nft list ruleset") == ""
    assert [name for name, probe in OUTSIDE.items() if not reaches(host, probe)] == []
    assert host.check_output("ip route show default").startswith("default via 10.231.2.1")
    assert host.check_output("ip -6 route show default").startswith("default via fd00:a1:2::1")
