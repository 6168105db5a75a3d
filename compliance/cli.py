"""`airlock evidence build|verify|diff` (registered with the `airlock` CLI as a plugin entry point:
`airlock` never imports `compliance`).

The `airlock` command on every host loads this module: the pack machinery (OSCAL schemas, jsonschema,
trestle, jinja2) is imported only when a command runs, so a host without those packages keeps a
working CLI and `airlock evidence` there says what to install.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from airlock.clitools import console, fail
from airlock.errors import AirlockError
from airlock.keys import load_signer, load_verifier
from compliance import DRILL_MAX_AGE_DAYS, GOVCLOUD


def _machinery():
    """compliance.collect and compliance.pack, or a clear error where their packages are missing."""
    try:
        from compliance import collect, pack  # lazily: see the module docstring
    except ImportError as exc:
        fail(
            f"evidence packs need {exc.name}, not installed here: run them from the controller, "
            "or install with: pip install 'airlock[evidence]'",
            2,
        )
    return collect, pack


app = typer.Typer(
    help="Evidence packs: SOC 2, HIPAA, NIST 800-171, CMMC L2, ITAR from the live system.",
    no_args_is_help=True,
    epilog="Example: airlock evidence build --inventory inventory/prod --key /etc/airlock/evidence-keys",
)


def _summary(results: dict) -> None:
    for framework in results["frameworks"]:
        s = framework["summary"]
        console.print(
            f"  {framework['id']:<12} pass {s['pass']:>3}  fail {s['fail']:>3}  "
            f"manual {s['manual']:>3}  n/a {s['not_applicable']:>3}",
            highlight=False,
        )
    for check in results["checks"]:
        if check["status"] == "fail":
            console.print(
                f"  [red]FAIL[/red] {check['id']} ({check['subject']}): {check['reason']}", highlight=False
            )


@app.command(
    epilog="Example: airlock evidence build --inventory inventory/prod --drill-report drills/ "
    "--key /etc/airlock/evidence-keys"
)
def build(
    inventory: Path = typer.Option(
        None, help="Ansible inventory of the hosts (collected with playbooks/evidence.yml)."
    ),
    out: Path = typer.Option(None, help="The pack folder to create (default evidence/<UTC timestamp>)."),
    key: Path = typer.Option(None, help="Ed25519 signing key or its folder (default $AIRLOCK_KEYS_DIR)."),
    system: str = typer.Option(None, help="System name in the pack (default: the inventory folder's name)."),
    policy: Path = typer.Option(
        Path("policies/egress.yml"), help="The egress policy the hosts are judged by."
    ),
    limit: str = typer.Option(None, help="Ansible --limit: collect these hosts only."),
    forks: int = typer.Option(10, help="Hosts collected in parallel."),
    aws_region: str = typer.Option(None, help="Also collect this AWS region (read-only API calls)."),
    aws_endpoint_url: str = typer.Option(None, help="An AWS API emulator (moto_server) instead of AWS."),
    vpc_id: str = typer.Option(None, help="The enclave's VPC (default: every VPC in the region)."),
    internal_cidr: list[str] = typer.Option(
        [], help="Ranges outside the VPC the enclave may reach (repeat)."
    ),
    allowed_region: list[str] = typer.Option(list(GOVCLOUD), help="Regions data may reside in (ITAR)."),
    pulumi_export: Path = typer.Option(None, help="A `pulumi stack export` JSON file of the enclave stack."),
    pulumi_stack: str = typer.Option(None, help="Run `pulumi stack export` for this stack (needs the CLI)."),
    drill_report: Path = typer.Option(
        None,
        help="The `airlock dr drill` report.json, or its drills/ folder (the newest */report.json by "
        "finished_at is used). Without it, hosts fail the restore-drill controls.",
    ),
    drill_max_age_days: int = typer.Option(
        DRILL_MAX_AGE_DAYS,
        min=1,
        help="How many days old a passed drill may be (quarterly by default); kept in the pack, so "
        "--from-raw judges by the earlier pack's.",
    ),
    from_raw: Path = typer.Option(
        None, help="Re-evaluate the raw/ of an earlier pack instead of collecting."
    ),
) -> None:
    """Collect from the live system, evaluate every control, write and sign the pack.

    Exit 1 if a control fails (the pack is still written: it is the evidence of the failure)."""
    collect, pack = _machinery()
    if from_raw is not None and drill_report is not None:
        fail("--drill-report adds to a collection, --from-raw re-evaluates one as it was: pass one", 2)
    if drill_report is not None and not drill_report.exists():
        fail(f"--drill-report {drill_report}: no such file or folder", 2)
    try:
        signer = load_signer(key)
        stamp = collect.utcnow()
        target = out or Path("evidence") / stamp.replace(":", "")
        if target.exists():
            fail(f"{target} already exists: evidence packs are never overwritten; choose another --out", 2)
        name = system or (inventory.resolve().name if inventory else aws_region or "airlock")

        def fill(staging: Path) -> None:
            if from_raw is not None:
                collect.copy_raw(from_raw, staging)
            else:
                collect.collect(
                    staging,
                    system=name,
                    inventory=inventory,
                    policy_path=policy,
                    limit=limit,
                    forks=forks,
                    aws_region=aws_region,
                    aws_endpoint_url=aws_endpoint_url,
                    vpc_id=vpc_id,
                    internal_cidrs=tuple(internal_cidr),
                    allowed_regions=tuple(allowed_region),
                    pulumi_export=pulumi_export,
                    pulumi_stack=pulumi_stack,
                    drill_report=drill_report,
                    drill_max_age_days=drill_max_age_days,
                )

        written, results = pack.build(target, fill, signer, stamp)
    except AirlockError as exc:
        fail(exc)
    console.print(f"evidence pack: {written}  (open {written / 'index.html'})", highlight=False)
    _summary(results)
    if any(c["status"] == "fail" for f in results["frameworks"] for c in f["controls"]):
        raise typer.Exit(1)


@app.command(
    epilog="Example: airlock evidence verify evidence/2026-12-04T060000Z --trust evidence-signing.pub"
)
def verify(
    pack_dir: Path = typer.Argument(..., help="The pack folder."),
    trust: Path = typer.Option(..., help="The public key the pack must be signed with."),
    as_json: bool = typer.Option(False, "--json", help="Print the problems as JSON."),
) -> None:
    """Check the signature and every file: exit 1 on any altered, missing or extra file."""
    _, pack = _machinery()
    try:
        problems = pack.verify(pack_dir, load_verifier(trust))
    except (AirlockError, OSError, ValueError) as exc:
        fail(exc)
    if as_json:
        typer.echo(
            json.dumps({"pack": str(pack_dir), "intact": not problems, "problems": problems}, indent=2)
        )
    elif problems:
        for problem in problems:
            console.print(f"[red]✗[/red] {problem}", highlight=False)
    else:
        console.print(f"[green]✓[/green] {pack_dir}: signature and every file intact", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command(epilog="Example: airlock evidence diff evidence/2026-11-01T000000Z evidence/2026-12-01T000000Z")
def diff(
    old: Path = typer.Argument(..., help="The earlier pack."),
    new: Path = typer.Argument(..., help="The later pack."),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Controls whose status changed between two packs (drift). Exit 1 if any got worse."""
    _, pack = _machinery()
    try:
        changes = pack.diff(old, new)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot read both packs' results.json: {exc}", 2)
    if as_json:
        typer.echo(json.dumps(changes, indent=2))
    else:
        for c in changes:
            console.print(
                f"  {c['framework']:<12} {c['control']:<22} {c['old']} -> {c['new']}", highlight=False
            )
        console.print(f"{len(changes)} controls changed status", highlight=False)
    if any(c["new"] == "fail" for c in changes):
        raise typer.Exit(1)
