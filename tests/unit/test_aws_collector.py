"""The AWS collector against moto in server mode (loopback only, fake credentials): a compliant enclave
reads as compliant, and each way of opening it up is reported by resource id.

`build_compliant_enclave` creates the enclave with plain boto3; it can later be replaced by the Pulumi
program running under mocks that create the same resources in moto."""

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto_server import aws_env, moto_server, reset

from compliance.collectors.aws import (
    FINDING_KEYS,
    REQUIRED_ACTIONS,
    CollectorError,
    collect,
    iam_action,
    main,
)

REGION = "us-east-1"
CIDR = "10.20.0.0/16"
ROOT = Path(__file__).resolve().parents[2]
BUCKET_ROLES = ("models", "outputs", "audit")
IMAGE = "ami-12c6146b"  # one of the images moto ships with (any id that exists there)


def session() -> boto3.Session:
    fake = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto accepts any
    return boto3.Session(**fake, region_name=REGION)


def bucket_policy(bucket: str, vpce_id: str, *, log_delivery: bool) -> str:
    """Deny anything not through the S3 endpoint (AWS services excepted: flow log delivery) or not TLS."""
    resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    statements = [
        {
            "Sid": "DenyOutsideVpce",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {
                "StringNotEquals": {"aws:SourceVpce": vpce_id},
                "Bool": {"aws:PrincipalIsAWSService": "false"},
            },
        },
        {
            "Sid": "DenyPlainHttp",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
    ]
    if log_delivery:
        statements.append(
            {
                "Sid": "FlowLogDelivery",
                "Effect": "Allow",
                "Principal": {"Service": "delivery.logs.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/*",
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def build_compliant_enclave(endpoint_url: str) -> dict:
    """A VPC with no way out, its endpoints, logs, key, buckets and one GPU host. Returns the ids."""
    aws = session()
    ec2, s3 = aws.client("ec2", endpoint_url=endpoint_url), aws.client("s3", endpoint_url=endpoint_url)
    kms, logs = aws.client("kms", endpoint_url=endpoint_url), aws.client("logs", endpoint_url=endpoint_url)
    iam = aws.client("iam", endpoint_url=endpoint_url)

    vpc = ec2.create_vpc(CidrBlock=CIDR)["Vpc"]["VpcId"]
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):  # interface endpoints' private DNS
        ec2.modify_vpc_attribute(VpcId=vpc, **{attribute: {"Value": True}})
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i + 1}.0/24", AvailabilityZone=f"{REGION}{az}")[
            "Subnet"
        ]["SubnetId"]
        for i, az in enumerate("ab")
    ]
    route_table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    for subnet in subnets:
        ec2.associate_route_table(RouteTableId=route_table, SubnetId=subnet)

    # One group for the endpoints and the hosts: HTTPS inside the VPC, nothing else.
    group = ec2.create_security_group(GroupName="enclave-https", Description="443 in the VPC", VpcId=vpc)[
        "GroupId"
    ]
    ec2.revoke_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    https = [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": CIDR}]}]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=https)
    ec2.authorize_security_group_egress(GroupId=group, IpPermissions=https)
    default_group = ec2.describe_security_groups(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "group-name", "Values": ["default"]}]
    )["SecurityGroups"][0]
    ec2.revoke_security_group_egress(
        GroupId=default_group["GroupId"], IpPermissions=default_group["IpPermissionsEgress"]
    )
    if default_group["IpPermissions"]:
        ec2.revoke_security_group_ingress(
            GroupId=default_group["GroupId"], IpPermissions=default_group["IpPermissions"]
        )

    # NACL: HTTPS and its return traffic inside the VPC; the default NACL loses its allow-all rules.
    acls = ec2.describe_network_acls(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NetworkAcls"]
    default_acl = next(a for a in acls if a["IsDefault"])
    acl = ec2.create_network_acl(VpcId=vpc)["NetworkAcl"]["NetworkAclId"]
    for egress in (False, True):
        for rule, ports in ((100, (443, 443)), (110, (1024, 65535))):
            ec2.create_network_acl_entry(
                NetworkAclId=acl,
                RuleNumber=rule,
                Protocol="6",
                RuleAction="allow",
                Egress=egress,
                CidrBlock=CIDR,
                PortRange={"From": ports[0], "To": ports[1]},
            )
        ec2.delete_network_acl_entry(NetworkAclId=default_acl["NetworkAclId"], RuleNumber=100, Egress=egress)
    for association in default_acl["Associations"]:
        ec2.replace_network_acl_association(
            AssociationId=association["NetworkAclAssociationId"], NetworkAclId=acl
        )

    s3_endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=f"com.amazonaws.{REGION}.s3",
        VpcEndpointType="Gateway",
        RouteTableIds=[route_table],
    )["VpcEndpoint"]["VpcEndpointId"]
    interface_endpoints = [
        ec2.create_vpc_endpoint(
            VpcId=vpc,
            ServiceName=f"com.amazonaws.{REGION}.{service}",
            VpcEndpointType="Interface",
            SubnetIds=subnets,
            SecurityGroupIds=[group],
            PrivateDnsEnabled=True,
        )["VpcEndpoint"]["VpcEndpointId"]
        for service in ("kms", "logs", "sts")
    ]

    key = kms.create_key(Description="airlock enclave data")["KeyMetadata"]
    kms.enable_key_rotation(KeyId=key["KeyId"])
    kms.create_alias(AliasName="alias/airlock", TargetKeyId=key["KeyId"])

    buckets = {role: f"airlock-{role}" for role in BUCKET_ROLES}
    for role, name in buckets.items():
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=role == "audit")
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {
                        "ApplyServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": key["Arn"],
                        },
                        "BucketKeyEnabled": True,
                    }
                ]
            },
        )
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                flag: True
                for flag in (
                    "BlockPublicAcls",
                    "IgnorePublicAcls",
                    "BlockPublicPolicy",
                    "RestrictPublicBuckets",
                )
            },
        )
    s3.put_object_lock_configuration(
        Bucket=buckets["audit"],
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2557}},
        },
    )

    log_group = "/airlock/vpc-flow-logs"
    logs.create_log_group(logGroupName=log_group, kmsKeyId=key["Arn"])
    role = iam.create_role(
        RoleName="airlock-flow-logs", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
    )
    flow_logs = ec2.create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ALL",
        LogDestinationType="cloud-watch-logs",
        LogGroupName=log_group,
        DeliverLogsPermissionArn=role["Role"]["Arn"],
    )["FlowLogIds"]
    # moto rejects a key prefix in the S3 destination ARN ("does not exist"): the bucket itself, then.
    flow_logs += ec2.create_flow_logs(
        ResourceIds=[vpc],
        ResourceType="VPC",
        TrafficType="ALL",
        LogDestinationType="s3",
        LogDestination=f"arn:aws:s3:::{buckets['audit']}",
    )["FlowLogIds"]
    # Policies last: moto enforces them on object calls, and nothing here comes through the endpoint.
    for role_name, name in buckets.items():
        s3.put_bucket_policy(
            Bucket=name, Policy=bucket_policy(name, s3_endpoint, log_delivery=role_name == "audit")
        )

    image = IMAGE
    imdsv2 = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}
    instance = ec2.run_instances(
        ImageId=image,
        InstanceType="g6e.xlarge",
        MinCount=1,
        MaxCount=1,
        NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": subnets[0], "Groups": [group], "AssociatePublicIpAddress": False}
        ],
        MetadataOptions=imdsv2,
    )["Instances"][0]["InstanceId"]
    template = ec2.create_launch_template(
        LaunchTemplateName="airlock-gpu",
        LaunchTemplateData={
            "ImageId": image,
            "InstanceType": "g6e.xlarge",
            "MetadataOptions": imdsv2,
            "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": [group], "AssociatePublicIpAddress": False}],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]

    return {
        "vpc_id": vpc,
        "subnet_ids": subnets,
        "route_table_id": route_table,
        "security_group_id": group,
        "default_security_group_id": default_group["GroupId"],
        "network_acl_id": acl,
        "default_network_acl_id": default_acl["NetworkAclId"],
        "s3_endpoint_id": s3_endpoint,
        "interface_endpoint_ids": interface_endpoints,
        "kms_key_id": key["KeyId"],
        "kms_key_arn": key["Arn"],
        "log_group": log_group,
        "flow_log_ids": flow_logs,
        "buckets": buckets,
        "instance_id": instance,
        "launch_template_id": template,
        "image_id": image,
    }


