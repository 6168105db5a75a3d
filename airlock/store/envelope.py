"""Envelope encryption of one object (an image and its metadata) and the bytes of its two files.

<object>.enc   MAGIC | nonce (12) | AES-256-GCM under the data key of:
               len(metadata) (4 bytes, big-endian) | metadata JSON | image
<object>.key   JSON: format, kek_id, created, wrapped (the data key wrapped by the tenant's KEK, base64)

Each object gets a fresh random 256-bit data key, used for that one encryption only, so its random
nonce can never repeat under it. The ciphertext's associated data binds tenant and object id; the
wrapped key's binds tenant, object id, KEK id and creation time. The KEK id stays out of the
ciphertext's on purpose: rotation re-wraps the small key file and leaves the image untouched.
Moving or renaming either file changes the associated data, so it fails to decrypt.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"ALOUT01\n"
NONCE = 12
KEY_FORMAT = 1


def _canonical(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def data_aad(tenant: str, object_id: str) -> bytes:
    # A JSON list, not a joined string: no choice of ids can make two different tuples encode alike.
    return MAGIC + _canonical(["airlock.output.data", tenant, object_id])


def key_aad(tenant: str, object_id: str, kek_id: str, created: str) -> bytes:
    return _canonical(["airlock.output.key", KEY_FORMAT, tenant, object_id, kek_id, created])


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(data_key: bytes, tenant: str, object_id: str, data: bytes, metadata: dict) -> bytes:
    """Encrypt image and metadata together (one nonce, one tag) into the .enc file's bytes."""
    meta = _canonical(metadata)  # TypeError/ValueError for what is not plain JSON
    nonce = os.urandom(NONCE)
    plaintext = struct.pack(">I", len(meta)) + meta + data
    return MAGIC + nonce + AESGCM(data_key).encrypt(nonce, plaintext, data_aad(tenant, object_id))


def open_sealed(data_key: bytes, tenant: str, object_id: str, blob: bytes) -> tuple[bytes, dict]:
    """The image and metadata back; ValueError (with the reason) when the bytes do not authenticate."""
    if blob[: len(MAGIC)] != MAGIC or len(blob) < len(MAGIC) + NONCE + 16:
        raise ValueError("its ciphertext is not an Airlock output file")
    nonce, body = blob[len(MAGIC) : len(MAGIC) + NONCE], blob[len(MAGIC) + NONCE :]
    try:
        plaintext = AESGCM(data_key).decrypt(nonce, body, data_aad(tenant, object_id))
    except InvalidTag:
        raise ValueError("its ciphertext does not authenticate") from None
    (size,) = struct.unpack(">I", plaintext[:4])
    return plaintext[4 + size :], json.loads(plaintext[4 : 4 + size])


@dataclass(frozen=True)
class KeyFile:
    """The small per-object file rotation rewrites: which KEK wraps the data key, and the wrapped key."""

    kek_id: str
    created: str  # UTC timestamp of the put; retention reads it, the wrap authenticates it
    wrapped: bytes

    def to_bytes(self) -> bytes:
        record = {
            "format": KEY_FORMAT,
            "kek_id": self.kek_id,
            "created": self.created,
            "wrapped": base64.b64encode(self.wrapped).decode(),
        }
        return json.dumps(record).encode() + b"\n"

    @classmethod
    def from_bytes(cls, raw: bytes) -> KeyFile:
        """ValueError when the bytes are not a key file of this format."""
        try:
            record = json.loads(raw)
            if record["format"] != KEY_FORMAT or not all(
                isinstance(record[f], str) for f in ("kek_id", "created", "wrapped")
            ):
                raise ValueError("unexpected fields")
            return cls(
                record["kek_id"], record["created"], base64.b64decode(record["wrapped"], validate=True)
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError("its key file is unreadable") from exc
