"""`airlock policy ...`: check the egress allowlist and render nftables, AWS or Kubernetes rules from it."""

from __future__ import annotations

import enum
import json
import os
import tempfile
from pathlib import Path

import typer

from airlock.clitools import err, fail
from airlock.errors import AirlockError
from airlock.policy.egress import EgressPolicy, load_policy, render_aws, render_k8s, render_nftables

app = typer.Typer(
    help="The egress allowlist (policies/egress.yml): check it, render nftables, AWS or Kubernetes rules.",
    no_args_is_help=True,
    epilog="Example: airlock policy render --target nftables --out /etc/nftables.conf",
)


class Target(enum.StrEnum):
    nftables = "nftables"
    aws = "aws"
    k8s = "k8s"


PolicyOption = typer.Option(
    Path("policies/egress.yml"),
    "--policy",
    envvar="AIRLOCK_EGRESS_POLICY",
    help="The egress policy file (relative paths are from the current directory).",
)


def loaded(path: Path) -> EgressPolicy:
    if not path.is_file():
        fail(AirlockError(f"no egress policy at {path}: pass --policy or set AIRLOCK_EGRESS_POLICY"), 2)
    try:
        return load_policy(path)
    except AirlockError as exc:
        fail(exc)


def write_atomically(out: Path, text: str) -> None:
    """Readers (nft, Pulumi, kubectl) see the old file or the new one, never half of it."""
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; these files are configuration, not secrets
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command(
    epilog="Example: airlock policy render --target nftables --out /etc/nftables.conf "
    "(or --target aws > sg.json, --target k8s | kubectl apply -f -)"
)
def render(
    target: Target = typer.Option(
        ..., "--target", help="What to render: nftables, aws (JSON) or k8s (YAML)."
    ),
    policy: Path = PolicyOption,
    out: Path = typer.Option(None, "--out", help="Write here atomically (mode 0644) instead of to stdout."),
) -> None:
    """Render the allowlist for hosts (nftables), the Pulumi stack (aws) or Kubernetes (k8s)."""
    rules = loaded(policy)
    if target is Target.nftables:
        text = render_nftables(rules, source=str(policy))
    elif target is Target.aws:
        text = json.dumps(render_aws(rules), indent=2, sort_keys=True) + "\n"
    else:
        text = render_k8s(rules)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        write_atomically(out, text)
    except OSError as exc:
        fail(AirlockError(f"cannot write {out}: {exc.strerror}"))
    err.print(
        f"wrote {target} rules to {out} (policy sha256 {rules.sha256})", highlight=False, soft_wrap=True
    )


@app.command(epilog="Example: airlock policy check --policy policies/egress.yml")
def check(policy: Path = PolicyOption) -> None:
    """Validate the allowlist; exit 0 when it is valid, 1 (with the field to fix) when not."""
    rules = loaded(policy)
    typer.echo(
        f"{policy}: ok: {len(rules.networks)} networks, {len(rules.allow)} allow rules, "
        f"ssh :{rules.management_ssh.port}, api :{rules.service_api.port} (sha256 {rules.sha256})"
    )