# ---- fixtures and helpers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with aws_env(), moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture(scope="module")
def compliant(endpoint):
    """The enclave as built, collected once for the read-only fact tests."""
    reset(endpoint)
    ids = build_compliant_enclave(endpoint)
    return ids, collect(session(), region=REGION, endpoint_url=endpoint, vpc_id=ids["vpc_id"])


@pytest.fixture
def enclave(endpoint):
    """A fresh enclave that the test may break."""
    reset(endpoint)
    return build_compliant_enclave(endpoint)


def clients(endpoint):
    aws = session()
    return (aws.client(name, endpoint_url=endpoint) for name in ("ec2", "s3", "kms"))


def findings(endpoint, ids, **kwargs) -> dict[str, list[dict]]:
    return collect(session(), region=REGION, endpoint_url=endpoint, vpc_id=ids["vpc_id"], **kwargs)[
        "findings"
    ]


def reported(found: dict, key: str) -> list[str]:
    return [f["id"] for f in found[key]]


def nonempty(found: dict) -> dict:
    return {key: items for key, items in found.items() if items}


# ---- the compliant enclave -------------------------------------------------------------------------------


def test_compliant_enclave_has_no_findings(compliant):
    _, result = compliant
    assert sorted(result["findings"]) == sorted(FINDING_KEYS)
    assert nonempty(result["findings"]) == {}
    assert result["account"] == "123456789012"
    json.dumps(result)  # the evidence pack stores it as is


