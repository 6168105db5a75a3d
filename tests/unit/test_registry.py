"""The registry: signed manifest, fail-closed audited imports, tenant restrictions, verified paths."""

import dataclasses
import hashlib
import json
import os
import re
import stat

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from airlock.audit import AuditLog, AuditWriteError
from airlock.keys import init_keys, load_verifier
from airlock.registry import (
    ModelEntry,
    ModelIntegrityError,
    ModelRestrictedError,
    Registry,
    RegistryError,
    import_model,
    tree_checksum,
    verify_registry,
)
from airlock.registry import manifest as manifest_module
from airlock.registry.manifest import FIELDS, MANIFEST, PENDING, SIGNATURE


def weights(path, value: float = 1.0, shape=(4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full(shape, value, dtype=np.float16)}, str(path))
    return path


def folder_model(path, value: float = 1.0):
    weights(path / "unet" / "diffusion_pytorch_model.safetensors", value)
    (path / "unet" / "config.json").write_text('{"sample_size": 8}')
    (path / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    return path


@pytest.fixture
def reg(tmp_path):
    return tmp_path / "registry"


@pytest.fixture
def audit_dir(tmp_path):
    return tmp_path / "audit"


@pytest.fixture
def importer(reg, audit_dir, signer, verifier):
    """import_model with this test's registry, keys and audit log; keyword arguments override."""

    def run(path, name="sd_xl_base_1.0", version="1.0", kind="base", **kw):
        options = {"approved_by": "security_team", "signer": signer, "verifier": verifier} | kw
        audit = options.pop("audit", None)
        if audit is not None:
            return import_model(reg, path, name=name, version=version, kind=kind, audit=audit, **options)
        with AuditLog(audit_dir) as log:
            return import_model(reg, path, name=name, version=version, kind=kind, audit=log, **options)

    return run


def audit_records(audit_dir):
    return [json.loads(line) for p in sorted(audit_dir.glob("*/model_changes.jsonl")) for line in p.open()]


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if not p.is_dir())


@pytest.fixture
def populated(tmp_path, importer):
    """A base model (folder) for all tenants and a LoRA restricted to tenant_defense_a."""
    importer(folder_model(tmp_path / "src" / "base"))
    importer(
        weights(tmp_path / "src" / "lora.safetensors", 2.0),
        name="defense_brand_lora",
        version="3.0",
        kind="lora",
        approved_by="itar_compliance",
        tenant="tenant_defense_a",
        classification="CUI",
    )


# ---------------------------------------------------------------- the signed manifest


def test_import_writes_the_layout_and_a_signed_manifest_that_loads_back(reg, populated, verifier):
    assert files_under(reg) == [
        "base_models/sd_xl_base_1.0@1.0/model_index.json",
        "base_models/sd_xl_base_1.0@1.0/unet/config.json",
        "base_models/sd_xl_base_1.0@1.0/unet/diffusion_pytorch_model.safetensors",
        MANIFEST,
        SIGNATURE,
        "tenant_loras/tenant_defense_a/defense_brand_lora@3.0.safetensors",
    ]
    doc = yaml.safe_load((reg / MANIFEST).read_text())
    assert [list(m) for m in doc["models"]] == [list(FIELDS)] * 2
    lora = doc["models"][1]
    assert lora["version"] == "3.0" and lora["restricted_to"] == "tenant_defense_a"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", lora["checksum"])
    assert re.search(r'^  version: "3.0"$', (reg / MANIFEST).read_text(), re.M)  # quoted, as in the seed
    assert re.search(r"^  import_date: \d{4}-\d{2}-\d{2}$", (reg / MANIFEST).read_text(), re.M)
    line = (reg / SIGNATURE).read_text()
    assert re.fullmatch(rf"ed25519 {re.escape(verifier.fingerprint)} [A-Za-z0-9+/]{{86}}==\n", line)
    entries = Registry(reg, verifier).entries()
    assert [(e.name, e.version, e.kind, e.restricted_to) for e in entries] == [
        ("sd_xl_base_1.0", "1.0", "base", "all_tenants"),
        ("defense_brand_lora", "3.0", "lora", "tenant_defense_a"),
    ]
    assert entries[1].classification == "CUI" and entries[1].approved_by == "itar_compliance"


def test_a_manifest_without_its_signature_is_refused(reg, populated, verifier):
    (reg / SIGNATURE).unlink()
    with pytest.raises(RegistryError, match=rf"{SIGNATURE} is missing.*unsigned.*restore both files"):
        Registry(reg, verifier)


