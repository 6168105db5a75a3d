"""The service refuses insecure configurations, naming the setting; a secure one passes."""

import os

from inference.settings import ServiceSettings


def secure_settings(tmp_path, **server):
    (tmp_path / "tls").mkdir()
    for name in ("server.crt", "server.key"):
        (tmp_path / "tls" / name).write_text("x")
    (tmp_path / "apikeys.json").write_text("{}")
    (tmp_path / "audit").mkdir()
    (tmp_path / "signing.pub").write_text("x")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "signing.key").write_text("x")
    (tmp_path / "prompts.yml").write_text("version: 1\n")
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "model_manifest.yaml").write_text("models: []\n")
    os.chmod(registry / "model_manifest.yaml", 0o444)
    os.chmod(registry, 0o555)
    return ServiceSettings(
        server={
            "host": "10.20.0.5",
            "tls_cert": tmp_path / "tls/server.crt",
            "tls_key": tmp_path / "tls/server.key",
            **server,
        },
        paths={
            "apikeys": tmp_path / "apikeys.json",
            "audit_root": tmp_path / "audit",
            "registry": registry,
            "trust_key": tmp_path / "signing.pub",
            "prompt_policy": tmp_path / "prompts.yml",
            "signing_key": tmp_path / "keys",
        },
    )


def test_a_secure_configuration_passes(tmp_path):
    assert secure_settings(tmp_path).insecure_problems() == []


def test_each_insecure_setting_is_named(tmp_path):
    settings = secure_settings(tmp_path, host="0.0.0.0", cors_origins=["*"])
    settings.server.tls_cert = None
    os.chmod(settings.paths.registry, 0o755)  # writable by its owner, who runs this test
    settings.paths.apikeys.unlink()
    settings.paths.audit_root.rmdir()
    settings.paths.prompt_policy.unlink()
    (settings.paths.signing_key / "signing.key").unlink()
    problems = "\n".join(settings.insecure_problems())
    for setting in (
        "server.tls_cert",
        "server.host",
        "server.cors_origins",
        "paths.apikeys",
        "paths.audit_root",
        "paths.registry",
        "paths.prompt_policy",
        "paths.signing_key",
    ):
        assert setting in problems
    assert "airlock ca issue" in problems and "allow_bind_all" in problems


def test_wildcard_bind_is_allowed_only_when_asked_for(tmp_path):
    assert secure_settings(tmp_path, host="::", allow_bind_all=True).insecure_problems() == []


def test_toml_file_and_environment_overrides(tmp_path, monkeypatch):
    config = tmp_path / "airlock.toml"
    config.write_text('[server]\nhost = "10.20.0.5"\nport = 9443\n\n[limits]\nmax_queued = 7\n')
    monkeypatch.setenv("AIRLOCK_CONFIG", str(config))
    monkeypatch.setenv("AIRLOCK_SERVER__PORT", "10443")
    settings = ServiceSettings()
    assert settings.server.host == "10.20.0.5" and settings.server.port == 10443
    assert settings.limits.max_queued == 7
