"""Transfer bundles as an operator uses them: build on the connected side, verify and import inside
the enclave. Every forged bundle must be refused by name, with nothing extracted into the store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import bundle_fixtures as fx
import pytest
import yaml
from typer.testing import CliRunner

from airlock.audit import AuditWriteError
from airlock.bundle import Custody, import_bundle, verify_bundle
from airlock.bundle import manifest as mf
from airlock.bundle.build import build_bundle
from airlock.bundle.errors import BundleError, BundleSpecError
from airlock.bundle.spec import load_spec
from airlock.bundle.wheels import fetch_wheels, pip_download, sha256_file
from airlock.cli import app
from airlock.keys import init_keys, load_verifier
from airlock.registry import verify_registry
from airlock.registry.checksum import tree_checksum

runner = CliRunner()
CUSTODY = "USB-0042, J. Smith (courier), A. Jones"


def no_network(entry, spec, dest):
    raise AssertionError(f"{entry.name} was downloaded although the cache holds it")


def write_spec(src: Path, **changes) -> Path:
    spec = {
        "name": "airlock-enclave",
        "version": "0.1.0",
        "target": {"distribution": "debian-12", "architecture": "amd64", "python": "3.11"},
        "python": {"lock": "requirements.lock"},
        "os_packages": {"debs": ["airlock-test-a.deb", "airlock-test-b.deb"]},
        "models": {"registry": "../registry", "trust": "../org-keys/signing.pub"},
        "files": [
            {"src": "ca.crt", "dest": "config/ca.crt"},
            {"src": "payload.bin", "dest": "data/payload.bin"},
        ],
        **changes,
    }
    path = src / "bundle.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """One spec with real inputs, built once; tests that change things copy what they change."""
    base = tmp_path_factory.mktemp("bundle")
    transfer = init_keys(base / "transfer-keys")
    org = init_keys(base / "org-keys")
    other = init_keys(base / "other-keys")
    src = base / "src"
    src.mkdir()
    cache = base / "cache"
    wheels = fx.wheels(cache / "wheels")  # the download cache holds them: the build never downloads
    fx.write_lock(src / "requirements.lock", wheels)
    fx.deb(src, "airlock-test-a", "1.0")
    fx.deb(src, "airlock-test-b", "2.0-1", depends="airlock-test-a")
    registry = fx.registry(base, org, load_verifier(base / "org-keys"))
    (src / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n")
    (src / "payload.bin").write_bytes(b"AIRLOCK-TEST-PAYLOAD\n" * 8)
    spec = write_spec(src)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("SOURCE_DATE_EPOCH", raising=False)
        built = build_bundle(
            load_spec(spec),
            base / "bundle.tar",
            transfer,
            creator="release engineering",
            cache=cache,
            downloader=no_network,
        )
    return SimpleNamespace(
        base=base,
        src=src,
        spec=spec,
        cache=cache,
        wheels=wheels,
        registry=registry,
        bundle=built.path,
        sha256=built.sha256,
        transfer=transfer,
        trust=base / "transfer-keys" / "signing.pub",
        org_trust=base / "org-keys" / "signing.pub",
        other=other,
        other_trust=base / "other-keys" / "signing.pub",
    )


def bundle_cli(*args):
    return runner.invoke(app, ["bundle", *map(str, args)], terminal_width=200)


def import_cli(kit, bundle, store, audit, *extra):
    return bundle_cli(
        "import",
        bundle,
        "--trust",
        kit.trust,
        "--registry-trust",
        kit.org_trust,
        "--custody",
        CUSTODY,
        "--store",
        store,
        "--audit-root",
        audit,
        "--actor",
        "ops_alice",
        *extra,
    )


def records(audit: Path, category: str) -> list[dict]:
    return [json.loads(line) for p in sorted(audit.glob(f"*/{category}.jsonl")) for line in p.open()]


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


# ------------------------------------------------------------------------------------ round trip


def test_build_verify_import_round_trip(kit, tmp_path):
    out = tmp_path / "airlock-bundle-0.1.0.tar"
    built = bundle_cli(
        "build",
        "--spec",
        kit.spec,
        "--out",
        out,
        "--key",
        kit.base / "transfer-keys",
        "--creator",
        "release engineering",
        "--cache",
        kit.cache,
    )
    assert built.exit_code == 0, built.output
    sha = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {sha}" in built.output

    verified = bundle_cli("verify", out, "--trust", kit.trust)
    assert verified.exit_code == 0, verified.output
    assert "intact" in verified.output and sha in verified.output

    store, audit = tmp_path / "store", tmp_path / "audit"
    imported = import_cli(kit, out, store, audit)
    assert imported.exit_code == 0, imported.output
    home = store / sha
    assert f"wheels:   {home / 'wheels'}" in imported.output
    assert f"registry: {home / 'models' / 'registry'}" in imported.output
    assert sorted(p.name for p in (home / "wheels").glob("*.whl")) == sorted(w.name for w in kit.wheels)
    assert (home / "wheels" / "requirements.lock").read_text().count("--hash=sha256:") == len(kit.wheels)
    packages = (home / "apt" / "Packages").read_text()
    assert "Package: airlock-test-a" in packages and "Package: airlock-test-b" in packages
    assert (home / "files" / "config" / "ca.crt").read_bytes() == (kit.src / "ca.crt").read_bytes()
    assert verify_registry(home / "models" / "registry", load_verifier(kit.org_trust)).ok
    assert not list(store.glob("*.partial"))


def test_a_second_import_changes_nothing(kit, tmp_path):
    store, audit = tmp_path / "store", tmp_path / "audit"
    assert import_cli(kit, kit.bundle, store, audit).exit_code == 0
    before, audited = tree(store), len(records(audit, "model_changes"))
    again = import_cli(kit, kit.bundle, store, audit)
    assert again.exit_code == 0, again.output
    assert "already imported" in again.output
    assert tree(store) == before
    assert len(records(audit, "model_changes")) == audited


def test_import_audits_each_model_with_its_chain_of_custody(kit, tmp_path):
    store, audit = tmp_path / "store", tmp_path / "audit"
    assert import_cli(kit, kit.bundle, store, audit).exit_code == 0
    models = records(audit, "model_changes")
    expected = {
        "sd_xl_base_1.0": tree_checksum(kit.registry / "base_models" / "sd_xl_base_1.0@1.0"),
        "brand_lora_v3": tree_checksum(
            kit.registry / "tenant_loras" / "all_tenants" / "brand_lora_v3@1.0.safetensors"
        ),
    }
    assert {r["model"]["name"]: r["model"]["checksum"] for r in models} == expected
    for record in models:
        assert record["event"] == "model.imported" and record["action"] == "import"
        assert record["outcome"] == "success" and record["actor"] == "ops_alice"
        assert record["model"]["version"] == "1.0"
        assert record["bundle_sha256"] == kit.sha256
        assert record["custody"] == {
            "media_id": "USB-0042",
            "courier": "J. Smith (courier)",
            "received_by": "A. Jones",
        }
    (event,) = records(audit, "system_events")
    assert event["event"] == "bundle.imported" and event["custody"]["media_id"] == "USB-0042"


def test_an_import_whose_audit_write_fails_is_rolled_back(kit, tmp_path):
    class FullDisk:
        def append(self, *args, **fields):
            raise AuditWriteError("audit record not written: No space left on device")

    store = tmp_path / "store"
    with pytest.raises(AuditWriteError):
        import_bundle(
            kit.bundle,
            load_verifier(kit.trust),
            store=store,
            custody=Custody.parse(CUSTODY),
            audit=FullDisk(),
            registry_verifier=load_verifier(kit.org_trust),
        )
    assert list(store.iterdir()) == []


def test_a_registry_signed_by_another_key_is_refused_on_import(kit, tmp_path):
    store, audit = tmp_path / "store", tmp_path / "audit"
    result = bundle_cli(
        "import",
        kit.bundle,
        "--trust",
        kit.trust,
        "--registry-trust",
        kit.other_trust,
        "--custody",
        CUSTODY,
        "--store",
        store,
        "--audit-root",
        audit,
    )
    assert result.exit_code == 1, result.output
    assert "REGISTRY" in result.output and "model_manifest.yaml" in result.output
    assert list(store.iterdir()) == []
    assert records(audit, "model_changes") == []


def test_custody_must_name_media_courier_and_receiver(kit, tmp_path):
    result = bundle_cli(
        "import", kit.bundle, "--trust", kit.trust, "--custody", "a USB stick", "--store", tmp_path / "store"
    )
    assert result.exit_code == 2
    assert "MEDIA_ID, COURIER, RECEIVED_BY" in result.output


# ---------------------------------------------------------------------------- forged bundles


def _edit(kit, out, change):
    entries = fx.members(kit.bundle)
    return fx.write_tar(out, change(entries))


def _replace(entries, name, data):
    return [(info, data if info.name == name else body) for info, body in entries]


def _first_wheel(entries):
    return next(info.name for info, _ in entries if info.name.endswith(".whl"))


def flipped_byte(kit, out):
    entries = fx.members(kit.bundle)
    name = _first_wheel(entries)
    data = bytearray(dict((i.name, d) for i, d in entries)[name])
    data[len(data) // 2] ^= 0x01
    return fx.write_tar(out, _replace(entries, name, bytes(data))), [], ["ALTERED", name]


def flipped_byte_and_checksums(kit, out):
    entries = fx.members(kit.bundle)
    name = _first_wheel(entries)
    bodies = {i.name: d for i, d in entries}
    data = bytearray(bodies[name])
    data[len(data) // 2] ^= 0x01
    sums = mf.parse_checksums(bodies[mf.CHECKSUMS])
    sums[name] = hashlib.sha256(data).hexdigest()
    entries = _replace(_replace(entries, name, bytes(data)), mf.CHECKSUMS, mf.checksums_text(sums))
    return fx.write_tar(out, entries), [], ["CHECKSUMS", "checksums_sha256"]


def added_file(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("wheels/evil-1.0-py3-none-any.whl", b"PK\x03\x04evil")])
    return path, [], ["UNLISTED", "wheels/evil-1.0-py3-none-any.whl"]


def removed_file(kit, out):
    path = _edit(kit, out, lambda e: [(i, d) for i, d in e if i.name != "files/config/ca.crt"])
    return path, [], ["MISSING", "files/config/ca.crt"]


def edited_manifest(kit, out):
    def change(entries):
        body = dict((i.name, d) for i, d in entries)[mf.MANIFEST]
        return _replace(entries, mf.MANIFEST, body.replace(b"version: 0.1.0", b"version: 9.9.9"))

    return _edit(kit, out, change), [], ["SIGNATURE", "altered after signing"]


def other_key(kit, out):
    def change(entries):
        body = dict((i.name, d) for i, d in entries)[mf.MANIFEST]
        return _replace(entries, mf.SIGNATURE, mf.signature_line(kit.other, body))

    return _edit(kit, out, change), [], ["SIGNATURE", f"signed by key {kit.other.fingerprint}"]


def truncated(kit, out):
    data = kit.bundle.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out, [], ["truncated"]


def cut_at_end_marker(kit, out):
    with tarfile.open(kit.bundle) as tar:
        tar.getmembers()
        end = tar.offset
    out.write_bytes(kit.bundle.read_bytes()[:end])
    return out, [], ["truncated", "end-of-archive"]


def trailing_data(kit, out):
    out.write_bytes(kit.bundle.read_bytes() + b"#!/bin/sh\nexec evil\n")
    return out, [], ["data after the end of the archive"]


def traversal(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("../../etc/passwd", b"root::0:0::/root:/bin/sh\n")])
    return path, [], ["UNSAFE", "../../etc/passwd", "escapes"]


def absolute(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("/etc/cron.d/evil", b"* * * * * root sh\n")])
    return path, [], ["/etc/cron.d/evil", "absolute path"]


def symlink(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/evil", None, tarfile.SYMTYPE, "/etc/shadow")])
    return path, [], ["files/evil", "symbolic link to /etc/shadow"]


def hardlink(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/hard", None, tarfile.LNKTYPE, "manifest.yaml")])
    return path, [], ["files/hard", "hard link"]


def device(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/mem", None, tarfile.CHRTYPE)])
    return path, [], ["files/mem", "character device"]


def fifo(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/pipe", None, tarfile.FIFOTYPE)])
    return path, [], ["files/pipe", "fifo"]


def duplicate(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/config/ca.crt", b"attacker's CA\n")])
    return path, [], ["files/config/ca.crt", "appears twice"]


def oversized(kit, out):
    path = _edit(kit, out, lambda e: [*e, fx.entry("files/big.bin", b"\0" * (2 << 20))])
    return path, ["--max-member-bytes", 1 << 20], ["files/big.bin", "over the per-file limit"]


def over_total(kit, out):
    return kit.bundle, ["--max-total-bytes", 1000], ["over the limit of 1000"]


FORGERIES = [
    flipped_byte,
    flipped_byte_and_checksums,
    added_file,
    removed_file,
    edited_manifest,
    other_key,
    truncated,
    cut_at_end_marker,
    trailing_data,
    traversal,
    absolute,
    symlink,
    hardlink,
    device,
    fifo,
    duplicate,
    oversized,
    over_total,
]


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_a_forged_bundle_is_refused_by_name_and_nothing_is_extracted(kit, tmp_path, forge):
    bundle, extra, expected = forge(kit, tmp_path / "forged.tar")
    verified = bundle_cli("verify", bundle, "--trust", kit.trust, *extra)
    assert verified.exit_code == 1, verified.output
    for text in expected:
        assert text in verified.output
    store, audit = tmp_path / "store", tmp_path / "audit"
    imported = import_cli(kit, bundle, store, audit, *extra)
    assert imported.exit_code == 1, imported.output
    assert "refused" in imported.output and expected[-1] in imported.output
    assert list(store.iterdir()) == []  # not even a .partial folder
    assert records(audit, "model_changes") == []
    (refusal,) = records(audit, "system_events")
    assert refusal["event"] == "bundle.import_refused" and refusal["outcome"] == "failure"


def test_verify_json_names_each_problem(kit, tmp_path):
    bundle, _, _ = removed_file(kit, tmp_path / "forged.tar")
    result = bundle_cli("verify", bundle, "--trust", kit.trust, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    assert {"kind": "missing", "path": "files/config/ca.crt"}.items() <= report["findings"][0].items()


def test_verify_reads_without_extracting_and_reports_the_bundle_hash(kit):
    report = verify_bundle(kit.bundle, load_verifier(kit.trust))
    assert report.ok, report.findings
    assert report.bundle_sha256 == hashlib.sha256(kit.bundle.read_bytes()).hexdigest() == kit.sha256
    assert report.creator == "release engineering"


# ------------------------------------------------------------------------ the tar and its files


def test_the_tar_is_deterministic(kit, tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    spec = load_spec(kit.spec)
    again = build_bundle(
        spec,
        tmp_path / "again.tar",
        kit.transfer,
        creator="release engineering",
        cache=kit.cache,
        downloader=no_network,
    )
    assert again.sha256 == kit.sha256
    assert again.path.read_bytes() == kit.bundle.read_bytes()


def test_source_date_epoch_fixes_every_time_in_the_bundle(kit, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01T00:00:00Z
    spec = load_spec(kit.spec)
    first = build_bundle(
        spec, tmp_path / "a.tar", kit.transfer, creator="re", cache=kit.cache, downloader=no_network
    )
    os.utime(kit.src / "ca.crt")  # an input touched: with SOURCE_DATE_EPOCH set, the bytes stay the same
    second = build_bundle(
        spec, tmp_path / "b.tar", kit.transfer, creator="re", cache=kit.cache, downloader=no_network
    )
    assert first.sha256 == second.sha256
    assert first.manifest["created"] == "2026-01-01T00:00:00Z"
    with tarfile.open(first.path) as tar:
        assert {m.mtime for m in tar.getmembers()} == {1767225600}


def test_layout_owners_modes_and_checksums(kit):
    with tarfile.open(kit.bundle) as tar:
        infos = tar.getmembers()
        bodies = {m.name: tar.extractfile(m).read() for m in infos if m.isfile()}
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "root", "root")
        assert info.mode == (0o755 if info.isdir() else 0o644)
    names = [m.name for m in infos if m.isfile()]
    # the data sorted, then the SBOM, then the signed part that covers everything before it
    assert names[-4:] == ["sbom.cdx.json", mf.CHECKSUMS, mf.MANIFEST, mf.SIGNATURE]
    assert names[:-4] == sorted(names[:-4])
    listed = mf.parse_checksums(bodies[mf.CHECKSUMS])
    assert set(listed) == set(names) - set(mf.SIGNED)
    assert all(hashlib.sha256(bodies[n]).hexdigest() == d for n, d in listed.items())
    manifest = yaml.safe_load(bodies[mf.MANIFEST])
    assert manifest["checksums_sha256"] == hashlib.sha256(bodies[mf.CHECKSUMS]).hexdigest()
    assert manifest["creator"] == "release engineering"
    assert {c["kind"] for c in manifest["components"]} == {"wheel", "deb", "model", "file"}
    assert "models/registry/model_manifest.yaml.sig" in listed
    packages = bodies["apt/Packages"].decode()
    for name in ("airlock-test-a_1.0_all.deb", "airlock-test-b_2.0-1_all.deb"):
        assert f"Filename: ./{name}" in packages
        assert f"SHA256: {listed['apt/' + name]}" in packages
    release = bodies["apt/Release"].decode()
    assert (
        f"{hashlib.sha256(bodies['apt/Packages']).hexdigest()} {len(bodies['apt/Packages'])} Packages"
        in release
    )


def test_sbom_is_valid_cyclonedx_listing_wheels_debs_and_models(kit):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    with tarfile.open(kit.bundle) as tar:
        text = tar.extractfile("sbom.cdx.json").read().decode()
        listed = mf.parse_checksums(tar.extractfile(mf.CHECKSUMS).read())
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    by_type = {}
    for component in sbom["components"]:
        by_type.setdefault(component["type"], []).append(component)
    wheels = [c for c in by_type["library"] if c["purl"].startswith("pkg:pypi/")]
    assert len(wheels) == len(kit.wheels)
    for component in wheels:
        path = next(p["value"] for p in component["properties"] if p["name"] == "airlock:path")
        assert component["hashes"] == [{"alg": "SHA-256", "content": listed[path]}]
        assert component["licenses"], f"{component['name']} lost its license"
    debs = sorted(c["purl"] for c in by_type["library"] if c["purl"].startswith("pkg:deb/"))
    assert debs == [
        "pkg:deb/debian/airlock-test-a@1.0?arch=all&distro=debian-12",
        "pkg:deb/debian/airlock-test-b@2.0-1?arch=all&distro=debian-12",
    ]
    models = {c["name"]: c["hashes"][0]["content"] for c in by_type["machine-learning-model"]}
    base = tree_checksum(kit.registry / "base_models" / "sd_xl_base_1.0@1.0")
    assert models["sd_xl_base_1.0"] == base.removeprefix("sha256:")
    assert set(models) == {"sd_xl_base_1.0", "brand_lora_v3"}


# ----------------------------------------------------------------------------- the download cache


def test_cached_wheels_are_reused_and_a_bad_copy_is_fetched_again(kit, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(kit.cache / "wheels", cache / "wheels")
    broken = cache / "wheels" / kit.wheels[0].name
    broken.write_bytes(broken.read_bytes() + b"partial download")
    missing = cache / "wheels" / kit.wheels[1].name
    missing.unlink()
    fetched = []

    def fake_pip(entry, spec, dest):
        fetched.append(entry.name)
        source = next(w for w in kit.wheels if w.name.lower().startswith(entry.name.replace("-", "_") + "-"))
        shutil.copy(source, dest / source.name)

    built = build_bundle(
        load_spec(kit.spec), tmp_path / "b.tar", kit.transfer, creator="re", cache=cache, downloader=fake_pip
    )
    assert sorted(fetched) == sorted(w.name.split("-")[0].replace("_", "-").lower() for w in kit.wheels[:2])
    assert verify_bundle(built.path, load_verifier(kit.trust)).ok
    fetched.clear()
    build_bundle(
        load_spec(kit.spec), tmp_path / "c.tar", kit.transfer, creator="re", cache=cache, downloader=fake_pip
    )
    assert fetched == []  # everything is cached now


def test_pip_is_asked_for_the_target_platform_not_this_machine(kit, tmp_path, monkeypatch):
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return SimpleNamespace(returncode=1, stdout="", stderr="ERROR: No matching distribution found")

    monkeypatch.setattr("airlock.bundle.wheels.subprocess.run", fake_run)
    spec = load_spec(kit.spec)
    entry = SimpleNamespace(name="cryptography", version="50.0.2", hashes=frozenset({"a" * 64}))
    with pytest.raises(BundleError, match="No matching distribution found"):
        pip_download(entry, spec, tmp_path)
    (command,) = calls
    for flag in (
        "--require-hashes",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--abi",
        "cp311",
    ):
        assert flag in command
    assert "--platform=manylinux_2_36_x86_64" in command and "--platform=manylinux2014_x86_64" in command


def test_a_failed_build_leaves_neither_the_bundle_nor_a_partial_file(kit, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(kit.src, src)
    (tmp_path / "registry").symlink_to(kit.registry)
    (tmp_path / "org-keys").symlink_to(kit.org_trust.parent)
    spec = load_spec(write_spec(src))
    (src / "payload.bin").unlink()  # gone between reading the spec and writing the tar
    out = tmp_path / "out" / "bundle.tar"
    out.parent.mkdir()
    with pytest.raises(OSError):
        build_bundle(spec, out, kit.transfer, creator="re", cache=kit.cache, downloader=no_network)
    assert list(out.parent.iterdir()) == []


def test_a_spec_with_an_unknown_key_is_a_usage_error(kit, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(kit.src, src)
    spec = write_spec(src, fiels=[])
    result = bundle_cli("build", "--spec", spec, "--key", kit.base / "transfer-keys", "--creator", "re")
    assert result.exit_code == 2
    assert "unknown key(s) fiels" in result.output


# ----------------------------------------------------- python.requires (closure) and python.wheels


@pytest.fixture
def deps(tmp_path):
    """A lock pinning fx.dependency_wheels, an empty cache, and a fake index that serves them."""
    index = fx.dependency_wheels(tmp_path / "index")
    src = tmp_path / "src"
    src.mkdir()
    fx.write_lock(src / "requirements.lock", index)
    fetched = []

    def from_index(entry, spec, dest):
        fetched.append(entry.name)
        (source,) = [w for w in index if w.name.split("-")[0].replace("_", "-") == entry.name]
        shutil.copy(source, dest / source.name)

    return SimpleNamespace(
        src=src, index=index, fetched=fetched, download=from_index, cache=tmp_path / "cache"
    )


def deps_spec(deps, target=None, **python):
    changes = {"target": target} if target else {}
    path = write_spec(
        deps.src,
        python={"lock": "requirements.lock", **python},
        os_packages=None,
        models=None,
        files=None,
        **changes,
    )
    return load_spec(path)


def shipped(deps, target=None, **python) -> tuple[set[str], str]:
    wheels, lock = fetch_wheels(deps_spec(deps, target, **python), deps.cache, deps.download)
    return {w.name for w in wheels}, lock


def pinned(lock: str) -> set[str]:
    return {line.split("==")[0] for line in lock.splitlines() if "==" in line}


def test_requires_ships_the_roots_and_what_their_requires_dist_needs_on_the_target(deps):
    names, lock = shipped(deps, requires=["dep-app"])
    # not dep-win/dep-arm/dep-old (another platform, machine, Python), nor dep-gpu/dep-slow (extras
    # nobody asked for); dep-timeout is, since Debian 12's python3 is 3.11.2
    assert names == {"dep-app", "dep-core", "dep-web", "dep-speed", "dep-timeout"}
    assert pinned(lock) == names
    assert deps.fetched[0] == "dep-app"  # its wheel is read before anything it needs is fetched
    assert sorted(deps.fetched) == sorted(names)
    deps.fetched.clear()
    assert shipped(deps, requires=["dep-app"])[0] == names
    assert deps.fetched == []  # the second time, everything comes from the cache


def test_markers_see_the_targets_python_and_machine(deps):
    assert deps_spec(deps).target.python_full == "3.11.2"
    debian_12 = {"distribution": "debian-12", "architecture": "amd64", "python": "3.11"}
    names, _ = shipped(deps, {**debian_12, "python_full": "3.11.5"}, requires=["dep-app"])
    assert "dep-timeout" not in names
    names, _ = shipped(deps, {**debian_12, "architecture": "arm64", "python": "3.9"}, requires=["dep-app"])
    assert {"dep-arm", "dep-old", "dep-timeout"} <= names and "dep-win" not in names
    assert deps_spec(deps, {**debian_12, "python": "3.12"}).target.python_full == "3.12.0"
    ubuntu = {"distribution": "ubuntu-22.04", "architecture": "amd64", "python": "3.10"}
    assert deps_spec(deps, ubuntu).target.python_full == "3.10.12"
    with pytest.raises(BundleSpecError, match=r"must start with target\.python"):
        deps_spec(deps, {**debian_12, "python_full": "3.12.1"})


def test_extras_are_followed_only_when_asked(deps):
    plain, _ = shipped(deps, requires=["dep-app"])
    names, lock = shipped(deps, requires=["dep-app[gpu]"])
    # dep-gpu -> dep-cuda -> dep-web[slow]: dep-web's Requires-Dist is read again for the new extra
    assert names == plain | {"dep-gpu", "dep-cuda", "dep-slow"}
    assert pinned(lock) == names
    with pytest.raises(
        BundleSpecError, match=r"extra\(s\) gpux, which it does not provide \(it provides: gpu\)"
    ):
        shipped(deps, requires=["dep-app[gpux]"])


def test_a_dependency_missing_from_the_lock_is_refused_by_name(deps):
    fx.write_lock(deps.src / "requirements.lock", [w for w in deps.index if "dep_core" not in w.name])
    with pytest.raises(BundleSpecError) as caught:
        shipped(deps, requires=["dep-app"])
    message = str(caught.value)
    assert "dep-core is needed by dep-app 1.0 (Requires-Dist: dep-core>=1)" in message
    assert "add it to requirements.in and run `make lock`" in message
    with pytest.raises(BundleSpecError, match=r"dep-core is needed by python\.requires"):
        shipped(deps, requires=["dep-core"])


def test_only_and_requires_together_or_a_pinned_root_are_refused(deps):
    with pytest.raises(BundleSpecError, match=r"not both: drop python\.only"):
        deps_spec(deps, only=["dep-core"], requires=["dep-app"])
    with pytest.raises(BundleSpecError, match=r"versions come from python\.lock"):
        deps_spec(deps, requires=["dep-app>=1"])


def test_a_local_wheel_is_a_root_whose_own_metadata_and_extras_drive_the_closure(deps):
    local = fx.local_wheel(deps.src / "dist")
    wheels = [f"dist/{local.name}"]
    names, lock = shipped(deps, requires=["airlock-test-app"], wheels=wheels)
    assert names == {"airlock-test-app", "dep-core"}
    names, lock = shipped(deps, requires=["airlock-test-app[engine,service]"], wheels=wheels)
    assert names == {
        "airlock-test-app",
        "dep-core",
        "dep-gpu",
        "dep-cuda",
        "dep-web",
        "dep-speed",
        "dep-slow",
    }
    assert "airlock-test-app" not in deps.fetched  # never asked of an index
    assert lock.endswith(f"airlock-test-app==0.1.0 --hash=sha256:{sha256_file(local)}\n")
    assert local in deps_spec(deps, wheels=wheels).inputs()  # its mtime counts for `created`
    with pytest.raises(BundleSpecError, match=r"airlock-test-app, which nothing in python\.requires needs"):
        shipped(deps, requires=["dep-core"], wheels=wheels)


def test_a_local_wheel_clashing_with_the_lock_is_refused(deps):
    clash = fx._tiny_wheel(deps.src, "dep_core", "9.0")
    for python in ({}, {"requires": ["dep-core"]}, {"only": ["dep-core"]}):
        with pytest.raises(
            BundleSpecError, match=r"python\.wheels holds dep-core, which python\.(lock|only) also pins"
        ):
            shipped(deps, wheels=[clash.name], **python)


def test_a_local_wheel_the_target_cannot_install_is_refused(deps):
    for tag in (
        "cp311-cp311-win_amd64",
        "cp312-cp312-manylinux_2_17_x86_64",
        "py3-none-manylinux_2_39_x86_64",
    ):
        wheel = fx.local_wheel(deps.src / "dist", tag=tag)
        with pytest.raises(BundleSpecError, match=f"{wheel.name} is built for {tag}; debian-12/amd64"):
            shipped(deps, wheels=[f"dist/{wheel.name}"])
    (deps.src / "dist" / "not-a-wheel.whl").write_bytes(b"PK")
    with pytest.raises(BundleSpecError, match="is not a wheel file name"):
        deps_spec(deps, wheels=["dist/not-a-wheel.whl"])


@pytest.fixture
def local_bundle(kit, tmp_path):
    """The kit's spec plus a local wheel: built, and its wheels/ extracted."""
    src = tmp_path / "src"
    shutil.copytree(kit.src, src)
    (tmp_path / "registry").symlink_to(kit.registry)
    (tmp_path / "org-keys").symlink_to(kit.org_trust.parent)
    local = fx.local_wheel(src / "dist")
    spec = write_spec(src, python={"lock": "requirements.lock", "wheels": [f"dist/{local.name}"]})
    built = build_bundle(
        load_spec(spec),
        tmp_path / "b.tar",
        kit.transfer,
        creator="re",
        cache=kit.cache,
        downloader=no_network,
    )
    out = tmp_path / "out" / "wheels"
    out.mkdir(parents=True)
    with tarfile.open(built.path) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith("wheels/"):
                (out / member.name.removeprefix("wheels/")).write_bytes(tar.extractfile(member).read())
        sbom = json.loads(tar.extractfile("sbom.cdx.json").read())
    return SimpleNamespace(local=local, built=built, wheels=out, sbom=sbom)


