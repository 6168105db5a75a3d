"""Backups and disaster recovery in the evidence pack (issue 12), both ways.

`backup_scheduled` judges what `airlock backup run` recorded on the host (status.json) and the backup
timers; `dr_drill_recent` judges the newest `airlock dr drill` report given with --drill-report. The
captured raw/ (tests/unit/data/evidence_raw) holds a good status, good timers and a good drill report:
both pass there, and each break of the live system or the drill turns exactly its check, and the
controls citing it, to FAIL with a reason that says what is wrong.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airlock.cli import app
from airlock.keys import init_keys, load_verifier
from compliance import DRILL_MAX_AGE_DAYS, catalogs, collect, pack
from compliance.checks import BACKUP_TIMERS, CHECKS, FAIL, NA, NO_DRILL, PASS
from compliance.collectors import host_probe
from compliance.evaluate import build_results

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "evidence_raw"
POLICY = ROOT / "policies" / "egress.yml"
TS = "2026-12-04T06:00:00Z"
STATUS = "/var/lib/airlock/backup/status.json"

runner = CliRunner()


# ---- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def src(tmp_path) -> Path:
    """A pack-like folder holding a copy of the captured raw/ (what `--from-raw` reads)."""
    shutil.copytree(DATA, tmp_path / "src" / "raw")
    return tmp_path / "src"


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dr-keys") / "keys"
    return init_keys(folder)


def edit_json(path: Path, fn: Callable[[dict], object]) -> None:
    """Change a JSON file in place (fn mutates; what it returns is ignored)."""
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def status_edit(fn: Callable[[dict], object]):
    return lambda raw: edit_json(raw / "enclave" / "backup_status.json", fn)


def drill_edit(fn: Callable[[dict], object]):
    return lambda raw: edit_json(raw / "dr" / "drill_report.json", fn)


def set_rc(raw: Path, path: str, rc: int, stderr: str) -> None:
    index = raw / "collection.json"
    collection = json.loads(index.read_text())
    (entry,) = [a for a in collection["artifacts"] if a["path"] == path]
    entry.update(rc=rc, stderr=stderr)
    index.write_text(json.dumps(collection, indent=2, sort_keys=True) + "\n")


def timer_block(raw: Path, timer: str, new: str) -> None:
    path = raw / "enclave" / "timers.txt"
    old = f"Id={timer}\nActiveState=active\nUnitFileState=enabled\n"
    text = path.read_text()
    assert old in text, timer
    path.write_text(text.replace(old, new))


def checks_of(results: dict) -> dict[str, dict]:
    return {c["id"]: c for c in results["checks"] if c["subject"] in ("enclave", "dr")}


def statuses(results: dict) -> dict[tuple[str, str], str]:
    return {(f["id"], c["id"]): c["status"] for f in results["frameworks"] for c in f["controls"]}


def citing(check_id: str) -> set[tuple[str, str]]:
    return {
        (catalog["id"], control["id"])
        for catalog in catalogs.load_all()
        for control in catalog["controls"]
        if check_id in control["checks"]
    }


def failing_controls(results: dict) -> set[tuple[str, str]]:
    return {key for key, status in statuses(results).items() if status == FAIL}


def report(finished_at: datetime, drill_id: str | None = None, **fields) -> dict:
    """A drill report as `airlock dr drill` writes it (the format of issue 12)."""
    stamp = finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    started = (finished_at - timedelta(minutes=7)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "schema": "airlock.dr-drill/1",
        "drill_id": drill_id or finished_at.strftime("%Y-%m-%dT%H%M%SZ-enclave"),
        "host": "enclave",
        "inventory": "inventory/lab",
        "started_at": started,
        "finished_at": stamp,
        "first_generation_at": stamp,
        "rto_seconds": 312.4,
        "rto_target_seconds": 14400,
        "rpo": {
            "audit_seconds": 95.2,
            "outputs_seconds": 600.1,
            "newest_audit_record_at": started,
            "newest_output_at": started,
        },
        "rpo_target_seconds": 86400,
        "restored": [{"class": "audit", "repository": "data", "archive": "audit-x", "time": started}],
        "phases": [{"name": "rebuild", "started_at": started, "seconds": 31.2, "ok": True, "detail": ""}],
        "checks": [{"name": "audit_chain", "ok": True, "detail": "intact"}],
        "result": "pass",
        "api_key_id": "ak_3f9c2a7d1e04",
        **fields,
    }


def write_report(folder: Path, data: dict | str) -> Path:
    path = folder / (data["drill_id"] if isinstance(data, dict) else "broken") / "report.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data, indent=2) if isinstance(data, dict) else data)
    return path


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def build_with_drill(out: Path, drill: Path | None, signer, **options) -> tuple[Path, dict]:
    """A real collection (controller + drill report, no hosts), evaluated, rendered and signed."""

    def fill(staging: Path) -> None:
        collect.collect(
            staging, system="dr", inventory=None, policy_path=POLICY, drill_report=drill, **options
        )

    return pack.build(out, fill, signer, TS)


def cli(*args) -> object:
    return runner.invoke(app, ["evidence", *map(str, args)], terminal_width=250)


# ---- backups on the host -------------------------------------------------------------------------


def test_the_captured_backup_status_and_timers_pass(src):
    results = build_results(src, TS)
    check = checks_of(results)["backup_scheduled"]
    assert check["status"] == PASS, check["reason"]
    assert check["reason"].startswith("5 classes backed up on schedule; newest audit backup 12 min old")
    assert "2 encrypted repositories checked" in check["reason"]
    assert "6 backup timers active and enabled" in check["reason"]
    assert check["evidence"] == ["raw/enclave/backup_status.json", "raw/enclave/timers.txt"]
    for control in citing("backup_scheduled"):
        assert statuses(results)[control] == PASS, control


def test_backup_ages_are_judged_at_collection_not_when_the_pack_is_built(src):
    much_later = build_results(src, "2027-06-01T00:00:00Z")
    assert checks_of(much_later)["backup_scheduled"]["status"] == PASS


def missing_file(raw):
    (raw / "enclave" / "backup_status.json").write_text("")
    set_rc(raw, "raw/enclave/backup_status.json", 1, f"[Errno 2] No such file or directory: '{STATUS}'")


def unreadable_file(raw):
    (raw / "enclave" / "backup_status.json").write_text("")
    set_rc(raw, "raw/enclave/backup_status.json", 1, f"[Errno 13] Permission denied: '{STATUS}'")


def stale_audit(at: str):
    return status_edit(lambda s: s["classes"]["audit"].update(last_success=at, last_attempt=at))


# (break, reason fragment of backup_scheduled); collected at 2026-12-04T05:48:00Z
BACKUP_BREAKS = [
    pytest.param(
        missing_file,
        f"backup status {STATUS} missing: no backup has run",
        id="status-file-missing",
    ),
    pytest.param(
        unreadable_file,
        f"backup status {STATUS} unreadable: [Errno 13] Permission denied",
        id="status-file-unreadable",
    ),
    pytest.param(
        lambda raw: (raw / "enclave" / "backup_status.json").write_text("{truncated"),
        "backup_status.json is not JSON",
        id="status-not-json",
    ),
    pytest.param(
        status_edit(lambda s: s.update(version=2)),
        "version 2 unknown (expected 1)",
        id="status-unknown-version",
    ),
    pytest.param(
        stale_audit("2026-12-04T03:30:00Z"),  # 2 h 18 min before collection, interval 1 h
        "audit backup last succeeded 2.3 h ago (2026-12-04T03:30:00Z), over twice its 1 h interval",
        id="stale-audit-backup",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"]["models"].update(last_success=None)),
        "models backup never succeeded",
        id="class-never-succeeded",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"].pop("keys")),
        "backup class keys missing",
        id="missing-class",
    ),
    pytest.param(
        status_edit(
            lambda s: s["classes"]["outputs"].update(
                last_attempt="2026-12-04T05:10:00Z",
                last_error="ssh: connect to host backup: No route to host",
            )
        ),
        "outputs backup failed at 2026-12-04T05:10:00Z: ssh: connect to host backup: No route to host",
        id="class-last-error",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"]["keys"].update(repository="offsite")),
        "keys backup goes to repository 'offsite', unknown",
        id="unknown-repository",
    ),
    pytest.param(
        status_edit(lambda s: s["repositories"]["data"].update(encryption="none")),
        "repository data is not encrypted (encryption none)",
        id="encryption-none",
    ),
    pytest.param(
        status_edit(lambda s: s["repositories"]["keys"].pop("encryption")),
        "repository keys is not encrypted (encryption missing)",
        id="encryption-missing",
    ),
    pytest.param(
        status_edit(
            lambda s: s["repositories"]["keys"].update(
                last_check_ok=False, last_check_error="segment 12: CRC mismatch"
            )
        ),
        "repository keys check not ok: segment 12: CRC mismatch",
        id="repository-check-failed",
    ),
    pytest.param(
        status_edit(lambda s: s["repositories"]["data"].update(last_check="2026-11-25T04:00:00Z")),
        "repository data last checked 9.1 days ago (2026-11-25T04:00:00Z), over 8 days",
        id="repository-check-stale",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"]["audit"].pop("worm")),
        "audit has no write-once copy (worm.last_success missing)",
        id="worm-missing",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"]["audit"]["worm"].update(last_success="2026-12-04T02:00:00Z")),
        "audit write-once copy last succeeded 3.8 h ago (2026-12-04T02:00:00Z)",
        id="worm-stale",
    ),
    pytest.param(
        status_edit(lambda s: s["classes"]["audit"]["worm"].update(last_error="rsync: permission denied")),
        "audit write-once copy failed: rsync: permission denied",
        id="worm-error",
    ),
    pytest.param(
        lambda raw: timer_block(
            raw,
            "airlock-backup-audit.timer",
            "Id=airlock-backup-audit.timer\nActiveState=active\nUnitFileState=disabled\n",
        ),
        "airlock-backup-audit.timer is active/disabled",
        id="timer-disabled",
    ),
    pytest.param(  # what `systemctl show` prints for a unit that does not exist
        lambda raw: timer_block(
            raw,
            "airlock-backup-check.timer",
            "Id=airlock-backup-check.timer\nActiveState=inactive\nUnitFileState=\n",
        ),
        "airlock-backup-check.timer is inactive/-",
        id="timer-not-installed",
    ),
]


@pytest.mark.parametrize(("mutate", "reason"), BACKUP_BREAKS)
def test_each_backup_break_fails_backup_scheduled_with_its_reason(src, mutate, reason):
    mutate(src / "raw")
    results = build_results(src, TS)
    checks = checks_of(results)
    failing = {i for i, c in checks.items() if c["status"] == FAIL}
    assert failing == {"backup_scheduled"}, {i: checks[i]["reason"] for i in failing}
    assert reason in checks["backup_scheduled"]["reason"]
    assert failing_controls(results) == citing("backup_scheduled")


def test_a_backup_just_inside_twice_its_interval_passes(src):
    stale_audit("2026-12-04T03:49:00Z")(src / "raw")  # 1 h 59 min before collection
    assert checks_of(build_results(src, TS))["backup_scheduled"]["status"] == PASS


def test_every_problem_is_counted_when_several_break(src):
    status_edit(lambda s: s["repositories"]["data"].update(encryption="none"))(src / "raw")
    status_edit(lambda s: s["classes"].pop("models"))(src / "raw")
    for timer in BACKUP_TIMERS[:3]:
        timer_block(src / "raw", timer, f"Id={timer}\nActiveState=inactive\nUnitFileState=disabled\n")
    reason = checks_of(build_results(src, TS))["backup_scheduled"]["reason"]
    assert reason.startswith("backup class models missing; repository data is not encrypted")
    assert reason.endswith("(+2 more)")


# ---- the host probe: what it records for the check ------------------------------------------------


def probe_config(tmp_path: Path, **extra) -> dict:
    state = tmp_path / "state"
    (state / "backup").mkdir(parents=True)
    return {
        "airlock": "/nonexistent/airlock",
        "audit_root": str(tmp_path / "audit"),
        "registry_root": str(tmp_path / "registry"),
        "trust_key": str(tmp_path / "registry.pub"),
        "state_dir": str(state),
        "config_dir": str(tmp_path / "etc"),
        "service_unit": "airlock.service",
        "timers": ["airlock-audit-seal.timer", "airlock-backup-audit.timer"],
        "audit_trust": str(tmp_path / "signing.pub"),
        "nftables_conf": str(tmp_path / "nftables.conf"),
        "bundle_dir": str(tmp_path / "bundle"),
        "signing_key_dir": str(tmp_path / "keys"),
        "egress_outside": [],
        "egress_allowed": [],
        **extra,
    }


@pytest.fixture
def commands(monkeypatch) -> list[list[str]]:
    """The probe's commands, recorded instead of run (it reads files for real)."""
    ran: list[list[str]] = []

    def fake_run(argv, env=None):
        ran.append(argv)
        return {"source": " ".join(argv), "rc": 0, "content": "", "stderr": "", "collected_at": "t"}

    monkeypatch.setattr(host_probe, "run", fake_run)
    return ran


