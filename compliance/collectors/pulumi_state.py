"""Pulumi collector: what the stack's state says is deployed (`pulumi stack export` JSON).

The state is the cloud team's record of every resource and its inputs; reading it complements the
live AWS collector (which sees what exists, whoever made it) with what the stack declares, and catches
an internet path or a region outside the allowed ones in the stack before anyone looks at AWS.
`pulumi stack export` itself needs the CLI and the state backend; `--pulumi-export FILE` takes a file
someone exported, so a pack can be built where the CLI is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from airlock.errors import AirlockError

VERSION = "1"
INTERNET_TYPES = {
    "aws:ec2/internetGateway:InternetGateway": "internet gateway",
    "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway": "egress-only internet gateway",
    "aws:ec2/natGateway:NatGateway": "NAT gateway",
    "aws:ec2/eip:Eip": "elastic IP",
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment": "internet gateway attachment",
}
OPEN = {"0.0.0.0/0", "::/0"}


class PulumiStateError(AirlockError):
    pass


def export(stack: str, cwd: Path) -> str:
    """`pulumi stack export` for a stack (needs the CLI and a logged-in backend)."""
    if shutil.which("pulumi") is None:
        raise PulumiStateError(
            "the pulumi CLI is not installed here: export on a machine that has it "
            "(pulumi stack export --stack NAME --file state.json) and pass --pulumi-export"
        )
    done = subprocess.run(
        ["pulumi", "stack", "export", "--stack", stack, "--cwd", str(cwd)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise PulumiStateError(f"pulumi stack export failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def _routes(inputs: dict) -> list[dict]:
    if "routes" in inputs:
        return inputs["routes"] or []
    return [inputs] if "destinationCidrBlock" in inputs or "destinationIpv6CidrBlock" in inputs else []


def findings(state: dict) -> dict:
    """Facts and findings from an export (version 3 deployments)."""
    resources = state.get("deployment", {}).get("resources") or []
    if not resources:
        raise PulumiStateError(
            "the export holds no resources: not a `pulumi stack export` of a deployed stack"
        )
    internet, open_routes, open_egress, public, regions = [], [], [], [], {}
    for r in resources:
        typ, urn, inputs = r.get("type", ""), r.get("urn", ""), r.get("inputs") or {}
        name = urn.rsplit("::", 1)[-1]
        if typ.startswith("pulumi:providers:aws"):
            regions[name] = inputs.get("region") or (r.get("outputs") or {}).get("region")
        if typ in INTERNET_TYPES:
            internet.append({"urn": urn, "detail": INTERNET_TYPES[typ]})
        for route in _routes(inputs) if typ.startswith("aws:ec2/route") else []:
            dest = (
                route.get("destinationCidrBlock")
                or route.get("cidrBlock")
                or route.get("destinationIpv6CidrBlock")
            )
            if dest in OPEN:
                open_routes.append({"urn": urn, "detail": f"route {dest}"})
        if typ == "aws:ec2/securityGroup:SecurityGroup":
            for rule in inputs.get("egress") or []:
                wide = OPEN & set((rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or []))
                if wide:
                    open_egress.append({"urn": urn, "detail": f"egress to {', '.join(sorted(wide))}"})
        if typ == "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule" and (
            inputs.get("cidrIpv4") in OPEN or inputs.get("cidrIpv6") in OPEN
        ):
            open_egress.append({"urn": urn, "detail": "egress rule to anywhere"})
        if (typ == "aws:ec2/subnet:Subnet" and inputs.get("mapPublicIpOnLaunch")) or (
            typ == "aws:ec2/instance:Instance" and inputs.get("associatePublicIpAddress")
        ):
            public.append({"urn": urn, "detail": "public IP on launch"})
    return {
        "collector_version": VERSION,
        "resources": len(resources),
        "types": sorted({r.get("type", "") for r in resources}),
        "provider_regions": regions,
        "findings": {
            "internet_resources": internet,
            "open_routes": open_routes,
            "open_egress": open_egress,
            "public_ips": public,
        },
    }
