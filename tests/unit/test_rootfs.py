import pytest

from airlock.lab import LabError, rootfs


def test_mirror_is_read_from_deb822_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRLOCK_LAB_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
    )
    assert rootfs.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_is_read_from_one_line_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRLOCK_LAB_MIRROR", raising=False)
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n"
    )
    assert rootfs.apt_mirror(tmp_path) == "http://m.example/debian"


def test_missing_mirror_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRLOCK_LAB_MIRROR", raising=False)
    with pytest.raises(LabError, match="AIRLOCK_LAB_MIRROR"):
        rootfs.apt_mirror(tmp_path)


def test_cache_key_follows_the_package_list():
    assert rootfs.cache_key() == rootfs.cache_key(tuple(reversed(rootfs.PACKAGES)))
    assert rootfs.cache_key() != rootfs.cache_key((*rootfs.PACKAGES, "vim"))
    assert "libpam-systemd" in rootfs.PACKAGES  # without it ssh restarts leave processes behind