def test_a_local_wheel_ships_in_wheels_the_lock_the_manifest_and_the_sbom(kit, local_bundle):
    local, digest = local_bundle.local, sha256_file(local_bundle.local)
    assert (local_bundle.wheels / local.name).read_bytes() == local.read_bytes()
    lock = (local_bundle.wheels / "requirements.lock").read_text()
    assert f"airlock-test-app==0.1.0 --hash=sha256:{digest}\n" in lock
    assert lock.count("--hash=sha256:") == len(kit.wheels) + 1
    assert {
        "kind": "wheel",
        "name": "airlock-test-app",
        "version": "0.1.0",
        "path": f"wheels/{local.name}",
        "sha256": digest,
    } in local_bundle.built.manifest["components"]
    (component,) = [c for c in local_bundle.sbom["components"] if c["name"] == "airlock-test-app"]
    assert component["hashes"] == [{"alg": "SHA-256", "content": digest}]
    assert component["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert {"name": "airlock:origin", "value": "local"} in component["properties"]
    assert verify_bundle(local_bundle.built.path, load_verifier(kit.trust)).ok


def test_pip_installs_the_bundles_lock_offline_checking_every_hash(kit, local_bundle, tmp_path):
    spec = load_spec(kit.spec)
    wheels = local_bundle.wheels
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index",
        "--find-links", str(wheels), "--require-hashes", "--no-deps", "-r", str(wheels / "requirements.lock"),
        "--target", str(tmp_path / "site"), "--only-binary=:all:", "--python-version", spec.target.python,
        "--implementation", "cp", "--abi", spec.target.python_tag,
        *[f"--platform={p}" for p in spec.target.platforms()],
    ]  # fmt: skip
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    installed = {p.name.split("-")[0].lower() for p in (tmp_path / "site").glob("*.dist-info")}
    expected = {w.name.split("-")[0].lower() for w in [*kit.wheels, local_bundle.local]}
    assert installed == expected
    # a local wheel whose bytes differ from the hash written in the lock is refused by pip
    (wheels / local_bundle.local.name).write_bytes(local_bundle.local.read_bytes() + b"\0")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode != 0 and "THESE PACKAGES DO NOT MATCH THE HASHES" in result.stderr