def test_a_manifest_altered_after_signing_is_refused(reg, populated, verifier):
    text = (reg / MANIFEST).read_text()
    (reg / MANIFEST).write_text(text.replace("restricted_to: tenant_defense_a", "restricted_to: all_tenants"))
    with pytest.raises(
        RegistryError, match=rf"{MANIFEST} does not match its signature.*altered after signing"
    ):
        Registry(reg, verifier)


def test_a_manifest_signed_by_another_key_is_refused(reg, populated, verifier, tmp_path):
    stranger = init_keys(tmp_path / "stranger")
    with pytest.raises(RegistryError, match=r"signed by key .* not the trusted key"):
        Registry(reg, load_verifier(tmp_path / "stranger"))
    # An attacker who edits the manifest and re-signs it with their own key gets nowhere either.
    data = (reg / MANIFEST).read_bytes().replace(b"tenant_defense_a\n", b"all_tenants\n")
    (reg / MANIFEST).write_bytes(data)
    (reg / SIGNATURE).write_bytes(manifest_module.signature_line(stranger, data))
    with pytest.raises(RegistryError, match="not the trusted key"):
        Registry(reg, verifier)


def test_loading_needs_a_trusted_key_and_a_well_formed_signature(reg, populated):
    with pytest.raises(RegistryError, match="needs a trusted public key"):
        Registry(reg, None)
    (reg / SIGNATURE).write_text("rsa nonsense\n")
    with pytest.raises(RegistryError, match="is not a signature line"):
        Registry(reg, load_verifier(reg.parent / "keys"))


def test_an_import_cut_short_between_signature_and_manifest_fails_closed_then_completes(
    reg, populated, verifier, importer, tmp_path
):
    old = (reg / MANIFEST).read_bytes()
    importer(weights(tmp_path / "src" / "vae.safetensors", 3.0), name="sdxl_vae", kind="vae")
    # Rewind to the crash point: new signature written, pending copy written, manifest still old.
    (reg / PENDING).write_bytes((reg / MANIFEST).read_bytes())
    (reg / MANIFEST).write_bytes(old)
    with pytest.raises(RegistryError, match=r"an import was interrupted.*Run `airlock models import` again"):
        Registry(reg, verifier)
    importer(weights(tmp_path / "src" / "refiner.safetensors", 4.0), name="sd_xl_refiner_1.0", kind="refiner")
    assert [e.name for e in Registry(reg, verifier).entries()] == [
        "sd_xl_base_1.0",
        "defense_brand_lora",
        "sdxl_vae",
        "sd_xl_refiner_1.0",
    ]
    assert not (reg / PENDING).exists()
    assert verify_registry(reg, verifier).ok


def test_a_failed_manifest_commit_rolls_the_import_back(
    reg, populated, verifier, importer, tmp_path, monkeypatch
):
    before = ((reg / MANIFEST).read_bytes(), (reg / SIGNATURE).read_bytes())
    real = manifest_module.replace_atomically

    def disk_full_on_manifest(path, data, mode=0o640):
        if path.name == MANIFEST and data != before[0]:
            raise OSError(28, "No space left on device", str(path))
        real(path, data, mode)

    monkeypatch.setattr(manifest_module, "replace_atomically", disk_full_on_manifest)
    with pytest.raises(RegistryError, match=r"No space left on device.*nothing was changed"):
        importer(weights(tmp_path / "src" / "vae.safetensors", 3.0), name="sdxl_vae", kind="vae")
    assert ((reg / MANIFEST).read_bytes(), (reg / SIGNATURE).read_bytes()) == before
    assert verify_registry(reg, verifier).ok  # the copied file is gone too
    assert audit_records(reg.parent / "audit")[-1]["outcome"] == "failure"


# ---------------------------------------------------------------- imports


def test_import_copies_hashes_and_audits(reg, importer, verifier, audit_dir, tmp_path):
    source = weights(tmp_path / "src" / "base.safetensors", 5.0)
    entry = importer(source, source="usb:/media/usb0 (transfer T-0042)", classification="internal")
    placed = reg / entry.path
    assert placed.read_bytes() == source.read_bytes()
    assert entry.checksum == "sha256:" + hashlib.sha256(source.read_bytes()).hexdigest()
    assert stat.S_IMODE(placed.stat().st_mode) & 0o222 == 0  # weights are frozen: read-only
    assert Registry(reg, verifier).entries() == [entry]
    [record] = audit_records(audit_dir)
    assert record["event"] == "model.imported" and record["outcome"] == "success"
    assert record["action"] == "import" and record["actor"] == "security_team"
    assert record["model"] == {"name": "sd_xl_base_1.0", "version": "1.0", "checksum": entry.checksum}
    assert record["approved_by"] == "security_team"
    assert (record["kind"], record["restricted_to"], record["path"]) == ("base", "all_tenants", entry.path)
    assert (record["source"], record["classification"]) == ("usb:/media/usb0 (transfer T-0042)", "internal")


