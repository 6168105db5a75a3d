"""Where a signed record travels: inside the image file, or beside it as `<image>.provenance.json`.

Every format is spliced at byte level: the record goes into the container next to the compressed
image data, which stays byte for byte, so a decoder sees the very pixels the record was made from
(and no time is spent re-encoding).

PNG   an iTXt chunk keyed `airlock:provenance` (UTF-8, zlib-compressed), inserted just before the
      first IDAT with its own length and CRC. Before, not after, the image data: Pillow and most
      metadata readers collect the chunks ahead of IDAT when they open a file, without decoding
      it (the engine's `parameters` tEXt sits there too). Every other chunk is copied unchanged; an
      older record (a tEXt, zTXt or iTXt chunk with that keyword, wherever it is) is dropped.
WebP  an XMP chunk ("XMP ") whose packet holds the record, after the bitstream and any EXIF chunk.
      A simple file (a lone VP8 or VP8L chunk) becomes an extended one: a VP8X chunk is put first,
      its canvas size read from the bitstream's frame header and its flags saying XMP (and EXIF,
      ICC or alpha where the file has them); an existing VP8X only gains the XMP flag (and EXIF's,
      should an EXIF chunk lack it). Other chunks are copied unchanged, odd ones padded, and the
      RIFF size is fixed. A record already there is replaced inside its packet; foreign XMP is
      refused (merging it needs a real XMP toolkit). A lossy file stays lossy.
JPEG  COM (comment) segments starting `airlock:provenance\\0`, spliced in after the APPn segments;
      a record longer than one segment (64 KiB) continues in the next ones, read back in order.
      Pillow writes COM/APP segments only while encoding, and a JPEG re-encode re-quantizes the
      pixels, so the hash signed beforehand would no longer match. Splicing leaves the compressed
      data byte for byte, so a decoder sees the very pixels the record was made from; Pillow reads
      the segments back. COM, not APPn: it is JPEG's own free-text marker that all decoders skip, it
      stays clear of APP1 (EXIF/XMP, where the engine keeps its metadata) and of APP11 (JUMBF, where
      C2PA manifests live: a C2PA reader must not mistake this record for one).

The order for every format: encode the image, hash the decoded pixels of those final bytes, sign,
embed (pixels untouched). `attach` does exactly that. `extract` reads PNG and WebP with the
parsers here (any malformed container is a ProvenanceError) and JPEG through Pillow; `verify`
reads through Pillow.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.sax.saxutils import escape, unescape

from PIL import Image, PngImagePlugin

from airlock.keys import Signer
from airlock.provenance.record import (
    FORMATS,
    ProvenanceError,
    build_record,
    canonical,
    open_image,
    parse_json,
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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_TEXT = (b"tEXt", b"zTXt", b"iTXt")
ANIMATED = "animated images are not supported (which frame would the record describe?)"
# VP8X flags (https://developers.google.com/speed/webp/docs/riff_container#extended_file_format)
WEBP_ICC, WEBP_ALPHA, WEBP_EXIF, WEBP_XMP, WEBP_ANIMATION = 0x20, 0x10, 0x08, 0x04, 0x02


def embed(image: bytes, fmt: str, signed: Mapping) -> bytes:
    """`image` with `signed` stored inside it, replacing any record already there; same pixels."""
    if fmt not in FORMATS:
        raise ProvenanceError(f"cannot embed into {fmt!r}: one of {', '.join(FORMATS)}")
    found = _container(image)
    if found is None:  # JPEG, or not an image we can hold a record in: let the decoder say which
        found = open_image(image).format
    if found != FORMATS[fmt]:
        raise ProvenanceError(f"the image is {found}, not {fmt}")
    try:
        text = canonical(signed)
    except (TypeError, ValueError) as exc:
        raise ProvenanceError(f"the signed record is not plain JSON: {exc}") from exc
    if fmt == "png":
        return _splice_png(image, text)
    if fmt == "webp":
        return _splice_webp(image, text)
    return _splice_jpeg(image, text)


def _container(data: bytes) -> str | None:
    """PNG or WEBP when `data` starts like one (parsed here, not decoded), else None."""
    if data[:8] == PNG_SIGNATURE:
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _record(texts: Iterable[str | bytes]) -> dict | None:
    """The one signed record among the texts found in an image, None if there are none."""
    texts = list(texts)
    if not texts:
        return None
    if len(set(texts)) > 1:
        raise ProvenanceError("the image holds more than one different provenance record")
    signed = parse_json(texts[0], "the embedded provenance record")
    if not isinstance(signed, dict):
        raise ProvenanceError("the embedded provenance record is not a JSON object")
    return signed


# ---------------------------------------------------------------------------------------- PNG


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(type, start, end) of every chunk from IHDR to IEND, framing and CRCs checked."""
    view, chunks, pos = memoryview(data), [], len(PNG_SIGNATURE)
    while not chunks or chunks[-1][0] != b"IEND":
        if pos + 12 > len(data):
            raise ProvenanceError(f"malformed PNG: truncated at byte {pos} (no IEND chunk)")
        length, kind = int.from_bytes(data[pos : pos + 4], "big"), bytes(data[pos + 4 : pos + 8])
        end = pos + 12 + length
        if length > 0x7FFFFFFF or end > len(data) or not kind.isalpha():
            raise ProvenanceError(f"malformed PNG: bad chunk at byte {pos}")
        if zlib.crc32(view[pos + 4 : end - 4]) != int.from_bytes(data[end - 4 : end], "big"):
            raise ProvenanceError(f"malformed PNG: bad CRC in the {kind.decode()} chunk at byte {pos}")
        if (kind == b"IHDR") != (not chunks):
            raise ProvenanceError("malformed PNG: IHDR is not the first chunk")
        chunks.append((kind, pos, end))
        pos = end
    return chunks