def test_probe_reads_the_backup_status_and_shows_every_backup_timer(tmp_path, commands):
    cfg = probe_config(tmp_path)
    location = "ssh://airlock-backup:s3cret@backup.lab.airlock.test/srv/airlock-backup/repos/enclave/data"
    status = {"version": 1, "repositories": {"data": {"location": location}}}
    Path(cfg["state_dir"], "backup", "status.json").write_text(json.dumps(status))
    artifacts = host_probe.collect(cfg)["artifacts"]
    recorded = artifacts["backup_status.json"]
    assert (recorded["rc"], recorded["source"]) == (0, f"read {cfg['state_dir']}/backup/status.json")
    assert "s3cret" not in recorded["content"]  # a password in a URL never leaves the host
    assert json.loads(recorded["content"])["repositories"]["data"]["location"] == location.replace(
        "s3cret", "***"
    )
    (shown,) = [argv for argv in commands if "Id,ActiveState,UnitFileState" in argv]
    units = shown[shown.index("Id,ActiveState,UnitFileState") + 1 :]
    # each once: the config's own first, then the backup timers it did not list
    assert units == [
        "airlock-audit-seal.timer",
        "airlock-backup-audit.timer",
        *(t for t in BACKUP_TIMERS if t != "airlock-backup-audit.timer"),
    ]
    assert set(BACKUP_TIMERS) == set(host_probe.BACKUP_TIMERS)  # the check and the probe agree


