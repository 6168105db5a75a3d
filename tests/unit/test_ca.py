import contextlib
import ipaddress
import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from airlock.ca import (
    CAError,
    InvalidNameError,
    client_context,
    init_ca,
    issue,
    load_ca,
    load_cert,
    server_context,
)
from airlock.cli import app
from airlock.errors import AirlockError


@pytest.fixture
def ca(tmp_path):
    return init_ca(tmp_path / "tls")


@pytest.fixture
def server_pair(ca, tmp_path):
    return issue(ca, ["localhost", "127.0.0.1"], tmp_path / "server")


@pytest.fixture
def client_pair(ca, tmp_path):
    return issue(ca, ["worker-1"], tmp_path / "client", client=True)


@contextlib.contextmanager
def tls_server(ctx):
    """A loopback TLS server that answers b"ok" after each handshake; yields (port, seen handshakes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop, seen = threading.Event(), []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    seen.append((tls.version(), tls.getpeercert()))
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def talk(port, ctx, hostname="localhost"):
    """Handshake and read the server's greeting; returns the negotiated TLS version."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        # In TLS 1.3 the server judges the client's certificate after the client finished its half of
        # the handshake, so a refusal of the client shows up on the first read.
        assert tls.recv(2) == b"ok"
        return tls.version()


def test_init_makes_a_private_key_and_a_ca_certificate(ca):
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    cert = load_cert(ca.cert_path)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert cert.subject == cert.issuer
    assert load_ca(ca.directory).fingerprint == ca.fingerprint


def test_second_init_is_refused(ca):
    with pytest.raises(CAError, match=r"already exists.*keep it"):
        init_ca(ca.directory)


def test_load_ca_refuses_a_key_others_can_read(ca):
    ca.key_path.chmod(0o644)
    with pytest.raises(CAError, match=f"chmod 600 {ca.key_path}"):
        load_ca(ca.directory)


def test_load_ca_refuses_a_missing_ca_a_leaf_or_a_foreign_certificate(ca, server_pair, tmp_path):
    with pytest.raises(CAError, match="airlock ca init"):
        load_ca(tmp_path / "nowhere")
    other = init_ca(tmp_path / "other")
    ca.cert_path.write_bytes(other.cert_path.read_bytes())
    with pytest.raises(CAError, match="does not belong"):
        load_ca(ca.directory)
    ca.cert_path.write_bytes(server_pair[0].read_bytes())
    with pytest.raises(CAError, match="not a CA certificate"):
        load_ca(ca.directory)


def test_server_certificate_has_exactly_the_given_names_and_server_auth(ca, server_pair):
    cert_path, key_path = server_pair
    assert (cert_path.name, key_path.name) == ("localhost.crt", "localhost.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = load_cert(cert_path)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert len(list(sans)) == 2
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH
    ]
    assert cert.issuer == ca.cert.subject
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert_path.read_text().count("BEGIN CERTIFICATE") == 1  # the leaf only


def test_client_certificate_has_client_auth(client_pair):
    cert = load_cert(client_pair[0])
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]


