"""The encrypted output store (airlock.store): envelope encryption, per-tenant KEKs, rotation,
retention, erasure, tamper detection, and `airlock keys rotate` / `airlock outputs ...`."""

import hashlib
import io
import json
import os
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from airlock.audit import AuditLog, AuditWriteError
from airlock.cli import app as airlock_app
from airlock.store import (
    FileKeks,
    InvalidInput,
    KekError,
    KekInUse,
    OutputExists,
    OutputNotFound,
    OutputStore,
    OutputTampered,
    StoreError,
    UnwrapFailed,
    envelope,
)
from airlock.store import cli as outputs_cli
from airlock.store import files as store_files
from airlock.store.envelope import KeyFile

runner = CliRunner()
TENANT = "healthcare_system_b"
OTHER = "clinic_a"
PROMPT = "anatomical heart illustration, soft studio lighting"


def png(seed: int, size: int = 48) -> bytes:
    """A real PNG of random pixels (incompressible, so the image bytes are all there in the file)."""
    pixels = bytes((seed * 7919 + i * 104729) % 251 for i in range(size * size * 3))
    buf = io.BytesIO()
    Image.frombytes("RGB", (size, size), pixels).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def audit(root, clock):
    with AuditLog(root, clock=clock) as log:
        yield log


@pytest.fixture
def kek_dir(tmp_path):
    return tmp_path / "kek"


@pytest.fixture
def store_root(tmp_path):
    return tmp_path / "outputs"


@pytest.fixture
def store(store_root, kek_dir, audit, clock):
    return OutputStore(store_root, FileKeks(kek_dir), audit, clock=clock)


def events(root, event=None):
    records = [json.loads(line) for f in sorted(root.glob("*/system_events.jsonl")) for line in f.open()]
    return [r for r in records if event is None or r["event"] == event]


def files_of(store_root, tenant, object_id):
    folder = store_root / tenant
    return folder / f"{object_id}.key", folder / f"{object_id}.enc"


def key_file(store_root, tenant, object_id) -> KeyFile:
    return KeyFile.from_bytes(files_of(store_root, tenant, object_id)[0].read_bytes())


# ---------------------------------------------------------------- round trip and names


def test_round_trip_returns_the_image_and_its_metadata(store, store_root):
    image, metadata = png(1), {"prompt": PROMPT, "seed": 1234, "styles": ["Fooocus V2"]}
    ref = store.put(TENANT, "job-0001.0", image, metadata)
    assert str(ref) == f"{TENANT}/job-0001.0"
    assert ref.kek_id == store.keys.current(TENANT)
    assert store.get(TENANT, "job-0001.0") == (image, metadata)
    assert store.list(TENANT) == ["job-0001.0"]
    assert store.list(OTHER) == []
    _, enc_path = files_of(store_root, TENANT, "job-0001.0")
    assert enc_path.read_bytes() != image
    assert key_file(store_root, TENANT, "job-0001.0").kek_id == ref.kek_id


def test_files_and_folders_are_private(store, store_root, kek_dir):
    store.put(TENANT, "a", png(1), {})
    for path in [*store_root.rglob("*"), *kek_dir.rglob("*"), kek_dir]:
        want = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == want, path


def test_outputs_are_write_once(store):
    store.put(TENANT, "a", png(1), {})
    with pytest.raises(OutputExists):
        store.put(TENANT, "a", png(2), {})
    assert store.get(TENANT, "a")[0] == png(1)


@pytest.mark.parametrize(
    "object_id", ["../escape", "a/b", "..", "a..b", "a\0b", "", ".hidden", "x\n", "/etc/passwd", "a" * 129]
)
def test_object_ids_that_could_leave_the_folder_are_refused(store, store_root, tmp_path, object_id):
    with pytest.raises(InvalidInput, match="bad object id"):
        store.put(TENANT, object_id, png(1), {})
    with pytest.raises(InvalidInput, match="bad object id"):
        store.get(TENANT, object_id)
    with pytest.raises(InvalidInput, match="bad object id"):
        store.delete(TENANT, object_id)
    assert not (tmp_path / "escape.key").exists()
    assert not store_root.exists() or not list(store_root.rglob("*.key"))


