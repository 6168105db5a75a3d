"""Evidence packs from the real lab host, both ways: the provisioned host passes every automated
control of every framework and the pack verifies; then the host is broken five ways, one at a time,
and exactly the controls that rest on the broken property turn FAIL, with the raw evidence showing
the break; restored, they pass again.

No restore drill has run yet at this point of the lab sequence (backups are configured by site.yml,
but `airlock dr drill` comes later), so these packs are built without --drill-report: the drill's
controls are the one expected failure, each with the "no disaster-recovery drill report" reason.

Runs after test_provision.py (file order, one lab); on its own it provisions the host first.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest
from labcheck import ROOT, airlock
from test_provision import ENV, in_mgmt, on_host, playbook

from compliance import catalogs

KEYS = ROOT / ".cache" / "lab-artifacts" / "evidence-keys"
MAPPED: dict[str, set[tuple[str, str]]] = {}  # check id -> the (framework, control) pairs it serves
for _framework in catalogs.load_all():
    for _control in _framework["controls"]:
        for _check in _control["checks"]:
            MAPPED.setdefault(_check, set()).add((_framework["id"], _control["id"]))


@pytest.fixture(scope="module")
def host(running_lab):
    if airlock("lab", "ssh", "enclave", "--", "systemctl is-active --quiet airlock.service").returncode != 0:
        assert playbook("playbooks/bundle_import.yml").returncode == 0
        assert playbook("playbooks/site.yml").returncode == 0
    return running_lab


@pytest.fixture(scope="module")
def packs(tmp_path_factory):
    return tmp_path_factory.mktemp("evidence")


def build(packs: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = packs / name
    result = in_mgmt(
        str(ROOT / ".venv" / "bin" / "airlock"),
        "evidence",
        "build",
        "--inventory",
        "inventory/lab",
        "--out",
        str(out),
        "--key",
        str(KEYS),
        *extra,
        timeout=600,
    )
    assert (out / "results.json").is_file(), result.stdout + result.stderr
    return result, json.loads((out / "results.json").read_text())


# Issue 12: no drill report exists yet in this sequence, so dr_drill_recent (and only it) fails.
NO_DRILL_YET = {"dr_drill_recent"}
NO_DRILL_CONTROLS = MAPPED["dr_drill_recent"]


def assert_only_the_drill_is_missing(results: dict) -> None:
    (drill,) = [c for c in results["checks"] if c["id"] == "dr_drill_recent"]
    assert drill["status"] == "fail" and drill["reason"].startswith("no disaster-recovery drill report"), (
        drill
    )


def failing(results: dict) -> tuple[set[str], set[tuple[str, str]]]:
    checks = {c["id"] for c in results["checks"] if c["status"] == "fail"}
    controls = {
        (f["id"], c["id"]) for f in results["frameworks"] for c in f["controls"] if c["status"] == "fail"
    }
    return checks, controls


def assert_all_pass(result: subprocess.CompletedProcess, results: dict) -> None:
    assert result.returncode == 1, result.stdout  # 1: the drill's controls fail (no report yet)
    assert failing(results) == (NO_DRILL_YET, NO_DRILL_CONTROLS)
    assert_only_the_drill_is_missing(results)
    host_checks = [c for c in results["checks"] if c["subject"] == "enclave"]
    assert host_checks and all(c["status"] == "pass" for c in host_checks), host_checks


def test_the_provisioned_host_passes_every_automated_control_and_the_pack_verifies(host, packs):
    result, results = build(packs, "baseline")
    assert_all_pass(result, results)
    for framework in results["frameworks"]:  # every framework has evidence, not just an absence of FAIL
        assert framework["summary"]["pass"] >= 10, framework["id"]
    pack = packs / "baseline"
    for name in (
        "index.html",
        "assessment-plan.json",
        "assessment-results.json",
        "poam.json",
        "diagram.svg",
        "procedures/incident-response.md",
        "raw/enclave/nft_ruleset.json",
        "raw/enclave/tls_probe.json",
    ):
        assert (pack / name).is_file(), name
    verified = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "airlock"),
            "evidence",
            "verify",
            str(pack),
            "--trust",
            str(KEYS / "signing.pub"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


IMPOSTOR = textwrap.dedent("""\
    import socket, ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain("/etc/airlock/tls/server.crt", "/etc/airlock/tls/server.key")
    server = socket.create_server(("0.0.0.0", 8443))
    while True:
        conn, _ = server.accept()
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except OSError:
            conn.close()
