"""Signed provenance records: embedded in PNG, JPEG and WebP or beside them, and what breaks them."""

import base64
import copy
import hashlib
import io
import json
import random
import zlib
from xml.sax.saxutils import escape as xml_escape

import pytest
from PIL import Image, PngImagePlugin
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from airlock.keys import init_keys, load_signer, load_verifier
from airlock.provenance import (
    FORMAT,
    ProvenanceError,
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
from airlock.provenance.embed import KEY, XMP_PACKET, read_embedded
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
    elif fmt == "png":
        assert [data[:19] for kind, data in png_chunks(again) if kind == b"iTXt"] == [b"airlock:provenance\0"]
    else:
        assert [kind for kind, _ in riff_chunks(again)].count(b"XMP ") == 1
    if fmt != "jpeg":  # replaced in place: the same file, bar the difference in record length
        assert len(again) - len(out) == record_chunk_size(second, fmt) - record_chunk_size(extract(out), fmt)


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


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each PNG chunk, CRCs checked: a reader independent of the one under test."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(kind + body) == int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data) and chunks[-1][0] == b"IEND"
    return chunks


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(FourCC, payload) of each WebP chunk; the RIFF size and the padding are checked."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    chunks, pos = [], 12
    while pos < len(data):
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        chunks.append((data[pos : pos + 4], data[pos + 8 : pos + 8 + size]))
        if size & 1:
            assert data[pos + 8 + size] == 0  # the pad byte
        pos += 8 + size + (size & 1)
    assert pos == len(data)
    return chunks


def record_chunk_size(signed: dict, fmt: str) -> int:
    """What the record alone adds to a file: its chunk, with header (and CRC or padding)."""
    text = canonical(signed)
    if fmt == "png":
        return 12 + len(b"airlock:provenance\0\1\0\0\0") + len(zlib.compress(text))
    xmp = XMP_PACKET.format(xml_escape(text.decode())).encode()
    return 8 + len(xmp) + len(xmp) % 2


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = Image.open(io.BytesIO(data))
    return image.mode, image.size, image.tobytes()


def test_png_embedding_splices_one_chunk_before_the_image_data(signer):
    image = generated("png")
    out, signed = attach(image, "png", signer, **FIELDS)
    before, after = png_chunks(image), png_chunks(out)
    record = (b"iTXt", b"airlock:provenance\0\1\0\0\0" + zlib.compress(canonical(signed)))
    first_idat = [kind for kind, _ in before].index(b"IDAT")
    assert after == [*before[:first_idat], record, *before[first_idat:]]  # all else byte for byte
    assert len(out) - len(image) == record_chunk_size(signed, "png") < len(canonical(signed)) + 100
    decoded = Image.open(io.BytesIO(out))  # Pillow finds it without decoding the pixels
    assert decoded.info[KEY] == decoded.text[KEY] == canonical(signed).decode()
    assert decoded.text["parameters"] == '{"airlock":{}}'
    assert pixels(out) == pixels(image)
    assert read_embedded(decoded) == extract(out) == signed  # Pillow's reading and ours agree


def test_png_keeps_its_other_chunks_and_drops_an_old_record_wherever_it_was(signer, verifier):
    image = Image.frombytes("RGBA", (17, 9), hashlib.shake_256(b"rgba").digest(17 * 9 * 4))
    info = PngInfo()
    info.add_text("parameters", "Längsschnitt", zip=True)  # zTXt, whose keyword is not ours
    info.add_itxt(KEY, "an older record, before IDAT", zip=False)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, dpi=(300, 300), icc_profile=b"not really a profile")
    old = buffer.getvalue()
    # Another older record after the image data, where Pillow only finds it after decoding.
    iend = old.rindex(b"IEND") - 4
    trailer = b"airlock:provenance\0stale"
    old = old[:iend] + len(trailer).to_bytes(4, "big") + b"tEXt" + trailer
    old += zlib.crc32(b"tEXt" + trailer).to_bytes(4, "big") + b"\0\0\0\0IEND\xaeB`\x82"
    with pytest.raises(ProvenanceError, match="more than one different"):
        extract(old)
    out, signed = attach(old, "png", signer, **FIELDS)
    kinds = [kind for kind, _ in png_chunks(out)]
    assert kinds == [b"IHDR", b"iCCP", b"zTXt", b"pHYs", b"iTXt", b"IDAT", b"IEND"]
    kept = [chunk for chunk in png_chunks(old) if not chunk[1].startswith(b"airlock:provenance\0")]
    assert [chunk for chunk in png_chunks(out) if chunk[0] != b"iTXt"] == kept
    assert extract(out) == signed and verify(out, [verifier]).valid
    assert pixels(out) == pixels(old)


