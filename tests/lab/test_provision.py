"""The lab bundle into a real lab host, then `playbooks/site.yml`, both ways: a tampered bundle is
refused with nothing published, site.yml refuses a host without a bundle, the bundle is imported on the
controller (custody audited) and published (a second import changes nothing); a fresh host converges,
a second run and a `--check --diff` run change nothing, the host suite passes; then the host is broken
four ways and the matching host checks must fail before site.yml repairs it (or, for an altered model
or an altered published bundle, fails loudly).

The tests run in file order on one lab (see conftest.running_lab); each leaves the host converged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
from labcheck import ROOT, airlock

BUNDLE = ROOT / ".cache" / "bundle" / "airlock-lab.tar"
CONTROLLER = ROOT / ".cache" / "lab-controller"  # the controller's store and audit (inventory/lab/host_vars)

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


def playbook(name: str, *args: str) -> subprocess.CompletedProcess:
    return in_mgmt(str(ROOT / ".venv" / "bin" / "ansible-playbook"), "-i", "inventory/lab", name, *args)


def site(*args: str) -> subprocess.CompletedProcess:
    return playbook("playbooks/site.yml", *args)


def recap(result: subprocess.CompletedProcess, host: str = "enclave") -> dict[str, int]:
    line = re.search(rf"^{host}\s*:\s*(.*)$", result.stdout, re.M)
    assert line, f"no PLAY RECAP for {host}"
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


def test_site_refuses_a_host_without_a_published_bundle(lab):
    # The backup host's play comes first; with no bundle there either, the run stops at it.
    for limit, host in (("all", "backup"), ("enclave", "enclave")):
        refused = site("--limit", limit)
        assert refused.returncode != 0 and recap(refused, host)["failed"] == 1
        assert "does not point at a published bundle" in refused.stdout


def test_a_tampered_bundle_is_refused_and_nothing_is_published(lab, tmp_path):
    shutil.rmtree(CONTROLLER, ignore_errors=True)
    tampered = tmp_path / "tampered.tar"
    shutil.copyfile(BUNDLE, tampered)
    with open(tampered, "r+b") as fh:  # one byte inside a member's data, not a header
        fh.seek(BUNDLE.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 1]))
    refused = playbook("playbooks/bundle_import.yml", "-e", f"bundle_import_file={tampered}")
    assert refused.returncode != 0 and "refused" in refused.stdout + refused.stderr
    assert "altered" in refused.stdout + refused.stderr
    assert not [p for p in (CONTROLLER / "bundles").iterdir() if not p.name.startswith(".")]
    assert on_host("test -e /srv/airlock/bundles && echo present || echo absent").strip() == "absent"
    # The refusal itself is on the record.
    events = "".join(p.read_text() for p in (CONTROLLER / "audit").rglob("system_events.jsonl"))
    assert "bundle.import_refused" in events


def test_the_bundle_is_imported_with_custody_then_published(lab):
    imported = playbook("playbooks/bundle_import.yml")
    assert imported.returncode == 0
    assert recap(imported, "localhost")["changed"] == 1 and recap(imported)["changed"] > 0
    records = [
        json.loads(line)
        for path in (CONTROLLER / "audit").rglob("model_changes.jsonl")
        for line in path.read_text().splitlines()
    ]
    names = sorted(r["model"]["name"] for r in records if r["event"] == "model.imported")
    assert names == ["sd_xl_base_1.0", "sdxl_lightning_4step_lora"]
    assert all(r["custody"]["media_id"] == "LAB-BUNDLE" for r in records)
    again = playbook("playbooks/bundle_import.yml")
    assert again.returncode == 0 and "already imported" in again.stdout
    assert recap(again, "localhost")["changed"] == 0 and recap(again)["changed"] == 0


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


def test_an_altered_published_bundle_stops_site_before_any_role(lab):
    check = "tests/infra/provisioned/test_bundle.py::test_every_published_file_matches_the_signed_checksums"
    lock = "/srv/airlock/bundles/current/wheels/requirements.lock"
    size = int(on_host(f"stat -L -c %s {lock}"))
    on_host(f"printf 'evil==1.0\\n' >> {lock}")
    try:
        assert host_tests(check).returncode == 1
        refused = site()
        assert refused.returncode != 0 and recap(refused)["failed"] == 1
        assert (
            "no longer matches its signed checksums" in refused.stdout
            and "requirements.lock" in refused.stdout
        )
        assert recap(refused)["changed"] == 0
    finally:
        on_host(f"truncate -s {size} {lock}")
    assert host_tests(check).returncode == 0
    assert site().returncode == 0
