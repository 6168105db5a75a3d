"""With the lab up (and provisioned by test_provision): it refuses a second `up` and reports itself."""

import json

from labcheck import airlock


def test_second_up_is_refused_with_a_clear_error_and_breaks_nothing(running_lab):
    result = airlock("lab", "up")
    assert result.returncode == 1
    assert "already up" in result.stderr and "airlock lab down" in result.stderr
    assert airlock("lab", "status").returncode == 0


def test_status_reports_every_namespace_process_and_host(running_lab):
    result = airlock("lab", "status", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] and report["state"] == "up"
    assert set(report["namespaces"]) == {"mgmt", "internal", "outside", "enclave", "backup"}
    assert (
        all(p["alive"] for p in report["processes"]) and len(report["processes"]) == 4
    )  # 2 services, 2 hosts
    assert {h["systemd"] for h in report["hosts"].values()} <= {"running", "degraded"}
