"""`airlock models ...`: import, verify and list approved models (the signed registry)."""

from __future__ import annotations

import enum
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from airlock.audit import AuditLog
from airlock.audit.layout import audit_root
from airlock.clitools import console, err, fail
from airlock.errors import AirlockError
from airlock.keys import Verifier, load_signer, load_verifier
from airlock.registry.importer import import_model
from airlock.registry.manifest import NAME, TENANT, VERSION, registry_root
from airlock.registry.policy import load_policy
from airlock.registry.registry import Registry
from airlock.registry.verify import total_bytes, verify_registry

app = typer.Typer(
    help="The model registry: admit, import, verify and list approved models (signed manifest).",
    no_args_is_help=True,
    epilog="Example: airlock models verify --root /srv/model_registry --trust /etc/airlock/keys/signing.pub",
)


class Kind(enum.StrEnum):
    base = "base"
    refiner = "refiner"
    lora = "lora"
    vae = "vae"


RootOption = typer.Option(
    registry_root,
    "--root",
    envvar="AIRLOCK_REGISTRY_ROOT",
    show_default="/srv/model_registry",
    help="The registry root (base_models/, tenant_loras/, model_manifest.yaml).",
)
TrustOption = typer.Option(
    None,
    "--trust",
    help="Public key the manifest must be signed with (default: signing.pub in $AIRLOCK_KEYS_DIR "
    "or /etc/airlock/keys).",
)
JsonOption = typer.Option(False, "--json", help="Print the result as JSON.")


def trusted(trust: Path | None) -> Verifier:
    try:
        return load_verifier(trust)
    except AirlockError as exc:
        fail(exc, 2)  # no key to check with: a usage/setup error, not a failed check


def need_root(root: Path) -> None:
    if not root.is_dir():
        fail(AirlockError(f"no model registry at {root}: pass --root or set AIRLOCK_REGISTRY_ROOT"), 2)


def matching(pattern, what: str):
    def check(value: str | None) -> str | None:
        if value is not None and not pattern.match(value):
            raise typer.BadParameter(f"{value!r} is not a valid {what} (letters, digits, '_', '.', '-')")
        return value

    return check


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )


@app.command(
    "import",
    epilog="Example: airlock models import /media/usb/sd_xl_base_1.0.safetensors --name sd_xl_base_1.0 "
    "--version 1.0 --kind base --approved-by security_team --key /etc/airlock/keys",
)
def import_(
    path: Path = typer.Argument(..., exists=True, help="A .safetensors file or a diffusers model folder."),
    name: str = typer.Option(..., "--name", callback=matching(NAME, "model name"), help="Model name."),
    version: str = typer.Option(..., "--version", callback=matching(VERSION, "version"), help="Version."),
    kind: Kind = typer.Option(..., "--kind", help="What the model is."),
    approved_by: str = typer.Option(..., "--approved-by", help="Who approved it (recorded and signed)."),
    tenant: str = typer.Option(
        None,
        "--tenant",
        callback=matching(TENANT, "tenant id"),
        help="Restrict to this tenant (default: all).",
    ),
    source: str = typer.Option(None, "--source", help="Where it came from (default: the PATH given)."),
    classification: str = typer.Option("unspecified", "--classification", help="Data classification."),
    root: Path = RootOption,
    key: Path = typer.Option(
        None, "--key", help="Signing key (file or directory); default $AIRLOCK_KEYS_DIR or /etc/airlock/keys."
    ),
    trust: Path = typer.Option(
        None,
        "--trust",
        help="Public key the existing manifest must verify with (default: --key's public half).",
    ),
    audit: Path = typer.Option(
        audit_root,
        "--audit-root",
        envvar="AIRLOCK_AUDIT_ROOT",
        show_default="/var/log/airlock/audit",
        help="The audit log root; the import fails if its record cannot be written.",
    ),
    policy: Path = typer.Option(
        None, "--policy", help="Admission policy (default: $AIRLOCK_MODEL_POLICY or policies/models.yml)."
    ),
) -> None:
    """Admit, copy, hash and register a model; re-sign the manifest and audit the change."""
    if not approved_by.strip():
        raise typer.BadParameter("--approved-by must name who approved the model")
    try:
        signer = load_signer(key)
        verifier = load_verifier(trust) if trust else Verifier(signer.public, signer.path)
        rules = load_policy(policy)
    except AirlockError as exc:
        fail(exc, 2)
    try:
        with AuditLog(audit) as log, progress_bar() as progress:
            entry = import_model(
                root,
                path,
                name=name,
                version=version,
                kind=kind.value,
                approved_by=approved_by,
                signer=signer,
                verifier=verifier,
                audit=log,
                tenant=tenant,
                source=source,
                classification=classification,
                policy=rules,
                progress=progress,
            )
    except AirlockError as exc:
        fail(exc)
    typer.echo(
        f"imported {entry.ref} ({entry.kind}, {entry.restricted_to}) -> {root / entry.path}\n"
        f"checksum {entry.checksum}; manifest re-signed with {signer.fingerprint}; audited in model_changes"
    )


