"""`airlock outputs ...`: list, delete and purge encrypted outputs; list and retire their KEKs.

`airlock keys rotate --tenant T` (airlock/keys_cli.py) runs rotate_tenant below.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import typer

from airlock.audit import AuditLog
from airlock.audit.layout import audit_root
from airlock.clitools import console, err, fail
from airlock.errors import AirlockError
from airlock.store.errors import InvalidInput
from airlock.store.kek import DEFAULT_KEK_DIR, FileKeks
from airlock.store.names import check_object_id, check_tenant
from airlock.store.store import DEFAULT_STORE, OutputStore, default_actor

app = typer.Typer(
    help="Generated images encrypted at rest (per-tenant KEKs): list, delete, purge, retire old KEKs.",
    no_args_is_help=True,
    epilog="Example: airlock outputs purge --tenant healthcare_system_b --days 30",
)
keys_app = typer.Typer(
    help="The tenants' key-encryption keys (rotate them with `airlock keys rotate`).",
    no_args_is_help=True,
    epilog="Example: airlock outputs keys list --tenant healthcare_system_b",
)
app.add_typer(keys_app, name="keys")


def checked(check):
    """A typer callback running one of the store's name checks, so bad input is a usage error (exit 2)."""

    def callback(value):
        if value is not None:
            try:
                check(value)
            except InvalidInput as exc:
                raise typer.BadParameter(str(exc)) from None
        return value

    return callback


TenantOption = typer.Option(..., "--tenant", callback=checked(check_tenant), help="Tenant id.")
StoreOption = typer.Option(
    DEFAULT_STORE,
    "--store",
    envvar="AIRLOCK_OUTPUTS",
    show_default=str(DEFAULT_STORE),
    help="The encrypted output store.",
)
KeysDirOption = typer.Option(
    DEFAULT_KEK_DIR,
    "--keys-dir",
    envvar="AIRLOCK_KEK_DIR",
    show_default=str(DEFAULT_KEK_DIR),
    help="The tenants' KEKs (0700; kept apart from the store).",
)
AuditOption = typer.Option(
    audit_root,
    "--audit-root",
    envvar="AIRLOCK_AUDIT_ROOT",
    show_default="/var/log/airlock/audit",
    help="The audit log root; a change is refused if its system_events record cannot be written.",
)
ActorOption = typer.Option(
    default_actor,
    "--actor",
    show_default="$SUDO_USER or the OS user",
    help="Who makes the change (recorded).",
)


@contextlib.contextmanager
def opened(store: Path, keys_dir: Path, audit: Path | None) -> Iterator[OutputStore]:
    """The store with its audit log (None: read-only use, nothing to record); input errors exit 2,
    anything else that refused exits 1."""
    try:
        with AuditLog(audit) if audit else contextlib.nullcontext() as log:
            yield OutputStore(store, FileKeks(keys_dir), log)
    except InvalidInput as exc:
        fail(exc, 2)
    except AirlockError as exc:
        fail(exc)


def rotate_tenant(tenant: str, keys_dir: Path, store: Path, audit: Path, actor: str) -> None:
    """`airlock keys rotate`: new current KEK, every data key re-wrapped; exit 1 if any did not unwrap."""
    with opened(store, keys_dir, audit) as outputs:
        rotated = outputs.rotate(tenant, actor=actor)
    typer.echo(
        f"tenant {tenant}: new KEK {rotated.kek_id}; re-wrapped {rotated.rewrapped} data keys, "
        f"{len(rotated.failed)} failed; images untouched"
    )
    if rotated.previous:
        typer.echo(
            f"older KEKs kept for decryption: {', '.join(rotated.previous)} "
            f"(retire with `airlock outputs keys retire --tenant {tenant} --kek ID`)"
        )
    if rotated.failed:
        fail(
            f"{len(rotated.failed)} objects failed their integrity check and stay under their old "
            f"KEK: {', '.join(rotated.failed[:10])}{' ...' if len(rotated.failed) > 10 else ''} "
            "(see system_events)"
        )


