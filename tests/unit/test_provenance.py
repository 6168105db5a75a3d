"""Signed provenance records: embedded in PNG, JPEG and WebP or beside them, and what breaks them."""

import base64
import copy
import hashlib
import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from airlock.keys import init_keys, load_signer, load_verifier
from airlock.provenance import (
    FORMAT,
    attach,
    build_record,
    canonical,
    embed,
    extract,
    pixel_sha256,
    read_sidecar,
    sign_record,
    verify,
    write_sidecar,
)
from airlock.provenance.cli import app
from airlock.provenance.verify import (
    IMAGE_ALTERED,
    MALFORMED,
    MISMATCH,
    NO_PROVENANCE,
    RECORD_ALTERED,
    UNKNOWN_KEY,
)

FORMATS = ["png", "jpeg", "webp"]
PROMPT = "anatomical heart illustration, soft studio lighting"
FIELDS = {
    "model": {"name": "sd_xl_base_1.0", "version": "1.0", "checksum": "sha256:" + "a" * 64},
    "loras": [{"name": "sdxl_lcm", "version": "1.0", "checksum": "sha256:" + "b" * 64, "weight": 1.0}],
    "parameters": {
        "prompt": PROMPT,  # what the caller passes: already sanitized, with its digest
        "prompt_sha256": hashlib.sha256(PROMPT.encode()).hexdigest(),
        "negative_prompt": "",
        "steps": 30,
        "guidance_scale": 7.0,
        "sampler": "dpmpp_2m_sde_gpu",
        "styles": ["Fooocus V2"],
    },
    "seed": 1234,
    "tenant": "healthcare_system_b",
    "api_key_id": "ak_7f3e",
}
runner = CliRunner()


def generated(fmt: str) -> bytes:
    """An image encoded the way the engine encodes: its metadata in tEXt (PNG) or EXIF, lossy WebP."""
    noise = hashlib.shake_256(b"airlock").digest(48 * 32 * 3)  # busy pixels, the same every run
    image = Image.frombytes("RGB", (48, 32), noise)
    return encode(image, fmt)


def encode(image: Image.Image, fmt: str, **extra) -> bytes:
    buffer = io.BytesIO()
    if fmt == "png":
        info = PngInfo()
        info.add_text("parameters", '{"airlock":{}}')
        image.save(buffer, format="PNG", pnginfo=info, **extra)
    else:
        exif = Image.Exif()
        exif[0x010E] = '{"airlock":{}}'
        image.save(buffer, format=fmt.upper(), quality=95, exif=exif.tobytes(), **extra)
    return buffer.getvalue()


@pytest.fixture
def other(tmp_path):
    """A second key: a different site, or a forger."""
    init_keys(tmp_path / "other")
    return load_verifier(tmp_path / "other")


@pytest.fixture
def other_signer(tmp_path, other):
    return load_signer(tmp_path / "other")


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_fresh_image_is_valid(fmt, signer, verifier):
    out, signed = attach(generated(fmt), fmt, signer, **FIELDS)
    verdict = verify(out, [verifier])
    assert verdict.valid, verdict.reasons
    assert (verdict.codes, verdict.signer) == ([], signer.fingerprint)
    assert extract(out) == signed
    record = signed["record"]
    assert record["format"] == FORMAT and record["image"]["format"] == fmt
    assert record["signer"] == signer.fingerprint == signed["signature"]["key"]
    assert record["model"]["sha256"] == "a" * 64 and record["loras"][0]["weight"] == 1.0
    assert record["parameters"] == FIELDS["parameters"]  # stored as given: no raw prompt invented
    assert (record["seed"], record["tenant"]) == (1234, "healthcare_system_b")
    assert record["api_key_id"] == "ak_7f3e"
    assert record["created"].endswith("Z") and record["service"]["name"] == "airlock"
    # The engine's own metadata survives the embedding.
    kept = Image.open(io.BytesIO(out))
    assert '{"airlock":{}}' in (kept.text["parameters"] if fmt == "png" else kept.getexif()[0x010E])