@pytest.mark.parametrize("tenant", ["../x", "a/b", "Upper", "t\0", "", "-lead", "t\n", ".locks"])
def test_bad_tenant_ids_are_refused(store, tenant):
    for call in (
        lambda: store.put(tenant, "a", png(1), {}),
        lambda: store.get(tenant, "a"),
        lambda: store.list(tenant),
        lambda: store.delete_tenant(tenant),
        lambda: store.rotate(tenant),
    ):
        with pytest.raises(InvalidInput, match="bad tenant id"):
            call()


def test_metadata_must_be_plain_json(store, store_root):
    with pytest.raises(InvalidInput, match="not plain JSON"):
        store.put(TENANT, "a", png(1), {"when": object()})
    assert store.list(TENANT) == []


def test_a_kek_directory_inside_the_store_is_refused(tmp_path, audit):
    with pytest.raises(StoreError, match="overlap"):
        OutputStore(tmp_path / "outputs", FileKeks(tmp_path / "outputs" / "kek"), audit)


# ---------------------------------------------------------------- no existence oracle


def test_another_tenants_object_reads_exactly_like_a_missing_one(store):
    store.put(OTHER, "warmup", png(9), {})  # OTHER exists and has a KEK: only the object is missing
    with pytest.raises(OutputNotFound) as missing:
        store.get(OTHER, "job-7")
    store.put(TENANT, "job-7", png(1), {"prompt": PROMPT})
    with pytest.raises(OutputNotFound) as elsewhere:
        store.get(OTHER, "job-7")
    assert type(elsewhere.value) is type(missing.value)
    assert str(elsewhere.value) == str(missing.value) == "no output 'job-7' for tenant 'clinic_a'"
    with pytest.raises(OutputNotFound) as deleted_elsewhere:
        store.delete(OTHER, "job-7")
    assert str(deleted_elsewhere.value) == str(missing.value)
    assert store.get(TENANT, "job-7")[0] == png(1)


# ---------------------------------------------------------------- tampering