def test_probe_records_a_missing_status_as_missing_and_the_check_says_so(tmp_path, commands, src):
    cfg = probe_config(tmp_path, backup_status=str(tmp_path / "elsewhere" / "status.json"))
    recorded = host_probe.collect(cfg)["artifacts"]["backup_status.json"]
    assert recorded["rc"] == 1 and "No such file or directory" in recorded["stderr"]
    (src / "raw" / "enclave" / "backup_status.json").write_text(recorded["content"])
    set_rc(src / "raw", "raw/enclave/backup_status.json", recorded["rc"], recorded["stderr"])
    check = checks_of(build_results(src, TS))["backup_scheduled"]
    assert (check["status"], check["reason"]) == (
        FAIL,
        f"backup status {STATUS} missing: no backup has run (is the backup client installed?)",
    )


# ---- the restore drill ----------------------------------------------------------------------------


def test_the_captured_drill_report_passes(src):
    results = build_results(src, TS)
    check = checks_of(results)["dr_drill_recent"]
    assert (check["status"], check["subject"], check["evidence"]) == (
        PASS,
        "dr",
        ["raw/dr/drill_report.json"],
    )
    assert check["reason"] == (
        "drill 2026-12-03T142000Z-enclave on enclave passed 15.4 h ago: RTO 312 s (target 14400 s), "
        "RPO audit 95 s, outputs 600 s (target 86400 s)"
    )
    for control in citing("dr_drill_recent"):
        assert statuses(results)[control] == PASS, control


