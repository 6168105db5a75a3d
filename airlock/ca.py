"""The internal certificate authority and the TLS 1.3-only contexts of the Airlock HTTPS service.

The enclave has no route to a public CA, so `airlock ca init` makes a small one (ECDSA P-256,
ca.key mode 0600, ca.crt given to every client) and `airlock ca issue` signs server and client
(mutual TLS) certificates with it. Clients trust this CA only, never the system store.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from airlock.errors import AirlockError

DEFAULT_TLS_DIR = Path("/etc/airlock/tls")
CA_KEY_NAME = "ca.key"
CA_CERT_NAME = "ca.crt"
# A leaf valid longer than 397 days is rejected by browsers and many TLS clients.
DEFAULT_LEAF_DAYS = 397
# Backdate a little so a host whose clock runs slightly behind still accepts a fresh certificate.
CLOCK_SKEW = timedelta(minutes=5)

# One DNS label: letters, digits and inner hyphens, at most 63 characters (RFC 1035/1123).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
# Certificate file names: no path separators, no leading dot (nothing hidden, nothing outside out_dir).
_FILE_STEM = re.compile(r"^[A-Za-z0-9*_:-][A-Za-z0-9*_.:-]*$")


class CAError(AirlockError):
    pass


class InvalidNameError(CAError):
    """A host name or certificate name the user typed is not acceptable (a usage error)."""


def tls_dir() -> Path:
    return Path(os.environ.get("AIRLOCK_TLS_DIR", DEFAULT_TLS_DIR))


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, as `openssl x509 -noout -fingerprint -sha256` prints it."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    directory: Path

    @property
    def key_path(self) -> Path:
        return self.directory / CA_KEY_NAME

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT_NAME

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create a file that must not exist yet, with its final mode from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _check_days(days: int) -> None:
    if days < 1:
        raise CAError(f"a certificate must be valid for at least 1 day (got {days}); pass --days 1 or more")


def init_ca(directory: Path, *, common_name: str = "Airlock Internal CA", days: int = 3650) -> CA:
    """Create the CA key (0600) and self-signed certificate in directory; never replaces an existing CA."""
    key_path, cert_path = directory / CA_KEY_NAME, directory / CA_CERT_NAME
    if key_path.exists() or cert_path.exists():
        raise CAError(
            f"a CA already exists in {directory}; keep it (every client trusts its ca.crt) or move it "
            "away first if you really mean to start a new CA and re-issue every certificate"
        )
    _check_days(days)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        # path_length=0: this CA signs leaves only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # The key first: if it cannot be written there is no orphan certificate to mislead anyone.
    _write_new(key_path, _key_pem(key), 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return CA(key, cert, directory)


def load_ca(directory: Path | None = None) -> CA:
    """Load the CA from directory (ca.key must be 0600; ca.crt must be a CA certificate for that key)."""
    directory = directory or tls_dir()
    key_path, cert_path = directory / CA_KEY_NAME, directory / CA_CERT_NAME
    if not key_path.exists() or not cert_path.exists():
        raise CAError(
            f"no CA in {directory} (needs {CA_KEY_NAME} and {CA_CERT_NAME}): create one with "
            f"`airlock ca init --dir {directory}` or pass --dir"
        )
    mode = key_path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CAError(f"CA key {key_path} is readable by others (mode {mode:04o}): chmod 600 {key_path}")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise CAError(f"{key_path} is not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CAError(f"{key_path} is not an ECDSA key (the Airlock CA uses ECDSA P-256)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise CAError(f"{cert_path} is not a PEM certificate: {exc}") from exc
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CAError(f"{cert_path} is not a CA certificate; restore the ca.crt made by `airlock ca init`")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise CAError(f"{cert_path} does not belong to {key_path}; restore the matching pair from backup")
    return CA(key, cert, directory)


def subject_alt_names(names: list[str]) -> list[x509.GeneralName]:
    """IPv4/IPv6 literals become IPAddress entries, everything else must be a valid DNS name."""
    if not names:
        raise InvalidNameError("give at least one host name or IP address (--host NAME)")
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            continue
        except ValueError:
            pass
        if len(name) > 253 or not _DNS_NAME.match(name):
            raise InvalidNameError(
                f"{name!r} is neither an IP address nor a valid DNS name; use letters, digits, hyphens "
                "and dots (e.g. airlock.internal), with an optional leading '*.'"
            )
        sans.append(x509.DNSName(name.lower()))
    return sans


def issue(
    ca: CA,
    names: list[str],
    out_dir: Path,
    *,
    days: int = DEFAULT_LEAF_DAYS,
    client: bool = False,
    common_name: str | None = None,
) -> tuple[Path, Path]:
    """Sign a server (or, with client=True, a client) certificate for names; returns (cert, key) paths.

    Writes <name>.crt (the leaf only; clients get the CA from ca.crt) and <name>.key (0600), where
    name is common_name or names[0]. Existing files are never replaced.
    """
    sans = subject_alt_names(names)
    name = common_name or names[0]
    if not _FILE_STEM.match(name) or name == "ca":
        raise InvalidNameError(
            f"{name!r} cannot name the certificate files; use letters, digits, dots and hyphens (--name)"
        )
    _check_days(days)
    now = datetime.now(UTC)
    if ca.cert.not_valid_after_utc <= now:
        raise CAError(
            f"the CA in {ca.directory} expired on {ca.cert.not_valid_after_utc:%Y-%m-%d}; "
            "create a new CA (`airlock ca init`) and re-issue every certificate"
        )
    cert_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    for path in (cert_path, key_path):
        if path.exists():
            raise CAError(f"{path} already exists; move the old certificate and key away to re-issue them")

    key = ec.generate_private_key(ec.SECP256R1())
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        # A leaf that outlives its CA would fail verification anyway; say so in its own dates.
        .not_valid_after(min(now + timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    _write_new(key_path, _key_pem(key), 0o600)
    _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise CAError(f"cannot read certificate {path}: {exc}") from exc


def _load_chain(ctx: ssl.SSLContext, cert: Path, key: Path) -> None:
    try:
        ctx.load_cert_chain(certfile=cert, keyfile=key)
    except (OSError, ssl.SSLError) as exc:
        raise CAError(
            f"cannot load certificate {cert} with key {key}: {exc}; issue a matching pair with "
            "`airlock ca issue`"
        ) from exc


def _load_trust(ctx: ssl.SSLContext, ca_cert: Path) -> None:
    # Strict RFC 5280 checks (as Python 3.13's default context does): our own certificates pass them,
    # so a malformed or hand-made certificate is refused rather than quietly accepted.
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_verify_locations(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise CAError(f"cannot load CA certificate {ca_cert}: {exc}; copy ca.crt from the CA host") from exc


def server_context(cert: Path, key: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.3-only server context; with client_ca, clients must present a certificate it signed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, cert, key)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, client_ca)
    return ctx


def client_context(ca_cert: Path, *, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A TLS 1.3-only client context that trusts ca_cert alone and checks the host name."""
    if (cert is None) != (key is None):
        raise CAError("a client certificate needs both --cert and --key")
    # PROTOCOL_TLS_CLIENT verifies the peer and checks the host name by default; starting from a bare
    # context (not create_default_context) keeps the system CA store out: only our CA is trusted.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_trust(ctx, ca_cert)
    if cert is not None and key is not None:
        _load_chain(ctx, cert, key)
    return ctx