def test_network_has_no_path_out(compliant):
    ids, result = compliant
    facts = result["facts"]
    assert [v["cidr_blocks"] for v in facts["vpcs"]] == [[CIDR]]
    assert sorted(s["availability_zone"] for s in facts["subnets"]) == [f"{REGION}a", f"{REGION}b"]
    assert not any(s["map_public_ip_on_launch"] for s in facts["subnets"])
    assert facts["internet_gateways"] == facts["nat_gateways"] == facts["egress_only_internet_gateways"] == []
    table = next(t for t in facts["route_tables"] if t["id"] == ids["route_table_id"])
    assert sorted(table["subnet_ids"]) == sorted(ids["subnet_ids"])
    for t in facts["route_tables"]:  # local routes, plus the S3 prefix list through the gateway endpoint
        for route in t["routes"]:
            assert route["target"] == "local" or (
                route["target"] == ids["s3_endpoint_id"] and route["destination"].startswith("pl-")
            ), route
    assert facts["public_ips"] == []


def test_security_groups_and_nacls_stay_inside_the_vpc(compliant):
    ids, result = compliant
    groups = {g["id"]: g for g in result["facts"]["security_groups"]}
    https = [{"protocol": "tcp", "ports": "443", "peer": CIDR}]
    assert groups[ids["security_group_id"]]["ingress"] == groups[ids["security_group_id"]]["egress"] == https
    default = groups[ids["default_security_group_id"]]
    assert default["is_default"] and default["ingress"] == default["egress"] == []
    acls = {a["id"]: a for a in result["facts"]["network_acls"]}
    assert sorted(acls[ids["network_acl_id"]]["subnet_ids"]) == sorted(ids["subnet_ids"])
    for acl in acls.values():
        allowed = {e["cidr"] for e in acl["entries"] if e["egress"] and e["action"] == "allow"}
        assert allowed <= {CIDR}, acl["id"]


def test_endpoints_and_flow_logs(compliant):
    ids, result = compliant
    endpoints = {e["id"]: e for e in result["facts"]["vpc_endpoints"]}
    gateway = endpoints[ids["s3_endpoint_id"]]
    assert (gateway["type"], gateway["service"]) == ("Gateway", f"com.amazonaws.{REGION}.s3")
    assert gateway["route_table_ids"] == [ids["route_table_id"]]
    for endpoint_id in ids["interface_endpoint_ids"]:
        assert endpoints[endpoint_id]["type"] == "Interface" and endpoints[endpoint_id]["private_dns"]
        assert endpoints[endpoint_id]["security_group_ids"] == [ids["security_group_id"]]
    flows = {f["destination_type"]: f for f in result["facts"]["flow_logs"]}
    assert {f["traffic_type"] for f in flows.values()} == {"ALL"}
    assert flows["cloud-watch-logs"]["log_group"] == ids["log_group"]
    assert flows["cloud-watch-logs"]["log_group_kms_key"] == ids["kms_key_arn"]
    assert flows["s3"]["destination"] == f"arn:aws:s3:::{ids['buckets']['audit']}"


