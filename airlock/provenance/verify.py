"""Checking an image against its provenance: who signed it, and is it still what they signed."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airlock.keys import Verifier, load_verifier
from airlock.provenance.embed import read_embedded, read_sidecar
from airlock.provenance.record import (
    ALGORITHM,
    FORMAT,
    ProvenanceError,
    canonical,
    describe_image,
    open_image,
)

# Why a verdict is invalid; `codes` carries these so callers need not parse the sentences.
NO_PROVENANCE = "no_provenance"  # no record embedded and no sidecar
MALFORMED = "malformed"  # something is there, but not a readable Airlock record
UNREADABLE = "unreadable_image"  # the image itself cannot be decoded
UNKNOWN_KEY = "unknown_key"  # signed by a key that is not trusted
RECORD_ALTERED = "record_altered"  # the signature does not match the record
IMAGE_ALTERED = "image_altered"  # the pixels (or the file format) are not what was signed
MISMATCH = "sidecar_mismatch"  # the embedded record and the sidecar are different records


@dataclass
class Verdict:
    valid: bool
    reasons: list[str] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # one per reason
    signer: str | None = None  # fingerprint of the trusted key, when valid
    record: dict | None = None  # the record checked (the embedded one first), signed or not

    def to_dict(self) -> dict:
        return {
            "valid": self.valid,
            "reasons": [{"code": c, "detail": r} for c, r in zip(self.codes, self.reasons, strict=True)],
            "signer": self.signer,
            "record": self.record,
        }


def verify(
    image: bytes,
    trusted: list[Verifier] | None = None,
    sidecar: Mapping | str | Path | None = None,
) -> Verdict:
    """Check `image` against its embedded record and/or a sidecar (a path or a loaded record).

    `trusted` are the keys a record may be signed with; None means this host's own public key
    (signing.pub in $AIRLOCK_KEYS_DIR or /etc/airlock/keys).
    """
    trusted = [load_verifier()] if trusted is None else trusted
    problems: list[tuple[str, str]] = []
    sources: list[tuple[str, Mapping]] = []
    facts = None
    try:
        opened = open_image(image)
        facts = describe_image(opened)
    except ProvenanceError as exc:
        problems.append((UNREADABLE, str(exc)))
    else:
        try:
            if (embedded := read_embedded(opened)) is not None:
                sources.append(("embedded record", embedded))
        except ProvenanceError as exc:
            problems.append((MALFORMED, str(exc)))
    if sidecar is not None:
        try:
            sources.append(("sidecar", sidecar if isinstance(sidecar, Mapping) else read_sidecar(sidecar)))
        except ProvenanceError as exc:
            problems.append((MALFORMED, str(exc)))
    if not sources and not problems:
        problems.append(
            (NO_PROVENANCE, "no provenance record: none embedded in the image and no sidecar given")
        )
    if len(sources) == 2 and _encoded(sources[0][1]) != _encoded(sources[1][1]):
        problems.append((MISMATCH, "the embedded record and the sidecar are different records"))
    signer = None
    for name, signed in sources:
        found, signer = _check(name, signed, trusted, facts)
        problems += found
    first = sources[0][1].get("record") if sources else None
    return Verdict(
        valid=not problems,
        reasons=[detail for _, detail in problems],
        codes=[code for code, _ in problems],
        signer=None if problems else signer,
        record=dict(first) if isinstance(first, Mapping) else None,
    )


def _encoded(signed: Mapping) -> bytes | None:
    try:
        return canonical(signed)
    except (TypeError, ValueError):
        return None


def _check(
    name: str, signed: Mapping, trusted: list[Verifier], facts: dict | None
) -> tuple[list[tuple[str, str]], str | None]:
    """Problems with one signed record, and the key it names."""
    problems: list[tuple[str, str]] = []

    def problem(code: str, detail: str) -> None:
        problems.append((code, f"{name}: {detail}"))

    record, signature = signed.get("record"), signed.get("signature")
    if not isinstance(record, Mapping) or not isinstance(signature, Mapping):
        problem(MALFORMED, "not an Airlock provenance record (no record and signature)")
        return problems, None
    key, encoded = signature.get("key"), signature.get("value")
    try:
        if signature.get("alg") != ALGORITHM or not isinstance(key, str) or not isinstance(encoded, str):
            raise ValueError
        value = base64.b64decode(encoded, validate=True)
        data = canonical(record)
    except (binascii.Error, TypeError, ValueError):
        problem(MALFORMED, f"the signature is not an {ALGORITHM} signature with a key and a value")
        return problems, None
    verifier = next((v for v in trusted if v.fingerprint == key), None)
    if verifier is None:
        known = ", ".join(v.fingerprint for v in trusted) or "none"
        problem(
            UNKNOWN_KEY,
            f"signed by key {key}, which is not trusted (trusted: {known}); pass its public key with "
            "--trust if you know it is genuine, otherwise treat the record as forged",
        )
    elif not verifier.verify(value, data):
        problem(RECORD_ALTERED, "the signature does not match: the record was altered after signing")
    elif record.get("signer") != key:
        problem(RECORD_ALTERED, f"names signer {record.get('signer')} but is signed by {key}")
    elif record.get("format") != FORMAT:
        problem(MALFORMED, f"unsupported record format {record.get('format')!r} (this is {FORMAT})")
    claimed = record.get("image") if isinstance(record.get("image"), Mapping) else {}
    # Checked even when the signature fails: the operator learns everything that is wrong at once.
    if facts is not None and claimed.get("pixels_sha256") != facts["pixels_sha256"]:
        problem(
            IMAGE_ALTERED,
            f"the image's pixels (sha256 {facts['pixels_sha256']}) are not the ones signed "
            f"({claimed.get('pixels_sha256')}): the image was altered after signing",
        )
    elif facts is not None and claimed.get("format") != facts["format"]:
        problem(
            IMAGE_ALTERED,
            f"the image is {facts['format']} but the record was made for a {claimed.get('format')}: "
            "it was converted after signing",
        )
    return problems, key
