"""`airlock dr ...`: disaster-recovery drills, run from the controller (in the lab: inside mgmt)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import typer

from airlock.clitools import console, fail
from airlock.dr import drill as dr
from airlock.dr.ansible import Ansible
from airlock.errors import AirlockError

app = typer.Typer(
    help="Disaster recovery: restore drills that measure RTO and RPO.",
    no_args_is_help=True,
    epilog="Example: sudo ip netns exec mgmt airlock dr drill --inventory inventory/lab --host enclave "
    "--api-key-file key.txt --ca .cache/lab-artifacts/ca/ca.crt",
)

DURATION = re.compile(r"^([1-9][0-9]*)([smhd])$")


def seconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r}: use a number and s, m, h or d (e.g. 4h)")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@app.command(
    epilog="Example: sudo ip netns exec mgmt airlock dr drill --inventory inventory/lab --host enclave "
    "--api-key-file key.txt --ca .cache/lab-artifacts/ca/ca.crt"
)
def drill(
    inventory: Path = typer.Option(..., help="Ansible inventory holding the host and the backup host."),
    host: str = typer.Option(..., help="The GPU host declared lost."),
    api_key_file: Path = typer.Option(..., help="A file (0600) with an API key made before the failure."),
    ca: Path = typer.Option(..., help="The CA certificate the service's TLS certificate is checked against."),
    url: str = typer.Option(None, help="The service (default https://<ansible_host>:8443)."),
    lab: bool = typer.Option(
        None,
        "--lab/--no-lab",
        help="Rebuild the host with `airlock lab rebuild` (default: for inventory/lab).",
    ),
    drills_dir: Path = typer.Option(Path("drills"), help="Where drills/<drill id>/report.{json,md} go."),
    rto_target: str = typer.Option("4h", help="Recovery time objective the drill is judged by."),
    rpo_target: str = typer.Option("24h", help="Recovery point objective the drill is judged by."),
    root: Path = typer.Option(
        Path.cwd,
        "--root",
        envvar="AIRLOCK_ROOT",
        show_default="current directory",
        help="The Airlock checkout (playbooks/, and .cache/lab/ for --lab).",
    ),
) -> None:
    """Declare HOST lost, rebuild it fresh, restore the newest backup, generate with an existing key.

    Exit 0 when the drill passed, 1 when it failed (the report is written either way), 2 on bad input."""
    rto, rpo = seconds(rto_target), seconds(rpo_target)
    try:
        mode = stat.S_IMODE(api_key_file.stat().st_mode)
        key = api_key_file.read_text().strip()
    except OSError as exc:
        fail(f"--api-key-file: {exc}", 2)
    if mode & 0o077:
        fail(f"{api_key_file} is readable by others (mode {mode:04o}): chmod 600 it", 2)
    if not key:
        fail(f"{api_key_file} is empty: put one API key in it", 2)
    if url is not None and not url.startswith("https://"):
        fail(f"--url {url!r}: the service is reached over https:// only", 2)
    if not ca.is_file():
        fail(f"--ca {ca}: no such file", 2)
    checkout = root.resolve()
    ansible = Ansible(inventory, checkout)
    use_lab = lab if lab is not None else inventory.resolve() == (checkout / "inventory" / "lab")
    rebuild = None
    if use_lab:
        from airlock.lab import lab as lab_module

        if lab_module.in_namespace("mgmt"):
            fail(
                "with --lab, run the drill from this machine's own namespace, not under `ip netns exec "
                "mgmt`: rebuilding a lab host needs it (the drill enters mgmt itself afterwards)",
                2,
            )

        def rebuild() -> None:
            lab_module.rebuild(lab_module.LabPaths(checkout), host, say=console.print)
            lab_module.enter_namespace("mgmt")  # Ansible and the API calls from here on: the controller's

    try:
        address = url or f"https://{ansible.host_address(host)}:8443"
        runner = dr.Drill(ansible, host, key, ca, address.rstrip("/"), rebuild, rto, rpo)
        console.print(
            f"drill: {host} declared lost; restoring it ({'lab rebuild' if use_lab else 'fresh host'})"
        )
        report = runner.run()
        written = dr.write(report, drills_dir)
    except AirlockError as exc:
        fail(exc)
    for phase in report["phases"]:
        mark = "[green]ok[/green]" if phase["ok"] else "[red]FAILED[/red]"
        console.print(
            f"  {phase['name']:<17} {mark} {phase['seconds']:>7.1f}s  {phase['detail']}", highlight=False
        )
    rpo_audit = report["rpo"]["audit_seconds"]
    console.print(
        f"drill {report['result']}: RTO {report['rto_seconds']} s (target {rto} s), RPO audit {rpo_audit} s, "
        f"outputs {report['rpo']['outputs_seconds']} s (target {rpo} s); report {written / 'report.md'}",
        highlight=False,
    )
    if report["result"] != "pass":
        raise typer.Exit(1)