@app.command("list", epilog="Example: airlock outputs list --tenant healthcare_system_b --json")
def list_outputs(
    tenant: str = TenantOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of object ids."),
    store: Path = StoreOption,
    keys_dir: Path = KeysDirOption,
) -> None:
    """List a tenant's object ids (nothing is decrypted)."""
    with opened(store, keys_dir, None) as outputs:
        ids = outputs.list(tenant)
    typer.echo(json.dumps(ids) if as_json else "\n".join(ids), nl=as_json or bool(ids))


@app.command(epilog="Example: airlock outputs delete --tenant healthcare_system_b --id job-0001.0")
def delete(
    tenant: str = TenantOption,
    object_id: str = typer.Option(
        None, "--id", callback=checked(check_object_id), help="One object; without it, the whole tenant."
    ),
    yes: bool = typer.Option(False, "--yes", help="Needed to erase a whole tenant (objects and KEKs)."),
    store: Path = StoreOption,
    keys_dir: Path = KeysDirOption,
    audit: Path = AuditOption,
    actor: str = ActorOption,
) -> None:
    """Delete one object, or erase a tenant: every object and every KEK (GDPR erasure)."""
    if object_id is None and not yes:
        fail(f"this erases every output and KEK of tenant {tenant}: add --yes if you mean it", 2)
    with opened(store, keys_dir, audit) as outputs:
        if object_id is not None:
            outputs.delete(tenant, object_id, actor=actor)
            typer.echo(f"deleted {tenant}/{object_id}")
            return
        count = outputs.delete_tenant(tenant, actor=actor)
    typer.echo(f"erased tenant {tenant}: {count} objects and its KEKs")


@app.command(epilog="Example: airlock outputs purge --tenant healthcare_system_b --days 30")
def purge(
    tenant: str = typer.Option(
        None, "--tenant", callback=checked(check_tenant), help="Tenant id (or --all-tenants)."
    ),
    all_tenants: bool = typer.Option(
        False, "--all-tenants", help="Every tenant in the store (the retention timer's run)."
    ),
    days: int = typer.Option(..., "--days", min=1, help="Delete objects created more than N days ago."),
    store: Path = StoreOption,
    keys_dir: Path = KeysDirOption,
    audit: Path = AuditOption,
    actor: str = ActorOption,
) -> None:
    """Retention: delete a tenant's objects older than N days (wrapped key and ciphertext)."""
    if (tenant is None) == (not all_tenants):
        fail("give exactly one of --tenant T and --all-tenants", 2)
    with opened(store, keys_dir, audit) as outputs:
        for name in outputs.tenants() if all_tenants else [tenant]:
            purged = outputs.purge_older_than(name, days, actor=actor)
            typer.echo(
                f"tenant {name}: deleted {purged.deleted} objects created before "
                f"{purged.cutoff:%Y-%m-%d %H:%M}Z"
            )
            if purged.skipped:
                err.print(
                    f"[yellow]warning:[/yellow] {len(purged.skipped)} objects have unreadable key files "
                    f"and were kept: {', '.join(purged.skipped[:10])} (see system_events)",
                    highlight=False,
                    soft_wrap=True,
                )


@keys_app.command("list", epilog="Example: airlock outputs keys list --tenant healthcare_system_b")
def list_keks(
    tenant: str = TenantOption,
    store: Path = StoreOption,
    keys_dir: Path = KeysDirOption,
) -> None:
    """List a tenant's KEK ids, oldest first, with how many objects each wraps."""
    with opened(store, keys_dir, None) as outputs:
        usage = outputs.keks(tenant)
        current = outputs.keys.current(tenant)
    for kek_id, count in usage.items():
        console.print(
            f"{kek_id}  {count} objects{'  (current)' if kek_id == current else ''}", highlight=False
        )


@keys_app.command(
    epilog="Example: airlock outputs keys retire --tenant healthcare_system_b --kek v1-1a2b3c4d"
)
def retire(
    tenant: str = TenantOption,
    kek: str = typer.Option(..., "--kek", help="The KEK id to destroy (see `airlock outputs keys list`)."),
    store: Path = StoreOption,
    keys_dir: Path = KeysDirOption,
    audit: Path = AuditOption,
    actor: str = ActorOption,
) -> None:
    """Destroy an old KEK; refused while it is current or still wraps a data key."""
    with opened(store, keys_dir, audit) as outputs:
        outputs.retire(tenant, kek, actor=actor)
    typer.echo(f"retired KEK {kek} of tenant {tenant}")