def flip_ciphertext(store_root, tenant, object_id):
    _, enc = files_of(store_root, tenant, object_id)
    data = bytearray(enc.read_bytes())
    data[len(data) // 2] ^= 0x01
    enc.write_bytes(bytes(data))
    return tenant, object_id


def flip_wrapped_key(store_root, tenant, object_id):
    key_path, _ = files_of(store_root, tenant, object_id)
    kf = key_file(store_root, tenant, object_id)
    wrapped = bytearray(kf.wrapped)
    wrapped[-1] ^= 0x01
    key_path.write_bytes(KeyFile(kf.kek_id, kf.created, bytes(wrapped)).to_bytes())
    return tenant, object_id


def garble_key_file(store_root, tenant, object_id):
    files_of(store_root, tenant, object_id)[0].write_bytes(b'{"format": 1, "kek_id": "v1-')
    return tenant, object_id


def copy_to_other_tenant(store_root, tenant, object_id):
    for path in files_of(store_root, tenant, object_id):
        shutil.copy2(path, store_root / OTHER / path.name)
    return OTHER, object_id


def rename_object(store_root, tenant, object_id):
    for path in files_of(store_root, tenant, object_id):
        path.rename(path.with_name("renamed" + path.suffix))
    return tenant, "renamed"


def remove_ciphertext(store_root, tenant, object_id):
    files_of(store_root, tenant, object_id)[1].unlink()
    return tenant, object_id


@pytest.mark.parametrize(
    "tamper",
    [
        flip_ciphertext,
        flip_wrapped_key,
        garble_key_file,
        copy_to_other_tenant,
        rename_object,
        remove_ciphertext,
    ],
)
def test_tampering_is_refused_and_audited(store, store_root, root, tamper):
    secret_meta = {"prompt": PROMPT}
    store.put(TENANT, "job-1", png(1), secret_meta)
    store.put(OTHER, "job-0", png(2), {})  # the other tenant's folder and KEK exist
    tenant, object_id = tamper(store_root, TENANT, "job-1")
    with pytest.raises(OutputTampered) as caught:
        store.get(tenant, object_id)
    message = str(caught.value)
    assert f"{tenant}/{object_id}" in message and "integrity check" in message
    assert PROMPT not in message
    (record,) = events(root, "outputs.tampered")
    assert record["outcome"] == "failure" and record["component"] == "outputs"
    assert (record["tenant"], record["object_id"], record["operation"]) == (tenant, object_id, "get")
    assert record["reason"] == caught.value.reason
    assert store.get(OTHER, "job-0")[0] == png(2)  # nothing else is affected


class SharedKek:
    """A provider with one KEK for every tenant: shows the tenant binding is in the associated data
    itself, not only in each tenant having its own KEK (and exercises the KekProvider seam)."""

    def __init__(self):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def current(self, tenant):
        return "v1-00000000"

    def create(self, tenant):
        return "v1-00000000"

    def kek_ids(self, tenant):
        return ["v1-00000000"]

    def wrap(self, tenant, kek_id, data_key, aad):
        nonce = os.urandom(12)
        return nonce + self.aead.encrypt(nonce, data_key, aad)

    def unwrap(self, tenant, kek_id, wrapped, aad):
        from cryptography.exceptions import InvalidTag

        try:
            return self.aead.decrypt(wrapped[:12], wrapped[12:], aad)
        except InvalidTag:
            raise UnwrapFailed("its wrapped data key does not authenticate") from None


@pytest.mark.parametrize("tamper", [copy_to_other_tenant, rename_object])
def test_moved_files_fail_even_under_a_kek_shared_by_both_tenants(store_root, audit, root, tamper):
    store = OutputStore(store_root, SharedKek(), audit)
    store.put(TENANT, "job-1", png(1), {})
    store.put(OTHER, "job-0", png(2), {})
    tenant, object_id = tamper(store_root, TENANT, "job-1")
    with pytest.raises(OutputTampered, match="does not authenticate"):
        store.get(tenant, object_id)
    assert len(events(root, "outputs.tampered")) == 1


def test_a_ciphertext_swapped_between_objects_fails(store, store_root):
    store.put(TENANT, "a", png(1), {})
    store.put(TENANT, "b", png(2), {})
    _, enc_a = files_of(store_root, TENANT, "a")
    _, enc_b = files_of(store_root, TENANT, "b")
    enc_a.write_bytes(enc_b.read_bytes())
    with pytest.raises(OutputTampered, match="ciphertext does not authenticate"):
        store.get(TENANT, "a")


def test_each_layer_binds_tenant_and_object_id_on_its_own(kek_dir):
    # The two layers back each other up in the store; here each is checked alone.
    data_key = envelope.new_data_key()
    blob = envelope.seal(data_key, TENANT, "a", png(1), {"prompt": PROMPT})
    assert envelope.open_sealed(data_key, TENANT, "a", blob) == (png(1), {"prompt": PROMPT})
    for tenant, object_id in ((OTHER, "a"), (TENANT, "b")):
        with pytest.raises(ValueError, match="ciphertext does not authenticate"):
            envelope.open_sealed(data_key, tenant, object_id, blob)

    keks = FileKeks(kek_dir)
    kek_id = keks.create(TENANT)
    created = "2026-10-01T09:00:00.000000Z"
    wrapped = keks.wrap(TENANT, kek_id, data_key, envelope.key_aad(TENANT, "a", kek_id, created))
    assert keks.unwrap(TENANT, kek_id, wrapped, envelope.key_aad(TENANT, "a", kek_id, created)) == data_key
    for aad in (
        envelope.key_aad(OTHER, "a", kek_id, created),
        envelope.key_aad(TENANT, "b", kek_id, created),
        envelope.key_aad(TENANT, "a", "v2-00000000", created),
        envelope.key_aad(TENANT, "a", kek_id, "2030-01-01T00:00:00.000000Z"),
    ):
        with pytest.raises(UnwrapFailed, match="does not authenticate"):
            keks.unwrap(TENANT, kek_id, wrapped, aad)


def test_nonces_are_fresh_for_every_encryption_and_wrap(kek_dir):
    data_key = envelope.new_data_key()
    blobs = [envelope.seal(data_key, TENANT, "a", b"same", {}) for _ in range(3)]
    nonces = {b[len(envelope.MAGIC) : len(envelope.MAGIC) + 12] for b in blobs}
    keks = FileKeks(kek_dir)
    kek_id = keks.create(TENANT)
    wraps = {keks.wrap(TENANT, kek_id, data_key, b"aad")[:12] for _ in range(3)}
    assert len(nonces) == len(wraps) == 3
    assert envelope.new_data_key() != envelope.new_data_key() and len(data_key) == 32


# ---------------------------------------------------------------- KEK files


def test_a_kek_file_readable_by_others_is_refused_with_the_fix(store, kek_dir):
    store.put(TENANT, "a", png(1), {})
    (kek_file,) = (kek_dir / TENANT).glob("*.kek")
    kek_file.chmod(0o644)
    with pytest.raises(KekError, match=f"chmod 600 {kek_file}") as caught:
        store.get(TENANT, "a")
    assert "mode 0644" in str(caught.value)
    with pytest.raises(KekError, match="mode 0644"):
        store.put(TENANT, "b", png(2), {})
    kek_file.chmod(0o600)
    (kek_dir / TENANT).chmod(0o755)
    with pytest.raises(KekError, match=f"chmod 700 {kek_dir / TENANT}"):
        store.get(TENANT, "a")
    (kek_dir / TENANT).chmod(0o700)
    assert store.get(TENANT, "a")[0] == png(1)


def test_a_kek_file_is_never_replaced(kek_dir):
    keks = FileKeks(kek_dir)
    first = keks.create(TENANT)
    second = keks.create(TENANT)
    assert keks.kek_ids(TENANT) == [first, second] and keks.current(TENANT) == second
    assert first.startswith("v1-") and second.startswith("v2-")
    with pytest.raises(FileExistsError):
        store_files.write_atomic(kek_dir / TENANT / f"{first}.kek", b"{}", overwrite=False)


# ---------------------------------------------------------------- rotation and retirement


def test_rotation_rewraps_every_data_key_and_leaves_ciphertexts_byte_identical(store, store_root, root):
    images = {f"job-{i}": png(i) for i in range(3)}
    for object_id, image in images.items():
        store.put(TENANT, object_id, image, {"n": object_id})
    store.put(OTHER, "theirs", png(9), {})
    old_kek = store.keys.current(TENANT)
    other_before = {p.name: p.read_bytes() for p in (store_root / OTHER).iterdir()}
    enc_before = {i: files_of(store_root, TENANT, i)[1].read_bytes() for i in images}
    key_before = {i: files_of(store_root, TENANT, i)[0].read_bytes() for i in images}

    rotated = store.rotate(TENANT, actor="ops_lead")

    assert rotated.kek_id != old_kek and rotated.previous == (old_kek,)
    assert (rotated.rewrapped, rotated.failed) == (3, ())
    assert store.keys.kek_ids(TENANT) == [old_kek, rotated.kek_id]
    for object_id, image in images.items():
        key_path, enc_path = files_of(store_root, TENANT, object_id)
        assert enc_path.read_bytes() == enc_before[object_id]  # images are not re-encrypted
        assert key_path.read_bytes() != key_before[object_id]
        assert (
            key_file(store_root, TENANT, object_id).wrapped
            != KeyFile.from_bytes(key_before[object_id]).wrapped
        )
        assert key_file(store_root, TENANT, object_id).kek_id == rotated.kek_id
        assert store.get(TENANT, object_id) == (image, {"n": object_id})
    assert store.put(TENANT, "after", png(5), {}).kek_id == rotated.kek_id
    assert store.keks(TENANT) == {old_kek: 0, rotated.kek_id: 4}
    assert {p.name: p.read_bytes() for p in (store_root / OTHER).iterdir()} == other_before
    (record,) = events(root, "outputs.kek_rotated")
    assert record["outcome"] == "success" and record["actor"] == "ops_lead"
    assert (record["tenant"], record["kek_id"], record["previous"], record["objects"]) == (
        TENANT,
        rotated.kek_id,
        [old_kek],
        3,
    )


def test_old_objects_stay_readable_under_an_old_kek_until_it_is_retired(store, store_root, root):
    store.put(TENANT, "old", png(1), {})
    v1 = store.keys.current(TENANT)
    v2 = store.keys.create(TENANT)  # a new KEK without re-wrapping: "old" still needs v1
    store.put(TENANT, "new", png(2), {})
    assert key_file(store_root, TENANT, "old").kek_id == v1
    assert key_file(store_root, TENANT, "new").kek_id == v2
    assert store.get(TENANT, "old")[0] == png(1)

    with pytest.raises(KekInUse, match="still wraps 1 objects") as in_use:
        store.retire(TENANT, v1, actor="ops_lead")
    assert f"airlock keys rotate --tenant {TENANT}" in str(in_use.value)
    with pytest.raises(KekInUse, match="current KEK"):
        store.retire(TENANT, v2)
    with pytest.raises(KekError, match="has no KEK"):
        store.retire(TENANT, "v9-00000000")
    assert store.keys.kek_ids(TENANT) == [v1, v2]
    refused = events(root, "outputs.kek_retired")
    assert [r["outcome"] for r in refused] == ["failure", "failure"]

    store.rotate(TENANT)
    store.retire(TENANT, v1, actor="ops_lead")
    assert v1 not in store.keys.kek_ids(TENANT)
    assert store.get(TENANT, "old")[0] == png(1)
    last = events(root, "outputs.kek_retired")[-1]
    assert (last["outcome"], last["kek_id"], last["actor"]) == ("success", v1, "ops_lead")


def test_rotation_keeps_going_past_a_tampered_key_file_and_reports_it(store, store_root, root):
    store.put(TENANT, "good", png(1), {})
    store.put(TENANT, "bad", png(2), {})
    flip_wrapped_key(store_root, TENANT, "bad")
    rotated = store.rotate(TENANT)
    assert (rotated.rewrapped, rotated.failed) == (1, ("bad",))
    assert store.get(TENANT, "good")[0] == png(1)
    (tampered,) = events(root, "outputs.tampered")
    assert (tampered["object_id"], tampered["operation"]) == ("bad", "rotate")
    assert [r["outcome"] for r in events(root, "outputs.kek_rotated")] == ["success", "failure"]
    with pytest.raises(KekInUse):  # the bad one may still need the old KEK
        store.retire(TENANT, rotated.previous[0])


# ---------------------------------------------------------------- deletion, retention, erasure


def test_delete_removes_both_files_and_is_audited(store, store_root, root):
    store.put(TENANT, "a", png(1), {})
    store.put(TENANT, "b", png(2), {})
    store.delete(TENANT, "a", actor="dpo")
    assert not any(p.exists() for p in files_of(store_root, TENANT, "a"))
    with pytest.raises(OutputNotFound):
        store.get(TENANT, "a")
    assert store.list(TENANT) == ["b"]
    (record,) = events(root, "outputs.deleted")
    assert (record["tenant"], record["object_id"], record["actor"], record["outcome"]) == (
        TENANT,
        "a",
        "dpo",
        "success",
    )


class FailingAudit:
    def append(self, *args, **fields):
        raise AuditWriteError("the audit disk is full")


def test_no_audit_record_no_deletion(store_root, kek_dir, store):
    store.put(TENANT, "a", png(1), {})
    blind = OutputStore(store_root, FileKeks(kek_dir), FailingAudit())
    for call in (
        lambda: blind.delete(TENANT, "a"),
        lambda: blind.purge_older_than(TENANT, 0),
        lambda: blind.delete_tenant(TENANT),
        lambda: blind.rotate(TENANT),
    ):
        with pytest.raises(AuditWriteError):
            call()
    assert store.get(TENANT, "a")[0] == png(1)
    assert len(store.keys.kek_ids(TENANT)) == 1  # the refused rotation left no KEK behind


def test_retention_deletes_what_is_older_and_keeps_what_is_newer(store, store_root, root, clock):
    store.put(TENANT, "old-1", png(1), {})
    store.put(TENANT, "old-2", png(2), {})
    clock.advance(days=20)
    store.put(TENANT, "new", png(3), {})
    store.put(OTHER, "theirs", png(4), {})
    clock.advance(days=20)  # old-* are 40 days old, new is 20

    purged = store.purge_older_than(TENANT, 30, now=clock(), actor="retention-timer")

    assert (purged.deleted, purged.skipped) == (2, ())
    assert store.list(TENANT) == ["new"]
    assert store.get(TENANT, "new")[0] == png(3)
    assert store.list(OTHER) == ["theirs"]
    assert sorted(p.name for p in (store_root / TENANT).iterdir()) == ["new.enc", "new.key"]
    (record,) = events(root, "outputs.purged")
    assert (record["tenant"], record["days"], record["objects"], record["actor"]) == (
        TENANT,
        30,
        2,
        "retention-timer",
    )
    assert record["cutoff"].startswith("2026-10-11T09:00:00")
    with pytest.raises(InvalidInput):
        store.purge_older_than(TENANT, -1)
    assert store.tenants() == sorted([TENANT, OTHER])  # the lock folder is not a tenant


def test_retention_sweeps_debris_of_crashed_writers(store, store_root):
    store.put(TENANT, "kept", png(1), {})
    folder = store_root / TENANT
    (folder / ".kept.key.0123456789ab.tmp").write_bytes(b"half")
    (folder / "orphan.enc").write_bytes(b"ciphertext never committed")
    store.purge_older_than(TENANT, 30)
    assert sorted(p.name for p in folder.iterdir()) == ["kept.enc", "kept.key"]


def test_delete_tenant_erases_its_objects_and_keks_only(store, store_root, kek_dir, root):
    for i in range(3):
        store.put(TENANT, f"job-{i}", png(i), {})
    store.rotate(TENANT)
    store.put(OTHER, "theirs", png(9), {})

    assert store.delete_tenant(TENANT, actor="dpo") == 3

    assert not (store_root / TENANT).exists() and not (kek_dir / TENANT).exists()
    assert store.list(TENANT) == [] and store.keys.kek_ids(TENANT) == []
    with pytest.raises(OutputNotFound):
        store.get(TENANT, "job-0")
    assert store.get(OTHER, "theirs")[0] == png(9)
    (record,) = events(root, "outputs.tenant_erased")
    assert (record["tenant"], record["objects"], record["keks"], record["actor"]) == (TENANT, 3, 2, "dpo")
    store.put(TENANT, "fresh", png(1), {})  # a new tenant life starts with a new KEK
    assert store.get(TENANT, "fresh")[0] == png(1)


# ---------------------------------------------------------------- nothing in the clear


def test_no_plaintext_image_or_metadata_on_disk(store, store_root, kek_dir, root):
    images = [png(i, size=32 + 8 * i) for i in range(4)]
    assert all(b"\x89PNG" in image for image in images)  # the signature the scan looks for
    for i, image in enumerate(images):
        store.put(TENANT, f"job-{i}.png", image, {"prompt": PROMPT, "patient_ref": "MRN-4471-22"})
    store.rotate(TENANT)
    store.put(OTHER, "x.png", images[0], {"prompt": PROMPT})

    scanned = [p for p in [*store_root.rglob("*"), *kek_dir.rglob("*"), *root.rglob("*")] if p.is_file()]
    assert len(scanned) > 10
    for path in scanned:
        content = path.read_bytes()
        assert b"\x89PNG" not in content, path
        for text in (PROMPT, "anatomical heart", "MRN-4471-22"):
            assert text.encode() not in content, (path, text)


def test_audit_records_hold_no_key_material(store, store_root, kek_dir, root):
    for i in range(2):
        store.put(TENANT, f"job-{i}", png(i), {})
    store.rotate(TENANT)
    flip_ciphertext(store_root, TENANT, "job-0")
    with pytest.raises(OutputTampered):
        store.get(TENANT, "job-0")
    store.purge_older_than(TENANT, 0)
    secrets = [json.loads(p.read_text())["key"] for p in kek_dir.rglob("*.kek")]
    assert secrets
    audit_bytes = b"".join(p.read_bytes() for p in root.rglob("*.jsonl"))
    assert audit_bytes
    for secret in secrets:
        assert secret.encode() not in audit_bytes
    assert b"wrapped" not in audit_bytes


# ---------------------------------------------------------------- atomicity


def failing_write(on_call: int):
    """Replace files._write_all: the on_call-th write stops halfway and raises."""
    calls = {"n": 0}
    real = store_files._write_all

    def write(fd, data):
        calls["n"] += 1
        if calls["n"] == on_call:
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real(fd, data)

    return write


@pytest.mark.parametrize("on_call", [1, 2], ids=["ciphertext", "key-file"])
def test_a_failure_mid_write_leaves_no_partial_file(store, store_root, monkeypatch, on_call):
    store.put(TENANT, "before", png(1), {})
    before = sorted(p.name for p in (store_root / TENANT).iterdir())
    monkeypatch.setattr(store_files, "_write_all", failing_write(on_call))
    with pytest.raises(OSError, match="No space left"):
        store.put(TENANT, "job-1", png(2), {"prompt": PROMPT})
    monkeypatch.undo()
    assert sorted(p.name for p in (store_root / TENANT).iterdir()) == before
    with pytest.raises(OutputNotFound):
        store.get(TENANT, "job-1")
    store.put(TENANT, "job-1", png(2), {})  # the id is free: nothing half-made holds it
    assert store.get(TENANT, "job-1")[0] == png(2)


def test_a_failure_mid_rotation_leaves_every_object_readable(store, store_root, root, monkeypatch):
    for i in range(3):
        store.put(TENANT, f"job-{i}", png(i), {})
    names = sorted(p.name for p in (store_root / TENANT).iterdir())
    monkeypatch.setattr(store_files, "_write_all", failing_write(3))  # 1: the new KEK, 2-4: key files
    with pytest.raises(StoreError, match="did not finish"):
        store.rotate(TENANT)
    monkeypatch.undo()
    assert sorted(p.name for p in (store_root / TENANT).iterdir()) == names
    for i in range(3):
        assert store.get(TENANT, f"job-{i}")[0] == png(i)
    assert [r["outcome"] for r in events(root, "outputs.kek_rotated")] == ["success", "failure"]
    assert store.rotate(TENANT).rewrapped == 3  # a rerun finishes the job


# ---------------------------------------------------------------- CLI


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("AIRLOCK_KEK_DIR", str(tmp_path / "kek"))
    monkeypatch.setenv("AIRLOCK_AUDIT_ROOT", str(tmp_path / "audit"))
    monkeypatch.setenv("SUDO_USER", "ops_lead")
    with AuditLog(tmp_path / "audit") as log:
        store = OutputStore(tmp_path / "outputs", FileKeks(tmp_path / "kek"), log)
        for i in range(2):
            store.put(TENANT, f"job-{i}", png(i), {})
    return tmp_path


def outputs(*args):
    return runner.invoke(outputs_cli.app, list(args), terminal_width=200)


def test_cli_keys_rotate_rewraps_and_prints_counts(env):
    keks = FileKeks(env / "kek")
    old = keks.current(TENANT)
    result = runner.invoke(
        airlock_app,
        [
            "keys",
            "rotate",
            "--tenant",
            TENANT,
            "--keys-dir",
            str(env / "kek"),
            "--store",
            str(env / "outputs"),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    new = keks.current(TENANT)
    assert new != old
    assert f"new KEK {new}; re-wrapped 2 data keys, 0 failed" in result.output
    assert old in result.output  # kept for decryption, and how to retire it
    (record,) = events(env / "audit", "outputs.kek_rotated")
    assert (record["objects"], record["actor"]) == (2, "ops_lead")
    bad = runner.invoke(airlock_app, ["keys", "rotate", "--tenant", "../etc"])
    assert bad.exit_code == 2 and "bad tenant id" in bad.output


def test_cli_outputs_list_delete_purge_and_retire(env):
    assert outputs("list", "--tenant", TENANT, "--json").stdout.strip() == '["job-0", "job-1"]'
    assert outputs("delete", "--tenant", TENANT, "--id", "job-0").exit_code == 0
    missing = outputs("delete", "--tenant", TENANT, "--id", "job-0")
    assert missing.exit_code == 1 and "no output 'job-0'" in missing.output
    assert outputs("delete", "--tenant", TENANT, "--id", "../x").exit_code == 2
    purged = outputs("purge", "--tenant", TENANT, "--days", "30")
    assert purged.exit_code == 0 and "deleted 0 objects" in purged.output
    assert outputs("purge", "--tenant", TENANT, "--days", "0").exit_code == 2
    every = outputs("purge", "--all-tenants", "--days", "30")  # the retention timer's run
    assert every.exit_code == 0 and f"tenant {TENANT}: deleted 0 objects" in every.output
    assert outputs("purge", "--days", "30").exit_code == 2  # neither --tenant nor --all-tenants
    assert outputs("purge", "--tenant", TENANT, "--all-tenants", "--days", "30").exit_code == 2

    keks = FileKeks(env / "kek")
    old = keks.current(TENANT)
    runner.invoke(airlock_app, ["keys", "rotate", "--tenant", TENANT])
    listed = outputs("keys", "list", "--tenant", TENANT)
    assert f"{old}  0 objects" in listed.output and "1 objects  (current)" in listed.output
    current = outputs("keys", "retire", "--tenant", TENANT, "--kek", keks.current(TENANT))
    assert current.exit_code == 1 and "current KEK" in current.output
    assert outputs("keys", "retire", "--tenant", TENANT, "--kek", old).exit_code == 0
    assert keks.kek_ids(TENANT) == [keks.current(TENANT)]

    unconfirmed = outputs("delete", "--tenant", TENANT)
    assert unconfirmed.exit_code == 2 and "--yes" in unconfirmed.output
    assert (env / "outputs" / TENANT / "job-1.key").exists()
    erased = outputs("delete", "--tenant", TENANT, "--yes")
    assert erased.exit_code == 0 and "1 objects" in erased.output
    assert not (env / "outputs" / TENANT).exists() and keks.kek_ids(TENANT) == []


def test_cli_every_outputs_help_shows_an_example():
    import typer

    def walk(command, path=()):
        yield list(path)
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, (*path, name))

    commands = list(walk(typer.main.get_command(outputs_cli.app)))
    assert len(commands) >= 7
    for command in commands:
        result = outputs(*command, "--help")
        assert result.exit_code == 0 and "Example: " in result.output, command


def test_the_prompt_digest_key_is_private_stable_and_refused_when_open(tmp_path):
    from airlock.store.digest import digest_key, keyed_digest

    key = digest_key(tmp_path / "prompt-kek")
    path = tmp_path / "prompt-kek" / "digest.key"
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "prompt-kek").stat().st_mode & 0o777 == 0o700
    assert digest_key(tmp_path / "prompt-kek") == key  # created once, then reused
    assert keyed_digest(key, "x") != hashlib.sha256(b"x").hexdigest()
    path.chmod(0o644)
    with pytest.raises(KekError, match="chmod 600"):
        digest_key(tmp_path / "prompt-kek")