""")
WAIT_FOR_API = "for i in $(seq 120); do ss -Htln | grep -q ':8443 ' && exit 0; sleep 1; done; exit 1"
AUDIT_DAY = "$(ls -d /var/log/airlock/audit/20* | tail -n 1)"


def tamper_audit(old: str, new: str) -> str:
    """Change the first record's outcome in place (same length): what an insider editing the log does."""
    script = (
        "import glob,sys; p=sorted(glob.glob('/var/log/airlock/audit/20*/system_events.jsonl'))[-1]; "
        "b=open(p,'rb').read(); i=b.index(b'\\n'); first=b[:i]; "
        f'assert b\'"outcome":"{old}"\' in first, first; '
        f'open(p,\'r+b\').write(first.replace(b\'"outcome":"{old}"\', b\'"outcome":"{new}"\', 1))'
    )
    return f"python3 -c {shlex.quote(script)}"


LORA = "/srv/model_registry/tenant_loras/all_tenants/sdxl_lightning_4step_lora@1.0.safetensors"

# name -> (break, restore, the checks that must fail, (artifact, text the raw evidence must show))
BREAKS = {
    "flushed-nftables": (
        "nft flush ruleset",
        "nft -f /etc/nftables.conf",
        {"egress_default_deny", "egress_rules_match_policy", "egress_probe_blocked"},
        ("egress_probe.json", '"reached": true'),
    ),
    "password-ssh": (
        "sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config && systemctl reload ssh",
        "sed -i '1d' /etc/ssh/sshd_config && systemctl reload ssh",
        {"ssh_key_only"},
        ("sshd_effective.txt", "passwordauthentication yes"),
    ),
    "altered-audit-record": (
        tamper_audit("success", "failure"),
        tamper_audit("failure", "success"),
        {"audit_chain_intact"},
        ("audit_verify.json", "system_events.jsonl"),
    ),
    "replaced-model-file": (
        f"cp {LORA} /root/lora.orig && printf x >> {LORA}",
        f"cp /root/lora.orig {LORA} && rm /root/lora.orig",
        {"models_verified"},
        ("models_verify.txt", "sdxl_lightning_4step_lora"),
    ),
    # A TLS-terminating endpoint that also speaks TLS 1.2 takes the service's place on its port.
    "tls-1.2-endpoint": (
        "systemctl stop airlock.service && "
        f"systemd-run --unit airlock-impostor python3 -c {shlex.quote(IMPOSTOR)} && {WAIT_FOR_API}",
        f"systemctl stop airlock-impostor && systemctl start airlock.service && {WAIT_FOR_API}",
        {"tls13_only", "service_hardened"},
        ("tls_probe.json", '"version": "TLSv1.2"'),
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_a_broken_host_fails_exactly_the_controls_that_rest_on_it(host, packs, name):
    breaking, restoring, checks, (artifact, shows) = BREAKS[name]
    on_host(breaking)
    try:
        result, results = build(packs, name)
    finally:
        on_host(restoring)
    assert result.returncode == 1, result.stdout
    expected_controls = set().union(*(MAPPED[c] for c in checks))
    assert failing(results) == (checks | NO_DRILL_YET, expected_controls | NO_DRILL_CONTROLS)
    assert_only_the_drill_is_missing(results)
    failed = [c for c in results["checks"] if c["status"] == "fail" and c["id"] not in NO_DRILL_YET]
    assert all(c["evidence"] for c in failed) and any(
        f"raw/enclave/{artifact}" in c["evidence"] for c in failed
    )
    assert shows in (packs / name / "raw" / "enclave" / artifact).read_text()
    index = (packs / name / "index.html").read_text()
    assert "FAIL" in index and all(c in index for c in checks)

    restored, results = build(packs, f"{name}-restored")
    assert_all_pass(restored, results)