def test_an_import_the_audit_log_cannot_record_is_refused_and_leaves_nothing(
    reg, populated, importer, verifier, tmp_path, clock
):
    before = ((reg / MANIFEST).read_bytes(), (reg / SIGNATURE).read_bytes(), files_under(reg))
    broken = tmp_path / "broken-audit"
    broken.mkdir()
    (broken / "2026-10-01").write_text("a file where the day folder must go")
    with AuditLog(broken, clock=clock) as log, pytest.raises(AuditWriteError, match="fail closed"):
        importer(weights(tmp_path / "src" / "vae.safetensors", 3.0), name="sdxl_vae", kind="vae", audit=log)
    assert ((reg / MANIFEST).read_bytes(), (reg / SIGNATURE).read_bytes(), files_under(reg)) == before
    assert [p.name for p in (reg / "base_models").iterdir()] == ["sd_xl_base_1.0@1.0"]  # no temp copy either


def test_the_same_name_and_version_is_never_replaced(reg, populated, importer, audit_dir, tmp_path, verifier):
    manifest = (reg / MANIFEST).read_bytes()
    with pytest.raises(RegistryError, match=r"sd_xl_base_1.0@1.0 is already registered.*new --version"):
        importer(weights(tmp_path / "src" / "other.safetensors", 9.0))
    assert (reg / MANIFEST).read_bytes() == manifest
    failure = audit_records(audit_dir)[-1]
    assert failure["outcome"] == "failure" and "already registered" in failure["reason"]
    assert failure["model"] == {"name": "sd_xl_base_1.0", "version": "1.0", "checksum": None}
    importer(weights(tmp_path / "src" / "other.safetensors", 9.0), version="1.1")  # a new version is fine
    assert [e.ref for e in Registry(reg, verifier).entries()][-1] == "sd_xl_base_1.0@1.1"


def test_a_refused_model_is_audited_as_a_failure_and_not_copied(reg, importer, audit_dir, tmp_path):
    evil = tmp_path / "src" / "evil.ckpt"
    evil.parent.mkdir()
    evil.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(RegistryError, match="pickle-based format"):
        importer(evil)
    [record] = audit_records(audit_dir)
    assert record["outcome"] == "failure" and "evil.ckpt refused" in record["reason"]
    assert not (reg / MANIFEST).exists()


def test_unlisted_leftovers_and_a_lost_manifest_block_imports(reg, populated, importer, tmp_path):
    leftover = reg / "base_models" / "sdxl_vae@1.0.safetensors"
    leftover.write_bytes(b"left by hand")
    with pytest.raises(RegistryError, match="exists but the manifest does not list it"):
        importer(weights(tmp_path / "src" / "vae.safetensors", 3.0), name="sdxl_vae", kind="vae")
    (reg / MANIFEST).unlink()
    (reg / SIGNATURE).unlink()
    with pytest.raises(RegistryError, match=r"holds model files .* but no model_manifest.yaml"):
        importer(
            weights(tmp_path / "src" / "vae.safetensors", 3.0), name="sdxl_vae", version="2.0", kind="vae"
        )


@pytest.mark.parametrize(
    ("field", "value"), [("name", "../escape"), ("name", "a@b"), ("version", "1/2"), ("tenant", "../x")]
)
def test_names_that_could_escape_the_layout_are_refused(importer, tmp_path, field, value):
    options = {field: value} | ({"kind": "lora"} if field == "tenant" else {})
    with pytest.raises(RegistryError, match="use letters, digits"):
        importer(weights(tmp_path / "src" / "w.safetensors"), **options)


# ---------------------------------------------------------------- the engine's API


def test_get_enforces_tenant_restrictions(reg, populated, verifier):
    registry = Registry(reg, verifier)
    lora = registry.get("defense_brand_lora", tenant="tenant_defense_a", kind="lora")
    assert lora.allowed_for("tenant_defense_a") and not lora.allowed_for("healthcare_system_b")
    assert not lora.allowed_for(None)
    with pytest.raises(ModelRestrictedError) as restricted:
        registry.get("defense_brand_lora", tenant="healthcare_system_b")
    with pytest.raises(RegistryError) as missing:
        registry.get("no_such_lora", tenant="healthcare_system_b")
    # Another tenant's model reads exactly like a missing one (no existence oracle, no tenant named).
    assert str(restricted.value).replace("defense_brand_lora", "X") == str(missing.value).replace(
        "no_such_lora", "X"
    )
    assert "tenant_defense_a" not in str(restricted.value)
    with pytest.raises(ModelRestrictedError):
        registry.get("defense_brand_lora")  # no tenant: only models open to all tenants
    base = registry.get("sd_xl_base_1.0", tenant="healthcare_system_b", kind="base")
    assert base.allowed_for("healthcare_system_b") and base.allowed_for(None)