@pytest.mark.parametrize("bad", ["under_score", "-leading.hyphen", "a..b", "spa ce", "x/../../etc", "*"])
def test_invalid_host_names_are_refused(ca, tmp_path, bad):
    with pytest.raises(InvalidNameError, match="neither an IP address nor a valid DNS name"):
        issue(ca, [bad], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_wildcards_and_ipv6_are_accepted(ca, tmp_path):
    cert_path, _ = issue(ca, ["*.airlock.internal", "::1"], tmp_path, common_name="wild")
    sans = load_cert(cert_path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["*.airlock.internal"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("::1")]


def test_issue_never_replaces_a_certificate(ca, server_pair):
    with pytest.raises(CAError, match="already exists"):
        issue(ca, ["localhost"], server_pair[0].parent)


def test_handshake_is_tls13_and_checks_the_host_name(ca, server_pair):
    with tls_server(server_context(*server_pair)) as (port, _):
        assert talk(port, client_context(ca.cert_path)) == "TLSv1.3"
        assert talk(port, client_context(ca.cert_path), hostname="127.0.0.1") == "TLSv1.3"
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            talk(port, client_context(ca.cert_path), hostname="other.internal")


def test_a_tls12_client_is_refused(ca, server_pair):
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(ca.cert_path)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        tls_server(server_context(*server_pair)) as (port, seen),
        pytest.raises(ssl.SSLError, match="protocol version"),
    ):
        talk(port, old)
    assert isinstance(seen[0], ssl.SSLError)


def test_a_client_that_does_not_trust_our_ca_is_refused(server_pair):
    with tls_server(server_context(*server_pair)) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        talk(port, ssl.create_default_context())


def test_client_trusts_our_ca_only(ca, tmp_path):
    ctx = client_context(ca.cert_path)
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Airlock Internal CA"),),)]
    impostor = issue(init_ca(tmp_path / "impostor"), ["localhost"], tmp_path / "impostor")
    with tls_server(server_context(*impostor)) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        talk(port, ctx)


def test_mutual_tls_requires_a_client_certificate_from_our_ca(ca, server_pair, client_pair, tmp_path):
    with tls_server(server_context(*server_pair, client_ca=ca.cert_path)) as (port, seen):
        with pytest.raises(ssl.SSLError, match="certificate required"):
            talk(port, client_context(ca.cert_path))
        assert talk(port, client_context(ca.cert_path, cert=client_pair[0], key=client_pair[1])) == "TLSv1.3"
        # A certificate from another CA is no better than none.
        stranger = issue(init_ca(tmp_path / "other"), ["worker-2"], tmp_path / "other", client=True)
        with pytest.raises(ssl.SSLError):
            talk(port, client_context(ca.cert_path, cert=stranger[0], key=stranger[1]))
    version, peer = seen[1]
    assert version == "TLSv1.3" and peer["subject"] == ((("commonName", "worker-1"),),)
    assert isinstance(seen[0], ssl.SSLError) and isinstance(seen[2], ssl.SSLError)


def test_contexts_report_unusable_files_clearly(ca, server_pair, tmp_path):
    with pytest.raises(CAError, match="cannot load certificate"):
        server_context(server_pair[0], ca.key_path)
    with pytest.raises(CAError, match="cannot load CA certificate"):
        client_context(tmp_path / "missing.crt")
    with pytest.raises(CAError, match="both --cert and --key"):
        client_context(ca.cert_path, cert=server_pair[0])


def test_cli_round_trip_and_exit_codes(tmp_path, monkeypatch):
    runner = CliRunner()
    monkeypatch.setenv("AIRLOCK_TLS_DIR", str(tmp_path / "tls"))
    result = runner.invoke(app, ["ca", "init"], terminal_width=200)
    assert result.exit_code == 0 and "ca.key (0600)" in result.output and "fingerprint" in result.output
    assert runner.invoke(app, ["ca", "init"]).exit_code == 1
    result = runner.invoke(app, ["ca", "issue", "--host", "airlock.internal", "--host", "10.20.0.2"])
    assert result.exit_code == 0 and "expires" in result.output
    assert (tmp_path / "tls" / "airlock.internal.crt").exists()
    out = tmp_path / "clients"
    client = ["--host", "worker-1", "--client", "--name", "w1", "--out", str(out), "--days", "30"]
    assert runner.invoke(app, ["ca", "issue", *client]).exit_code == 0
    cert = load_cert(out / "w1.crt")
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert runner.invoke(app, ["ca", "issue"]).exit_code == 2  # --host is required
    assert runner.invoke(app, ["ca", "issue", "--host", "a", "--days", "0"]).exit_code == 2
    result = runner.invoke(app, ["ca", "issue", "--host", "bad_name"], terminal_width=200)
    assert result.exit_code == 2 and "nor a valid DNS name" in " ".join(result.output.split())
    assert runner.invoke(app, ["ca", "issue", "--host", "x", "--dir", str(tmp_path / "none")]).exit_code == 1


def test_ca_errors_are_user_errors():
    assert issubclass(CAError, AirlockError) and issubclass(InvalidNameError, CAError)