def test_the_signature_covers_the_canonical_record(signer, verifier):
    signed = sign_record(build_record(generated("png"), **FIELDS), signer)
    data = canonical(signed["record"])
    assert data == json.dumps(signed["record"], sort_keys=True, separators=(",", ":")).encode()
    assert signed["signature"]["alg"] == "ed25519"
    assert verifier.verify(base64.b64decode(signed["signature"]["value"]), data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_pixel_hash_ignores_metadata_but_not_pixels(fmt, signer):
    image = generated(fmt)
    out, _ = attach(image, fmt, signer, **FIELDS)
    decoded = lambda data: Image.open(io.BytesIO(data))  # noqa: E731
    assert pixel_sha256(decoded(out)) == pixel_sha256(decoded(image))
    changed = decoded(image).copy()
    changed.putpixel((0, 0), tuple(255 - v for v in changed.getpixel((0, 0))))
    assert pixel_sha256(changed) != pixel_sha256(decoded(image))


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_changed_pixel_is_an_altered_image(fmt, signer, verifier):
    out, signed = attach(generated(fmt), fmt, signer, **FIELDS)
    image = Image.open(io.BytesIO(out))
    image.putpixel((5, 5), tuple(255 - v for v in image.getpixel((5, 5))))
    # The forger re-saves the edited image and puts the genuine signed record back in.
    buffer = io.BytesIO()
    image.save(buffer, format=fmt.upper(), **({"lossless": True} if fmt == "webp" else {"quality": 95}))
    verdict = verify(embed(buffer.getvalue(), fmt, signed), [verifier])
    assert not verdict.valid
    assert verdict.codes == [IMAGE_ALTERED]
    assert "altered after signing" in verdict.reasons[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_changed_parameter_is_an_altered_record(fmt, signer, verifier):
    out, signed = attach(generated(fmt), fmt, signer, **FIELDS)
    altered = copy.deepcopy(signed)
    altered["record"]["parameters"]["steps"] = 31  # re-embedded without re-signing
    verdict = verify(embed(out, fmt, altered), [verifier])
    assert not verdict.valid
    assert verdict.codes == [RECORD_ALTERED]


def test_another_key_is_unknown_until_trusted(other_signer, other, verifier):
    out, _ = attach(generated("png"), "png", other_signer, **FIELDS)
    verdict = verify(out, [verifier])
    assert (verdict.valid, verdict.codes) == (False, [UNKNOWN_KEY])
    assert other.fingerprint in verdict.reasons[0] and verifier.fingerprint in verdict.reasons[0]
    verdict = verify(out, [verifier, other])
    assert verdict.valid and verdict.signer == other.fingerprint


def test_trust_defaults_to_this_hosts_key(signer, tmp_path, monkeypatch):
    out, _ = attach(generated("png"), "png", signer, **FIELDS)
    monkeypatch.setenv("AIRLOCK_KEYS_DIR", str(tmp_path / "keys"))
    assert verify(out).valid


@pytest.mark.parametrize("fmt", FORMATS)
def test_sidecar_round_trip(fmt, signer, verifier, tmp_path):
    image = generated(fmt)
    embedded, signed = attach(image, fmt, signer, **FIELDS)
    path = write_sidecar(tmp_path / f"0001.{fmt}", signed)
    assert path.name == f"0001.{fmt}.provenance.json"
    assert read_sidecar(path) == signed
    assert verify(image, [verifier], sidecar=path).valid  # the plain image, the record beside it
    assert verify(embedded, [verifier], sidecar=path).valid  # both, and they agree
    (tmp_path / "bad.json").write_text("[1, NaN]")
    assert verify(image, [verifier], sidecar=tmp_path / "bad.json").codes == [MALFORMED]


def test_sidecar_and_embedded_record_disagree(signer, verifier):
    image = generated("png")
    out, _ = attach(image, "png", signer, **FIELDS)
    other_run = sign_record(build_record(image, **{**FIELDS, "seed": 99}), signer)  # genuine, but another
    verdict = verify(out, [verifier], sidecar=other_run)
    assert (verdict.valid, verdict.codes) == (False, [MISMATCH])


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_record_is_invalid(fmt, verifier):
    verdict = verify(generated(fmt), [verifier])
    assert (verdict.valid, verdict.codes) == (False, [NO_PROVENANCE])
    assert "no provenance record" in verdict.reasons[0]
    assert extract(generated(fmt)) is None


def test_garbage_where_the_record_should_be_is_malformed(verifier):
    verdict = verify(embed(generated("png"), "png", {"hello": "world"}), [verifier])
    assert (verdict.valid, verdict.codes) == (False, [MALFORMED])


@pytest.mark.parametrize("fmt", FORMATS)
def test_embedding_again_replaces_the_record(fmt, signer, verifier):
    out, _ = attach(generated(fmt), fmt, signer, **FIELDS)
    second = sign_record(build_record(out, **{**FIELDS, "tenant": "t2"}), signer)
    again = embed(out, fmt, second)
    assert extract(again) == second
    assert verify(again, [verifier]).valid
    if fmt == "jpeg":
        applist = Image.open(io.BytesIO(again)).applist
        assert sum(1 for m, s in applist if m == "COM" and s.startswith(b"airlock:provenance\0")) == 1


def test_jpeg_embedding_leaves_the_compressed_data_alone(signer):
    image = generated("jpeg")
    out, _ = attach(image, "jpeg", signer, **FIELDS)
    sos = b"\xff\xda"
    assert out[out.index(sos) :] == image[image.index(sos) :]
    assert out.index(b"Exif") < out.index(b"airlock:provenance")  # after the APPn segments


def test_a_record_too_long_for_one_jpeg_segment_spans_several(signer, verifier):
    prompt = "Herzklappe, Aortenbogen, Längsschnitt " * 5_000  # ~190 kB of prompt, non-ASCII too
    fields = {**FIELDS, "parameters": {**FIELDS["parameters"], "prompt": prompt}}
    out, signed = attach(generated("jpeg"), "jpeg", signer, **fields)
    applist = Image.open(io.BytesIO(out)).applist
    assert sum(1 for m, s in applist if m == "COM" and s.startswith(b"airlock:provenance\0")) > 2
    assert extract(out) == signed
    assert verify(out, [verifier]).valid


def test_embedding_refuses_the_wrong_format(signer):
    _, signed = attach(generated("png"), "png", signer, **FIELDS)
    with pytest.raises(ValueError, match="not jpeg"):
        embed(generated("png"), "jpeg", signed)


# ---------------------------------------------------------------------------------------- CLI


@pytest.fixture
def files(signer, tmp_path):
    out, signed = attach(generated("png"), "png", signer, **FIELDS)
    (tmp_path / "good.png").write_bytes(out)
    altered = copy.deepcopy(signed)
    altered["record"]["tenant"] = "someone_else"
    (tmp_path / "altered.png").write_bytes(embed(out, "png", altered))
    (tmp_path / "plain.png").write_bytes(generated("png"))
    write_sidecar(tmp_path / "plain.png", signed)
    return tmp_path


def cli(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def test_cli_verify_exit_codes(files):
    pub = files / "keys" / "signing.pub"
    result = cli("verify", files / "good.png", "--trust", pub)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid")
    result = cli("verify", files / "altered.png", "--trust", pub)
    assert result.exit_code == 1
    assert result.stdout.startswith("invalid") and "altered after signing" in result.stdout
    result = cli("verify", files / "plain.png", "--trust", pub)
    assert result.exit_code == 1 and "no provenance record" in result.stdout
    sidecar = files / "plain.png.provenance.json"
    assert cli("verify", files / "plain.png", "--trust", pub, "--sidecar", sidecar).exit_code == 0


def test_cli_verify_trusts_several_keys_and_prints_json(files, other):
    result = cli("verify", files / "good.png", "--trust", other.path, "--json")
    assert result.exit_code == 1
    assert [r["code"] for r in json.loads(result.stdout)["reasons"]] == [UNKNOWN_KEY]
    result = cli("verify", files / "good.png", "--trust", other.path, "--trust", files / "keys", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["valid"] is True


def test_cli_verify_without_a_trusted_key_is_a_usage_error(files, monkeypatch):
    monkeypatch.setenv("AIRLOCK_KEYS_DIR", str(files / "nowhere"))
    result = cli("verify", files / "good.png")
    assert result.exit_code == 2 and "no trusted public key" in result.output


def test_cli_show(files, signer):
    result = cli("show", files / "good.png")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["signature"]["key"] == signer.fingerprint
    result = cli("show", files / "plain.png")
    assert result.exit_code == 1 and "no provenance record" in result.output
