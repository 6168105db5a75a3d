"""The AWS collector on the enclave the Pulumi program itself builds: pulumi/__main__.py runs under
MotoMocks (tests/unit/moto_mocks.py), which creates every resource it registers in moto_server through
boto3; then compliance.collectors.aws reads the account back, as it would read the deployed stack.

The example stack (Pulumi.example.yaml, GovCloud, two zones) is deployed as written, except for its
ACM certificate, which a stack expects to exist already: moto issues one and the config names it.

What the collector reports on that enclave is asserted exactly: only the two findings moto cannot
represent (moto_gaps; AWS would not report them), each checked in moto directly. (The collector is
given the stack's internalCidrs and reads the S3 prefix list, which the NACLs allow on purpose; the
outputs bucket, tagged airlock:role=outputs, is unversioned on purpose.)
Then the enclave is opened (internet gateway, 0.0.0.0/0 route, open fleet egress) and each opening is
reported by the id of the resource the program created.
"""

from __future__ import annotations

import sys
from pathlib import Path

import boto3
import pytest
from moto_server import aws_env, moto_server, reset

PULUMI_DIR = Path(__file__).resolve().parents[2] / "pulumi"
sys.path.insert(0, str(PULUMI_DIR))  # no package there: `pulumi` would shadow the SDK

from enclave_mocks import Recording, load_stack_config, run_enclave  # noqa: E402
from moto_mocks import FAKED, MotoMocks  # noqa: E402

from compliance.collectors.aws import FINDING_KEYS, collect  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

NS = "airlock-enclave:"
EXAMPLE = load_stack_config()
REGION = EXAMPLE["aws:region"]
T = {  # the types the tests look up
    "acl": "aws:ec2/networkAcl:NetworkAcl",
    "asg": "aws:autoscaling/group:Group",
    "flow": "aws:ec2/flowLog:FlowLog",
    "key": "aws:kms/key:Key",
    "lt": "aws:ec2/launchTemplate:LaunchTemplate",
    "logs": "aws:cloudwatch/logGroup:LogGroup",
    "rtb": "aws:ec2/routeTable:RouteTable",
    "dsg": "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
    "dacl": "aws:ec2/defaultNetworkAcl:DefaultNetworkAcl",
    "drtb": "aws:ec2/defaultRouteTable:DefaultRouteTable",
}


def session() -> boto3.Session:
    fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto accepts any
    return boto3.Session(**fake, region_name=REGION)


def deploy(endpoint: str) -> tuple[MotoMocks, Recording]:
    """An empty account, then `pulumi up` of the example stack into it."""
    reset(endpoint)
    acm = session().client("acm", endpoint_url=endpoint)
    certificate = acm.request_certificate(DomainName="api.airlock.internal")["CertificateArn"]
    mocks = MotoMocks(endpoint, REGION)
    return mocks, run_enclave({**EXAMPLE, NS + "certificateArn": certificate}, mocks)


def collect_stack(endpoint: str, rec: Recording) -> dict:
    """What the evidence pack runs: the stack's VPC, its audit bucket by the stack output."""
    return collect(
        session(),
        region=REGION,
        endpoint_url=endpoint,
        vpc_id=rec.outputs["vpcId"],
        audit_buckets=[rec.outputs["bucketNames"]["audit"]],
        internal_cidrs=EXAMPLE[NS + "internalCidrs"],
    )


def nonempty(found: dict) -> dict:
    return {key: items for key, items in found.items() if items}


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with aws_env(), moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def stack(endpoint) -> tuple[MotoMocks, Recording, dict]:
    """The example stack deployed into moto and collected once; the tests only read it."""
    mocks, rec = deploy(endpoint)
    return mocks, rec, collect_stack(endpoint, rec)


def moto_gaps(endpoint: str, rec: Recording) -> dict[str, list[dict]]:
    """Findings on the program's enclave that exist only because moto cannot represent AWS's state."""
    autoscaling = session().client("autoscaling", endpoint_url=endpoint)
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[rec.one(T["asg"]).id])[
        "AutoScalingGroups"
    ]
    return {
        # The CloudWatch flow log is created as the provider creates it, by LogDestination (the group's
        # ARN). AWS's DescribeFlowLogs then returns LogGroupName as well; moto keeps LogGroupName empty
        # (and marks delivery FAILED, having looked the empty name up), so the collector finds no group
        # to read the KMS key of. test_moto_gaps_are_moto_not_the_program checks the group directly.
        "flow_log_groups_without_kms": [
            {
                "id": rec.one(T["flow"], "-flow-to-logs").id,
                "detail": "log group None is missing or not KMS-encrypted",
            }
        ],
        # The Auto Scaling group's host: AWS launches it with the launch template's MetadataOptions
        # (HttpTokens=required, hop limit 1); moto's Auto Scaling launches ignore them (moto default
        # HttpTokens=optional). The template itself reads as IMDSv2-only (no finding on it).
        "imdsv1_instances": [
            {"id": i["InstanceId"], "detail": "HttpTokens=optional"} for i in group["Instances"]
        ],
    }


# ---- the program's enclave, built in moto ----------------------------------------------------------------


