"""The signed part of a bundle: `manifest.yaml`, `manifest.sig` and `checksums.txt`.

checksums.txt  `<sha256 hex>  <path>` for every file in the bundle except these three, sorted by
               path (the `sha256sum` format: `sha256sum -c checksums.txt` works on an extracted copy).
manifest.yaml  name, version, created, creator, target, checksums_sha256 (binding checksums.txt to
               the signature) and components (kind, name, version, path, sha256). A model's sha256
               is its registry checksum: the file's SHA-256, or a folder's listing checksum
               (airlock/registry/checksum.py), which verify recomputes from checksums.txt.
manifest.sig   `ed25519 <key fingerprint> <base64 signature>` over the exact bytes of manifest.yaml.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import yaml

from airlock.bundle.archive import name_problem
from airlock.keys import Signer, Verifier

MANIFEST = "manifest.yaml"
SIGNATURE = "manifest.sig"
CHECKSUMS = "checksums.txt"
SIGNED = (MANIFEST, SIGNATURE, CHECKSUMS)  # written last: they cover everything before them
FORMAT = "airlock-bundle/1"
HEADER = b"# Airlock transfer bundle: manifest.sig is an Ed25519 signature over these exact bytes.\n"
FIELDS = ("format", "name", "version", "created", "creator", "target", "checksums_sha256", "components")
COMPONENT_FIELDS = ("kind", "name", "version", "path", "sha256")
COMPONENT_KINDS = ("wheel", "deb", "model", "file")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def checksums_text(digests: dict[str, str]) -> bytes:
    return "".join(f"{digests[path]}  {path}\n" for path in sorted(digests)).encode("utf-8")


def parse_checksums(data: bytes) -> dict[str, str]:
    """path -> hex digest; ValueError naming the first bad line."""
    digests: dict[str, str] = {}
    previous = None
    text = data.decode("utf-8")
    if text and not text.endswith("\n"):
        raise ValueError("the last line has no newline")
    for number, line in enumerate(text.splitlines(), 1):
        match = LINE.match(line)
        if not match:
            raise ValueError(f"line {number} is not `<64 hex>  <path>`: {line[:120]!r}")
        digest, path = match.groups()
        problem = name_problem(path)
        if problem or path in SIGNED:
            raise ValueError(f"line {number}: {path!r} cannot be listed ({problem or 'a signed file'})")
        if previous is not None and path <= previous:
            raise ValueError(f"line {number}: {path} is out of order or listed twice (sorted, unique)")
        digests[path] = digest
        previous = path
    return digests


def dump_manifest(manifest: dict[str, Any]) -> bytes:
    body = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=4096)
    return HEADER + body.encode("utf-8")


def parse_manifest(data: bytes) -> dict[str, Any]:
    """The manifest of a bundle whose signature was checked; ValueError naming the faulty field."""
    doc = yaml.safe_load(data.decode("utf-8"))
    if not isinstance(doc, dict) or set(doc) != set(FIELDS):
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"must have exactly the keys {', '.join(FIELDS)}; found {found}")
    if doc["format"] != FORMAT:
        raise ValueError(f"format {doc['format']!r} is not {FORMAT} (made by another Airlock version?)")
    if not isinstance(doc["checksums_sha256"], str) or not HEX64.match(doc["checksums_sha256"]):
        raise ValueError("checksums_sha256 must be 64 lower-case hex digits")
    if not isinstance(doc["components"], list):
        raise ValueError("components must be a list")
    for i, component in enumerate(doc["components"], 1):
        if not isinstance(component, dict) or set(component) != set(COMPONENT_FIELDS):
            raise ValueError(f"component {i} must have exactly {', '.join(COMPONENT_FIELDS)}")
        if component["kind"] not in COMPONENT_KINDS or not HEX64.match(str(component["sha256"])):
            raise ValueError(f"component {i} has an unknown kind or a malformed sha256")
    return doc


def signature_line(signer: Signer, data: bytes) -> bytes:
    return f"ed25519 {signer.fingerprint} {base64.b64encode(signer.sign(data)).decode()}\n".encode()


@dataclass(frozen=True)
class SignatureCheck:
    ok: bool
    detail: str


def check_signature(verifier: Verifier, data: bytes, line: bytes) -> SignatureCheck:
    try:
        algorithm, fingerprint, encoded = line.decode("ascii").split()
        signature = base64.b64decode(encoded, validate=True)
        if algorithm != "ed25519":
            raise ValueError
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return SignatureCheck(False, f"{SIGNATURE} is not a line `ed25519 <fingerprint> <base64>`")
    if fingerprint != verifier.fingerprint:
        return SignatureCheck(
            False,
            f"signed by key {fingerprint}, not the trusted key {verifier.fingerprint} ({verifier.path}): "
            "pass the organisation's transfer key with --trust; if you do not know that key, treat the "
            "bundle as forged",
        )
    if not verifier.verify(signature, data):
        return SignatureCheck(False, f"{MANIFEST} does not match {SIGNATURE}: it was altered after signing")
    return SignatureCheck(True, f"signed by {fingerprint}")
