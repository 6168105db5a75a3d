"""Backups and disaster recovery on the real lab (issue 12), after test_provision_evidence.py on the
same lab: the provisioned host has backed up every class to the backup host; the write-once audit
copy holds sealed days that the host cannot delete or rewrite, as its service account or as root;
`borg check` passes and catches a corrupted segment; then the host is destroyed and `airlock dr drill`
restores it onto a fresh root filesystem: old outputs decrypt, the audit chain verifies across the
restore, the API key made before the failure still works, and the drill report (RTO/RPO) makes the
drill's controls pass in an evidence pack.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from labcheck import ROOT, airlock
from test_provision import ENV, in_mgmt, playbook
from test_provision_evidence import MAPPED, build

CA = ROOT / ".cache" / "lab-artifacts" / "ca" / "ca.crt"
AIRLOCK = "/opt/airlock/venv/bin/airlock"
PYTHON = "/opt/airlock/venv/bin/python"
WORM = "/srv/airlock-backup/worm/enclave"
API = "https://10.231.0.10:8443"


def on(host: str, command: str, user: str | None = None) -> subprocess.CompletedProcess:
    """A command on a lab host as root (or as user); the result, not an assertion."""
    wrapped = f"sudo -u {user} sh -c {shlex.quote(command)}" if user else f"sudo sh -c {shlex.quote(command)}"
    return airlock("lab", "ssh", host, "--", wrapped)


def worm_listing() -> dict[str, str]:
    """name -> 'owner mode sha256' of each file in the host's write-once drop box, read on the backup host."""
    out = on("backup", f"cd {WORM} && find . -type f ! -name '.*' -exec stat -c '%n %U %a' {{}} + | sort")
    sums = on("backup", f"cd {WORM} && find . -type f ! -name '.*' -exec sha256sum {{}} + | sort -k2")
    assert out.returncode == 0 and sums.returncode == 0, out.stderr + sums.stderr
    digests = {line.split()[1]: line.split()[0] for line in sums.stdout.splitlines()}
    return {
        name: f"{owner} {mode} {digests[name]}"
        for name, owner, mode in (line.split() for line in out.stdout.splitlines())
    }


@pytest.fixture(scope="module")
def host(running_lab):
    if on("enclave", "test -s /var/lib/airlock/backup/status.json").returncode != 0:
        assert playbook("playbooks/bundle_import.yml").returncode == 0
        assert playbook("playbooks/site.yml").returncode == 0
    return running_lab


def test_every_class_is_backed_up_encrypted_with_its_retention(host):
    status = json.loads(on("enclave", f"{AIRLOCK} backup status --json").stdout)
    assert set(status["classes"]) == {"models", "config", "outputs", "audit", "keys"}
    for name, entry in status["classes"].items():
        assert entry["last_success"] and entry["last_error"] is None, (name, entry)
    assert status["classes"]["models"]["retention"] == "permanent"
    assert status["classes"]["outputs"]["retention"] == "keep-within 90d"
    assert status["classes"]["keys"]["repository"] == "keys"  # kept apart, its own passphrase
    assert {r["encryption"] for r in status["repositories"].values()} == {"repokey-blake2"}
    listed = json.loads(on("enclave", f"{AIRLOCK} backup list --json").stdout)
    assert all(listed[name] for name in status["classes"]), listed
    # The backup host holds ciphertext only: no passphrase there, and the repository says so.
    assert (
        on("backup", "grep -rl 'BEGIN\\|passphrase' /srv/airlock-backup/repos || true").stdout.strip() == ""
    )
    assert "repokey" not in on("backup", "ls /srv/airlock-backup/repos/enclave").stdout


