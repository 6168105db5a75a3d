"""Lab tests: they bring the real lab up and down (root, network namespaces, systemd-nspawn)."""

import os

import pytest
from labcheck import PATHS, airlock

from airlock.lab import lab


@pytest.fixture(scope="session", autouse=True)
def lab_session():
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (network namespaces, systemd-nspawn): run `sudo make test`")
    if lab.load_state() is not None:
        pytest.fail("a lab is already up; run `airlock lab down` before the lab tests")
    yield
    airlock("lab", "down")  # always, even after a failure


@pytest.fixture(scope="session")
def running_lab():
    """One lab for the provisioning tests and the running-lab checks (booting one costs ~45 s)."""
    result = airlock("lab", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    yield PATHS
    result = airlock("lab", "down")
    assert result.returncode == 0, result.stdout + result.stderr