def drop_drill(raw: Path) -> None:
    """A collection with hosts but no --drill-report: the dr subject exists, no report in it."""
    (raw / "dr" / "drill_report.json").unlink()
    (raw / "dr").rmdir()
    index = raw / "collection.json"
    collection = json.loads(index.read_text())
    collection["artifacts"] = [a for a in collection["artifacts"] if a["subject"] != "dr"]
    index.write_text(json.dumps(collection, indent=2, sort_keys=True) + "\n")


def collected_before_drills(raw: Path) -> None:
    """raw/ of a pack built before drills were collected: no dr subject at all."""
    drop_drill(raw)
    index = raw / "collection.json"
    collection = json.loads(index.read_text())
    del collection["subjects"]["dr"]
    index.write_text(json.dumps(collection, indent=2, sort_keys=True) + "\n")


def failed_check(raw):
    drill_edit(
        lambda r: r["checks"].append({"name": "outputs_decrypt", "ok": False, "detail": "1 of 3 failed"})
    )(raw)


# (break, reason fragment of dr_drill_recent); the report was collected 2026-12-04T05:48:06Z
DRILL_BREAKS = [
    pytest.param(drop_drill, NO_DRILL, id="no-report"),
    pytest.param(collected_before_drills, NO_DRILL, id="raw-from-before-drills"),
    pytest.param(drill_edit(lambda r: r.update(result="fail")), "result fail", id="result-fail"),
    pytest.param(failed_check, "drill check outputs_decrypt failed: 1 of 3 failed", id="failed-check"),
    pytest.param(
        drill_edit(lambda r: r["phases"][2].update(ok=False, detail="borg extract: passphrase wrong")),
        "phase restore failed: borg extract: passphrase wrong",
        id="failed-phase",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(checks=[])),
        "the report lists no checks: nothing shows the restore worked",
        id="no-checks",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(rto_seconds=15000.0)),
        "RTO 15000 s over its target 14400 s",
        id="rto-over",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(rto_seconds=None)),
        "RTO not measured (null in the report)",
        id="rto-null",
    ),
    pytest.param(
        drill_edit(lambda r: r["rpo"].update(audit_seconds=None)),
        "RPO (audit) not measured (null in the report)",
        id="rpo-null",
    ),
    pytest.param(
        drill_edit(lambda r: r["rpo"].update(outputs_seconds=90000)),
        "RPO (outputs) 90000 s over its target 86400 s",
        id="rpo-over",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(finished_at="2026-09-01T00:00:00Z")),
        "finished 94.2 days ago (2026-09-01T00:00:00Z), older than 92 days",
        id="too-old",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(finished_at="2026-12-05T12:00:00Z")),
        "finished_at 2026-12-05T12:00:00Z is later than its collection",
        id="from-the-future",
    ),
    pytest.param(
        drill_edit(lambda r: r.update(schema="airlock.dr-drill/2")),
        "drill report schema 'airlock.dr-drill/2' unknown (expected airlock.dr-drill/1)",
        id="unknown-schema",
    ),
    pytest.param(
        lambda raw: (raw / "dr" / "drill_report.json").write_text("{"),
        "drill_report.json is not JSON",
        id="not-json",
    ),
    pytest.param(
        drill_edit(lambda r: r.pop("rto_target_seconds")),
        "evidence missing or unreadable: drill_report.json: KeyError('rto_target_seconds')",
        id="field-missing",
    ),
]