def test_the_host_cannot_delete_or_rewrite_backed_up_audit_days(host):
    script = (Path(__file__).parent / "host_scripts" / "push_sealed_days.py").read_text()
    pushed = airlock("lab", "ssh", "enclave", "--", f"sudo {PYTHON} -c {shlex.quote(script)}")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert json.loads(pushed.stdout)["sent"] >= 1  # at least the ledger: its name is its content's hash
    before = worm_listing()
    days = [n for n in before if n.startswith("./days/")]
    assert len(days) >= 3 and all(v.startswith("root 444 ") for v in before.values()), before
    victim = days[0][len("./") :]
    ssh_worm = (
        "ssh -i /etc/airlock/backup/id_worm -o IdentitiesOnly=yes -o BatchMode=yes "
        "-o UserKnownHostsFile=/etc/airlock/backup/known_hosts"
    )
    ssh_borg = ssh_worm.replace("id_worm", "id_borg")
    attempts = {
        # as root on the host, with the write-once key: a shell command, a delete, an overwrite, a read
        "root: remote rm": f"{ssh_worm} airlock-worm@backup rm -rf {WORM}/days",
        "root: rsync --delete": "mkdir -p /tmp/empty/days && "
        f"rsync -r --delete -e '{ssh_worm}' /tmp/empty/ airlock-worm@backup:",
        "root: rsync read back": f"rsync -r -e '{ssh_worm}' airlock-worm@backup: /tmp/stolen/",
        # as root, with the borg key: borg serve is confined to the host's repositories
        "root: borg on the drop box": f"BORG_RSH='{ssh_borg}' BORG_PASSPHRASE=x borg list ssh://airlock-backup@backup{WORM}",
        "root: shell through borg": f"{ssh_borg} airlock-backup@backup rm -rf {WORM}",
        # as the service account: the keys are root's
        "airlock: read the key": "cat /etc/airlock/backup/id_worm",
        "airlock: use the key": f"{ssh_worm} airlock-worm@backup true",
    }
    for what, command in attempts.items():
        user = "airlock" if what.startswith("airlock:") else None
        result = on("enclave", command, user)
        assert result.returncode != 0, (what, result.stdout, result.stderr)
    # An overwrite "succeeds" as a transfer but changes nothing: the receiver ignores existing names.
    forge = (
        f"mkdir -p /tmp/forged/days && echo forged > /tmp/forged/{victim} && "
        f"rsync -r -e '{ssh_worm}' /tmp/forged/ airlock-worm@backup:"
    )
    on("enclave", forge)
    assert worm_listing() == before
    assert not on("enclave", "ls /tmp/stolen 2>/dev/null").stdout.strip()


def test_repository_check_passes_and_a_corrupted_segment_is_caught(host):
    assert on("enclave", f"{AIRLOCK} backup check").returncode == 0
    segment = on(
        "backup", "find /srv/airlock-backup/repos/enclave/data/data -type f -size +1k | sort | tail -n 1"
    ).stdout.strip()
    assert segment, "no segment in the data repository"
    flip = (
        f'python3 -c \'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); i=len(b)//2; '
        f'b[i]^=0xFF; open(p,"wb").write(b)\' {segment}'
    )
    assert on("backup", flip).returncode == 0
    try:
        caught = on("enclave", f"{AIRLOCK} backup check")
        assert caught.returncode == 1 and "failed" in caught.stderr, caught.stdout + caught.stderr
        status = json.loads(on("enclave", f"{AIRLOCK} backup status --json").stdout)
        assert status["repositories"]["data"]["last_check_ok"] is False
        # The backup host's own check (no key) catches it too.
        assert on("backup", "systemctl start airlock-backup-server-check.service").returncode != 0
    finally:
        assert on("backup", flip).returncode == 0  # the same flip again restores the byte
    assert on("enclave", f"{AIRLOCK} backup check").returncode == 0


