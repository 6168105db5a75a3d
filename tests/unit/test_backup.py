"""airlock backup against real BorgBackup repositories (local paths) and the real rrsync drop box
(reached through a local stand-in for ssh that runs the forced command as sshd would)."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airlock.audit.verify import verify
from airlock.backup import config as backup_config
from airlock.backup import jobs, status, worm
from airlock.backup.borg import BorgError
from airlock.cli import app

pytestmark = pytest.mark.skipif(
    not (shutil.which("borg") and shutil.which("rsync") and shutil.which("rrsync")),
    reason="needs borgbackup and rsync (apt-get install borgbackup rsync; .ci/run does)",
)


def write_plan(tmp_path: Path, audit_root: Path, worm_rsh: bool = True) -> Path:
    data = tmp_path / "host"
    for sub in ("models", "etc", "outputs", "keys"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    (data / "models" / "model.safetensors").write_bytes(b"\x00" * 4096)
    (data / "etc" / "airlock.toml").write_text("[server]\nport = 8443\n")
    (data / "outputs" / "out-1.enc").write_bytes(b"ALOUT01\n" + b"\x01" * 100)
    (data / "keys" / "kek").write_bytes(b"k" * 32)
    for name in ("data", "keys"):
        (tmp_path / f"{name}.passphrase").write_text(f"correct horse {name}\n")
    plan = f"""