@pytest.mark.parametrize(("mutate", "reason"), DRILL_BREAKS)
def test_each_drill_problem_fails_dr_drill_recent_with_its_reason(src, mutate, reason):
    mutate(src / "raw")
    results = build_results(src, TS)
    checks = checks_of(results)
    failing = {i for i, c in checks.items() if c["status"] == FAIL}
    assert failing == {"dr_drill_recent"}, {i: checks[i]["reason"] for i in failing}
    assert reason in checks["dr_drill_recent"]["reason"]
    assert failing_controls(results) == citing("dr_drill_recent")
    # the backup controls A1.3 shares with A1.2 stay evidenced: A1.2 and the backup plan still pass
    assert statuses(results)[("soc2", "A1.2")] == PASS
    assert statuses(results)[("hipaa", "164.308(a)(7)(ii)(A)")] == PASS


def test_no_report_says_exactly_what_to_run(src):
    drop_drill(src / "raw")
    check = checks_of(build_results(src, TS))["dr_drill_recent"]
    assert (check["status"], check["reason"], check["evidence"]) == (
        FAIL,
        "no disaster-recovery drill report: run `airlock dr drill` and pass --drill-report drills/",
        [],
    )


def test_the_max_age_is_the_one_collected_with_the_report(src):
    index = src / "raw" / "collection.json"
    edit_json(index, lambda c: c["context"].update(drill_max_age_days=0.5))  # 12 h; the drill is 15.4 h old
    check = checks_of(build_results(src, TS))["dr_drill_recent"]
    assert check["status"] == FAIL
    assert "older than 0.5 days" in check["reason"]


