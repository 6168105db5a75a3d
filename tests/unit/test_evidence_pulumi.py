"""The Pulumi collector on the state of the real program: pulumi/__main__.py runs under the SDK's mocks,
its resources are written out in `pulumi stack export`'s format (version 3: a default aws provider
with the stack's region, then every resource with its URN, type and inputs), and the pack judges that
state. The CLI cannot run here, so the export is built from the program's registrations; the format
is what `pulumi stack export` writes."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "pulumi"))  # no package there: `pulumi` would shadow the SDK

from enclave_mocks import PROJECT, load_stack_config, run_enclave  # noqa: E402

from airlock.keys import init_keys  # noqa: E402
from compliance import collect, pack  # noqa: E402
from compliance.collectors.pulumi_state import PulumiStateError, findings  # noqa: E402

STACK = "evidence"
PROVIDER = f"urn:pulumi:{STACK}::{PROJECT}::pulumi:providers:aws::default_7_0_0"


def export_of(recording, region: str) -> dict:
    resources = [
        {
            "urn": PROVIDER,
            "custom": True,
            "id": "provider-id",
            "type": "pulumi:providers:aws",
            "inputs": {"region": region},
            "outputs": {"region": region},
        }
    ]
    for r in recording.resources:
        resources.append(
            {
                "urn": f"urn:pulumi:{STACK}::{PROJECT}::{r.type}::{r.name}",
                "custom": r.custom,
                "id": r.id,
                "type": r.type,
                "inputs": r.inputs,
                "outputs": r.outputs,
                **({"provider": f"{PROVIDER}::provider-id"} if r.custom else {}),
            }
        )
    return {"version": 3, "deployment": {"manifest": {"version": "v3.200.0"}, "resources": resources}}


@pytest.fixture(scope="module")
def state():
    config = load_stack_config()
    return export_of(run_enclave(config, stack=STACK), config["aws:region"])


def build(tmp_path: Path, state: dict, name: str, **options) -> dict:
    export = tmp_path / f"{name}.json"
    export.write_text(json.dumps(state))
    signer = init_keys(tmp_path / f"keys-{name}")

    def fill(staging: Path) -> None:
        collect.collect(
            staging,
            system="stack",
            inventory=None,
            policy_path=ROOT / "policies" / "egress.yml",
            pulumi_export=export,
            **options,
        )

    _, results = pack.build(tmp_path / name, fill, signer, "2026-12-04T06:00:00Z")
    return results


def statuses(results: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in results["checks"] if c["subject"] == "pulumi"}


def failing_controls(results: dict) -> set[tuple[str, str]]:
    return {(f["id"], c["id"]) for f in results["frameworks"] for c in f["controls"] if c["status"] == "fail"}


def test_the_programs_state_has_no_internet_path_and_stays_in_govcloud(tmp_path, state):
    results = build(tmp_path, state, "compliant")
    assert statuses(results) == dict.fromkeys(
        ("stack_egress_restricted", "stack_no_internet_path", "stack_residency"), "pass"
    )
    assert failing_controls(results) == set()
    assert (tmp_path / "compliant" / "raw" / "pulumi" / "stack_export.json").read_text() == json.dumps(state)


def test_an_internet_gateway_and_open_egress_in_the_state_fail_their_controls(tmp_path, state):
    opened = copy.deepcopy(state)
    resources = opened["deployment"]["resources"]
    igw = f"urn:pulumi:{STACK}::{PROJECT}::aws:ec2/internetGateway:InternetGateway::sneaky-igw"
    resources.append(
        {"urn": igw, "type": "aws:ec2/internetGateway:InternetGateway", "inputs": {"vpcId": "vpc-1"}}
    )
    fleet = next(r for r in resources if r["type"] == "aws:ec2/securityGroup:SecurityGroup")
    fleet["inputs"]["egress"] = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}]
    results = build(tmp_path, opened, "opened")
    assert statuses(results) == {
        "stack_egress_restricted": "fail",
        "stack_no_internet_path": "fail",
        "stack_residency": "pass",
    }
    reasons = {c["id"]: c["reason"] for c in results["checks"]}
    assert igw in reasons["stack_no_internet_path"] and fleet["urn"] in reasons["stack_egress_restricted"]
    failed = failing_controls(results)
    for control in (
        ("soc2", "CC6.6"),
        ("soc2", "CC6.7"),
        ("nist800_171", "3.13.1"),
        ("nist800_171", "3.13.6"),
        ("hipaa", "164.312(e)(1)"),
        ("cmmc_l2", "SC.L2-3.13.6"),
        ("itar", "ITAR-NO-EXPORT"),
    ):
        assert control in failed


def test_a_provider_outside_the_allowed_regions_fails_residency(tmp_path, state):
    moved = copy.deepcopy(state)
    moved["deployment"]["resources"][0]["inputs"]["region"] = "eu-west-1"
    results = build(tmp_path, moved, "moved")
    assert statuses(results)["stack_residency"] == "fail"
    assert ("itar", "ITAR-RESIDENCY") in failing_controls(results)
    # The same state passes where the organisation allows that region.
    allowed = build(tmp_path, moved, "allowed", allowed_regions=("eu-west-1",))
    assert statuses(allowed)["stack_residency"] == "pass"


def test_an_empty_or_foreign_export_is_refused():
    with pytest.raises(PulumiStateError, match="no resources"):
        findings({"version": 3, "deployment": {}})