def test_key_rotates_and_buckets_are_locked_down(compliant):
    ids, result = compliant
    key = next(k for k in result["facts"]["kms_keys"] if k["id"] == ids["kms_key_id"])
    assert (key["manager"], key["rotation_enabled"], key["aliases"]) == ("CUSTOMER", True, ["alias/airlock"])
    buckets = {b["name"]: b for b in result["facts"]["s3_buckets"]}
    assert sorted(buckets) == sorted(ids["buckets"].values())
    for b in buckets.values():
        assert b["encryption"] == {
            "algorithm": "aws:kms",
            "kms_key_id": ids["kms_key_arn"],
            "bucket_key_enabled": True,
        }
        assert set(b["public_access_block"].values()) == {True} and len(b["public_access_block"]) == 4
        assert b["policy"]["source_vpce"] == [ids["s3_endpoint_id"]]
        assert b["policy"]["requires_source_vpce"] and b["policy"]["requires_secure_transport"]
        assert b["versioning"] == "Enabled"
    audit = buckets[ids["buckets"]["audit"]]
    assert audit["audit"] and result["facts"]["audit_buckets"] == [audit["name"]]
    assert audit["object_lock"] == {"enabled": True, "mode": "COMPLIANCE", "days": 2557, "years": None}


def test_hosts_require_imdsv2_and_have_no_public_ip(compliant):
    ids, result = compliant
    (instance,) = result["facts"]["instances"]
    assert instance["id"] == ids["instance_id"] and instance["public_ip"] is None
    assert (instance["http_tokens"], instance["hop_limit"]) == ("required", 1)
    (template,) = result["facts"]["launch_templates"]
    assert template["id"] == ids["launch_template_id"]
    assert [(v["http_tokens"], v["hop_limit"], v["associate_public_ip"]) for v in template["versions"]] == [
        ("required", 1, False)
    ]


# ---- each way of opening the enclave is reported ---------------------------------------------------------


