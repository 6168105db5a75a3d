"""`airlock keys ...`: the organisation's Ed25519 signing key."""

from __future__ import annotations

from pathlib import Path

import typer

from airlock import keys
from airlock.clitools import fail
from airlock.errors import AirlockError

app = typer.Typer(
    help="Ed25519 signing keys (audit seals, manifests, bundles, evidence).",
    no_args_is_help=True,
    epilog="Example: airlock keys init --dir /etc/airlock/keys",
)
DirOption = typer.Option(
    keys.keys_dir,
    "--dir",
    envvar="AIRLOCK_KEYS_DIR",
    show_default="/etc/airlock/keys",
    help="Directory holding signing.key (0600) and signing.pub.",
)


@app.command(epilog="Example: airlock keys init --dir /etc/airlock/keys")
def init(directory: Path = DirOption) -> None:
    """Generate the signing key pair (refuses to replace an existing one)."""
    try:
        signer = keys.init_keys(directory)
    except AirlockError as exc:
        fail(exc)
    typer.echo(
        f"created {signer.path} (0600) and {directory / keys.PUBLIC_NAME}; fingerprint {signer.fingerprint}"
    )


@app.command(epilog="Example: airlock keys show --public > airlock-signing.pub")
def show(
    directory: Path = DirOption,
    public: bool = typer.Option(False, "--public", help="Print the public key PEM (to give verifiers)."),
) -> None:
    """Print the public key's fingerprint, or the public key itself with --public."""
    try:
        verifier = keys.load_verifier(directory)
    except AirlockError as exc:
        fail(exc)
    typer.echo(keys.public_pem(verifier.public).decode() if public else verifier.fingerprint, nl=not public)
