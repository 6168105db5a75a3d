"""Host tests (testinfra), run from the controller namespace against the lab inventory:

    ip netns exec mgmt .venv/bin/pytest tests/infra/provisioned --hosts=ansible://gpu_hosts \
        --ansible-inventory=inventory/lab

`pristine/` describes a freshly booted host before any role ran; `provisioned/` what site.yml promises
(`make lab-infra-test` runs it against a provisioned lab). Without --hosts testinfra would test this
machine.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))  # reach.py, for both suites
LAB_SSH = ROOT / ".cache" / "lab" / "ssh"


def pytest_configure(config):
    if not config.getoption("hosts"):
        pytest.exit(
            "tests/infra needs --hosts=ansible://all --ansible-inventory=inventory/lab "
            "(see `make lab-infra-test`)",
            returncode=2,
        )


@pytest.fixture
def lab_password(host):
    """The ops account's real password: the lab sets one so password refusal is tested for real."""
    name = host.backend.get_hostname()
    return json.loads((LAB_SSH / "passwords.json").read_text())[name]


@pytest.fixture
def mgmt_address(host):
    return host.ansible.get_variables()["ansible_host"]


@pytest.fixture
def controller_login(host):
    """Log in as the controller does (its key, the lab's ssh config) and return `id -un`'s result."""

    def login() -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-F", str(LAB_SSH / "config"), host.backend.get_hostname(), "id", "-un"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    return login
