"""`airlock models ...` as an operator runs it: exit codes, reports, fail-closed imports."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from airlock.cli import app
from airlock.keys import init_keys
from airlock.registry.manifest import MANIFEST, SIGNATURE

runner = CliRunner()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Registry, audit log and keys in tmp_path, found through the environment as on a host."""
    init_keys(tmp_path / "keys")
    monkeypatch.setenv("AIRLOCK_REGISTRY_ROOT", str(tmp_path / "registry"))
    monkeypatch.setenv("AIRLOCK_AUDIT_ROOT", str(tmp_path / "audit"))
    monkeypatch.setenv("AIRLOCK_KEYS_DIR", str(tmp_path / "keys"))
    return tmp_path


def weights(path, value: float = 1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((8,), value, dtype=np.float32)}, str(path))
    return path


def models(*args):
    return runner.invoke(app, ["models", *map(str, args)], terminal_width=200)


def import_(path, name="sd_xl_base_1.0", *extra):
    return models(
        "import", path, "--name", name, "--version", "1.0", "--kind", "base", "--approved-by", "ops", *extra
    )


@pytest.fixture
def imported(env):
    """A registry holding one single-file model and one diffusers folder."""
    assert import_(weights(env / "src" / "base.safetensors")).exit_code == 0
    folder = env / "src" / "refiner"
    weights(folder / "unet" / "diffusion_pytorch_model.safetensors", 2.0)
    (folder / "model_index.json").write_text("{}")
    result = import_(folder, "sd_xl_refiner_1.0")
    assert result.exit_code == 0, result.output
    return env / "registry"


def verify_json():
    result = models("verify", "--json")
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize(
    "command", [[], ["import"], ["verify"], ["list"]], ids=lambda c: " ".join(c) or "models"
)
def test_every_models_help_shows_an_example(command):
    result = models(*command, "--help")
    assert result.exit_code == 0
    assert "Example: airlock models" in result.output


def test_import_then_list(imported):
    result = models(
        "import",
        imported.parent / "src" / "base.safetensors",
        "--name",
        "x",
        "--version",
        "2",
        "--kind",
        "lora",
        "--approved-by",
        "itar",
        "--tenant",
        "tenant_defense_a",
    )
    assert result.exit_code == 0, result.output
    assert "imported x@2 (lora, tenant_defense_a)" in result.output
    listed = json.loads(models("list", "--json").stdout)
    assert [(m["name"], m["kind"], m["restricted_to"]) for m in listed] == [
        ("sd_xl_base_1.0", "base", "all_tenants"),
        ("sd_xl_refiner_1.0", "base", "all_tenants"),
        ("x", "lora", "tenant_defense_a"),
    ]
    table = models("list")
    assert table.exit_code == 0 and "sd_xl_refiner_1.0" in table.output


def test_verify_passes_on_a_clean_registry(imported):
    code, report = verify_json()
    assert code == 0 and report["ok"] and report["models"] == 2 and report["findings"] == []
    assert "intact: 2 models" in models("verify").output


def test_verify_finds_an_altered_file(imported):
    path = imported / "base_models" / "sd_xl_base_1.0@1.0.safetensors"
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"\x01")
    code, report = verify_json()
    assert code == 1
    [finding] = report["findings"]
    assert finding["kind"] == "altered" and finding["path"] == "base_models/sd_xl_base_1.0@1.0.safetensors"
    assert "expected sha256:" in finding["detail"]


def test_verify_finds_a_missing_model(imported):
    (imported / "base_models" / "sd_xl_refiner_1.0@1.0" / "model_index.json").unlink()  # a folder's file
    (imported / "base_models" / "sd_xl_base_1.0@1.0.safetensors").unlink()
    code, report = verify_json()
    assert code == 1
    assert {(f["kind"], f["path"]) for f in report["findings"]} == {
        ("missing", "base_models/sd_xl_base_1.0@1.0.safetensors"),
        ("altered", "base_models/sd_xl_refiner_1.0@1.0"),
    }


def test_verify_finds_unlisted_files_and_folders(imported):
    weights(imported / "base_models" / "smuggled.safetensors")
    (imported / "tenant_loras" / "tenant_x" / "lora_dir").mkdir(parents=True)
    (imported / "tenant_loras" / "stray.safetensors").write_bytes(b"x")
    result = models("verify")
    assert result.exit_code == 1
    assert "UNLISTED  base_models/smuggled.safetensors: not in the signed manifest" in result.output
    _code, report = verify_json()
    assert {f["path"] for f in report["findings"] if f["kind"] == "unlisted"} == {
        "base_models/smuggled.safetensors",
        "tenant_loras/tenant_x/lora_dir",
        "tenant_loras/stray.safetensors",
    }


def test_verify_and_list_refuse_a_tampered_manifest(imported):
    manifest = imported / MANIFEST
    manifest.write_text(manifest.read_text().replace("approved_by: ops", "approved_by: ciso", 1))
    code, report = verify_json()
    assert code == 1 and report["findings"][0]["kind"] == "manifest"
    assert "altered after signing" in report["findings"][0]["detail"]
    result = models("list")
    assert result.exit_code == 1 and "does not match its signature" in result.output


def test_an_import_is_refused_when_the_audit_log_cannot_be_written(env):
    (env / "audit-file").write_text("not a directory")
    source = weights(env / "src" / "base.safetensors")
    result = import_(source, "sd_xl_base_1.0", "--audit-root", env / "audit-file")
    assert result.exit_code == 1
    assert "cannot create the audit root" in result.output
    registry = env / "registry"
    assert not registry.exists() or not [p for p in registry.rglob("*") if p.is_file()]


def test_refusals_exit_1_and_usage_errors_exit_2(imported, env):
    assert import_(weights(env / "src" / "again.safetensors", 3.0)).exit_code == 1  # duplicate name+version
    pickled = env / "src" / "model.pt"
    pickled.write_bytes(b"\x80\x02}q\x00.")
    result = import_(pickled, "evil")
    assert result.exit_code == 1 and "pickle-based format" in result.output
    assert (
        models(
            "import", pickled, "--name", "a", "--version", "1", "--kind", "unet", "--approved-by", "ops"
        ).exit_code
        == 2
    )
    assert import_(pickled, "../etc").exit_code == 2
    assert models("verify", "--root", env / "nowhere").exit_code == 2
    assert models("verify", "--trust", env / "no-such.pub").exit_code == 2
    assert (
        models(
            "import",
            pickled,
            "--name",
            "a",
            "--version",
            "1",
            "--kind",
            "base",
            "--approved-by",
            "ops",
            "--key",
            env / "no-key",
        ).exit_code
        == 2
    )
    assert (imported / SIGNATURE).exists()
