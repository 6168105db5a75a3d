"""Provenance records: what made an image, signed with the service's Ed25519 key.

A record is a JSON object. What is signed is its canonical encoding (sorted keys, no whitespace,
UTF-8), so a verifier re-encodes the record it reads and checks the signature over those bytes.
The image is named by a hash of its decoded pixels, not of its file, so the record can be stored
inside the very file it describes without changing what it hashes (see docs/provenance.md).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from airlock import __version__
from airlock.errors import AirlockError
from airlock.keys import Signer

FORMAT = "airlock.provenance/1"
ALGORITHM = "ed25519"
FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}  # record name -> Pillow's format name
SHA256 = re.compile(r"(?:sha256:)?([0-9a-f]{64})")  # the registry writes sha256:<hex>; records keep <hex>


class ProvenanceError(AirlockError, ValueError):
    """An image or record that cannot be read or built; the message says which and why."""


def canonical(value: Any) -> bytes:
    """The bytes that are signed: sorted keys, compact, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # json.loads accepts NaN/Infinity unless told not to


def parse_json(data: bytes | str, what: str) -> Any:
    """JSON read from an image or sidecar (untrusted): strict, every failure a ProvenanceError."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ProvenanceError(f"{what} is not valid JSON: {exc}") from exc


def open_image(data: bytes) -> Image.Image:
    """Decode an image fully; anything Pillow cannot decode is a ProvenanceError."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ProvenanceError(f"cannot decode the image: {exc}") from exc
    if getattr(image, "n_frames", 1) != 1:
        raise ProvenanceError("animated images are not supported (which frame would the record describe?)")
    if image.format not in FORMATS.values():
        raise ProvenanceError(f"{image.format} images are not supported (PNG, JPEG and WebP are)")
    return image


def pixel_sha256(image: Image.Image) -> str:
    """SHA-256 over `<mode> <width>x<height>\\n` + Pillow's raw pixel bytes (Image.tobytes()).

    Only pixels count: metadata chunks, comments and compression settings do not, so embedding the
    record leaves the hash alone while any changed pixel changes it. Palette images are hashed as
    RGBA, so that editing the palette (the colours) counts too.
    """
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    digest = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def format_name(image: Image.Image) -> str:
    return {pillow: name for name, pillow in FORMATS.items()}[image.format]


def describe_image(image: Image.Image) -> dict:
    """The record's `image` field for a decoded image."""
    return {
        "format": format_name(image),
        "mode": image.mode,
        "width": image.width,
        "height": image.height,
        "pixels_sha256": pixel_sha256(image),
    }


def utc_timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, microseconds (the audit log's format)."""
    if moment.tzinfo is None:
        raise ProvenanceError("created must be timezone-aware (a naive time is ambiguous)")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _model(entry: Mapping, what: str, *, weighted: bool = False) -> dict:
    """A model reference; takes the registry's `checksum` (sha256:<hex>) or a `sha256` field."""
    digest = SHA256.fullmatch(str(entry.get("sha256", entry.get("checksum", ""))))
    if not entry.get("name") or digest is None:
        raise ProvenanceError(f"{what} needs a name and a sha256 (64 lower-case hex digits), got {entry!r}")
    model = {"name": str(entry["name"]), "version": str(entry.get("version", "")), "sha256": digest[1]}
    if weighted:
        try:
            model["weight"] = float(entry["weight"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProvenanceError(f"{what} needs a numeric weight, got {entry!r}") from exc
    return model


def build_record(
    image: bytes,
    *,
    model: Mapping,
    parameters: Mapping,
    seed: int,
    tenant: str | None,
    api_key_id: str | None,
    loras: Sequence[Mapping] = (),
    refiner: Mapping | None = None,
    service_version: str = __version__,
    created: datetime | None = None,
) -> dict:
    """The unsigned record for `image`, the FINAL encoded bytes that will be delivered.

    `parameters` is stored as given: pass the sanitized prompt and its prompt_sha256, never the raw
    prompt. The signer's fingerprint is added by sign_record.
    """
    if not isinstance(parameters, Mapping):
        raise ProvenanceError("parameters must be a mapping (the generation parameters as JSON)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ProvenanceError(f"seed must be an integer, got {seed!r}")
    return {
        "format": FORMAT,
        "created": utc_timestamp(created or datetime.now(UTC)),
        "service": {"name": "airlock", "version": service_version},
        "tenant": tenant,
        "api_key_id": api_key_id,
        "image": describe_image(open_image(image)),
        "model": _model(model, "model"),
        "refiner": _model(refiner, "refiner") if refiner else None,
        "loras": [_model(lora, f"LoRA {i}", weighted=True) for i, lora in enumerate(loras)],
        "seed": seed,
        "parameters": dict(parameters),
    }


def sign_record(record: Mapping, signer: Signer) -> dict:
    """`{"record": ..., "signature": {"alg", "key", "value"}}`, the record naming its signer."""
    try:
        # Round-trip through JSON first: the record returned is exactly what a verifier will read
        # back (tuples become lists, non-string keys strings), so the signed bytes re-encode equal.
        normalized = json.loads(canonical({**record, "signer": signer.fingerprint}))
    except (TypeError, ValueError) as exc:
        raise ProvenanceError(
            f"the record is not plain JSON (str, number, bool, null, list, dict): {exc}"
        ) from exc
    signature = base64.b64encode(signer.sign(canonical(normalized))).decode()
    return {
        "record": normalized,
        "signature": {"alg": ALGORITHM, "key": signer.fingerprint, "value": signature},
    }
