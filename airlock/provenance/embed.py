"""Where a signed record travels: inside the image file, or beside it as `<image>.provenance.json`.

PNG   an iTXt chunk keyed `airlock:provenance` (UTF-8, compressed). Pillow re-encodes the file;
      PNG is lossless, so the pixels, and the record's pixel hash, stay the same.
WebP  an XMP packet holding the record. Pillow re-encodes the file as lossless WebP (exact=True):
      a lossy input's decoded pixels are kept exactly (the file grows, the pixels do not change).
JPEG  COM (comment) segments starting `airlock:provenance\\0`, spliced in after the APPn segments;
      a record longer than one segment (64 KiB) continues in the next ones, read back in order.
      Pillow writes COM/APP segments only while encoding, and a JPEG re-encode re-quantizes the
      pixels, so the hash signed beforehand would no longer match. Splicing leaves the compressed
      data byte for byte, so a decoder sees the very pixels the record was made from; Pillow reads
      the segments back. COM, not APPn: it is JPEG's own free-text marker that all decoders skip, it
      stays clear of APP1 (EXIF/XMP, where the engine keeps its metadata) and of APP11 (JUMBF, where
      C2PA manifests live: a C2PA reader must not mistake this record for one).

The order for every format: encode the image, hash the decoded pixels of those final bytes, sign,
embed (pixels untouched). `attach` does exactly that.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from xml.sax.saxutils import escape, unescape

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from airlock.keys import Signer
from airlock.provenance.record import (
    FORMATS,
    ProvenanceError,
    build_record,
    canonical,
    open_image,
    parse_json,
    pixel_sha256,
    sign_record,
)

KEY = "airlock:provenance"
JPEG_PREFIX = KEY.encode() + b"\0"
JPEG_SEGMENT_MAX = 0xFFFF - 2  # payload bytes per segment: the length field counts itself
SIDECAR_SUFFIX = ".provenance.json"
XMP_PROPERTY = re.compile(rb"<airlock:provenance>(.*?)</airlock:provenance>", re.DOTALL)
XMP_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    '<rdf:Description rdf:about="" xmlns:airlock="urn:airlock:provenance:1#">'
    "<airlock:provenance>{}</airlock:provenance>"
    "</rdf:Description></rdf:RDF></x:xmpmeta>"
    '<?xpacket end="r"?>'
)


def embed(image: bytes, fmt: str, signed: Mapping) -> bytes:
    """`image` with `signed` stored inside it, replacing any record already there; same pixels."""
    if fmt not in FORMATS:
        raise ProvenanceError(f"cannot embed into {fmt!r}: one of {', '.join(FORMATS)}")
    opened = open_image(image)
    if opened.format != FORMATS[fmt]:
        raise ProvenanceError(f"the image is {opened.format}, not {fmt}")
    try:
        text = canonical(signed).decode()
    except (TypeError, ValueError) as exc:
        raise ProvenanceError(f"the signed record is not plain JSON: {exc}") from exc
    if fmt == "jpeg":
        return _splice_jpeg(image, text.encode())
    out = _png(opened, text) if fmt == "png" else _webp(opened, text)
    if pixel_sha256(open_image(out)) != pixel_sha256(opened):  # lossless by design: check, never assume
        raise ProvenanceError(f"re-encoding the {fmt} changed its pixels; store the record in a sidecar")
    return out


def _png(image: Image.Image, text: str) -> bytes:
    info = PngInfo()
    for key, value in image.text.items():  # keep the engine's `parameters` and any other text
        if key != KEY:
            info.add_text(key, value)
    info.add_itxt(KEY, text, zip=True)
    kept = {k: image.info[k] for k in ("dpi", "exif", "icc_profile", "transparency") if k in image.info}
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, **kept)
    return buffer.getvalue()


def _webp(image: Image.Image, text: str) -> bytes:
    existing = image.info.get("xmp") or b""
    if existing and not XMP_PROPERTY.search(existing):
        # Merging into someone else's XMP needs a real XMP toolkit; losing it silently is worse.
        raise ProvenanceError("this WebP already has XMP metadata; store the record in a sidecar")
    kept = {k: image.info[k] for k in ("exif", "icc_profile") if k in image.info}
    buffer = io.BytesIO()
    image.save(
        buffer,
        format="WEBP",
        lossless=True,
        exact=True,  # keep the colour of fully transparent pixels too: they are hashed
        xmp=XMP_PACKET.format(escape(text)).encode(),
        **kept,
    )
    return buffer.getvalue()


def _splice_jpeg(data: bytes, text: bytes) -> bytes:
    """Insert COM segments after the leading APPn segments; drop an older Airlock record."""
    size = JPEG_SEGMENT_MAX - len(JPEG_PREFIX)
    coms = [
        b"\xff\xfe" + (2 + len(JPEG_PREFIX) + len(part)).to_bytes(2, "big") + JPEG_PREFIX + part
        for part in (text[i : i + size] for i in range(0, len(text), size))
    ]
    head, rest, pos = [], [], 2
    try:
        while True:
            if data[pos] != 0xFF:
                raise ProvenanceError(f"malformed JPEG: no marker at byte {pos}")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte before a marker
                pos += 1
                continue
            if marker == 0xDA:  # start of scan: the compressed pixels follow, untouched
                break
            end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
            if end > len(data) or marker in (0x01, *range(0xD0, 0xDA)):
                raise ProvenanceError(f"malformed JPEG: bad segment {marker:#04x} at byte {pos}")
            segment = data[pos:end]
            if not (marker == 0xFE and segment[4:].startswith(JPEG_PREFIX)):
                (head if 0xE0 <= marker <= 0xEF and not rest else rest).append(segment)
            pos = end
    except IndexError:
        raise ProvenanceError("malformed JPEG: truncated before the image data") from None
    return b"\xff\xd8" + b"".join(head + coms + rest) + data[pos:]


def read_embedded(image: Image.Image) -> dict | None:
    """The signed record embedded in a decoded image, None if there is none."""
    if image.format == "PNG":
        texts = [image.text[KEY]] if KEY in image.text else []
    elif image.format == "JPEG":
        parts = [s[len(JPEG_PREFIX) :] for m, s in image.applist if m == "COM" and s.startswith(JPEG_PREFIX)]
        texts = [b"".join(parts)] if parts else []
    else:
        try:
            texts = [unescape(m.decode()) for m in XMP_PROPERTY.findall(image.info.get("xmp") or b"")]
        except UnicodeDecodeError as exc:
            raise ProvenanceError(f"the embedded provenance record is not UTF-8: {exc}") from exc
    if not texts:
        return None
    if len(set(texts)) > 1:
        raise ProvenanceError("the image holds more than one different provenance record")
    signed = parse_json(texts[0], "the embedded provenance record")
    if not isinstance(signed, dict):
        raise ProvenanceError("the embedded provenance record is not a JSON object")
    return signed


def extract(image: bytes) -> dict | None:
    """The signed record embedded in an image file, None if there is none (not verified)."""
    return read_embedded(open_image(image))


def attach(image: bytes, fmt: str, signer: Signer, **fields) -> tuple[bytes, dict]:
    """Record, sign and embed in one go: `image` is the final encoded file, `fields` build_record's
    keyword arguments. Returns (the file with the record inside, the signed record)."""
    signed = sign_record(build_record(image, **fields), signer)
    return embed(image, fmt, signed), signed


def sidecar_path(image_path: str | Path) -> Path:
    path = Path(image_path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(image_path: str | Path, signed: Mapping) -> Path:
    """Write `<image>.provenance.json` (atomically: a reader never sees half a record)."""
    path = sidecar_path(image_path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(signed, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_sidecar(path: str | Path) -> dict:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProvenanceError(f"cannot read the sidecar {path}: {exc.strerror or exc}") from exc
    signed = parse_json(data, f"the sidecar {path}")
    if not isinstance(signed, dict):
        raise ProvenanceError(f"the sidecar {path} is not a JSON object")
    return signed
