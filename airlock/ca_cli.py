"""`airlock ca ...`: the internal certificate authority for the service's TLS 1.3 (and mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import typer

from airlock import ca
from airlock.clitools import fail
from airlock.errors import AirlockError

app = typer.Typer(
    help="The internal certificate authority: TLS certificates for the service and its clients.",
    no_args_is_help=True,
    epilog="Example: airlock ca init --dir /etc/airlock/tls && airlock ca issue --host airlock.internal",
)
DirOption = typer.Option(
    ca.tls_dir,
    "--dir",
    envvar="AIRLOCK_TLS_DIR",
    show_default="/etc/airlock/tls",
    help="Directory holding the CA: ca.key (0600) and ca.crt.",
)


def _describe(cert_path: Path) -> str:
    cert = ca.load_cert(cert_path)
    return f"sha256 fingerprint {ca.fingerprint(cert)}, expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


@app.command(epilog="Example: airlock ca init --dir /etc/airlock/tls")
def init(
    directory: Path = DirOption,
    common_name: str = typer.Option("Airlock Internal CA", "--cn", help="The CA certificate's common name."),
    days: int = typer.Option(3650, "--days", min=1, help="How long the CA certificate is valid."),
) -> None:
    """Create the CA key and self-signed certificate (refuses to replace an existing CA)."""
    try:
        authority = ca.init_ca(directory, common_name=common_name, days=days)
    except AirlockError as exc:
        fail(exc)
    typer.echo(f"created {authority.key_path} (0600) and {authority.cert_path}")
    typer.echo(f"  {_describe(authority.cert_path)}")
    typer.echo(f"  give {authority.cert_path} to every client; never copy {authority.key_path}")


@app.command(
    epilog="Example: airlock ca issue --host airlock.internal --host 10.20.0.2 --out /etc/airlock/tls"
)
def issue(
    hosts: list[str] = typer.Option(
        ..., "--host", help="DNS name or IP address for the certificate (repeat for more)."
    ),
    client: bool = typer.Option(False, "--client", help="Issue a client certificate (mutual TLS)."),
    name: str | None = typer.Option(
        None, "--name", help="File name and common name (default: the first --host)."
    ),
    days: int = typer.Option(
        ca.DEFAULT_LEAF_DAYS, "--days", min=1, help="How long the certificate is valid."
    ),
    directory: Path = DirOption,
    out: Path | None = typer.Option(
        None, "--out", help="Where to write NAME.crt and NAME.key (default: the CA directory)."
    ),
) -> None:
    """Sign a server (or --client) certificate with the CA; writes NAME.crt and NAME.key (0600)."""
    try:
        # Bad host names are usage errors (2); a missing or unsafe CA is a failed check (1).
        ca.subject_alt_names(hosts)
    except ca.InvalidNameError as exc:
        fail(exc, code=2)
    try:
        authority = ca.load_ca(directory)
        cert_path, key_path = ca.issue(
            authority, hosts, out or directory, days=days, client=client, common_name=name
        )
    except ca.InvalidNameError as exc:
        fail(exc, code=2)
    except AirlockError as exc:
        fail(exc)
    kind = "client" if client else "server"
    typer.echo(f"issued {kind} certificate for {', '.join(hosts)}")
    typer.echo(f"  certificate {cert_path}\n  key         {key_path} (0600)")
    typer.echo(f"  {_describe(cert_path)}")