def test_every_resource_the_program_registers_is_created_in_moto(endpoint, stack):
    mocks, rec, _ = stack
    custom = [r for r in rec.resources if r.custom]
    assert not FAKED  # every type is created in moto
    assert {r.type for r in custom} == set(mocks.creators)  # 28 types: all created, none left over
    # Spot checks by the ids Pulumi recorded: moto's own, not invented ones.
    aws = session()
    ec2 = aws.client("ec2", endpoint_url=endpoint)
    out = rec.outputs
    assert [v["VpcId"] for v in ec2.describe_vpcs(VpcIds=[out["vpcId"]])["Vpcs"]] == [out["vpcId"]]
    assert len(ec2.describe_subnets(SubnetIds=out["subnetIds"])["Subnets"]) == 2
    endpoint_ids = [out["s3EndpointId"], *out["interfaceEndpointIds"].values()]
    assert len(ec2.describe_vpc_endpoints(VpcEndpointIds=endpoint_ids)["VpcEndpoints"]) == 7
    names = {b["Name"] for b in aws.client("s3", endpoint_url=endpoint).list_buckets()["Buckets"]}
    assert names == set(out["bucketNames"].values())
    kms = aws.client("kms", endpoint_url=endpoint)
    assert kms.describe_key(KeyId=out["kmsKeyArn"])["KeyMetadata"]["Arn"] == out["kmsKeyArn"]
    balancers = aws.client("elbv2", endpoint_url=endpoint).describe_load_balancers()["LoadBalancers"]
    assert [(b["DNSName"], b["Scheme"], b["Type"]) for b in balancers] == [
        (out["nlbDnsName"], "internal", "network")
    ]


def test_collector_finds_the_program_enclave_compliant_but_for_known_gaps(endpoint, stack):
    mocks, rec, result = stack
    assert sorted(result["findings"]) == sorted(FINDING_KEYS)
    gaps = moto_gaps(endpoint, rec)
    assert len(gaps["imdsv1_instances"]) == EXAMPLE[NS + "fleetDesiredCapacity"]
    assert nonempty(result["findings"]) == gaps
    # Without the stack's internal ranges, the NACL rules that allow them (101..) are egress out.
    unaware = collect(session(), region=REGION, endpoint_url=endpoint, vpc_id=rec.outputs["vpcId"])[
        "findings"
    ]["open_nacl_egress"]
    internal = EXAMPLE[NS + "internalCidrs"]
    assert [f["detail"] for f in unaware] == [
        f"rule {101 + n} allows egress to {cidr}" for n, cidr in enumerate(internal)
    ]
    assert result["account"] == mocks.account_id and result["region"] == REGION


def test_moto_gaps_are_moto_not_the_program(endpoint, stack):
    """What the collector cannot see through moto, checked in moto directly."""
    _, rec, result = stack
    facts, aws = result["facts"], session()
    # The CloudWatch flow log points at the program's log group, and that group is KMS-encrypted.
    group = rec.one(T["logs"], "-flow-logs").outputs
    flow = next(f for f in facts["flow_logs"] if f["id"] == rec.one(T["flow"], "-flow-to-logs").id)
    assert (flow["destination"], flow["log_group"]) == (group["arn"], None)
    logs = aws.client("logs", endpoint_url=endpoint)
    (described,) = logs.describe_log_groups(logGroupNamePrefix=group["name"])["logGroups"]
    assert described["kmsKeyId"] == rec.outputs["kmsKeyArn"]
    # The fleet host was launched from the program's template, which requires IMDSv2 with one hop.
    template = rec.one(T["lt"]).id
    (host,) = facts["instances"]
    tags = aws.client("ec2", endpoint_url=endpoint).describe_tags(
        Filters=[{"Name": "resource-id", "Values": [host["id"]]}]
    )["Tags"]
    assert {t["Key"]: t["Value"] for t in tags}["aws:ec2launchtemplate:id"] == template
    assert host["public_ip"] is None and host["subnet_id"] in rec.outputs["subnetIds"]
    (lt,) = facts["launch_templates"]
    assert lt["id"] == template
    assert [(v["http_tokens"], v["hop_limit"], v["associate_public_ip"]) for v in lt["versions"]] == [
        ("required", 1, False)
    ]


