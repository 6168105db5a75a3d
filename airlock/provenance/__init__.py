"""Signed provenance records for generated images: build, sign, embed or sidecar, verify.

Not C2PA: a plain JSON record with an Ed25519 signature (docs/provenance.md says what maps where).
"""

from airlock.provenance.embed import (
    attach,
    embed,
    extract,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from airlock.provenance.record import (
    FORMAT,
    ProvenanceError,
    build_record,
    canonical,
    pixel_sha256,
    sign_record,
)
from airlock.provenance.verify import Verdict, verify

__all__ = [
    "FORMAT",
    "ProvenanceError",
    "Verdict",
    "attach",
    "build_record",
    "canonical",
    "embed",
    "extract",
    "pixel_sha256",
    "read_sidecar",
    "sidecar_path",
    "sign_record",
    "verify",
    "write_sidecar",
]