@app.command(epilog="Example: airlock models verify --trust /etc/airlock/keys/signing.pub --json")
def verify(root: Path = RootOption, trust: Path = TrustOption, as_json: bool = JsonOption) -> None:
    """Check the manifest signature, re-hash every model, find unlisted files. Exit 0 intact, 1 if not."""
    need_root(root)
    verifier = trusted(trust)
    with progress_bar() as progress:
        task = progress.add_task("verify", total=total_bytes(root, verifier))
        report = verify_registry(root, verifier, lambda n: progress.advance(task, n))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for f in report.findings:
            console.print(
                f"[red]{f.kind.upper():9}[/red] {f.path}: {f.detail}", highlight=False, soft_wrap=True
            )
        verdict = "[green]intact[/green]" if report.ok else f"[red]{len(report.findings)} finding(s)[/red]"
        console.print(
            f"{verdict}: {report.models} models, {report.bytes_hashed} bytes re-hashed "
            f"(key {report.trusted_key})",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(0 if report.ok else 1)


@app.command("list", epilog="Example: airlock models list --root /srv/model_registry --json")
def list_(root: Path = RootOption, trust: Path = TrustOption, as_json: bool = JsonOption) -> None:
    """List the models the signed manifest approves (exit 1 if the manifest cannot be trusted)."""
    need_root(root)
    verifier = trusted(trust)
    try:
        entries = Registry(root, verifier).entries()
    except AirlockError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps([e.to_dict() for e in entries], indent=2))
        return
    table = Table(
        "name", "version", "kind", "restricted_to", "approved_by", "imported", "classification", "checksum"
    )
    for e in entries:
        table.add_row(
            e.name,
            e.version,
            e.kind,
            e.restricted_to,
            e.approved_by,
            e.import_date,
            e.classification,
            e.checksum[:19],
        )
    # Piped output (grep, logs) gets the full width instead of ellipses; a terminal gets a fitted table.
    wide = console.measure(table, options=console.options.update_width(4096)).maximum
    (console if console.is_terminal else Console(width=wide)).print(table)


@app.command("make-tiny", epilog="Example: airlock models make-tiny /tmp/tiny-sdxl --seed 0")
def make_tiny_command(
    out: Path = typer.Argument(..., help="Folder to write the tiny models into."),
    seed: int = typer.Option(0, "--seed", help="Random seed for the weights."),
) -> None:
    """Write tiny random-weight SDXL-shaped models (tests and benchmarks; needs torch and diffusers)."""
    from airlock.registry.tiny import make_tiny  # lazy: it imports torch and diffusers

    try:
        paths = make_tiny(Path(out), seed=seed)
    except (AirlockError, OSError) as exc:
        fail(exc)
    for name, path in paths.items():
        typer.echo(f"{name} -> {path}")
