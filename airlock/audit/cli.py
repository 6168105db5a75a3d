"""`airlock audit ...`: verify, seal, purge, archive and append records from scripts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import typer

from airlock.audit import integrity
from airlock.audit.layout import audit_root
from airlock.audit.records import CATEGORIES, AuditRecordError
from airlock.audit.verify import verify as run_verify
from airlock.audit.writer import AuditLog
from airlock.clitools import console, fail
from airlock.errors import AirlockError
from airlock.keys import load_signer, load_verifier

app = typer.Typer(
    help="The tamper-evident audit log: verify, seal, purge, archive.",
    no_args_is_help=True,
    epilog="Example: airlock audit verify --trust /etc/airlock/keys/signing.pub",
)

RootOption = typer.Option(
    audit_root,
    "--root",
    envvar="AIRLOCK_AUDIT_ROOT",
    show_default="/var/log/airlock/audit",
    help="The audit log root.",
)
KeyOption = typer.Option(
    None, "--key", help="Signing key (file or directory); default $AIRLOCK_KEYS_DIR or /etc/airlock/keys."
)


def now() -> datetime:
    return datetime.now(UTC)


def need_root(root: Path) -> None:
    if not root.is_dir():
        fail(AirlockError(f"no audit log at {root}: pass --root or set AIRLOCK_AUDIT_ROOT"), 2)


@app.command(epilog="Example: airlock audit verify --root /var/log/airlock/audit --trust signing.pub --json")
def verify(
    root: Path = RootOption,
    trust: Path = typer.Option(
        None,
        "--trust",
        help="Public key the seals must be signed with "
        "(default: signing.pub in $AIRLOCK_KEYS_DIR or /etc/airlock/keys).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    deep: bool = typer.Option(
        False, "--deep", help="Re-check every record, even in files a valid seal vouches for."
    ),
) -> None:
    """Check every file, record, chain, seal and signature. Exit 0 intact, 1 with findings."""
    need_root(root)
    verifier = None
    if integrity.read_sums(root).blocks or trust is not None:
        try:
            verifier = load_verifier(trust)
        except AirlockError as exc:
            fail(exc, 2)
    report = run_verify(root, verifier, deep=deep)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for f in report.findings:
            where = f"{f.file}:{f.line}" if f.line else f.file
            console.print(f"[red]{f.kind.upper():12}[/red] {where}: {f.detail}", highlight=False)
        for note in report.notes:
            console.print(f"[yellow]note[/yellow] {note}", highlight=False)
        verdict = "[green]intact[/green]" if report.ok else f"[red]{len(report.findings)} finding(s)[/red]"
        console.print(
            f"{verdict}: {report.records} records in {report.files} files over {report.days} days, "
            f"{report.blocks} signed blocks" + (f" (key {report.trusted_key})" if verifier else "")
        )
    raise typer.Exit(0 if report.ok else 1)


@app.command(epilog="Example: airlock audit seal --date 2026-12-01")
def seal(
    root: Path = RootOption,
    day: str = typer.Option(None, "--date", help="Seal up to this closed day (YYYY-MM-DD); default: all."),
    key: Path = KeyOption,
) -> None:
    """Seal closed days: file hashes and chain tips, signed and chained to the previous seal."""
    need_root(root)
    try:
        done = integrity.seal(root, load_signer(key), clock=now, day=day)
    except AirlockError as exc:
        fail(exc)
    console.print(f"sealed {', '.join(done)}" if done else "nothing to seal: every closed day is sealed")


def parse_days(value: str) -> int:
    match = re.fullmatch(r"(\d+)d?", value.strip())
    if not match:
        raise typer.BadParameter("use a number of days, like 90d")
    return int(match.group(1))


@app.command(epilog="Example: airlock audit purge --prompts-older-than 90d")
def purge(
    prompts_older_than: str = typer.Option(..., "--prompts-older-than", help="Retention, 30d to 90d."),
    root: Path = RootOption,
    key: Path = KeyOption,
) -> None:
    """Remove prompt text past its retention; hashes, chain and seals still verify."""
    need_root(root)
    days = parse_days(prompts_older_than)
    try:
        result = integrity.purge(root, load_signer(key), clock=now, older_than_days=days)
    except AirlockError as exc:
        fail(exc)
    console.print(
        f"purged prompt text from {result['records']} records before {result['before']} "
        f"({len(result['files'])} files)"
    )


@app.command(epilog="Example: airlock audit archive --before 2026-11")
def archive(
    before: str = typer.Option(..., "--before", help="Archive sealed months before this one (YYYY-MM)."),
    root: Path = RootOption,
    key: Path = KeyOption,
) -> None:
    """Compress closed, sealed months into archives/YYYY-MM/; verify still covers them."""
    need_root(root)
    try:
        done = integrity.archive(root, load_signer(key), clock=now, before=before)
    except AirlockError as exc:
        fail(exc)
    console.print(f"archived {', '.join(done)}" if done else "nothing to archive")


@app.command(
    epilog="Example: airlock audit append model_changes model.imported --data "
    '\'{"outcome":"success","actor":"ops","action":"import","model":{...}}\''
)
def append(
    category: str = typer.Argument(..., help=f"One of: {', '.join(CATEGORIES)}."),
    event: str = typer.Argument(..., help="Event name, like model.imported."),
    data: str = typer.Option(..., "--data", help="The record's fields as a JSON object."),
    root: Path = RootOption,
) -> None:
    """Write one record (for playbooks and scripts); exit 1 if it could not be made durable."""
    try:
        fields = json.loads(data)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--data is not JSON: {exc}") from exc
    if not isinstance(fields, dict):
        raise typer.BadParameter("--data must be a JSON object")
    try:
        with AuditLog(root) as log:
            receipt = log.append(category, event, **fields)
    except AuditRecordError as exc:
        fail(exc, 2)  # the record given is unacceptable: a usage error
    except AirlockError as exc:
        fail(exc)
    typer.echo(json.dumps(receipt.__dict__))
