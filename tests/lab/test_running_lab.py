"""With the lab up: it refuses a second `up`, reports itself, and the host suite passes from mgmt."""

import json
import os
import subprocess
import sys

from labcheck import ROOT, airlock


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
    assert set(report["namespaces"]) == {"mgmt", "internal", "outside", "enclave"}
    assert all(p["alive"] for p in report["processes"]) and len(report["processes"]) == 3
    assert report["hosts"]["enclave"]["systemd"] in ("running", "degraded")


def test_host_suite_passes_from_the_controller_namespace(running_lab):
    """tests/infra runs with testinfra over Ansible's inventory, from inside mgmt, as CI does."""
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            "mgmt",
            sys.executable,
            "-m",
            "pytest",
            "tests/infra",
            "-p",
            "no:cacheprovider",
            "--hosts=ansible://all",
            "--ansible-inventory=inventory/lab",
            "-q",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    print(result.stdout[-6000:], result.stderr[-3000:])
    assert result.returncode == 0