@pytest.fixture(scope="module")
def drill(host, tmp_path_factory):
    """Generate with a new key, back up, then destroy the host and run the drill."""
    made = on(
        "enclave",
        # lab_tenant: a tenant the inventory attests (ITAR us_person_access fails any other, rightly)
        f"runuser -u airlock -- {AIRLOCK} apikeys create --tenant lab_tenant "
        "--permissions generate,jobs:read --expires 30d --created-by lab-test",
    )
    key = next(
        line.split(":", 1)[1].strip() for line in made.stdout.splitlines() if line.startswith("api_key:")
    )
    folder = tmp_path_factory.mktemp("drill")
    key_file = folder / "api-key"
    with os.fdopen(os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
        fh.write(key + "\n")
    body = json.dumps(
        {
            "prompt": "a lighthouse before the storm",
            "performance_selection": "Lightning",
            "image_seed": 11,
            "aspect_ratios_selection": "1024*1024",
        }
    )
    made_image = in_mgmt(
        "curl",
        "-sS",
        "--fail-with-body",
        "--cacert",
        str(CA),
        "-H",
        f"X-API-KEY: {key}",
        "-H",
        "Content-Type: application/json",
        f"{API}/v1/generation/text-to-image",
        "-d",
        body,
    )
    assert made_image.returncode == 0 and json.loads(made_image.stdout)[0]["finish_reason"] == "SUCCESS"
    # What the hourly and daily timers would do before the disaster (keys went on change already).
    assert (
        on(
            "enclave",
            "systemctl start airlock-backup@outputs.service airlock-backup@audit.service "
            "airlock-backup@keys.service",
        ).returncode
        == 0
    )
    assert on("enclave", "touch /root/only-on-the-old-host").returncode == 0
    drills = folder / "drills"
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "airlock"),
            "dr",
            "drill",
            "--inventory",
            "inventory/lab",
            "--host",
            "enclave",
            "--api-key-file",
            str(key_file),
            "--ca",
            str(CA),
            "--drills-dir",
            str(drills),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert key not in result.stdout + result.stderr  # the key is never printed
    reports = list(drills.glob("*/report.json"))
    assert len(reports) == 1, result.stdout + result.stderr
    return result, json.loads(reports[0].read_text()), drills


def test_the_drill_restores_a_destroyed_host_and_measures_rto_and_rpo(drill):
    result, report, _ = drill
    assert result.returncode == 0, report
    assert report["result"] == "pass" and [p["name"] for p in report["phases"]] == [
        "rebuild",
        "bundle",
        "restore",
        "first_generation",
        "verify",
    ]
    checks = {c["name"]: c for c in report["checks"]}
    assert all(c["ok"] for c in checks.values()) and set(checks) >= {
        "pre_existing_api_key",
        "outputs_decrypt",
        "models_verified",
        "audit_chain",
    }
    assert 0 < report["rto_seconds"] < report["rto_target_seconds"]
    assert 0 <= report["rpo"]["audit_seconds"] < 600 and 0 <= report["rpo"]["outputs_seconds"] < 600
    assert {r["class"] for r in report["restored"]} == {"models", "config", "outputs", "audit", "keys"}
    # A fresh host really: what only the old one had is gone; the restore is on the audit record.
    assert on("enclave", "test -e /root/only-on-the-old-host").returncode == 1
    events = on("enclave", "cat /var/log/airlock/audit/*/system_events.jsonl").stdout
    assert '"event":"backup.restored"' in events
    # After the restore, backups continue from the new host.
    status = json.loads(on("enclave", f"{AIRLOCK} backup status --json").stdout)
    assert all(e["last_success"] > report["started_at"] for e in status["classes"].values())


def test_the_drill_report_makes_the_recovery_controls_pass(drill, tmp_path):
    _, report, drills = drill
    result, results = build(tmp_path, "pack", "--drill-report", str(drills))
    out = tmp_path / "pack"
    failing = [c for c in results["checks"] if c["status"] == "fail"]
    assert result.returncode == 0 and not failing, failing
    (check,) = [c for c in results["checks"] if c["id"] == "dr_drill_recent"]
    assert check["status"] == "pass" and report["drill_id"] in check["reason"]
    controls = {(f["id"], c["id"]): c["status"] for f in results["frameworks"] for c in f["controls"]}
    assert all(controls[pair] == "pass" for pair in MAPPED["dr_drill_recent"])
    assert (out / "raw" / "dr" / "drill_report.json").is_file()
