"""`airlock keys ...`: the organisation's Ed25519 signing key, and rotating tenants' output KEKs."""

from __future__ import annotations

from pathlib import Path

import typer

from airlock import keys
from airlock.audit.layout import audit_root
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


@app.command(epilog="Example: airlock keys rotate --tenant healthcare_system_b")
def rotate(
    tenant: str = typer.Option(..., "--tenant", help="Tenant whose output KEK to rotate."),
    keys_dir: Path = typer.Option(
        Path("/var/lib/airlock/kek"),
        "--keys-dir",
        envvar="AIRLOCK_KEK_DIR",
        help="The tenants' output KEKs (0700; kept apart from the store).",
    ),
    store: Path = typer.Option(
        Path("/var/lib/airlock/outputs"),
        "--store",
        envvar="AIRLOCK_OUTPUTS",
        help="The encrypted output store.",
    ),
    audit: Path = typer.Option(
        audit_root,
        "--audit-root",
        envvar="AIRLOCK_AUDIT_ROOT",
        show_default="/var/log/airlock/audit",
        help="The audit log root; the rotation is refused if its record cannot be written.",
    ),
    actor: str = typer.Option(
        None, "--actor", show_default="$SUDO_USER or the OS user", help="Who rotates (recorded)."
    ),
) -> None:
    """New KEK for a tenant's encrypted outputs; every data key re-wrapped (images untouched)."""
    from airlock.store import cli as outputs_cli  # imported here: `airlock keys` stays fast to start
    from airlock.store.errors import InvalidInput
    from airlock.store.names import check_tenant

    try:
        check_tenant(tenant)
    except InvalidInput as exc:
        fail(exc, 2)
    outputs_cli.rotate_tenant(tenant, keys_dir, store, audit, actor or outputs_cli.default_actor())