def test_newest_report_of_a_folder_is_chosen_by_finished_at(tmp_path):
    drills, t = tmp_path / "drills", now()
    write_report(drills, report(t - timedelta(days=30), drill_id="c-oldest"))
    newest = write_report(drills, report(t - timedelta(days=1), drill_id="a-newest", result="fail"))
    write_report(drills, report(t - timedelta(days=10), drill_id="b-middle"))
    chosen, source = collect.newest_drill_report(drills)
    assert chosen == newest
    assert source == f"controller: read {newest} (newest of 3 under {drills} by finished_at)"
    old_broken = write_report(drills, "{not json")
    os.utime(old_broken, (0, 0))  # written long before the newest drill: not the newest
    assert collect.newest_drill_report(drills)[0] == newest
    newer_broken = drills / "z-broken" / "report.json"
    newer_broken.parent.mkdir()
    newer_broken.write_text('{"schema": "airlock.dr-drill/1"')  # written now, after every drill finished
    assert collect.newest_drill_report(drills)[0] == newer_broken  # it fails, no older pass stands in
    newer_broken.unlink()
    writing = drills / ".2099-01-01T000000Z-enclave.partial" / "report.json"  # a drill not done yet
    writing.parent.mkdir()
    writing.write_text(json.dumps(report(t, drill_id="writing")))
    assert collect.newest_drill_report(drills)[0] == newest


def test_the_chosen_report_lands_in_raw_and_the_pack_verifies(tmp_path, signer):
    drills, t = tmp_path / "drills", now()
    write_report(drills, report(t - timedelta(days=40)))
    newest = write_report(drills, report(t - timedelta(days=2)))
    out, results = build_with_drill(tmp_path / "pack", drills, signer)
    copied = out / "raw" / "dr" / "drill_report.json"
    assert copied.read_bytes() == newest.read_bytes()
    check = checks_of(results)["dr_drill_recent"]
    assert check["status"] == PASS and json.loads(newest.read_text())["drill_id"] in check["reason"]
    (artifact,) = [a for a in results["artifacts"] if a["path"] == "raw/dr/drill_report.json"]
    assert "newest of 2" in artifact["source"]
    assert pack.verify(out, load_verifier(signer.path.parent)) == []
    resources = json.loads((out / "assessment-results.json").read_text())["assessment-results"]["back-matter"]
    (resource,) = [r for r in resources["resources"] if r["title"] == "raw/dr/drill_report.json"]
    assert resource["rlinks"][0]["hashes"][0]["value"] == artifact["sha256"]
    copied.write_text(copied.read_text().replace('"pass"', '"fail"'))
    assert "altered: raw/dr/drill_report.json" in pack.verify(out, load_verifier(signer.path.parent))