def _png_keyword(data: bytes, start: int, end: int) -> bytes:
    """The keyword of the tEXt/zTXt/iTXt chunk at data[start:end]: they all start `keyword\\0`."""
    return data[start + 8 : min(start + 88, end - 4)].partition(b"\0")[0]  # keywords: 1-79 bytes


def _png_text(kind: bytes, data: bytes) -> str:
    """The text of a tEXt (Latin-1), zTXt (Latin-1, compressed) or iTXt (UTF-8) chunk's data."""
    rest = data.partition(b"\0")[2]
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":
            if rest[:1] != b"\0":
                raise ValueError("unknown compression method")
            return _inflate(rest[1:]).decode("latin-1")
        compressed, method = rest[0], rest[1]
        _language, _translated, text = rest[2:].split(b"\0", 2)  # ValueError when they are missing
        if compressed and method != 0:
            raise ValueError("unknown compression method")
        return (_inflate(text) if compressed else text).decode("utf-8")
    except (IndexError, ValueError, zlib.error) as exc:
        raise ProvenanceError(
            f"the embedded provenance record's {kind.decode()} chunk is malformed: {exc}"
        ) from exc


def _inflate(data: bytes) -> bytes:
    """zlib data, at most as much as Pillow inflates from one text chunk (else Pillow cannot read it)."""
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, PngImagePlugin.MAX_TEXT_CHUNK)
    if inflater.unconsumed_tail:
        raise ValueError(f"more than PngImagePlugin.MAX_TEXT_CHUNK ({PngImagePlugin.MAX_TEXT_CHUNK}) bytes")
    return text


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _splice_png(data: bytes, text: bytes) -> bytes:
    """Insert the record's iTXt chunk before the first IDAT; drop older records; copy the rest."""
    if len(text) > PngImagePlugin.MAX_TEXT_CHUNK:
        raise ProvenanceError(
            f"the record ({len(text)} bytes) is larger than Pillow reads from a PNG text chunk "
            f"(PngImagePlugin.MAX_TEXT_CHUNK, {PngImagePlugin.MAX_TEXT_CHUNK}); store it in a sidecar"
        )
    itxt = _png_chunk(b"iTXt", KEY.encode() + b"\0\1\0\0\0" + zlib.compress(text))
    parts, placed = [data[: len(PNG_SIGNATURE)]], False
    for kind, start, end in _png_chunks(data):
        if kind == b"acTL":
            raise ProvenanceError(ANIMATED)
        if kind == b"IDAT" and not placed:
            parts.append(itxt)
            placed = True
        elif kind == b"IEND" and not placed:
            raise ProvenanceError("malformed PNG: no IDAT chunk")
        if kind in PNG_TEXT and _png_keyword(data, start, end) == KEY.encode():
            continue  # an older record: replaced, not kept beside the new one
        parts.append(data[start:end])
    parts.append(data[end:])  # whatever follows IEND (the loop ends on it), as it was
    return b"".join(parts)