def test_get_names_the_problem_for_unknown_models_and_wrong_kinds(reg, populated, verifier):
    registry = Registry(reg, verifier)
    with pytest.raises(RegistryError, match=r"no model 'sd_xl_turbo'.*known: sd_xl_base_1.0@1.0\. Import"):
        registry.get("sd_xl_turbo", tenant="healthcare_system_b")  # another tenant's LoRA is not listed
    with pytest.raises(RegistryError, match=r"known: defense_brand_lora@3.0, sd_xl_base_1.0@1.0"):
        registry.get("sd_xl_turbo", tenant="tenant_defense_a")
    with pytest.raises(RegistryError, match="is a base model, not a lora"):
        registry.get("sd_xl_base_1.0", kind="lora")


def test_get_asks_for_a_version_when_several_are_registered(reg, populated, verifier, importer, tmp_path):
    importer(weights(tmp_path / "src" / "v2.safetensors", 7.0), version="1.1")
    registry = Registry(reg, verifier)
    with pytest.raises(RegistryError, match=r"several versions \(sd_xl_base_1.0@1.0, sd_xl_base_1.0@1.1\)"):
        registry.get("sd_xl_base_1.0")
    assert registry.get("sd_xl_base_1.0@1.1").version == "1.1"


def test_verified_path_rehashes_every_time(reg, populated, verifier):
    registry = Registry(reg, verifier)
    lora = registry.get("defense_brand_lora", tenant="tenant_defense_a")
    path = registry.verified_path(lora)
    assert path.is_absolute() and path == reg.absolute() / lora.path
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # one bit in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as caught:
        registry.verified_path(lora)
    message = str(caught.value)
    assert "defense_brand_lora@3.0" in message and lora.checksum in message
    assert "actual sha256:" + hashlib.sha256(bytes(data)).hexdigest() in message


def test_verified_path_detects_changes_inside_a_folder_and_missing_models(reg, populated, verifier):
    registry = Registry(reg, verifier)
    base = registry.get("sd_xl_base_1.0", kind="base")
    assert registry.verified_path(base).is_dir()
    (reg / base.path / "unet" / "extra.json").write_text("{}")
    with pytest.raises(ModelIntegrityError, match="fails its integrity check: expected sha256:"):
        registry.verified_path(base)
    lora = registry.get("defense_brand_lora", tenant="tenant_defense_a")
    (reg / lora.path).unlink()
    with pytest.raises(ModelIntegrityError, match=r"defense_brand_lora@3.0 is missing"):
        registry.verified_path(lora)


def test_verified_path_only_trusts_entries_from_the_signed_manifest(reg, populated, verifier):
    registry = Registry(reg, verifier)
    forged = dataclasses.replace(registry.get("sd_xl_base_1.0"), checksum="sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="not an entry of the signed manifest"):
        registry.verified_path(forged)
    assert isinstance(forged, ModelEntry)


# ---------------------------------------------------------------- checksums


def test_a_file_checksum_is_the_sha256_of_its_bytes(tmp_path):
    path = weights(tmp_path / "w.safetensors")
    assert tree_checksum(path) == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_checksum_follows_its_definition_and_ignores_write_order(tmp_path):
    files = {"model_index.json": b"{}", "unet/config.json": b'{"a": 1}', "tokenizer/merges.txt": b"a b\n"}
    first, second = tmp_path / "first", tmp_path / "second"
    for root, order in ((first, sorted(files)), (second, sorted(files, reverse=True))):
        for rel in order:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(files[rel])
    os.utime(second / "model_index.json", (0, 0))  # timestamps play no part
    listing = "".join(f"{hashlib.sha256(files[rel]).hexdigest()}  {rel}\n" for rel in sorted(files))
    expected = "sha256:" + hashlib.sha256(listing.encode()).hexdigest()
    assert tree_checksum(first) == tree_checksum(second) == expected
    (second / "unet" / "config.json").rename(second / "unet" / "config2.json")
    assert tree_checksum(second) != expected  # names are covered, not just contents


def test_entry_fields_the_manifest_could_not_load_back_are_refused_before_copying(reg, importer, tmp_path):
    with pytest.raises(RegistryError, match="classification must be a non-empty one-line string"):
        importer(weights(tmp_path / "src" / "w.safetensors"), classification="CUI\nextra: injected")
    assert not (reg / MANIFEST).exists() and files_under(reg) == []