# ---------------------------------------------------------------------------------- ClamAV


def clamav_db(folder: Path, signature: str) -> Path:
    folder.mkdir()
    (folder / "airlock-test.hdb").write_text(signature)
    return folder


def hdb_line(data: bytes, name: str = "Airlock.Test.Signature") -> str:
    return f"{hashlib.md5(data).hexdigest()}:{len(data)}:{name}\n"  # noqa: S324 - ClamAV's .hdb format


@pytest.fixture
def clamscan():
    if shutil.which("clamscan") is None:
        pytest.skip("clamscan is not installed (Debian package clamav: apt-get install -y clamav)")


def test_clamav_refuses_a_bundle_holding_a_known_signature(kit, tmp_path, clamscan):
    db = clamav_db(tmp_path / "db", hdb_line((kit.src / "payload.bin").read_bytes()))
    result = bundle_cli("verify", kit.bundle, "--trust", kit.trust, "--scan", "--clamav-db", db)
    assert result.exit_code == 1, result.output
    assert "MALWARE" in result.output and "files/data/payload.bin" in result.output
    assert "Airlock.Test.Signature" in result.output
    store, audit = tmp_path / "store", tmp_path / "audit"
    imported = import_cli(kit, kit.bundle, store, audit, "--scan", "--clamav-db", db)
    assert imported.exit_code == 1 and "Airlock.Test.Signature" in imported.output
    assert list(store.iterdir()) == []


