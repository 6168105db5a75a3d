"""TLS probe from the controller: what a client really gets from a host's API port.

Three handshakes: TLS 1.3 verified against the internal CA (must succeed, with the certificate's name
matching), and TLS 1.2 and 1.1 without verification (must be refused: an old protocol accepted is a
finding even with a bad certificate). The certificate itself is described from the bytes served.
"""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

VERSION = "1"
TIMEOUT = 10


def _handshake(address: str, port: int, context: ssl.SSLContext, server_name: str | None) -> dict:
    try:
        with (
            socket.create_connection((address, port), timeout=TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=server_name) as tls,
        ):
            return {
                "accepted": True,
                "version": tls.version(),
                "cipher": tls.cipher()[0],
                "certificate_der": tls.getpeercert(binary_form=True),
            }
    except (OSError, ssl.SSLError) as exc:
        return {"accepted": False, "error": f"{type(exc).__name__}: {exc}"}


def _protocol_only(address: str, port: int, version: ssl.TLSVersion) -> dict:
    handshake = _handshake(address, port, _legacy(version), None)
    handshake.pop("certificate_der", None)
    return handshake


def _legacy(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only the protocol version is being asked about
    context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")  # let OpenSSL offer what an old client would
    return context


def describe_certificate(der: bytes) -> dict:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(
            [
                *san.get_values_for_type(x509.DNSName),
                *(str(ip) for ip in san.get_values_for_type(x509.IPAddress)),
            ]
        )
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject_alt_names": names,
        "signature_algorithm": cert.signature_algorithm_oid._name,
    }


def probe(address: str, port: int, server_name: str, ca_cert: Path) -> dict:
    """Everything the TLS checks need, as plain data (no pass/fail here)."""
    verified = ssl.create_default_context(cafile=str(ca_cert))
    verified.minimum_version = verified.maximum_version = ssl.TLSVersion.TLSv1_3
    tls13 = _handshake(address, port, verified, server_name)
    if not tls13["accepted"]:  # say whether it was the chain or the server: retry unverified
        tls13["unverified"] = _protocol_only(address, port, ssl.TLSVersion.TLSv1_3)
    der = tls13.pop("certificate_der", None)
    return {
        "collector_version": VERSION,
        "target": {"address": address, "port": port, "server_name": server_name, "ca_cert": str(ca_cert)},
        "tls1_3_verified": tls13,
        "tls1_2": _protocol_only(address, port, ssl.TLSVersion.TLSv1_2),
        "tls1_1": _protocol_only(address, port, ssl.TLSVersion.TLSv1_1),
        "certificate": describe_certificate(der) if der else None,
        "probed_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
