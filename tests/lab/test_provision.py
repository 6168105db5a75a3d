"""`playbooks/site.yml` against a real lab host, both ways: a fresh host converges, a second run and a
`--check --diff` run change nothing, the host suite passes; then the host is broken three ways and the
matching host checks must fail before site.yml repairs it (or, for an altered model, fails loudly).

The tests run in file order on one lab (see conftest.running_lab); each leaves the host converged.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from labcheck import ROOT, airlock

ENV = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}", "ANSIBLE_FORCE_COLOR": "0"}


def in_mgmt(*cmd: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["ip", "netns", "exec", "mgmt", *cmd],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    print(result.stdout[-8000:], result.stderr[-3000:])
    return result


def site(*args: str) -> subprocess.CompletedProcess:
    playbook = str(ROOT / ".venv" / "bin" / "ansible-playbook")
    return in_mgmt(playbook, "-i", "inventory/lab", "playbooks/site.yml", *args)


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    line = re.search(r"^enclave\s*:\s*(.*)$", result.stdout, re.M)
    assert line, "no PLAY RECAP for enclave"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line.group(1))}


def host_tests(*selectors: str) -> subprocess.CompletedProcess:
    return in_mgmt(
        sys.executable,
        "-m",
        "pytest",
        *selectors,
        "-p",
        "no:cacheprovider",
        "--hosts=ansible://gpu_hosts",
        "--ansible-inventory=inventory/lab",
        "-q",
    )


def on_host(command: str) -> str:
    # ssh joins its arguments into one remote command line: quote the script once, for that shell.
    result = airlock("lab", "ssh", "enclave", "--", f"sudo sh -c {shlex.quote(command)}")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def lab(running_lab):
    return running_lab


def test_a_fresh_host_is_the_pristine_one(lab):
    assert host_tests("tests/infra/pristine").returncode == 0


def test_site_converges_a_fresh_host(lab):
    result = site()
    assert result.returncode == 0
    assert recap(result)["failed"] == 0 and recap(result)["changed"] > 0


def test_a_second_run_changes_nothing(lab):
    result = site()
    assert result.returncode == 0 and recap(result)["changed"] == 0


def test_check_diff_on_the_converged_host_changes_nothing(lab):
    result = site("--check", "--diff")
    assert result.returncode == 0 and recap(result)["changed"] == 0


def test_the_provisioned_host_suite_passes(lab):
    assert host_tests("tests/infra/provisioned").returncode == 0


def test_a_flushed_ruleset_is_caught_then_repaired(lab):
    check = "tests/infra/provisioned/test_egress.py"
    on_host("nft flush ruleset")
    caught = host_tests(check)
    assert caught.returncode == 1 and "test_outside_is_unreachable" in caught.stdout
    repaired = site()
    assert repaired.returncode == 0 and recap(repaired)["changed"] >= 1
    assert host_tests(check).returncode == 0


def test_password_ssh_is_caught_then_repaired(lab):
    check = "tests/infra/provisioned/test_base_hardening.py::test_sshd_refuses_password_login"
    # The first value sshd reads wins: put the weakening above everything, as a careless edit would.
    on_host("sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config && systemctl reload ssh")
    caught = host_tests(check)
    assert caught.returncode == 1 and "1 failed" in caught.stdout
    repaired = site()
    assert repaired.returncode == 0 and recap(repaired)["changed"] >= 1
    assert host_tests(check).returncode == 0


def test_an_altered_model_is_caught_and_the_play_fails_loudly(lab):
    check = "tests/infra/provisioned/test_registry.py::test_model_files_match_the_signed_manifest"
    lora = "/srv/model_registry/tenant_loras/all_tenants/sdxl_lightning_4step_lora@1.0.safetensors"
    size = int(on_host(f"stat -c %s {lora}"))
    on_host(f"printf x >> {lora}")
    try:
        caught = host_tests(check)
        assert caught.returncode == 1 and "1 failed" in caught.stdout
        refused = site()
        assert refused.returncode != 0 and recap(refused)["failed"] == 1
        assert "failed verification" in refused.stdout and "sdxl_lightning_4step_lora" in refused.stdout
        assert "changes nothing" in refused.stdout
    finally:
        on_host(f"truncate -s {size} {lora}")  # put the approved bytes back for the tests after this one
    assert host_tests(check).returncode == 0
    assert site().returncode == 0