def test_a_pack_re_evaluated_from_raw_judges_the_drill_the_same(tmp_path, signer):
    drills = tmp_path / "drills"
    write_report(drills, report(now() - timedelta(days=91)))  # one day from too old
    first, results = build_with_drill(tmp_path / "first", drills, signer)
    result = cli("build", "--from-raw", first, "--out", tmp_path / "again", "--key", signer.path)
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert checks_of(again)["dr_drill_recent"] == checks_of(results)["dr_drill_recent"]
    assert (tmp_path / "again" / "raw" / "dr" / "drill_report.json").read_bytes() == (
        first / "raw" / "dr" / "drill_report.json"
    ).read_bytes()


def test_drill_max_age_days_reaches_the_check(tmp_path, signer):
    drills = tmp_path / "drills"
    write_report(drills, report(now() - timedelta(days=40)))
    _, default = build_with_drill(tmp_path / "default", drills, signer)
    assert checks_of(default)["dr_drill_recent"]["status"] == PASS
    _, strict = build_with_drill(tmp_path / "strict", drills, signer, drill_max_age_days=30)
    assert checks_of(strict)["dr_drill_recent"]["status"] == FAIL
    assert "older than 30 days" in checks_of(strict)["dr_drill_recent"]["reason"]
    assert DRILL_MAX_AGE_DAYS == 92


def test_an_empty_drills_folder_fails_and_says_where_it_looked(tmp_path, signer):
    (tmp_path / "drills").mkdir()
    _, results = build_with_drill(tmp_path / "pack", tmp_path / "drills", signer)
    check = checks_of(results)["dr_drill_recent"]
    assert check["status"] == FAIL
    assert check["reason"] == f"{NO_DRILL} ({tmp_path / 'drills'} holds no */report.json)"


def test_without_hosts_or_a_report_the_drill_does_not_apply(tmp_path):
    shutil.copytree(DATA, tmp_path / "raw")
    collected_before_drills(tmp_path / "raw")
    index = tmp_path / "raw" / "collection.json"
    edit_json(index, lambda c: c["subjects"].pop("enclave"))
    (check,) = [c for c in build_results(tmp_path, TS)["checks"] if c["id"] == "dr_drill_recent"]
    assert (check["status"], check["subject"]) == (NA, "dr")


def test_cli_builds_with_a_drill_report_and_exits_1_on_a_failed_drill(tmp_path, signer):
    drills = tmp_path / "drills"
    write_report(drills, report(now() - timedelta(days=3), result="fail"))
    out = tmp_path / "pack"
    result = cli("build", "--drill-report", drills, "--policy", POLICY, "--out", out, "--key", signer.path)
    assert result.exit_code == 1, result.output
    assert "FAIL dr_drill_recent (dr): drill " in result.output and "result fail" in result.output
    assert pack.verify(out, load_verifier(signer.path.parent)) == []
    passing = tmp_path / "passing"
    write_report(passing, report(now() - timedelta(days=3)))
    ok = cli(
        "build", "--drill-report", passing, "--policy", POLICY, "--out", tmp_path / "ok", "--key", signer.path
    )
    assert ok.exit_code == 0, ok.output


def test_cli_refuses_a_missing_report_and_a_report_with_from_raw(tmp_path, signer, src):
    missing = cli(
        "build", "--drill-report", tmp_path / "nope", "--out", tmp_path / "p1", "--key", signer.path
    )
    assert missing.exit_code == 2
    assert "no such file or folder" in missing.output
    both = cli(
        "build",
        "--from-raw",
        src,
        "--drill-report",
        DATA / "dr" / "drill_report.json",
        "--out",
        tmp_path / "p2",
        "--key",
        signer.path,
    )
    assert both.exit_code == 2
    assert "--from-raw" in both.output
    assert not (tmp_path / "p1").exists() and not (tmp_path / "p2").exists()


# ---- catalogs and the runbook ---------------------------------------------------------------------


