"""`airlock evidence build` for a cloud enclave, end to end: compliance.collect's AWS collection against a
real moto_server on loopback (fake credentials), then compliance.pack's render and signature.

A compliant enclave (test_aws_collector.build_compliant_enclave) passes every cloud check and fails no
control of any framework; the signed pack verifies. Attaching an internet gateway (and routing
0.0.0.0/0 to it) flips exactly the controls that map the failing checks, and the second pack says so
everywhere an auditor looks: results, diff, raw evidence, index.html, the diagram and OSCAL.
Data residency is judged both ways against allowed_regions.

No hosts are collected (inventory=None): host-only controls stay manual, never failing.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from moto_server import aws_env, moto_server, reset
from test_aws_collector import REGION, build_compliant_enclave, session

from airlock.keys import init_keys, load_signer, load_verifier
from compliance import catalogs, collect, pack
from compliance.checks import CHECKS, FAIL, PASS
from compliance.render.oscal import control_token

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "policies" / "egress.yml"
GENERATED_AT = "2026-12-01T12:00:00Z"
CLOUD_CHECKS = sorted(c.id for c in CHECKS.values() if c.scope == "cloud")
ALLOWED = (REGION, "us-gov-west-1")  # the moto enclave lives in us-east-1: allowed here on purpose
IGW_CONTROLS = {  # the controls the brief names; every control mapping a failing check must flip
    ("soc2", "CC6.6"),
    ("nist800_171", "3.13.1"),
    ("nist800_171", "3.13.6"),
    ("cmmc_l2", "SC.L2-3.13.1"),
    ("cmmc_l2", "SC.L2-3.13.6"),
    ("hipaa", "164.312(e)(1)"),
    ("itar", "ITAR-NO-EXPORT"),
}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with aws_env(), moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("evidence-keys") / "keys"
    init_keys(folder)
    return folder


def build_pack(out: Path, keys: Path, endpoint: str, vpc: str, allowed_regions=ALLOWED) -> dict:
    """What `airlock evidence build --aws-region ... --vpc-id ...` does, with no hosts."""

    def fill(staging: Path) -> None:
        collect.collect(
            staging,
            system="cloud-test",
            inventory=None,
            policy_path=POLICY,
            aws_region=REGION,
            aws_endpoint_url=endpoint,
            vpc_id=vpc,
            internal_cidrs=(),
            allowed_regions=tuple(allowed_regions),
        )

    written, results = pack.build(out, fill, load_signer(keys), GENERATED_AT)
    assert written == out
    return results


def checks_by_id(results: dict) -> dict[str, dict]:
    cloud = [c for c in results["checks"] if c["subject"] == "cloud"]
    assert len(cloud) == len({c["id"] for c in cloud})  # one cloud subject: one outcome per check
    return {c["id"]: c for c in cloud}


def statuses(results: dict) -> dict[tuple[str, str], str]:
    return {(f["id"], c["id"]): c["status"] for f in results["frameworks"] for c in f["controls"]}


def controls_mapping(check_ids: set[str]) -> set[tuple[str, str]]:
    """(framework, control) of every control that lists one of these checks, from the catalogs."""
    return {
        (catalog["id"], control["id"])
        for catalog in catalogs.load_all()
        for control in catalog["controls"]
        if check_ids & set(control["checks"])
    }


@pytest.fixture(scope="module")
def packs(endpoint, keys, tmp_path_factory):
    """The compliant pack, then the same enclave with an internet gateway, as a second pack."""
    reset(endpoint)
    ids = build_compliant_enclave(endpoint)
    out = tmp_path_factory.mktemp("packs")
    first = build_pack(out / "compliant", keys, endpoint, ids["vpc_id"])

    ec2 = session().client("ec2", endpoint_url=endpoint)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=ids["vpc_id"])
    ec2.create_route(RouteTableId=ids["route_table_id"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    second = build_pack(out / "open", keys, endpoint, ids["vpc_id"])
    return {
        "endpoint": endpoint,
        "ids": ids,
        "igw": igw,
        "first": (out / "compliant", first),
        "second": (out / "open", second),
    }


# ---- the compliant enclave -------------------------------------------------------------------------------


def test_compliant_enclave_passes_every_cloud_check(packs):
    _, results = packs["first"]
    checks = checks_by_id(results)
    assert sorted(checks) == CLOUD_CHECKS
    assert {c: checks[c]["status"] for c in CLOUD_CHECKS} == dict.fromkeys(CLOUD_CHECKS, PASS)
    assert all(checks[c]["evidence"] == ["raw/cloud/aws.json"] for c in CLOUD_CHECKS)
    assert f"collected region {REGION} is allowed" in checks["data_residency"]["reason"]
    account = session().client("sts", endpoint_url=packs["endpoint"]).get_caller_identity()["Account"]
    assert results["system"]["cloud"] == {
        "provider": "aws",
        "account": account,
        "region": REGION,
        "vpc": packs["ids"]["vpc_id"],
    }
    assert results["system"]["hosts"] == []


def test_compliant_enclave_fails_no_control(packs, keys):
    path, results = packs["first"]
    failed = [k for k, status in statuses(results).items() if status == FAIL]
    assert failed == []
    for framework in results["frameworks"]:
        assert framework["summary"][FAIL] == 0, framework["id"]
        assert framework["summary"][PASS] > 0, framework["id"]  # the cloud checks do evidence something
    assert statuses(results)[("soc2", "CC6.6")] == PASS
    assert pack.verify(path, load_verifier(keys)) == []
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["summary"] == {f["id"]: f["summary"] for f in results["frameworks"]}


# ---- an internet gateway opens the enclave ---------------------------------------------------------------


def test_internet_gateway_fails_its_check_by_id(packs, keys):
    path, results = packs["second"]
    igw, vpc = packs["igw"], packs["ids"]["vpc_id"]
    checks = checks_by_id(results)
    assert checks["aws_no_internet_gateway"]["status"] == FAIL
    assert checks["aws_no_internet_gateway"]["reason"] == f"{igw}: attached to {vpc}"
    assert checks["aws_no_route_to_internet"]["status"] == FAIL  # the 0.0.0.0/0 route
    assert igw in checks["aws_no_route_to_internet"]["reason"]
    failing = {c for c, check in checks.items() if check["status"] == FAIL}
    assert failing == {"aws_no_internet_gateway", "aws_no_route_to_internet"}
    assert pack.verify(path, load_verifier(keys)) == []


def test_internet_gateway_flips_exactly_the_controls_that_map_a_failing_check(packs):
    before, after = statuses(packs["first"][1]), statuses(packs["second"][1])
    failing = {c["id"] for c in packs["second"][1]["checks"] if c["status"] == FAIL}
    flipped = controls_mapping(failing)
    assert flipped >= IGW_CONTROLS
    assert all(after[key] == FAIL for key in flipped)
    assert {key for key, status in after.items() if status == FAIL} == flipped
    assert {key: after[key] for key in after if key not in flipped} == {
        key: before[key] for key in before if key not in flipped
    }


def test_diff_lists_exactly_the_flipped_controls(packs):
    (first, before), (second, _) = packs["first"], packs["second"]
    failing = {c["id"] for c in packs["second"][1]["checks"] if c["status"] == FAIL}
    changes = pack.diff(first, second)
    assert {(c["framework"], c["control"]) for c in changes} == controls_mapping(failing)
    assert len(changes) == len(controls_mapping(failing))
    old = statuses(before)
    assert all(c["new"] == FAIL and c["old"] == old[(c["framework"], c["control"])] for c in changes)
    assert all(c["old"] == PASS for c in changes)  # each was evidenced by a passing cloud check before
    assert pack.diff(first, first) == []


def test_the_gateway_is_in_the_raw_evidence_the_page_and_the_diagram(packs):
    igw, (path, _) = packs["igw"], packs["second"]
    aws = json.loads((path / "raw" / "cloud" / "aws.json").read_text())
    assert aws["findings"]["internet_gateways"] == [
        {"id": igw, "detail": f"attached to {packs['ids']['vpc_id']}"}
    ]
    assert igw in {g["id"] for g in aws["facts"]["internet_gateways"]}
    assert igw in (path / "index.html").read_text()
    assert f"INTERNET GATEWAY {igw} attached" in svg_texts(path / "diagram.svg")
    assert [g["id"] for g in results_topology(path)["cloud"]["internet_gateways"]] == [igw]
    first = packs["first"][0]
    assert not any("INTERNET GATEWAY" in t for t in svg_texts(first / "diagram.svg"))
    assert igw not in (first / "index.html").read_text()


def svg_texts(path: Path) -> list[str]:
    """The text the diagram shows (dot escapes some characters, e.g. '-' as &#45;, in the bytes)."""
    root = ET.fromstring(path.read_bytes())  # noqa: S314 - dot's output, written by this test's pack
    return ["".join(e.itertext()) for e in root.iter() if e.tag.rpartition("}")[2] == "text"]


def results_topology(path: Path) -> dict:
    return json.loads((path / "inventory.json").read_text())["topology"]


def oscal_finding(path: Path, framework: str, control: str) -> dict:
    document = json.loads((path / "assessment-results.json").read_text())
    (result,) = document["assessment-results"]["results"]
    token = control_token(framework, control)
    (finding,) = [f for f in result["findings"] if f["target"]["target-id"] == token]
    return finding


def test_oscal_assessment_results_has_a_not_satisfied_finding_for_cc6_6(packs):
    finding = oscal_finding(packs["second"][0], "soc2", "CC6.6")
    assert finding["target"]["status"] == {"state": "not-satisfied", "reason": "fail"}
    assert packs["igw"] in finding["description"]
    before = oscal_finding(packs["first"][0], "soc2", "CC6.6")
    assert before["target"]["status"] == {"state": "satisfied", "reason": "pass"}


# ---- data residency --------------------------------------------------------------------------------------


def test_data_residency_both_ways(endpoint, keys, tmp_path):
    reset(endpoint)
    vpc = build_compliant_enclave(endpoint)["vpc_id"]
    inside = build_pack(tmp_path / "inside", keys, endpoint, vpc, allowed_regions=(REGION,))
    outside = build_pack(tmp_path / "outside", keys, endpoint, vpc, allowed_regions=collect.GOVCLOUD)

    assert checks_by_id(inside)["data_residency"]["status"] == PASS
    assert statuses(inside)[("itar", "ITAR-RESIDENCY")] == PASS

    checks = checks_by_id(outside)
    assert checks["data_residency"]["status"] == FAIL
    assert checks["data_residency"]["reason"] == (
        f"resources in {REGION}, outside the allowed regions {', '.join(collect.GOVCLOUD)}"
    )
    assert {c for c, check in checks.items() if check["status"] == FAIL} == {"data_residency"}
    after = statuses(outside)
    assert after[("itar", "ITAR-RESIDENCY")] == FAIL
    assert {key for key, status in after.items() if status == FAIL} == controls_mapping({"data_residency"})
    assert pack.verify(tmp_path / "outside", load_verifier(keys)) == []
