"""`airlock bundle ...`: build (connected side), verify and import (enclave side) transfer bundles."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import typer

from airlock.audit import AuditLog
from airlock.audit.layout import audit_root
from airlock.bundle.archive import DEFAULT_MAX_MEMBER, DEFAULT_MAX_TOTAL, Limits
from airlock.bundle.errors import BundleSpecError
from airlock.bundle.importer import DEFAULT_STORE, BundleRefused, Custody, import_bundle
from airlock.bundle.verify import VerifyReport, extract, verify_file
from airlock.clitools import console, err, fail
from airlock.errors import AirlockError
from airlock.keys import Verifier, load_signer, load_verifier
from airlock.registry.cli import progress_bar

app = typer.Typer(
    help="Transfer bundles: one signed, checksummed tar carries wheels, OS packages and models inside.",
    no_args_is_help=True,
    epilog="Example: airlock bundle verify airlock-bundle-0.1.0.tar --trust /media/usb/transfer.pub",
)

TrustOption = typer.Option(
    ..., "--trust", help="The organisation's transfer public key (file, or folder with signing.pub)."
)
JsonOption = typer.Option(False, "--json", help="Print the report as JSON.")
ScanOption = typer.Option(
    False, "--scan", help="Also scan the extracted files with ClamAV (needs --clamav-db)."
)
DbOption = typer.Option(
    None, "--clamav-db", help="Folder of ClamAV signature databases (never fetched here)."
)
MaxMemberOption = typer.Option(
    DEFAULT_MAX_MEMBER, "--max-member-bytes", help="Refuse any file larger than this."
)
MaxTotalOption = typer.Option(
    DEFAULT_MAX_TOTAL, "--max-total-bytes", help="Refuse a bundle whose files add up to more."
)


def _verifier(path: Path, option: str) -> Verifier:
    try:
        return load_verifier(path)
    except AirlockError as exc:
        fail(f"{option}: {exc}", 2)


def _scan_db(scan: bool, db: Path | None) -> Path | None:
    if scan and db is None:
        fail("--scan needs --clamav-db DIR (the ClamAV signature folder that travelled with the bundle)", 2)
    if db is not None and not scan:
        fail("--clamav-db is only used with --scan", 2)
    return db


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    for f in report.findings:
        console.print(f"[red]{f.kind.upper():10}[/red] {f.path}: {f.detail}", highlight=False, soft_wrap=True)
    for note in report.notes:
        console.print(f"[yellow]note[/yellow] {note}", highlight=False, soft_wrap=True)
    if report.ok:
        console.print(
            f"[green]intact[/green]: {report.name} {report.version} by {report.creator}, "
            f"created {report.created}; "
            f"{report.files} files, {report.bytes_hashed} bytes hashed (key {report.trusted_key})\n"
            f"bundle sha256 {report.bundle_sha256}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(
            f"[red]refused[/red]: {len(report.findings)} problem(s) in {report.bundle}. Do not use it: get a "
            "new copy from the connected side and check its sha256 against the one `bundle build` printed",
            highlight=False,
            soft_wrap=True,
        )


@app.command(
    epilog="Example: airlock bundle build --spec bundle.yaml --key /etc/airlock/transfer-keys "
    '--creator "J. Smith, release engineering"'
)
def build(
    spec_path: Path = typer.Option(
        Path("bundle.yaml"), "--spec", help="The bundle spec (see bundle.example.yaml)."
    ),
    out: Path = typer.Option(None, "--out", help="Output tar (default: airlock-bundle-VERSION.tar)."),
    key: Path = typer.Option(
        None, "--key", help="Transfer signing key (file or folder); default $AIRLOCK_KEYS_DIR."
    ),
    creator: str = typer.Option(..., "--creator", help="Who builds the bundle (recorded and signed)."),
    cache: Path = typer.Option(
        Path(".cache/bundle"), "--cache", help="Download cache (reused across builds)."
    ),
) -> None:
    """Build a signed, reproducible bundle; prints its SHA-256 (give it to the receiving side)."""
    from airlock.bundle.build import build_bundle  # the connected side's libraries (pip, cyclonedx)
    from airlock.bundle.spec import load_spec

    try:
        spec = load_spec(spec_path)
        signer = load_signer(key)
    except AirlockError as exc:
        fail(exc, 2)
    out = out or Path(f"airlock-bundle-{spec.version}.tar")
    try:
        with progress_bar() as progress:
            built = build_bundle(spec, out, signer, creator=creator, cache=cache, progress=progress)
    except BundleSpecError as exc:
        fail(exc, 2)
    except (AirlockError, OSError) as exc:
        fail(exc)
    typer.echo(
        f"built {built.path}: {spec.name} {spec.version}, {built.files} files, {built.size} bytes, "
        f"signed with {signer.fingerprint}\nsha256 {built.sha256}"
    )


@app.command(
    epilog="Example: airlock bundle verify airlock-bundle-0.1.0.tar --trust transfer.pub "
    "--scan --clamav-db /srv/clamav"
)
def verify(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, help="The bundle tar."),
    trust: Path = TrustOption,
    as_json: bool = JsonOption,
    scan: bool = ScanOption,
    clamav_db: Path = DbOption,
    max_member_bytes: int = MaxMemberOption,
    max_total_bytes: int = MaxTotalOption,
) -> None:
    """Check structure, signature and every file's hash without extracting. Exit 0 intact, 1 if not."""
    verifier = _verifier(trust, "--trust")
    db = _scan_db(scan, clamav_db)
    limits = Limits(max_member_bytes, max_total_bytes)
    try:
        with progress_bar() as progress, open(bundle, "rb", buffering=0) as fh:
            task = progress.add_task("verify", total=os.fstat(fh.fileno()).st_size)
            report = verify_file(fh, str(bundle), verifier, limits, lambda n: progress.advance(task, n))
            if report.ok and db is not None:
                from airlock.bundle.scan import clamscan

                with tempfile.TemporaryDirectory(prefix="airlock-scan-") as tmp:
                    extract(fh, report, Path(tmp) / "bundle")
                    findings, notes = clamscan(Path(tmp) / "bundle", db)
                report.findings += findings
                report.notes += notes
    except BundleSpecError as exc:
        fail(exc, 2)
    except (AirlockError, OSError) as exc:
        fail(exc)
    _print_report(report, as_json)
    raise typer.Exit(0 if report.ok else 1)


