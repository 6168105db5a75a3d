"""airlock_bundle and airlock_runtime: the host runs what the current transfer bundle carries, the
published bundle still matches its signed checksums, and apt on the host can read its repository."""

import re

STORE = "/srv/airlock/bundles"
CURRENT = f"{STORE}/current"


def normalize(pin: str) -> str:
    """`Typing_Extensions==4.1` and `typing-extensions==4.1` are the same pin (PEP 503 names)."""
    name, _, version = pin.partition("==")
    return re.sub(r"[-_.]+", "-", name).lower() + "==" + version


def test_current_points_at_a_published_content_addressed_bundle(host):
    link = host.file(CURRENT)
    assert link.is_symlink
    target = host.file(f"{STORE}/{link.linked_to.rsplit('/', 1)[-1]}")
    assert re.fullmatch(r"[0-9a-f]{64}", target.path.rsplit("/", 1)[-1])
    assert target.is_directory and target.user == "root" and target.mode == 0o755
    assert not host.file(target.path + ".partial").exists


def test_every_published_file_matches_the_signed_checksums(host):
    with host.sudo():
        files = host.run(f"cd {CURRENT}/ && sha256sum --quiet --strict -c checksums.txt")
        listed = host.check_output(f"sha256sum < {CURRENT}/checksums.txt | cut -c1-64")
        signed = host.check_output(f"sed -n 's/^checksums_sha256: *//p' {CURRENT}/manifest.yaml")
    assert files.rc == 0, files.stdout + files.stderr
    assert listed == signed


def test_the_bundle_is_read_only_to_the_service(host):
    with host.sudo():
        writable = host.run(f"runuser -u airlock -- find -L {CURRENT}/ -writable -print -quit").stdout.strip()
    assert writable == ""


def test_the_venv_is_the_one_built_from_the_bundles_lock(host):
    venv = host.file("/opt/airlock/venv")
    assert venv.is_symlink and venv.linked_to.startswith("/opt/airlock/venvs/")
    lock = host.check_output(f"sha256sum < {CURRENT}/wheels/requirements.lock | cut -c1-64")
    assert host.file(f"{venv.linked_to}/.requirements.sha256").content_string.strip() == lock
    assert venv.linked_to.endswith("/" + lock[:16])
    # Exactly the lock's wheels, at its pins: pip lists nothing the lock does not.
    pins = {
        normalize(line.split(" ")[0])
        for line in host.file(f"{CURRENT}/wheels/requirements.lock").content_string.splitlines()
        if "==" in line and not line.startswith("#")
    }
    frozen = {
        normalize(line)
        for line in host.check_output("/opt/airlock/venv/bin/pip list --format=freeze").splitlines()
    }
    assert frozen == pins, sorted(frozen ^ pins)


def test_apt_on_the_host_reads_the_bundles_repository(host):
    sources = "/etc/apt/sources.list.d/airlock-bundle.list"
    assert f"deb [trusted=yes] file:{CURRENT}/apt ./" in host.file(sources).content_string
    with host.sudo():
        update = host.run(
            f"apt-get update -o Dir::Etc::sourcelist={sources} -o Dir::Etc::sourceparts=- "
            "-o APT::Get::List-Cleanup=0"
        )
        policy = host.check_output("apt-cache policy nftables")
    assert update.rc == 0, update.stdout + update.stderr
    assert f"file:{CURRENT}/apt ./ Packages" in policy