def test_clamav_passes_a_clean_bundle(kit, tmp_path, clamscan):
    db = clamav_db(tmp_path / "db", hdb_line(b"some other file entirely\n"))
    result = bundle_cli("verify", kit.bundle, "--trust", kit.trust, "--scan", "--clamav-db", db)
    assert result.exit_code == 0, result.output


def test_a_clamav_error_refuses_the_bundle(kit, tmp_path, clamscan):
    db = clamav_db(tmp_path / "db", "this is not a signature line\n")
    result = bundle_cli("verify", kit.bundle, "--trust", kit.trust, "--scan", "--clamav-db", db)
    assert result.exit_code == 1, result.output
    assert "SCAN-ERROR" in result.output and "fail closed" in result.output


def test_registry_root_is_pointed_at_the_imported_registry(kit, tmp_path):
    store, audit, live = tmp_path / "store", tmp_path / "audit", tmp_path / "model_registry"
    result = import_cli(kit, kit.bundle, store, audit, "--registry-root", live)
    assert result.exit_code == 0, result.output
    assert live.is_symlink() and live.resolve() == (store / kit.sha256 / "models" / "registry").resolve()
    assert verify_registry(live, load_verifier(kit.org_trust)).ok


def test_a_real_registry_folder_is_never_replaced(kit, tmp_path):
    live = tmp_path / "model_registry"
    (live / "base_models").mkdir(parents=True)
    result = import_cli(kit, kit.bundle, tmp_path / "store", tmp_path / "audit", "--registry-root", live)
    assert result.exit_code == 1
    assert "is a real folder, not a symlink" in result.output
    assert not live.is_symlink() and (live / "base_models").is_dir()
