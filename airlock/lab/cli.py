"""`airlock lab ...`: the disposable local lab."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from airlock.clitools import console, err, fail
from airlock.lab import lab
from airlock.lab.topology import default_topology

app = typer.Typer(
    help="Disposable local test hosts: systemd-nspawn machines in network namespaces.",
    no_args_is_help=True,
    epilog="Example: sudo airlock lab up && sudo airlock lab ssh enclave -- uptime",
)

RootOption = typer.Option(
    Path.cwd,
    "--root",
    envvar="AIRLOCK_ROOT",
    show_default="current directory",
    help="The Airlock checkout (holds inventory/ and .cache/lab/).",
)


@app.command(epilog="Example: sudo airlock lab up")
def up(
    root: Path = RootOption,
    boot_timeout: float = typer.Option(120, help="Seconds to wait for each host's systemd and SSH."),
) -> None:
    """Create the lab: namespaces mgmt, internal, outside and the enclave host, booted with systemd."""
    paths = lab.LabPaths(root.resolve())
    try:
        lab.up(paths, boot_timeout=boot_timeout, say=console.print)
    except (lab.LabError, OSError) as exc:
        err.print("[yellow]the lab is half up; `airlock lab down` removes what was made[/yellow]")
        fail(exc)
    console.print(
        f"[green]lab up[/green]: inventory {paths.inventory}; "
        "try `airlock lab ssh enclave` or `ip netns exec mgmt ansible all -m ping`"
    )


@app.command(epilog="Example: sudo airlock lab rebuild enclave")
def rebuild(
    host: str = typer.Argument(..., help="Lab host name (enclave, backup, ...)."),
    root: Path = RootOption,
    boot_timeout: float = typer.Option(120, help="Seconds to wait for the host's systemd and SSH."),
) -> None:
    """Destroy one host and boot a fresh one in its place (new root filesystem and host keys)."""
    try:
        lab.rebuild(lab.LabPaths(root.resolve()), host, boot_timeout=boot_timeout, say=console.print)
    except (lab.LabError, OSError) as exc:
        fail(exc)


@app.command(epilog="Example: sudo airlock lab down")
def down(root: Path = RootOption) -> None:
    """Remove everything the lab made (processes, namespaces, cgroups, root filesystems). Safe to repeat."""
    try:
        removed = lab.down(lab.LabPaths(root.resolve()), say=console.print)
    except (lab.LabError, OSError) as exc:
        fail(exc)
    console.print("[green]lab down[/green]" + ("" if removed else ": nothing was up"))


@app.command(epilog="Example: sudo airlock lab status --json")
def status(
    root: Path = RootOption, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
) -> None:
    """Say what is up. Exit 0 when the lab is up and every host answers, 1 otherwise."""
    try:
        report = lab.status(lab.LabPaths(root.resolve()))
    except (lab.LabError, OSError) as exc:
        fail(exc)
    if as_json:
        console.print_json(json.dumps(report))
    else:
        console.print(f"lab: [bold]{report['state']}[/bold]")
        table = Table("namespace / host", "status", "detail")
        for ns, present in report["namespaces"].items():
            table.add_row(ns, "present" if present else "absent", "network namespace")
        for proc in report["processes"]:
            table.add_row(str(proc["pid"]), "alive" if proc["alive"] else "gone", proc["marker"])
        for name, host in report["hosts"].items():
            table.add_row(name, host["systemd"], f"mgmt {host['mgmt_ip']}, internal {host['internal_ip']}")
        console.print(table)
    raise typer.Exit(0 if report["healthy"] else 1)


@app.command(epilog="Example: sudo airlock lab ssh enclave -- systemctl is-system-running")
def ssh(
    host: str = typer.Argument("enclave", help="Lab host name."),
    command: list[str] = typer.Argument(None, help="Command to run (after --); a shell if omitted."),
    root: Path = RootOption,
) -> None:
    """Open SSH to a lab host from the mgmt namespace (the controller), as the `ops` admin."""
    paths = lab.LabPaths(root.resolve())
    try:
        default_topology(1).host(host)
    except KeyError as exc:
        fail(exc.args[0], 2)
    if not paths.ssh_config.exists():
        fail(lab.LabError("the lab is not up: run `airlock lab up` first"))
    argv = lab.ssh_argv(paths, host, command or [])
    if not command:
        argv.insert(argv.index("-F"), "-t")
    os.execvp(argv[0], argv)  # noqa: S606 - hand the terminal to ssh, no shell involved