def test_collected_facts_are_what_the_program_declared(stack):
    mocks, rec, result = stack
    facts, out = result["facts"], rec.outputs
    vpc_cidr = EXAMPLE[NS + "vpcCidr"]
    assert [(v["id"], v["cidr_blocks"]) for v in facts["vpcs"]] == [(out["vpcId"], [vpc_cidr])]
    # The program registers resources concurrently: compare by zone, never by creation order.
    zones = EXAMPLE[NS + "availabilityZones"]
    collected = sorted(
        (s["availability_zone"], s["id"], s["map_public_ip_on_launch"]) for s in facts["subnets"]
    )
    assert collected == sorted(
        (az, subnet, False) for az, subnet in zip(zones, out["subnetIds"], strict=True)
    )
    assert facts["internet_gateways"] == facts["nat_gateways"] == facts["egress_only_internet_gateways"] == []
    assert facts["public_ips"] == []

    # Routes: local only, plus S3's prefix list through the gateway endpoint in the program's tables.
    tables = {t["id"]: t for t in facts["route_tables"]}
    main = tables[rec.one(T["drtb"]).id]
    assert main["main"] and [r["target"] for r in main["routes"]] == ["local"]
    prefix_list = mocks.invoke("aws:ec2/getPrefixList:getPrefixList", {"name": f"com.amazonaws.{REGION}.s3"})
    for az, subnet in zip(zones, out["subnetIds"], strict=True):
        table = rec.one(T["rtb"], f"-routes-{az}")
        assert tables[table.id]["subnet_ids"] == [subnet]
        assert [(r["destination"], r["target"]) for r in tables[table.id]["routes"]] == [
            (vpc_cidr, "local"),
            (prefix_list["id"], out["s3EndpointId"]),
        ]

    # Security groups: the default one emptied, the new ones without AWS's allow-all egress.
    groups = {g["id"]: g for g in facts["security_groups"]}
    default = groups[rec.one(T["dsg"]).id]
    assert default["is_default"] and default["ingress"] == default["egress"] == []
    fleet = groups[out["fleetSecurityGroupId"]]
    peers = {rule["peer"] for rule in fleet["egress"]}
    assert prefix_list["id"] in peers and vpc_cidr in peers and not peers & {"0.0.0.0/0", "::/0"}
    endpoint_group = next(g for g in groups.values() if g["name"].startswith("airlock-endpoints-sg"))
    assert endpoint_group["egress"] == [] and endpoint_group["ingress"] == [
        {"protocol": "tcp", "ports": "443", "peer": vpc_cidr}
    ]

    # NACLs: the default one keeps only the implicit denies; the program's covers both subnets.
    acls = {a["id"]: a for a in facts["network_acls"]}
    assert {e["action"] for e in acls[rec.one(T["dacl"]).id]["entries"]} == {"deny"}
    assert sorted(acls[rec.one(T["acl"]).id]["subnet_ids"]) == sorted(out["subnetIds"])

    endpoints = {e["id"]: e for e in facts["vpc_endpoints"]}
    assert sorted(endpoints[out["s3EndpointId"]]["route_table_ids"]) == sorted(
        t.id for t in rec.of_type(T["rtb"])
    )
    for service, endpoint_id in out["interfaceEndpointIds"].items():
        interface = endpoints[endpoint_id]
        assert (interface["type"], interface["service"]) == ("Interface", f"com.amazonaws.{REGION}.{service}")
        assert interface["private_dns"] and interface["security_group_ids"] == [endpoint_group["id"]]
    assert {(f["destination_type"], f["traffic_type"], f["status"]) for f in facts["flow_logs"]} == {
        ("s3", "ALL", "ACTIVE"),
        ("cloud-watch-logs", "ALL", "ACTIVE"),
    }

    (key,) = facts["kms_keys"]
    assert (key["arn"], key["manager"], key["rotation_enabled"]) == (out["kmsKeyArn"], "CUSTOMER", True)
    assert key["aliases"] == [f"alias/{EXAMPLE[NS + 'namePrefix']}-enclave"]
    buckets = {b["name"]: b for b in facts["s3_buckets"]}
    assert sorted(buckets) == sorted(out["bucketNames"].values())
    for b in buckets.values():
        assert b["encryption"] == {
            "algorithm": "aws:kms",
            "kms_key_id": out["kmsKeyArn"],
            "bucket_key_enabled": True,
        }
        assert b["public_access_block"] == dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        )
        assert (
            b["policy"]["source_vpce"] == [out["s3EndpointId"]] and b["policy"]["requires_secure_transport"]
        )
    audit = buckets[out["bucketNames"]["audit"]]
    assert audit["audit"] and audit["versioning"] == "Enabled"
    days = EXAMPLE[NS + "auditRetentionDays"]
    assert audit["object_lock"] == {"enabled": True, "mode": "COMPLIANCE", "days": days, "years": None}


# ---- opened up, each opening is reported by the program's resource id ------------------------------------


def test_opening_the_program_enclave_is_reported_by_id(tmp_path):
    with aws_env(), moto_server(tmp_path / "moto") as url:  # its own server: `stack` stays as built
        _, rec = deploy(url)
        before = nonempty(collect_stack(url, rec)["findings"])
        assert before == moto_gaps(url, rec)
        ec2 = session().client("ec2", endpoint_url=url)
        vpc, table = rec.outputs["vpcId"], rec.of_type(T["rtb"])[0].id  # one zone's route table
        fleet = rec.outputs["fleetSecurityGroupId"]
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
        ec2.authorize_security_group_egress(
            GroupId=fleet, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        found = nonempty(collect_stack(url, rec)["findings"])

    assert found.pop("internet_gateways") == [{"id": igw, "detail": f"attached to {vpc}"}]
    assert found.pop("open_routes") == [{"id": table, "detail": f"0.0.0.0/0 -> {igw} (active)"}]
    assert found.pop("open_egress_rules") == [{"id": fleet, "detail": "egress -1 all to 0.0.0.0/0"}]
    assert found == before  # nothing else changed
