"""`airlock apikeys ...`: create, list, revoke and rotate the service's API keys (hashed store)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from airlock import apikeys
from airlock.audit import AuditLog
from airlock.audit.layout import audit_root
from airlock.clitools import console, err, fail
from airlock.errors import AirlockError

app = typer.Typer(
    help="API keys for the HTTPS service: stored as SHA-256 hashes, shown once, every change audited.",
    no_args_is_help=True,
    epilog="Example: airlock apikeys create --tenant healthcare_system_b --permissions generate,jobs:read",
)
StoreOption = typer.Option(
    apikeys.default_store,
    "--store",
    envvar="AIRLOCK_APIKEYS",
    show_default=str(apikeys.DEFAULT_STORE),
    help="The hashed key store.",
)
AuditOption = typer.Option(
    audit_root,
    "--audit-root",
    envvar="AIRLOCK_AUDIT_ROOT",
    show_default="/var/log/airlock/audit",
    help="The audit log root; a change fails if its user_changes record cannot be written.",
)
ActorOption = typer.Option(
    apikeys.os_user, "--actor", show_default="the OS user", help="Who makes the change (recorded)."
)
SHOWN_ONCE = (
    "[yellow]warning:[/yellow] this is the only time the key is shown; only its SHA-256 is stored. "
    "Hand it to its owner over an approved channel now."
)


def checked(parse):
    """A typer callback running one of apikeys' checks, so bad input is a usage error (exit 2)."""

    def check(value):
        if value is None:
            return None
        try:
            parse(value)
        except apikeys.ApiKeyInputError as exc:
            raise typer.BadParameter(str(exc)) from None
        return value

    return check


def run(action):
    """Run a store change; input errors exit 2, anything else that refused it exits 1."""
    try:
        return action()
    except apikeys.ApiKeyInputError as exc:
        fail(exc, 2)
    except AirlockError as exc:
        fail(exc)


def show_key(key: str, record: apikeys.KeyRecord) -> None:
    typer.echo(f"key_id:  {record.key_id}")
    typer.echo(f"tenant:  {record.tenant}")
    typer.echo(f"api_key: {key}")
    err.print(SHOWN_ONCE, highlight=False, soft_wrap=True)


@app.command(
    epilog="Example: airlock apikeys create --tenant healthcare_system_b "
    "--permissions generate,jobs:read,models:read --rate 30/min --expires 90d"
)
def create(
    tenant: str = typer.Option(..., "--tenant", callback=checked(apikeys.check_tenant), help="Tenant id."),
    permissions: str = typer.Option(
        ...,
        "--permissions",
        callback=checked(lambda v: apikeys.check_permissions(v.split(","))),
        help=f"Comma-separated, out of: {', '.join(apikeys.PERMISSIONS)}.",
    ),
    rate: str = typer.Option(
        None,
        "--rate",
        callback=checked(apikeys.parse_rate),
        help="Requests allowed: N/s, N/min or N/h (default: the service's).",
    ),
    expires: str = typer.Option(
        None,
        "--expires",
        callback=checked(apikeys.parse_duration),
        help="Lifetime: N followed by s, min, h, d or w, e.g. 90d (default: never).",
    ),
    created_by: str = typer.Option(
        apikeys.os_user, "--created-by", show_default="the OS user", help="Who creates the key (recorded)."
    ),
    store: Path = StoreOption,
    audit: Path = AuditOption,
) -> None:
    """Create a key and print it once (the store keeps only its hash)."""

    def action():
        with AuditLog(audit) as log:
            return apikeys.create_key(
                store,
                tenant=tenant,
                permissions=permissions.split(","),
                rate=rate,
                expires_in=apikeys.parse_duration(expires) if expires else None,
                created_by=created_by,
                audit=log,
            )

    key, record = run(action)
    show_key(key, record)


@app.command("list", epilog="Example: airlock apikeys list --json")
def list_(
    store: Path = StoreOption,
    as_json: bool = typer.Option(False, "--json", help="Print the keys as JSON."),
) -> None:
    """List the keys: ids, tenants, permissions, status. Hashes are never shown."""
    records = run(lambda: apikeys.list_keys(store))
    now = datetime.now(UTC)
    if as_json:
        typer.echo(json.dumps([{**r.public(), "status": r.status(now)} for r in records], indent=2))
        return
    if not records:
        console.print(f"no API keys in {store}", highlight=False)
        return
    table = Table(caption="dates in UTC; `--json` shows full times, creators and rotations")
    table.add_column("key id", no_wrap=True)  # ids are what revoke/rotate take: never cut them short
    for name in ("tenant", "permissions", "rate", "expires", "status"):
        table.add_column(name)
    for r in records:
        table.add_row(
            r.key_id,
            r.tenant,
            ", ".join(r.permissions),
            r.rate or "default",
            (r.expires_at or "never")[:10],
            r.status(now),
        )
    console.print(table)


@app.command(epilog="Example: airlock apikeys revoke ak_0123456789ab")
def revoke(
    key_id: str = typer.Argument(..., callback=checked(apikeys.check_key_id), help="The key id (ak_...)."),
    actor: str = ActorOption,
    store: Path = StoreOption,
    audit: Path = AuditOption,
) -> None:
    """Revoke a key now; the service refuses it from its next request."""

    def action():
        with AuditLog(audit) as log:
            return apikeys.revoke_key(store, key_id, actor=actor, audit=log)

    record = run(action)
    typer.echo(f"revoked {record.key_id} (tenant {record.tenant}) at {record.revoked_at}; audited")


@app.command(epilog="Example: airlock apikeys rotate ak_0123456789ab --grace 24h")
def rotate(
    key_id: str = typer.Argument(..., callback=checked(apikeys.check_key_id), help="The key id (ak_...)."),
    grace: str = typer.Option(
        None,
        "--grace",
        callback=checked(apikeys.parse_duration),
        help="Keep the old key working this long (e.g. 24h) so clients can switch (default: revoke now).",
    ),
    actor: str = ActorOption,
    store: Path = StoreOption,
    audit: Path = AuditOption,
) -> None:
    """Replace a key with a new one (same tenant, permissions, rate); print the new key once."""

    def action():
        with AuditLog(audit) as log:
            return apikeys.rotate_key(
                store,
                key_id,
                actor=actor,
                audit=log,
                grace=apikeys.parse_duration(grace) if grace else None,
            )

    key, record = run(action)
    show_key(key, record)
    typer.echo(
        f"old key {key_id}: " + (f"keeps working for {grace}, then is revoked" if grace else "revoked now")
    )
