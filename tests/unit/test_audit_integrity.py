"""Seals, purges and archives keep the log verifiable; misuse is refused with the fix named."""

import json
import stat

import pytest
from conftest import GENERATION
from typer.testing import CliRunner

from airlock.audit import AuditLog
from airlock.audit.integrity import IntegrityError, archive, purge, read_sums, seal
from airlock.audit.verify import verify
from airlock.cli import app
from airlock.errors import AirlockError
from airlock.keys import KeyFileError, init_keys, load_signer, load_verifier


def texts(root):
    return [
        json.loads(line).get("prompt")
        for p in sorted(root.glob("*/generations.jsonl"))
        for line in p.read_bytes().splitlines()
    ]


def test_days_are_sealed_at_rollover_chained_and_signed(write_days, root, verifier):
    write_days(days=3)
    blocks = read_sums(root).blocks
    assert [b.meta["date"] for b in blocks] == ["2026-10-01", "2026-10-02", "2026-10-03"]
    assert blocks[1].meta["prev"] == blocks[0].hash
    assert blocks[2].meta["tips"]["generations"]["seq"] == 12
    assert all(verifier.verify(b.signature, b.text) for b in blocks)


def test_seal_refuses_open_days_and_repeats(root, clock, signer):
    with AuditLog(root, clock=clock) as log:
        log.append("system_events", "boot", component="test", outcome="success")
    with pytest.raises(IntegrityError, match="still open"):
        seal(root, signer, clock=clock, day="2026-10-01")
    clock.advance(days=1)
    assert seal(root, signer, clock=clock) == ["2026-10-01"]
    with pytest.raises(IntegrityError, match="already sealed"):
        seal(root, signer, clock=clock, day="2026-10-01")
    with pytest.raises(IntegrityError, match="YYYY-MM-DD"):
        seal(root, signer, clock=clock, day="yesterday")


def test_seal_refuses_a_day_whose_records_do_not_verify(root, clock, signer):
    with AuditLog(root, clock=clock) as log:
        log.append("system_events", "boot", component="test", outcome="success")
    path = next(root.glob("*/system_events.jsonl"))
    path.write_bytes(path.read_bytes().replace(b'"boot"', b'"b00t"'))
    clock.advance(days=1)
    with pytest.raises(IntegrityError, match="line 1 modified"):
        seal(root, signer, clock=clock)


def test_purge_removes_old_prompt_text_and_the_log_still_verifies(write_days, root, clock, signer, verifier):
    write_days(days=3)
    clock.advance(days=30)  # now 2026-11-03: the first two days are past a 31-day retention
    seal(root, signer, clock=clock)
    result = purge(root, signer, clock=clock, older_than_days=31)
    assert result["records"] == 8 and result["before"] == "2026-10-03"
    assert texts(root) == [None] * 8 + [GENERATION["prompt"]] * 4
    assert read_sums(root).blocks[-1].kind == "purge"
    report = verify(root, verifier, clock=clock)
    assert report.ok, report.findings
    events = [
        json.loads(line)["event"] for line in next(root.glob("2026-11-03/system_events.jsonl")).open("rb")
    ]
    assert events == ["audit.prompts_purged"]


def test_purge_retention_must_be_within_policy(root, clock, signer):
    root.mkdir()
    for days in (7, 365):
        with pytest.raises(IntegrityError, match="30-90 days"):
            purge(root, signer, clock=clock, older_than_days=days)


def test_archive_then_purge_inside_the_archive_still_verifies(write_days, root, clock, signer, verifier):
    write_days(days=3)
    clock.advance(days=35)  # November
    seal(root, signer, clock=clock)  # the last October day had no rollover write to seal it
    assert archive(root, signer, clock=clock, before="2026-11") == ["2026-10"]
    assert not (root / "2026-10-01").exists()
    assert (root / "archives" / "2026-10" / "audit-2026-10.tar.gz").exists()
    assert verify(root, verifier, clock=clock).ok
    with AuditLog(root, clock=clock) as log:  # the chain continues from the archived tip
        receipt = log.append("generations", "generation.completed", **GENERATION)
    assert receipt.seq == 13
    purge(root, signer, clock=clock, older_than_days=30)
    report = verify(root, verifier, clock=clock)
    assert report.ok, report.findings
    assert report.records == 3 * 5 + 1 + 1 + 2  # days, rollover event, new record, archive + purge events


def test_a_tampered_archive_is_found(write_days, root, clock, signer, verifier):
    write_days(days=2)
    clock.advance(days=35)
    seal(root, signer, clock=clock)
    archive(root, signer, clock=clock, before="2026-11")
    path = root / "archives" / "2026-10" / "audit-2026-10.tar.gz"
    path.write_bytes(path.read_bytes()[:-20])
    report = verify(root, verifier, clock=clock)
    assert ("seal", "archives/2026-10/audit-2026-10.tar.gz") in {(f.kind, f.file) for f in report.findings}


def test_archive_refuses_unsealed_and_open_months(root, clock, signer):
    with AuditLog(root, clock=clock) as log:
        log.append("system_events", "boot", component="test", outcome="success")
    clock.advance(days=40)
    with pytest.raises(IntegrityError, match="not sealed"):
        archive(root, signer, clock=clock, before="2026-11")
    with pytest.raises(IntegrityError, match="only closed months"):
        archive(root, signer, clock=clock, before="2027-01")


def test_keys_are_private_exportable_and_never_replaced(tmp_path):
    signer = init_keys(tmp_path / "k")
    assert stat.S_IMODE(signer.path.stat().st_mode) == 0o600
    assert load_verifier(tmp_path / "k").fingerprint == signer.fingerprint
    with pytest.raises(KeyFileError, match="already exists"):
        init_keys(tmp_path / "k")
    signer.path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(tmp_path / "k")
    with pytest.raises(KeyFileError, match="airlock keys init"):
        load_signer(tmp_path / "missing")
    (tmp_path / "bad.pub").write_text("not a key")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_verifier(tmp_path / "bad.pub")


def test_cli_round_trip_and_exit_codes(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("AIRLOCK_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("AIRLOCK_AUDIT_ROOT", str(tmp_path / "audit"))
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    pem = runner.invoke(app, ["keys", "show", "--public"]).output
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    data = json.dumps({"outcome": "success", "component": "cli-test"})
    result = runner.invoke(app, ["audit", "append", "system_events", "cli.ran", "--data", data])
    assert result.exit_code == 0 and json.loads(result.output)["seq"] == 1
    secret = json.dumps({"outcome": "success", "component": "x", "token": "abc"})
    assert runner.invoke(app, ["audit", "append", "system_events", "x", "--data", secret]).exit_code == 2
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    report = json.loads(runner.invoke(app, ["audit", "verify", "--json"]).output)
    assert report["ok"] and report["records"] == 1
    path = next((tmp_path / "audit").glob("*/system_events.jsonl"))
    path.write_bytes(path.read_bytes().replace(b"cli-test", b"cli-fake"))
    result = runner.invoke(app, ["audit", "verify"], terminal_width=200)
    assert result.exit_code == 1 and "MODIFIED" in result.output and ":1:" in result.output
    assert runner.invoke(app, ["audit", "verify", "--root", str(tmp_path / "nope")]).exit_code == 2
    assert runner.invoke(app, ["audit", "purge", "--prompts-older-than", "soon"]).exit_code == 2


def test_airlock_errors_are_user_errors():
    assert issubclass(IntegrityError, AirlockError) and issubclass(KeyFileError, AirlockError)
