"""Ed25519 signing keys: made once with `airlock keys init`, used to sign audit seals, the model
manifest, transfer bundles and evidence packs. The private key never leaves its file (mode 0600);
the public key is what verifiers are given (`--trust`)."""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from airlock.errors import AirlockError

DEFAULT_KEYS_DIR = Path("/etc/airlock/keys")
PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


class KeyFileError(AirlockError):
    pass


def keys_dir() -> Path:
    return Path(os.environ.get("AIRLOCK_KEYS_DIR", DEFAULT_KEYS_DIR))


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Signer:
    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


@dataclass(frozen=True)
class Verifier:
    public: Ed25519PublicKey
    path: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            self.public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create a file that must not exist yet, with its final mode from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def init_keys(directory: Path) -> Signer:
    """Generate a new signing key pair in directory; refuses to replace an existing key."""
    private_path, public_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private_path.exists() or public_path.exists():
        raise KeyFileError(
            f"a signing key already exists in {directory}; keep it (verifiers trust it) or move it "
            "away first if you really mean to start a new chain of trust"
        )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, public_pem(private.public_key()), 0o644)
    return Signer(private, private_path)


def _key_path(path: Path, name: str) -> Path:
    return path / name if path.is_dir() else path


def load_signer(path: Path | None = None) -> Signer:
    """Load the private key (a file, or a directory holding signing.key); it must be mode 0600."""
    key_path = _key_path(path or keys_dir(), PRIVATE_NAME)
    if not key_path.exists():
        raise KeyFileError(
            f"no signing key at {key_path}: create one with "
            f"`airlock keys init --dir {key_path.parent}` or pass --key"
        )
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise KeyFileError(
            f"signing key {key_path} is readable by others (mode {mode:04o}): chmod 600 {key_path}"
        )
    try:
        private = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{key_path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{key_path} is not an Ed25519 key (Airlock signs with Ed25519 only)")
    return Signer(private, key_path)


def load_verifier(path: Path | None = None) -> Verifier:
    """Load a public key (a file, or a directory holding signing.pub) to check signatures with."""
    key_path = _key_path(path or keys_dir(), PUBLIC_NAME)
    if not key_path.exists():
        raise KeyFileError(
            f"no trusted public key at {key_path}: pass --trust PUBKEY "
            "(export it on the signing side with `airlock keys show --public`)"
        )
    try:
        public = serialization.load_pem_public_key(key_path.read_bytes())
    except ValueError as exc:
        raise KeyFileError(f"{key_path} is not a PEM public key: {exc}") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{key_path} is not an Ed25519 public key")
    return Verifier(public, key_path)