def _png_record(data: bytes) -> dict | None:
    return _record(
        _png_text(kind, data[start + 8 : end - 4])
        for kind, start, end in _png_chunks(data)
        if kind in PNG_TEXT and _png_keyword(data, start, end) == KEY.encode()
    )


# --------------------------------------------------------------------------------------- WebP


def _riff_chunks(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The (FourCC, payload) chunks of a RIFF/WEBP file, and whatever follows the RIFF."""
    end = 8 + int.from_bytes(data[4:8], "little")
    if len(data) < 12 or end > len(data):
        raise ProvenanceError("malformed WebP: shorter than its RIFF header says")
    chunks, pos = [], 12
    while pos < end:
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        if pos + 8 + size > end:
            raise ProvenanceError(f"malformed WebP: chunk at byte {pos} runs past the end")
        chunks.append((bytes(data[pos : pos + 4]), data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)  # odd chunks are padded to even (the last one may not be)
    if not chunks:
        raise ProvenanceError("malformed WebP: no chunks")
    return chunks, data[end:]


def _riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + len(payload).to_bytes(4, "little") + payload + b"\0" * (len(payload) & 1)


def _webp_frame(fourcc: bytes, payload: bytes) -> tuple[int, int, bool]:
    """Width, height and whether the bitstream itself carries alpha, from a VP8/VP8L frame header."""
    if fourcc == b"VP8 ":
        # 3-byte frame tag (bit 0 clear on a key frame), start code, 14-bit width and height.
        if len(payload) < 10 or payload[0] & 1 or payload[3:6] != b"\x9d\x01\x2a":
            raise ProvenanceError("malformed WebP: the VP8 chunk does not start with a key frame")
        width = int.from_bytes(payload[6:8], "little") & 0x3FFF
        height = int.from_bytes(payload[8:10], "little") & 0x3FFF
        alpha = False  # lossy alpha lives in an ALPH chunk, which a simple file cannot have
    else:
        # Signature 0x2f, then 14 bits width-1, 14 bits height-1, alpha_is_used, 3-bit version 0.
        bits = int.from_bytes(payload[1:5], "little")
        if len(payload) < 5 or payload[0] != 0x2F or bits >> 29:
            raise ProvenanceError("malformed WebP: the VP8L chunk has no valid header")
        width, height, alpha = (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1, bool(bits >> 28 & 1)
    if not width or not height:
        raise ProvenanceError("malformed WebP: the bitstream is 0 pixels wide or high")
    return width, height, alpha


def _splice_webp(data: bytes, text: bytes) -> bytes:
    """Insert or replace the XMP chunk holding the record; add or update VP8X; fix the RIFF size."""
    chunks, trailing = _riff_chunks(data)
    kinds = [fourcc for fourcc, _ in chunks]
    frames = [i for i, kind in enumerate(kinds) if kind in (b"VP8 ", b"VP8L")]
    if kinds[0] not in (b"VP8X", b"VP8 ", b"VP8L") or (kinds[0] == b"VP8X" and len(chunks[0][1]) < 10):
        raise ProvenanceError("malformed WebP: it starts with neither a VP8X header nor a bitstream")
    if b"ANIM" in kinds or b"ANMF" in kinds or (kinds[0] == b"VP8X" and chunks[0][1][0] & WEBP_ANIMATION):
        raise ProvenanceError(ANIMATED)
    if len(frames) != 1:
        raise ProvenanceError(f"malformed WebP: {len(frames)} VP8/VP8L bitstreams, not one")
    escaped = escape(text.decode())
    xmps = [i for i, kind in enumerate(kinds) if kind == b"XMP "]
    if len(xmps) > 1:
        raise ProvenanceError("this WebP has more than one XMP chunk; store the record in a sidecar")
    if xmps:
        packet = chunks[xmps[0]][1]
        if not XMP_PROPERTY.search(packet):
            # Merging into someone else's XMP needs a real XMP toolkit; losing it silently is worse.
            raise ProvenanceError("this WebP already has XMP metadata; store the record in a sidecar")
        # Our packet (or one that kept our property): swap the record, keep whatever else is there.
        packet = XMP_PROPERTY.sub(
            lambda _: b"<airlock:provenance>" + escaped.encode() + b"</airlock:provenance>", packet
        )
        chunks[xmps[0]] = (b"XMP ", packet)
    else:  # the container's order: ... bitstream, EXIF, XMP, then unknown chunks
        after = max(i for i, kind in enumerate(kinds) if kind in (b"VP8 ", b"VP8L", b"EXIF"))
        chunks.insert(after + 1, (b"XMP ", XMP_PACKET.format(escaped).encode()))
        kinds.insert(after + 1, b"XMP ")
    flags = WEBP_XMP | (WEBP_EXIF if b"EXIF" in kinds else 0)
    if kinds[0] == b"VP8X":
        header = bytearray(chunks[0][1])
        header[0] |= flags
        chunks[0] = (b"VP8X", bytes(header))
    else:  # a simple file: an extended one needs the VP8X header, with the bitstream's size
        width, height, alpha = _webp_frame(*chunks[frames[0]])
        flags |= (WEBP_ICC if b"ICCP" in kinds else 0) | (WEBP_ALPHA if alpha or b"ALPH" in kinds else 0)
        canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", bytes([flags, 0, 0, 0]) + canvas))
    body = b"WEBP" + b"".join(_riff_chunk(fourcc, payload) for fourcc, payload in chunks)
    if len(body) > 0xFFFFFFFE:
        raise ProvenanceError("the WebP would be larger than RIFF allows (4 GiB)")
    return b"RIFF" + len(body).to_bytes(4, "little") + body + trailing


def _xmp_texts(packets: Iterable[bytes]) -> list[str]:
    try:
        return [unescape(m.decode()) for packet in packets for m in XMP_PROPERTY.findall(packet)]
    except UnicodeDecodeError as exc:
        raise ProvenanceError(f"the embedded provenance record is not UTF-8: {exc}") from exc


def _webp_record(data: bytes) -> dict | None:
    chunks, _ = _riff_chunks(data)
    return _record(_xmp_texts(payload for fourcc, payload in chunks if fourcc == b"XMP "))


# --------------------------------------------------------------------------------------- JPEG


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
    """The signed record embedded in a decoded image (as Pillow reads it), None if there is none."""
    if image.format == "PNG":
        return _record([image.text[KEY]] if KEY in image.text else [])
    if image.format == "JPEG":
        parts = [s[len(JPEG_PREFIX) :] for m, s in image.applist if m == "COM" and s.startswith(JPEG_PREFIX)]
        return _record([b"".join(parts)] if parts else [])
    return _record(_xmp_texts([image.info.get("xmp") or b""]))


def extract(image: bytes) -> dict | None:
    """The signed record embedded in an image file, None if there is none (not verified).

    PNG and WebP are read with the container parsers above, without decoding the pixels; JPEG (and
    anything else, which is refused) through Pillow."""
    found = _container(image)
    if found == "PNG":
        return _png_record(image)
    if found == "WEBP":
        return _webp_record(image)
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