host = "enclave"
status_file = "{tmp_path}/state/status.json"
borg_base_dir = "{tmp_path}/borg-base"
ssh_key = "{tmp_path}/id_ed25519"
known_hosts = "{tmp_path}/known_hosts"
audit_root = "{audit_root}"
outputs_dir = "{data}/outputs"
[repositories.data]
location = "{tmp_path}/repos/data"
passphrase_file = "{tmp_path}/data.passphrase"
[repositories.keys]
location = "{tmp_path}/repos/keys"
passphrase_file = "{tmp_path}/keys.passphrase"
[classes.models]
repository = "data"
paths = ["{data}/models"]
interval_seconds = 86400
[classes.config]
repository = "data"
paths = ["{data}/etc"]
interval_seconds = 86400
keep_within = "30d"
[classes.outputs]
repository = "data"
paths = ["{data}/outputs"]
interval_seconds = 86400
keep_within = "90d"
[classes.audit]
repository = "data"
paths = ["{audit_root}"]
interval_seconds = 3600
keep_within = "2190d"
[classes.keys]
repository = "keys"
paths = ["{data}/keys"]
interval_seconds = 86400
[worm]
destination = "backup:"
ssh_key = "{tmp_path}/id_worm"
staging = "{tmp_path}/worm-staging"
"""
    path = tmp_path / "backup.toml"
    path.write_text(plan)
    return path


@pytest.fixture
def drop_box(tmp_path):
    """What the backup host's authorized_keys line does: run rrsync with the client's command."""
    box = tmp_path / "worm-box"
    box.mkdir()
    rsh = tmp_path / "fake-ssh"
    rsh.write_text(
        "#!/bin/sh\n# ssh HOST COMMAND...: drop the options and the host, run the forced command\n"
        'while [ "$#" -gt 0 ]; do case "$1" in -*) shift 2;; *) shift; break;; esac; done\n'
        f'SSH_ORIGINAL_COMMAND="$*" exec rrsync -wo -no-del -no-overwrite {box}\n'
    )
    rsh.chmod(0o755)
    return box, str(rsh)


@pytest.fixture
def plan(tmp_path, write_days, root):
    write_days(days=3, per_day=2)
    return backup_config.load(write_plan(tmp_path, root))


def test_every_class_backs_up_then_restores_byte_identical(plan, tmp_path, root, verifier, clock):
    assert sorted(jobs.init(plan)) == ["data", "keys"]
    assert jobs.init(plan) == []  # a second init changes nothing
    plan = backup_config.load(tmp_path / "backup.toml")
    for klass in ("models", "config", "outputs", "keys"):
        jobs.run(plan, klass)
    (tmp_path / "id_worm").touch()
    target = tmp_path / "fresh"
    target.mkdir()
    # the audit class pushes the write-once copy too; without the drop box that part fails, on record
    with pytest.raises(Exception, match="write-once audit copy failed"):
        jobs.run(plan, "audit")
    recorded = status.read(plan.status_file)["classes"]["audit"]
    assert recorded["last_archive"].startswith("audit-") and recorded["worm"]["last_error"]
    report = jobs.restore(plan, target)
    assert [r["class"] for r in report["restored"]] == ["keys", "config", "models", "audit", "outputs"]
    for original in [p for p in (tmp_path / "host").rglob("*") if p.is_file()] + list(root.rglob("*.jsonl")):
        copy = target / original.relative_to("/")
        assert copy.read_bytes() == original.read_bytes(), original
    assert not verify(target / root.relative_to("/"), verifier, clock=clock).findings
    assert report["newest_audit_record_at"].startswith("2026-10-0")
    assert report["newest_output_at"]


def test_a_record_cut_in_half_by_the_backup_is_trimmed_and_the_chain_verifies(
    write_days, root, verifier, clock
):
    write_days(days=2, per_day=2)
    log = sorted(root.glob("2026-*/generations.jsonl"))[-1]
    day = log.parent
    whole = log.read_bytes()
    half = b'{"seq":99,"prev_hash":"ab'  # what a read in the middle of an append sees
    log.write_bytes(whole + half)
    assert verify(root, verifier, clock=clock).findings
    assert jobs.trim_partial_records(root) == [f"{day.name}/generations.jsonl: {len(half)} bytes"]
    assert log.read_bytes() == whole and not verify(root, verifier, clock=clock).findings
    assert jobs.trim_partial_records(root) == []


def test_restore_refuses_a_host_that_already_has_audit_days(plan, root):
    jobs.init(plan)
    jobs.run(plan, "keys")
    with pytest.raises(Exception, match="already holds audit days"):
        jobs.restore(plan, Path("/"))  # the plan's audit root is live
    # an operator who means it gets past that check; a class never backed up is then named
    with pytest.raises(Exception, match="has no config archive to restore"):
        jobs.restore(plan, Path("/"), force=True)


def test_retention_prunes_only_its_own_series(plan):
    jobs.init(plan)
    borg = jobs.borg_for(plan, "data")
    for _ in range(2):
        jobs.run(plan, "config")
        jobs.run(plan, "models")
    assert len(borg.archives("config")) == 2 and len(borg.archives("models")) == 2
    # an archive from before the window: only config's series loses it
    borg.run(
        "create",
        "--timestamp",
        "2020-01-01T00:00:00",
        "::config-2020-01-01T000000.000Z",
        str(plan.classes["config"].paths[0]),
    )
    borg.run(
        "create",
        "--timestamp",
        "2020-01-01T00:00:00",
        "::models-2020-01-01T000000.000Z",
        str(plan.classes["models"].paths[0]),
    )
    jobs.run(plan, "config")
    assert "config-2020-01-01T000000.000Z" not in [a["name"] for a in borg.archives("config")]
    assert "models-2020-01-01T000000.000Z" in [a["name"] for a in borg.archives("models")]  # kept permanently


def test_check_passes_then_finds_a_corrupted_segment(plan):
    jobs.init(plan)
    jobs.run(plan, "models")
    outcomes = jobs.check(plan)
    assert outcomes["data"]["encryption"] == "repokey-blake2" and outcomes["data"]["last_check_ok"]
    segments = [p for p in Path(plan.repositories["data"].location, "data").rglob("[0-9]*") if p.is_file()]
    segments.sort(key=lambda p: p.stat().st_size)
    victim = segments[-1]
    with open(victim, "r+b") as fh:  # flip a byte in the middle of the largest segment
        fh.seek(victim.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(BorgError):
        jobs.check(plan)
    recorded = status.read(plan.status_file)["repositories"]
    assert recorded["data"]["last_check_ok"] is False and recorded["data"]["last_check_error"]
    assert recorded["keys"]["last_check_ok"] is True  # every repository is still checked and recorded


def test_a_wrong_passphrase_or_a_missing_one_is_refused(plan, tmp_path):
    jobs.init(plan)
    Path(plan.repositories["data"].passphrase_file).write_text("wrong\n")
    with pytest.raises(BorgError, match="failed"):
        jobs.run(plan, "models")
    assert status.read(plan.status_file)["classes"]["models"]["last_error"]
    Path(plan.repositories["data"].passphrase_file).unlink()
    with pytest.raises(BorgError, match=r"passphrase .* is missing"):
        jobs.run(plan, "models")


def test_the_drop_box_takes_new_sealed_days_but_never_replaces_or_deletes(plan, drop_box, root, tmp_path):
    box, rsh = drop_box
    sent = worm.push(plan, rsh=rsh)
    names = sorted(p.name for p in box.rglob("*") if p.is_file())
    assert sent == len(names) and any(n.startswith("SHA256SUMS.") for n in names)
    days = sorted(p.name for p in (box / "days").iterdir())
    assert days and all(n[:10] < "2026-10-04" for n in days)  # only sealed days; today is open
    assert worm.push(plan, rsh=rsh) == 0  # nothing new
    # A sender that rewrites a day it already sent: the copy keeps the original.
    first = box / "days" / days[0]
    original = first.read_bytes()
    plan.worm.staging.mkdir(parents=True)
    forged = tmp_path / "forged"
    (forged / "days").mkdir(parents=True)
    (forged / "days" / days[0]).write_text("forged\n")
    subprocess.run(["rsync", "-r", "--rsh", rsh, f"{forged}/", "backup:"], check=False, capture_output=True)
    assert first.read_bytes() == original
    # ... and one that asks the receiver to delete (what `rsync --delete` from an empty folder does).
    empty = tmp_path / "empty"
    empty.mkdir()
    refused = subprocess.run(
        ["rsync", "-r", "--delete", "--rsh", rsh, f"{empty}/", "backup:"], capture_output=True, text=True
    )
    assert refused.returncode != 0 and first.exists()
    # ... and reading back is refused too (write-only).
    out = tmp_path / "out"
    leaked = subprocess.run(
        ["rsync", "-r", "--rsh", rsh, "backup:", f"{out}/"], capture_output=True, text=True
    )
    assert leaked.returncode != 0 and not out.exists()


def test_a_new_seal_is_sent_under_a_new_ledger_name(plan, drop_box, write_days):
    box, rsh = drop_box
    worm.push(plan, rsh=rsh)
    before = {p.name for p in (box / "integrity").iterdir()}
    write_days(days=1, per_day=1)  # the rollover seals another day
    assert worm.push(plan, rsh=rsh) >= 2
    after = {p.name for p in (box / "integrity").iterdir()}
    assert before < after and len(after) == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["classes"].update(images={}), "unknown asset class"),
        (lambda d: d["classes"]["config"].update(repository="offsite"), "is not under"),
        (lambda d: d["classes"]["config"].update(keep_within="30 days"), "keep_within"),
        (lambda d: d["classes"]["config"].update(paths=["etc/airlock"]), "absolute path"),
        (lambda d: d["classes"]["config"].update(paths=[]), "is empty"),
        (lambda d: d.pop("status_file"), "missing key 'status_file'"),
        (lambda d: d.update(surprise=1), "unknown key"),
    ],
)
def test_a_malformed_plan_is_refused_with_the_fix(tmp_path, root, edit, message):
    import tomllib

    data = tomllib.loads(write_plan(tmp_path, root).read_text())
    edit(data)
    with pytest.raises(backup_config.BackupConfigError, match=message):
        backup_config.parse(data)


def test_cli_runs_status_and_exit_codes(plan, tmp_path):
    runner = CliRunner()
    cfg = str(tmp_path / "backup.toml")
    assert runner.invoke(app, ["backup", "init", "--config", cfg]).exit_code == 0
    result = runner.invoke(app, ["backup", "run", "keys", "--config", cfg])
    assert result.exit_code == 0 and "archive keys-" in result.output
    assert runner.invoke(app, ["backup", "run", "images", "--config", cfg]).exit_code == 1
    listed = json.loads(runner.invoke(app, ["backup", "list", "--json", "--config", cfg]).output)
    assert len(listed["keys"]) == 1 and listed["models"] == []
    shown = json.loads(runner.invoke(app, ["backup", "status", "--json", "--config", cfg]).output)
    assert shown["classes"]["keys"]["last_error"] is None and shown["host"] == "enclave"
    assert stat.S_IMODE(plan.status_file.stat().st_mode) == 0o640
    assert runner.invoke(app, ["backup", "status", "--config", str(tmp_path / "nope.toml")]).exit_code == 2
