"""`lab down` removes everything, after a good `up` and after a half-failed one, and is repeatable."""

from labcheck import PATHS, airlock, leftovers, machine_snapshot

from airlock.lab import lab


def test_down_after_a_half_failed_up_removes_everything(tmp_path):
    before = machine_snapshot()
    broken = tmp_path / "rootfs-broken.tar.zst"
    broken.write_bytes(b"this is not a zstd tarball")
    try:
        lab.up(PATHS, tarball=broken, say=lambda _line: None)
        raise AssertionError("lab up succeeded with a corrupt root filesystem")
    except lab.LabError as exc:
        assert "extracting" in str(exc) and "rebuild the cache" in str(exc)
    assert any(item.startswith("namespace") for item in leftovers()), "the failure came too early to test"

    result = airlock("lab", "down")
    assert result.returncode == 0, result.stderr
    assert leftovers() == []
    assert machine_snapshot() == before


def test_up_then_down_leaves_nothing_and_down_can_repeat():
    before = machine_snapshot()
    result = airlock("lab", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "enclave: systemd" in result.stdout

    result = airlock("lab", "down")
    assert result.returncode == 0, result.stderr
    assert leftovers() == []
    again = airlock("lab", "down")
    assert again.returncode == 0 and "nothing was up" in again.stdout
    assert machine_snapshot() == before
