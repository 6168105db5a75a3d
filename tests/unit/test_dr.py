"""airlock dr: the drill's bookkeeping (phases, RTO/RPO, the report) and its refusals. The drill
itself runs against the lab in tests/lab/test_provision_recovery.py."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from airlock.cli import app
from airlock.dr import drill as dr
from airlock.errors import AirlockError


class Playbooks:
    """Ansible as the drill sees it: each playbook's return code and output, recorded as called."""

    def __init__(self, fail: str | None = None):
        self.fail, self.calls = fail, []
        self.inventory = Path("inventory/test")

    def playbook(self, name, *args):
        self.calls.append((name, *args))
        if name == self.fail:
            out = 'TASK [x]\nfatal: [enclave]: FAILED! => {"msg": "no archive"}\n'
            return subprocess.CompletedProcess([name], 2, out, "")
        return subprocess.CompletedProcess([name], 0, "enclave : ok=3 changed=1 failed=0\n", "")

    def command(self, host, argv, become_user=None):
        if argv[:2] == ["cat", dr.RESTORE_REPORT]:
            return 0, json.dumps(
                {
                    "restored": [{"class": "audit", "archive": "audit-x", "time": "t"}],
                    "newest_audit_record_at": "2026-12-04T09:59:00Z",
                    "newest_output_at": "2026-12-04T09:00:00Z",
                }
            )
        raise AssertionError(f"unexpected command {argv}")


def clock_from(start: datetime, step: timedelta):
    moments = {"now": start}

    def tick() -> datetime:
        moments["now"] += step
        return moments["now"]

    return tick


def test_a_failed_restore_stops_the_drill_and_fails_it_naming_why(tmp_path):
    ansible = Playbooks(fail="site.yml")
    rebuilt = []
    drill = dr.Drill(
        ansible,
        "enclave",
        "alk_x",
        tmp_path / "ca.crt",
        "https://h:8443",
        lambda: rebuilt.append(1),
        clock=clock_from(datetime(2026, 12, 4, 10, tzinfo=UTC), timedelta(seconds=30)),
    )
    report = drill.run()
    assert rebuilt == [1] and report["result"] == "fail"
    assert [(p["name"], p["ok"]) for p in report["phases"]] == [
        ("rebuild", True),
        ("bundle", True),
        ("restore", False),
    ]
    assert "no archive" in report["phases"][-1]["detail"]
    assert report["rto_seconds"] is None and report["first_generation_at"] is None
    assert ansible.calls[1] == ("site.yml", "--limit", "enclave", "-e", "backup_client_restore=true")
    assert ansible.calls[0] == ("bundle_import.yml", "--limit", "localhost,enclave")


def test_rto_and_rpo_are_measured_from_the_declared_failure(tmp_path, monkeypatch):
    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    drill = dr.Drill(
        Playbooks(),
        "enclave",
        "alk_x",
        tmp_path / "ca.crt",
        "https://h:8443",
        None,
        clock=clock_from(start - timedelta(seconds=60), timedelta(seconds=60)),
    )
    answers = {
        "/v1/me": {"key_id": "ak_1", "tenant": "t"},
        "/v1/generation/text-to-image": [{"base64": "iVBORw0KGgoAAAANSUhEUgAAAAE="}],
    }
    monkeypatch.setattr(drill, "request", lambda method, path, body=None: json.dumps(answers[path]).encode())
    monkeypatch.setattr(
        drill, "outputs_decrypt", lambda failure_at: (_ for _ in ()).throw(AirlockError("none"))
    )
    report = drill.run()
    assert report["started_at"] == "2026-12-04T10:00:00Z"
    assert report["rpo"]["audit_seconds"] == 60.0 and report["rpo"]["outputs_seconds"] == 3600.0
    assert report["rto_seconds"] > 0 and report["first_generation_at"]
    assert report["api_key_id"] == "ak_1"
    # verify failed (no outputs): the drill fails even though the generation worked
    assert report["result"] == "fail" and report["phases"][-1]["name"] == "verify"
    assert report["phases"][0]["name"] == "rebuild" and "operator" in report["phases"][0]["detail"]


def test_the_report_is_written_whole_once_and_reads_as_markdown(tmp_path):
    report = {
        "drill_id": "2026-12-04T100000Z-enclave",
        "result": "pass",
        "host": "enclave",
        "inventory": "inv",
        "started_at": "2026-12-04T10:00:00Z",
        "rto_seconds": 312.0,
        "rto_target_seconds": 14400,
        "rpo": {
            "audit_seconds": 60.0,
            "outputs_seconds": None,
            "newest_audit_record_at": "x",
            "newest_output_at": None,
        },
        "rpo_target_seconds": 86400,
        "api_key_id": "ak_1",
        "phases": [],
        "checks": [],
        "restored": [],
    }
    target = dr.write(report, tmp_path)
    assert json.loads((target / "report.json").read_text()) == report
    text = (target / "report.md").read_text()
    assert "PASS" in text and "312 s (5.2 min)" in text and "newest restored output none" in text
    assert not list(tmp_path.glob(".*"))  # no staging folder left
    with pytest.raises(AirlockError, match="never overwritten"):
        dr.write(report, tmp_path)


@pytest.mark.parametrize(
    ("mode", "content", "extra", "message"),
    [
        (0o644, "alk_x", [], "readable by others"),
        (0o600, "", [], "is empty"),
        (0o600, "alk_x", ["--url", "http://h:8443"], "https:// only"),
        (0o600, "alk_x", ["--rto-target", "4 hours"], "use a number and s, m, h or d"),
    ],
)
def test_the_cli_refuses_bad_input_with_the_fix(tmp_path, mode, content, extra, message):
    key = tmp_path / "key"
    key.write_text(content)
    key.chmod(mode)
    (tmp_path / "ca.crt").write_text("x")
    result = CliRunner().invoke(
        app,
        [
            "dr",
            "drill",
            "--inventory",
            str(tmp_path),
            "--host",
            "enclave",
            "--api-key-file",
            str(key),
            "--ca",
            str(tmp_path / "ca.crt"),
            "--no-lab",
            *extra,
        ],
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert "alk_x" not in result.output