def test_internet_gateway_and_default_route_are_reported(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=enclave["vpc_id"])
    ec2.create_route(RouteTableId=enclave["route_table_id"], DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    found = findings(endpoint, enclave)
    assert found["internet_gateways"] == [{"id": igw, "detail": f"attached to {enclave['vpc_id']}"}]
    assert found["open_routes"] == [
        {"id": enclave["route_table_id"], "detail": f"0.0.0.0/0 -> {igw} (active)"}
    ]
    assert set(nonempty(found)) == {"internet_gateways", "open_routes"}


def test_egress_only_gateway_route_is_reported(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    eigw = ec2.create_egress_only_internet_gateway(VpcId=enclave["vpc_id"])["EgressOnlyInternetGateway"]
    eigw_id = eigw["EgressOnlyInternetGatewayId"]
    ec2.create_route(
        RouteTableId=enclave["route_table_id"],
        DestinationIpv6CidrBlock="::/0",
        EgressOnlyInternetGatewayId=eigw_id,
    )
    found = findings(endpoint, enclave)
    assert reported(found, "egress_only_gateways") == [eigw_id]
    assert found["open_routes"] == [
        {"id": enclave["route_table_id"], "detail": f"::/0 -> {eigw_id} (active)"}
    ]


@pytest.mark.parametrize("which", ["security_group_id", "default_security_group_id"])
def test_open_egress_rule_is_reported(endpoint, enclave, which):
    ec2, _, _ = clients(endpoint)
    group = enclave[which]
    ec2.authorize_security_group_egress(
        GroupId=group, IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    found = findings(endpoint, enclave)
    assert found["open_egress_rules"] == [{"id": group, "detail": "egress -1 all to 0.0.0.0/0"}]
    assert set(nonempty(found)) == {"open_egress_rules"}


def test_nacl_egress_beyond_the_vpc_is_reported(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    ec2.create_network_acl_entry(
        NetworkAclId=enclave["network_acl_id"],
        RuleNumber=120,
        Protocol="6",
        RuleAction="allow",
        Egress=True,
        CidrBlock="10.0.0.0/8",  # wider than the VPC: reaches whatever else is routed
        PortRange={"From": 443, "To": 443},
    )
    found = findings(endpoint, enclave)
    assert found["open_nacl_egress"] == [
        {"id": enclave["network_acl_id"], "detail": "rule 120 allows egress to 10.0.0.0/8"}
    ]


def test_new_bucket_without_controls_is_reported(endpoint, enclave):
    _, s3, _ = clients(endpoint)
    s3.create_bucket(Bucket="airlock-scratch")
    found = findings(endpoint, enclave)
    for key in (
        "unencrypted_buckets",
        "buckets_without_public_access_block",
        "buckets_not_restricted_to_vpce",
        "buckets_allowing_plain_http",
        "buckets_without_versioning",
    ):
        assert reported(found, key) == ["airlock-scratch"], key
    assert found["unencrypted_buckets"][0]["detail"] == "no default encryption"


def test_weakened_bucket_controls_are_reported(endpoint, enclave):
    _, s3, _ = clients(endpoint)
    models, outputs = enclave["buckets"]["models"], enclave["buckets"]["outputs"]
    s3.delete_public_access_block(Bucket=models)
    s3.put_public_access_block(
        Bucket=outputs,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=outputs,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    found = findings(endpoint, enclave)
    assert sorted(found["buckets_without_public_access_block"], key=lambda f: f["id"]) == [
        {"id": models, "detail": "no public access block"},
        {"id": outputs, "detail": "BlockPublicPolicy off"},
    ]
    assert found["unencrypted_buckets"] == [
        {"id": outputs, "detail": "default encryption AES256 (SSE-S3), not a KMS key"}
    ]


def test_audit_bucket_without_object_lock_is_reported(endpoint, enclave):
    models = enclave["buckets"]["models"]
    found = findings(endpoint, enclave, audit_buckets=[models, "airlock-audit-missing"])
    assert found["audit_bucket_without_object_lock"] == [
        {"id": models, "detail": "Object Lock is off"},
        {"id": "airlock-audit-missing", "detail": "audit bucket not found in the region"},
    ]


def test_missing_flow_logs_are_reported(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    ec2.delete_flow_logs(FlowLogIds=enclave["flow_log_ids"])
    ec2.create_flow_logs(  # rejected traffic only is not enough
        ResourceIds=[enclave["vpc_id"]],
        ResourceType="VPC",
        TrafficType="REJECT",
        LogDestinationType="s3",
        LogDestination=f"arn:aws:s3:::{enclave['buckets']['audit']}",
    )
    assert reported(findings(endpoint, enclave), "vpcs_without_flow_logs") == [enclave["vpc_id"]]


def test_imdsv1_host_with_public_ip_is_reported(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    instance = ec2.run_instances(
        ImageId=enclave["image_id"],
        MinCount=1,
        MaxCount=1,
        NetworkInterfaces=[
            {"DeviceIndex": 0, "SubnetId": enclave["subnet_ids"][1], "AssociatePublicIpAddress": True}
        ],
        MetadataOptions={"HttpTokens": "optional", "HttpPutResponseHopLimit": 2},
    )["Instances"][0]
    found = findings(endpoint, enclave)
    assert found["imdsv1_instances"] == [{"id": instance["InstanceId"], "detail": "HttpTokens=optional"}]
    assert found["imds_hop_limit_above_1"] == [{"id": instance["InstanceId"], "detail": "hop limit 2"}]
    eni = instance["NetworkInterfaces"][0]["NetworkInterfaceId"]
    assert found["public_ips"] == [
        {"id": eni, "detail": f"{instance['PublicIpAddress']} on {instance['InstanceId']}"}
    ]


def test_key_without_rotation_is_reported(endpoint, enclave):
    _, _, kms = clients(endpoint)
    kms.disable_key_rotation(KeyId=enclave["kms_key_id"])
    found = findings(endpoint, enclave)
    assert found["keys_without_rotation"] == [
        {"id": enclave["kms_key_id"], "detail": "rotation off (alias/airlock)"}
    ]


def test_whole_region_includes_the_default_vpc(endpoint, enclave):
    """Without --vpc-id every VPC counts: the account's default VPC is open and must go."""
    result = collect(session(), region=REGION, endpoint_url=endpoint)
    default = next(v["id"] for v in result["facts"]["vpcs"] if v["is_default"])
    assert {enclave["vpc_id"], default} == {v["id"] for v in result["facts"]["vpcs"]}
    assert reported(result["findings"], "vpcs_without_flow_logs") == [default]
    default_sg = next(
        g["id"] for g in result["facts"]["security_groups"] if g["vpc_id"] == default and g["is_default"]
    )
    assert default_sg in reported(result["findings"], "open_egress_rules")


# ---- pagination, permissions -----------------------------------------------------------------------------


def test_every_page_is_read(endpoint, enclave):
    ec2, _, _ = clients(endpoint)
    extra = [
        ec2.run_instances(
            ImageId=enclave["image_id"],
            MinCount=1,
            MaxCount=1,
            SubnetId=enclave["subnet_ids"][i % 2],
            MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
        )["Instances"][0]["InstanceId"]
        for i in range(11)
    ]
    aws, calls = session(), []  # the parameters of each DescribeInstances request
    event = "before-parameter-build.ec2.DescribeInstances"
    aws.events.register(event, lambda params, **_: calls.append(params))
    result = collect(aws, region=REGION, endpoint_url=endpoint, vpc_id=enclave["vpc_id"], page_size=5)
    assert sorted(i["id"] for i in result["facts"]["instances"]) == sorted([enclave["instance_id"], *extra])
    assert len(calls) == 3 and all(c["MaxResults"] == 5 for c in calls)  # 12 reservations, 5 a page


def deny(code: str):
    def handler(**kwargs):
        return AWSResponse("https://denied.invalid", 403, {}, None), {
            "Error": {"Code": code, "Message": "denied"}
        }

    return handler


@pytest.mark.parametrize(
    ("event", "code", "action"),
    [
        ("ec2.DescribeRouteTables", "UnauthorizedOperation", "ec2:DescribeRouteTables"),
        ("s3.GetBucketEncryption", "AccessDenied", "s3:GetEncryptionConfiguration"),
        ("kms.GetKeyRotationStatus", "AccessDeniedException", "kms:GetKeyRotationStatus"),
    ],
)
def test_denied_call_names_the_missing_iam_action(endpoint, enclave, event, code, action):
    aws = session()
    aws.events.register(f"before-call.{event}", deny(code))  # answers in place of the server
    with pytest.raises(CollectorError) as raised:
        collect(aws, region=REGION, endpoint_url=endpoint, vpc_id=enclave["vpc_id"])
    message = str(raised.value)
    assert f"{action} was denied" in message and f"Grant {action}" in message and code in message
    assert action in REQUIRED_ACTIONS


def test_required_actions_cover_every_call(endpoint, enclave):
    aws, made = session(), set()

    def record(model, **kwargs):
        made.add(iam_action(model.service_model.signing_name, model.name))

    aws.events.register("before-call", record)
    collect(aws, region=REGION, endpoint_url=endpoint)
    assert made == set(REQUIRED_ACTIONS)


# ---- the command line ------------------------------------------------------------------------------------


def test_cli_writes_facts_json(endpoint, enclave, tmp_path, capsys):
    out = tmp_path / "facts.json"
    argv = ["--region", REGION, "--endpoint-url", endpoint, "--vpc-id", enclave["vpc_id"], "--out", str(out)]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["vpc_id"] == enclave["vpc_id"] and nonempty(result["findings"]) == {}
    assert capsys.readouterr().err == f"wrote {out}: 0 finding(s)\n"


def test_cli_runs_as_a_module_and_prints_json(endpoint, enclave):
    command = [
        sys.executable,
        "-m",
        "compliance.collectors.aws",
        "--region",
        REGION,
        "--endpoint-url",
        endpoint,
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert enclave["vpc_id"] in {v["id"] for v in result["facts"]["vpcs"]}


def test_cli_exit_codes(endpoint, capsys):
    with pytest.raises(SystemExit) as usage:
        main(["--endpoint-url", endpoint])  # no --region
    assert usage.value.code == 2
    assert main(["--region", REGION, "--endpoint-url", endpoint, "--vpc-id", "vpc-0000000000000000f"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert (
        error
        == f"error: VPC vpc-0000000000000000f was not found in {REGION}: check the VPC id and the region."
    )
