"""`airlock backup ...`: run on the GPU host (as root, from the backup_client role's timers)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from airlock.backup import config as backup_config
from airlock.backup import jobs, status
from airlock.clitools import console, fail
from airlock.errors import AirlockError

app = typer.Typer(
    help="Encrypted, deduplicated backups of this host (BorgBackup) and the write-once audit copy.",
    no_args_is_help=True,
    epilog="Example: sudo airlock backup run audit && sudo airlock backup status",
)

ConfigOption = typer.Option(backup_config.DEFAULT_CONFIG, "--config", help="The backup plan (backup.toml).")


def _load(path: Path) -> backup_config.BackupConfig:
    try:
        return backup_config.load(path)
    except AirlockError as exc:
        fail(exc, 2)


@app.command(epilog="Example: sudo airlock backup init")
def init(config: Path = ConfigOption) -> None:
    """Create the repositories that do not exist yet (repokey-blake2). Prints what it created."""
    plan = _load(config)
    try:
        created = jobs.init(plan)
    except AirlockError as exc:
        fail(exc)
    console.print(f"created: {', '.join(created)}" if created else "repositories already exist")


@app.command(epilog="Example: sudo airlock backup run outputs")
def run(
    klass: str = typer.Argument(..., metavar="CLASS", help="models, config, outputs, audit or keys."),
    config: Path = ConfigOption,
) -> None:
    """Back up one asset class, apply its retention; for audit, also push the write-once copy."""
    plan = _load(config)
    try:
        fields = jobs.run(plan, klass)
    except AirlockError as exc:
        fail(exc)
    sent = f"; write-once copy: {fields['worm']['files_sent']} new file(s)" if "worm" in fields else ""
    console.print(
        f"{klass}: archive {fields['last_archive']} ({fields['files']} files){sent}", highlight=False
    )


@app.command(epilog="Example: sudo airlock backup check --verify-data")
def check(
    config: Path = ConfigOption,
    verify_data: bool = typer.Option(False, help="Decrypt and MAC-check every chunk (slow, thorough)."),
) -> None:
    """Check every repository's consistency. Exit 1 if any is damaged."""
    plan = _load(config)
    try:
        outcomes = jobs.check(plan, verify_data)
    except AirlockError as exc:
        fail(exc)
    for name, fields in outcomes.items():
        console.print(f"{name}: ok ({fields['encryption']})", highlight=False)


@app.command(name="list", epilog="Example: sudo airlock backup list --json")
def list_archives(config: Path = ConfigOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """The archives of every class, oldest first."""
    plan = _load(config)
    try:
        found = {
            k: [a["name"] for a in jobs.borg_for(plan, c.repository).archives(k)]
            for k, c in plan.classes.items()
        }
    except AirlockError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for klass, names in found.items():
        console.print(
            f"{klass}: {len(names)} archive(s), newest {names[-1] if names else '-'}", highlight=False
        )


@app.command(epilog="Example: sudo airlock backup restore --report /var/lib/airlock/backup/restore.json")
def restore(
    config: Path = ConfigOption,
    target: Path = typer.Option(Path("/"), help="Restore below this folder instead of in place."),
    report: Path = typer.Option(None, help="Also write the restore report (JSON) here."),
    force: bool = typer.Option(
        False, help="Restore over a host that already has audit days (rolls it back)."
    ),
) -> None:
    """Restore the newest archive of every class (onto a fresh host: refuses one with audit days)."""
    plan = _load(config)
    try:
        result = jobs.restore(plan, target, force)
    except AirlockError as exc:
        fail(exc)
    if report:
        status.write(report, result)
    typer.echo(json.dumps(result, indent=2))


@app.command(name="status", epilog="Example: sudo airlock backup status --json")
def show_status(config: Path = ConfigOption, as_json: bool = typer.Option(False, "--json")) -> None:
    """What each class's last run did (from the status file)."""
    plan = _load(config)
    data = status.read(plan.status_file)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for klass in plan.classes:
        entry = data["classes"].get(klass, {})
        state = (
            f"error: {entry['last_error']}"
            if entry.get("last_error")
            else f"ok {entry.get('last_success', 'never')}"
        )
        console.print(f"{klass}: {state}", highlight=False)