@app.command(
    "import",
    epilog="Example: airlock bundle import /media/usb/airlock-bundle-0.1.0.tar "
    "--trust /etc/airlock/transfer.pub "
    '--registry-trust /etc/airlock/registry.pub --custody "USB-0042, J. Smith (courier), A. Jones"',
)
def import_(
    bundle: Path = typer.Argument(..., exists=True, dir_okay=False, help="The bundle tar."),
    trust: Path = TrustOption,
    custody: str = typer.Option(..., "--custody", help='Chain of custody: "MEDIA_ID, COURIER, RECEIVED_BY".'),
    store: Path = typer.Option(DEFAULT_STORE, "--store", help="Content-addressed store: <store>/<sha256>/."),
    registry_trust: Path = typer.Option(
        None,
        "--registry-trust",
        help="The organisation's registry public key (needed when the bundle has models).",
    ),
    registry_root: Path = typer.Option(
        None,
        "--registry-root",
        help="Also point this symlink (e.g. /srv/model_registry) at the bundle's registry.",
    ),
    audit: Path = typer.Option(
        audit_root,
        "--audit-root",
        envvar="AIRLOCK_AUDIT_ROOT",
        show_default="/var/log/airlock/audit",
        help="The audit log root; the import is rolled back if its records cannot be written.",
    ),
    actor: str = typer.Option(None, "--actor", help="Who imports (default: $SUDO_USER or $USER)."),
    scan: bool = ScanOption,
    clamav_db: Path = DbOption,
    max_member_bytes: int = MaxMemberOption,
    max_total_bytes: int = MaxTotalOption,
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (path, sha256, already, models) for playbooks."
    ),
) -> None:
    """Verify, then extract into the store and audit each model with its chain of custody."""
    verifier = _verifier(trust, "--trust")
    registry_verifier = _verifier(registry_trust, "--registry-trust") if registry_trust else None
    db = _scan_db(scan, clamav_db)
    try:
        chain = Custody.parse(custody)
    except BundleSpecError as exc:
        fail(exc, 2)
    try:
        with AuditLog(audit) as log, progress_bar() as progress:
            task = progress.add_task("verify + extract", total=2 * bundle.stat().st_size)
            result = import_bundle(
                bundle,
                verifier,
                store=store,
                custody=chain,
                audit=log,
                actor=actor,
                registry_verifier=registry_verifier,
                registry_root=registry_root,
                clamav_db=db,
                limits=Limits(max_member_bytes, max_total_bytes),
                advance=lambda n: progress.advance(task, n),
            )
    except BundleRefused as exc:
        _print_report(exc.report, as_json)
        fail(exc)
    except BundleSpecError as exc:
        fail(exc, 2)
    except (AirlockError, OSError) as exc:
        fail(exc)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "path": str(result.path),
                    "sha256": result.sha256,
                    "already": result.already,
                    "name": result.report.name,
                    "version": result.report.version,
                    "models": len(result.models),
                    "notes": result.report.notes,
                },
                indent=2,
            )
        )
        return
    if result.already:
        typer.echo(f"already imported: {result.path} (nothing changed)")
    else:
        typer.echo(
            f"imported {result.report.name} {result.report.version} -> {result.path}; "
            f"{len(result.models)} model(s) audited in model_changes with custody"
        )
    for label, part in (("wheels", "wheels"), ("apt repo", "apt"), ("registry", "models/registry")):
        if (where := result.where(part)) is not None:
            typer.echo(f"{label + ':':9} {where}")
    if registry_root is not None and result.where("models/registry"):
        typer.echo(f"{registry_root} -> {result.where('models/registry')}")
    for note in result.report.notes:
        err.print(f"note: {note}", highlight=False)