def webp(kind: str) -> bytes:
    """WebP files as encoders write them: odd sizes, so that the canvas and padding are exercised."""
    noise = hashlib.shake_256(kind.encode()).digest(47 * 33 * 4)
    rgb, rgba = (
        Image.frombytes("RGB", (47, 33), noise[: 47 * 33 * 3]),
        Image.frombytes("RGBA", (47, 33), noise),
    )
    exif = Image.Exif()
    exif[0x010E] = '{"airlock":{}}'
    buffer = io.BytesIO()
    {
        "lossy": lambda: rgb.save(buffer, format="WEBP", quality=80),  # simple: VP8 only
        "lossy+exif": lambda: rgb.save(
            buffer, format="WEBP", quality=95, exif=exif.tobytes()
        ),  # the engine's
        "lossy+alpha": lambda: rgba.save(buffer, format="WEBP", quality=80),  # VP8X, ALPH, VP8
        "lossless": lambda: rgb.save(buffer, format="WEBP", lossless=True),  # simple: VP8L only
        "lossless+alpha": lambda: rgba.save(buffer, format="WEBP", lossless=True),  # simple, VP8L alpha bit
    }[kind]()
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["lossy", "lossy+exif", "lossy+alpha", "lossless", "lossless+alpha"])
def test_webp_embedding_splices_an_xmp_chunk_and_keeps_the_bitstream(kind, signer, verifier):
    image = webp(kind)
    out, signed = attach(image, "webp", signer, **FIELDS)
    before, after = riff_chunks(image), riff_chunks(out)
    simple = before[0][0] != b"VP8X"
    assert simple == (kind in ("lossy", "lossless", "lossless+alpha"))  # VP8L carries its own alpha
    # Every chunk but VP8X is kept byte for byte (the VP8/VP8L bitstream above all), XMP is added.
    assert [c for c in after if c[0] not in (b"VP8X", b"XMP ")] == [c for c in before if c[0] != b"VP8X"]
    assert [fourcc for fourcc, _ in after][-1:] == [b"XMP "]
    (fourcc, header), old_header = after[0], before[0][1]
    assert fourcc == b"VP8X" and len(header) == 10
    flags = header[0]
    assert flags & 0x04  # XMP
    assert bool(flags & 0x08) == (kind == "lossy+exif")  # EXIF
    assert bool(flags & 0x10) == kind.endswith("alpha")  # alpha
    assert not flags & 0x22  # no ICC, no animation
    assert (int.from_bytes(header[4:7], "little") + 1, int.from_bytes(header[7:10], "little") + 1) == (47, 33)
    if not simple:
        assert header == bytes([old_header[0] | 0x04]) + old_header[1:]
    # The file grows by the record's chunk (and a VP8X header where there was none) only.
    assert len(out) - len(image) == record_chunk_size(signed, "webp") + (18 if simple else 0)
    decoded = Image.open(io.BytesIO(out))
    assert pixels(out) == pixels(image)
    assert decoded.info["xmp"] == after[-1][1]
    assert read_embedded(decoded) == extract(out) == signed  # Pillow's reading and ours agree
    if kind == "lossy+exif":
        assert decoded.info["exif"] == Image.open(io.BytesIO(image)).info["exif"]
        assert decoded.getexif()[0x010E] == '{"airlock":{}}'
    verdict = verify(out, [verifier])
    assert verdict.valid, verdict.reasons


def test_webp_xmp_is_well_formed_xml(signer):
    pytest.importorskip("defusedxml")  # what Pillow's getxmp parses with
    fields = {**FIELDS, "parameters": {**FIELDS["parameters"], "prompt": 'a <b> & "c" ]]>'}}
    out, signed = attach(generated("webp"), "webp", signer, **fields)
    xmp = Image.open(io.BytesIO(out)).getxmp()
    assert json.loads(xmp["xmpmeta"]["RDF"]["Description"]["provenance"]) == signed


def test_webp_with_foreign_xmp_is_refused(signer):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="WEBP", xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    _, signed = attach(generated("webp"), "webp", signer, **FIELDS)
    with pytest.raises(ProvenanceError, match="already has XMP"):
        embed(buffer.getvalue(), "webp", signed)


def test_a_record_from_the_pillow_re_encoding_is_replaced(signer, verifier):
    """Files embedded before the splicing (Pillow wrote the record) take a new record in its place."""
    image = Image.open(io.BytesIO(generated("webp")))
    _, old = attach(generated("webp"), "webp", signer, **FIELDS)
    buffer = io.BytesIO()
    xmp = XMP_PACKET.format(xml_escape(canonical(old).decode())).encode()
    image.save(buffer, format="WEBP", lossless=True, exact=True, xmp=xmp, exif=image.info["exif"])
    out, signed = attach(buffer.getvalue(), "webp", signer, **{**FIELDS, "seed": 99})
    assert [fourcc for fourcc, _ in riff_chunks(out)].count(b"XMP ") == 1
    assert extract(out) == signed and verify(out, [verifier]).valid


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_animated_images_are_refused(fmt, signer):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt.upper(), save_all=True, append_images=frames[1:])
    _, signed = attach(generated(fmt), fmt, signer, **FIELDS)
    with pytest.raises(ProvenanceError, match="animated"):
        embed(buffer.getvalue(), fmt, signed)


def test_a_png_record_larger_than_pillow_reads_is_refused(signer, monkeypatch):
    _, signed = attach(generated("png"), "png", signer, **FIELDS)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 512)
    with pytest.raises(ProvenanceError, match="sidecar"):
        embed(generated("png"), "png", signed)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_extract_survives_garbage(fmt, signer):
    out, _ = attach(generated(fmt), fmt, signer, **FIELDS)
    rng = random.Random(fmt)  # noqa: S311 (reproducible damage, not secrets)
    damaged = [out[:cut] for cut in (0, 5, 12, 20, len(out) // 2, len(out) - 1)]
    damaged += [
        out[:i] + bytes([out[i] ^ (1 << rng.randrange(8))]) + out[i + 1 :]
        for i in rng.sample(range(len(out)), 300)
    ]
    damaged += [
        out[:12] + rng.randbytes(200),
        out[:8] + b"\xff" * 16,
        rng.randbytes(500),
        b"RIFF\xff\xff\xff\x7fWEBP",
    ]
    for data in damaged:
        try:
            found = extract(data)
        except ProvenanceError:
            continue
        assert found is None or isinstance(found, dict)
    # A flipped bit in the record is caught by the chunk's CRC (PNG) or the JSON parser (WebP).
    at = out.index(b"airlock:provenance") + 40 if fmt == "png" else out.index(b'<airlock:provenance>{"') + 20
    with pytest.raises(ProvenanceError):
        extract(out[:at] + bytes([out[at] ^ 0x40]) + out[at + 1 :])


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
