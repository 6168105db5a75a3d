"""model_registry: the live registry is a verified release, byte for byte as the signed manifest says,
and read-only to the service."""

REGISTRY = "/srv/model_registry"
AIRLOCK = "/opt/airlock/venv/bin/airlock"


def verify(host):
    with host.sudo():
        return host.run(
            f"{AIRLOCK} models verify --root {REGISTRY} --trust /etc/airlock/trust/registry.pub --json"
        )


def test_model_files_match_the_signed_manifest(host):
    result = verify(host)
    assert result.rc == 0, result.stdout + result.stderr


def test_the_registry_points_at_a_verified_release(host):
    link = host.file(REGISTRY)
    assert link.is_symlink
    assert link.linked_to.startswith("/srv/airlock-models/")
    assert not host.file(link.linked_to + ".staging").exists


def test_models_are_read_only_to_the_service(host):
    with host.sudo():
        writable = host.run(
            f"runuser -u airlock -- find -L {REGISTRY}/ -writable -print -quit"
        ).stdout.strip()
    assert writable == ""
    manifest = host.file(f"{REGISTRY}/model_manifest.yaml")
    assert manifest.user == "root" and manifest.mode == 0o644