def test_the_backup_and_drill_controls_are_mapped():
    assert CHECKS["backup_scheduled"].scope == "host" and CHECKS["dr_drill_recent"].scope == "dr"
    assert citing("backup_scheduled") == {
        ("soc2", "A1.2"),
        ("soc2", "A1.3"),
        ("hipaa", "164.308(a)(7)(ii)(A)"),
        ("nist800_171", "3.8.9"),
        ("cmmc_l2", "MP.L2-3.8.9"),
        ("itar", "3.8.9"),
    }
    assert citing("dr_drill_recent") == {
        ("soc2", "A1.3"),
        ("hipaa", "164.308(a)(7)(ii)(B)"),
        ("hipaa", "164.308(a)(7)(ii)(D)"),
    }
    hipaa = catalogs.load("hipaa")
    assert "164.308(a)(7)" in hipaa["title"] and "164.312" in hipaa["title"]


def test_a_broken_backup_and_a_failed_drill_show_in_the_controls(src):
    status_edit(lambda s: s["repositories"]["data"].update(encryption="none"))(src / "raw")
    drill_edit(lambda r: r.update(result="fail"))(src / "raw")
    results = build_results(src, TS)
    now_status = statuses(results)
    for control in (
        ("soc2", "A1.2"),
        ("soc2", "A1.3"),
        ("hipaa", "164.308(a)(7)(ii)(A)"),
        ("hipaa", "164.308(a)(7)(ii)(B)"),
        ("hipaa", "164.308(a)(7)(ii)(D)"),
        ("nist800_171", "3.8.9"),
        ("cmmc_l2", "MP.L2-3.8.9"),
    ):
        assert now_status[control] == FAIL, control
    (a13,) = [
        c for f in results["frameworks"] if f["id"] == "soc2" for c in f["controls"] if c["id"] == "A1.3"
    ]
    assert {(c["id"], c["subject"], c["status"]) for c in a13["checks"]} == {
        ("dr_drill_recent", "dr", FAIL),
        ("backup_scheduled", "enclave", FAIL),
    }


def test_the_runbook_names_the_real_mechanism_and_the_measured_drill(tmp_path, signer, src):
    out, _ = pack.build(tmp_path / "pack", lambda s: collect.copy_raw(src, s), signer, TS)
    runbook = (out / "procedures" / "disaster-recovery.md").read_text()
    for text in (
        "BorgBackup",
        "`backup_hosts` group",
        "| audit | the audit log, seals and archives | hourly | per regulation: default 2190 days (6 years",
        "the nftables rules | daily | 30 days | data |",
        "| outputs | the encrypted images and prompts (ciphertext) | daily | 90 days | data |",
        "`rrsync`",
        "escrowed on the controller",
        "`.cache/backup-escrow/`",
        "airlock dr drill --inventory inventory/lab --host enclave --api-key-file API_KEY_FILE --ca CA_CERT",
        "ansible-playbook -i inventory/lab playbooks/site.yml -e backup_client_restore=true --limit enclave",
        "airlock backup restore --report /var/lib/airlock/backup/restore.json",
        "the keys repository `ssh://airlock-backup@backup.lab.airlock.test/srv/airlock-backup/repos/enclave/keys`",
        "Drill `2026-12-03T142000Z-enclave` on **enclave** finished 2026-12-03T14:26:41Z",
        "| 312 s (5.2 min) | 14400 s (4.0 h) |",
        "(age of the newest restored record when the host was lost) | 95 s | 86400 s (24.0 h) |",
        "| RPO, outputs (age of the newest restored output) | 600 s (10.0 min) |",
        "at least every 92 days",
    ):
        assert text in runbook, text
    restore = runbook[runbook.index("## Restore order") :]  # keys before the data they protect
    assert restore.index("/var/lib/airlock/kek") < restore.index("the outputs `/var/lib/airlock/outputs`")
    drop_drill(src / "raw")
    missing_file(src / "raw")
    out, _ = pack.build(tmp_path / "undrilled", lambda s: collect.copy_raw(src, s), signer, TS)
    runbook = (out / "procedures" / "disaster-recovery.md").read_text()
    assert "No restore drill report was included in this pack" in runbook
    assert "No backup status was collected from this host" in runbook
    assert "the keys repository `KEYS_REPOSITORY`" in runbook
    assert "312 s" not in runbook
