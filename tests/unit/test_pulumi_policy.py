"""The CrossGuard pack in policies/pulumi, run the way the analyzer runs it, without the CLI.

Props go through the SDK's `unknown_checking_proxy`, as in `pulumi preview`, so the unknown-value
tests see what a real preview sees. `__main__.py` is read as text, never run: constructing
PolicyPack starts a gRPC server and blocks.
"""

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE, unknown_checking_proxy

PACK = Path(__file__).resolve().parents[2] / "policies" / "pulumi"


def _load_policies():
    spec = importlib.util.spec_from_file_location("airgap_policies", PACK / "airgap_policies.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["airgap_policies"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


ap = _load_policies()

OPTS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
UNKNOWN = UNKNOWN_STRING_VALUE  # what an output of a not-yet-created resource looks like at preview
KEY = "arn:aws:kms:us-gov-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE = "aws:ec2/route:Route"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
VOLUME = "aws:ebs/volume:Volume"
BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
SSE_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"

ALL_FLAGS = dict.fromkeys(
    ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True
)
KMS_DEFAULT = {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}
ENCRYPTED_ROOT = {"encrypted": True, "kmsKeyId": KEY}
IMDSV2 = {"httpTokens": "required"}


def urn(kind: str, name: str) -> str:
    return f"urn:pulumi:test::airlock::{kind}::{name}"


def check(policy: ResourceValidationPolicy, kind: str, props: dict, name: str = "res") -> list[str]:
    """The messages `policy` reports for one resource."""
    messages: list[str] = []
    args = ResourceValidationArgs(kind, unknown_checking_proxy(props), urn(kind, name), name, OPTS, None)
    policy.validate(args, lambda message, _urn=None: messages.append(message))
    return messages


def stack_resource(kind: str, name: str, props: dict, **depends_on: PolicyResource) -> PolicyResource:
    """A stack resource; `depends_on` maps a prop to the resource it was built from (`bucket=b.id`)."""
    deps = {prop: [res] for prop, res in depends_on.items()}
    return PolicyResource(
        kind,
        unknown_checking_proxy(props),
        urn(kind, name),
        name,
        OPTS,
        None,
        None,
        list(depends_on.values()),
        deps,
    )


def check_stack(policy: StackValidationPolicy, *resources: PolicyResource) -> list[tuple[str, str | None]]:
    """The (message, urn) pairs `policy` reports for a stack."""
    reported: list[tuple[str, str | None]] = []
    policy.validate(
        StackValidationArgs(list(resources)), lambda message, u=None: reported.append((message, u))
    )
    return reported


def assert_names(messages: list[str], name: str, *fragments: str) -> None:
    """One message names the resource, says how to fix it, and says what is wrong."""
    assert messages, "expected a violation"
    assert any(
        m.startswith(f"{name}") and "Fix:" in m and all(f in m for f in fragments) for m in messages
    ), messages


# --- no-internet-gateways ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway",
        "aws:ec2/defaultVpc:DefaultVpc",
    ],
)
def test_gateways_to_the_internet_are_rejected(kind):
    assert_names(check(ap.no_internet_gateways_policy, kind, {"vpcId": "vpc-1"}, "gw"), "gw", "internet")


@pytest.mark.parametrize("kind", [VPC, SUBNET, "aws:ec2/vpcEndpoint:VpcEndpoint"])
def test_the_enclave_network_passes_the_gateway_policy(kind):
    assert check(ap.no_internet_gateways_policy, kind, {"cidrBlock": "10.20.0.0/16"}) == []


# --- no-internet-routes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "0.0.0.0/0", "vpcEndpointId": "vpce-1"}),
        (ROUTE, {"routeTableId": "rtb-1", "destinationIpv6CidrBlock": "::/0"}),
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "0.0.0.0/1"}),  # half of everything
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "128.0.0.0/1"}),
        (ROUTE, {"routeTableId": "rtb-1", "destinationIpv6CidrBlock": "8000::/1"}),
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "not-a-cidr"}),
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "203.0.113.0/24", "gatewayId": "igw-0abc"}),
        (ROUTE_TABLE, {"vpcId": "vpc-1", "routes": [{"cidrBlock": "0.0.0.0/0", "natGatewayId": "nat-1"}]}),
        (
            ROUTE_TABLE,
            {"vpcId": "vpc-1", "routes": [{"ipv6CidrBlock": "::/0", "egressOnlyGatewayId": "eigw-1"}]},
        ),
        ("aws:ec2/defaultRouteTable:DefaultRouteTable", {"routes": [{"cidrBlock": "0.0.0.0/0"}]}),
    ],
)
def test_routes_to_the_internet_are_rejected(kind, props):
    assert_names(check(ap.no_internet_routes_policy, kind, props, "rt"), "rt", "route")


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (ROUTE, {"routeTableId": "rtb-1", "destinationCidrBlock": "10.0.0.0/8", "transitGatewayId": "tgw-1"}),
        (
            ROUTE,
            {"routeTableId": "rtb-1", "destinationPrefixListId": "pl-63a5400a", "vpcEndpointId": "vpce-1"},
        ),
        (ROUTE, {"routeTableId": "rtb-1", "destinationIpv6CidrBlock": "fd00:ab::/48"}),
        (ROUTE_TABLE, {"vpcId": "vpc-1"}),  # local routes only
        (
            ROUTE_TABLE,
            {"vpcId": "vpc-1", "routes": [{"cidrBlock": "172.16.0.0/12", "transitGatewayId": "tgw-1"}]},
        ),
    ],
)
def test_private_routes_pass(kind, props):
    assert check(ap.no_internet_routes_policy, kind, props) == []


@pytest.mark.parametrize(
    ("cidr", "is_open"),
    [
        ("0.0.0.0/0", True),
        ("0.0.0.0/1", True),
        ("128.0.0.0/1", True),
        ("8.0.0.0/7", True),  # shorter than /8, so it cannot be private
        ("10.0.0.0/8", False),  # the largest RFC 1918 block
        ("52.0.0.0/8", False),  # public but bounded: with no gateway it leads nowhere (documented limit)
        ("::/0", True),
        ("2000::/3", True),  # all global unicast
        ("fc00::/7", False),  # ULA
        ("2600:1f00::/24", False),
    ],
)
def test_open_cidr_boundaries(cidr, is_open):
    assert (ap.open_cidr(cidr) is not None) is is_open


# --- no-open-egress -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (
            SG,
            {
                "vpcId": "vpc-1",
                "egress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}],
            },
        ),
        (SG, {"egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "ipv6CidrBlocks": ["::/0"]}]}),
        (SG, {"egress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"]}]}),
        (
            "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
            {"egress": [{"protocol": "-1", "cidrBlocks": ["0.0.0.0/0"]}]},
        ),
        (
            SG_RULE,
            {"type": "egress", "protocol": "-1", "cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-1"},
        ),
        (
            SG_RULE,
            {"type": "egress", "protocol": "-1", "ipv6CidrBlocks": ["::/0"], "securityGroupId": "sg-1"},
        ),
        (EGRESS_RULE, {"securityGroupId": "sg-1", "ipProtocol": "-1", "cidrIpv4": "0.0.0.0/0"}),
        (EGRESS_RULE, {"securityGroupId": "sg-1", "ipProtocol": "-1", "cidrIpv6": "::/0"}),
    ],
)
def test_open_egress_is_rejected(kind, props):
    assert_names(check(ap.no_open_egress_policy, kind, props, "sg"), "sg", "egress")


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (SG, {"vpcId": "vpc-1"}),  # the provider strips AWS's default allow-all egress
        (
            SG,
            {"egress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443, "cidrBlocks": ["10.20.0.0/16"]}]},
        ),
        (
            SG,
            {
                "egress": [
                    {"protocol": "tcp", "fromPort": 443, "toPort": 443, "prefixListIds": ["pl-63a5400a"]}
                ]
            },
        ),
        # ingress is not egress: open ingress is no path out (and nothing can reach it without a gateway)
        (
            SG_RULE,
            {"type": "ingress", "protocol": "tcp", "cidrBlocks": ["0.0.0.0/0"], "securityGroupId": "sg-1"},
        ),
        (
            SG_RULE,
            {"type": "egress", "protocol": "tcp", "sourceSecurityGroupId": "sg-2", "securityGroupId": "sg-1"},
        ),
        (EGRESS_RULE, {"securityGroupId": "sg-1", "ipProtocol": "tcp", "cidrIpv4": "10.20.1.0/24"}),
        (EGRESS_RULE, {"securityGroupId": "sg-1", "ipProtocol": "tcp", "referencedSecurityGroupId": "sg-2"}),
    ],
)
def test_private_egress_passes(kind, props):
    assert check(ap.no_open_egress_policy, kind, props) == []


# --- no-public-ips ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "props", "field"),
    [
        (SUBNET, {"cidrBlock": "10.20.1.0/24", "mapPublicIpOnLaunch": True}, "mapPublicIpOnLaunch"),
        ("aws:ec2/defaultSubnet:DefaultSubnet", {"mapPublicIpOnLaunch": True}, "mapPublicIpOnLaunch"),
        (
            SUBNET,
            {"ipv6CidrBlock": "2600:1f14:abc:de00::/64", "assignIpv6AddressOnCreation": True},
            "assignIpv6AddressOnCreation",
        ),
        (INSTANCE, {"ami": "ami-1", "associatePublicIpAddress": True}, "associatePublicIpAddress"),
        (
            LAUNCH_TEMPLATE,
            {"networkInterfaces": [{"associatePublicIpAddress": "true"}]},  # a string on launch templates
            "networkInterfaces[0].associatePublicIpAddress",
        ),
    ],
)
def test_public_addresses_are_rejected(kind, props, field):
    assert_names(check(ap.no_public_ips_policy, kind, props, "node"), "node", field, f"set {field}=False")


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (SUBNET, {"cidrBlock": "10.20.1.0/24"}),
        (SUBNET, {"cidrBlock": "10.20.1.0/24", "mapPublicIpOnLaunch": False}),
        (SUBNET, {"ipv6CidrBlock": "fd12:3456:789a:1::/64", "assignIpv6AddressOnCreation": True}),  # ULA
        (INSTANCE, {"ami": "ami-1", "associatePublicIpAddress": False}),
        (INSTANCE, {"ami": "ami-1"}),  # the subnet decides, and the subnet is checked
        (LAUNCH_TEMPLATE, {"networkInterfaces": [{"associatePublicIpAddress": "false"}]}),
    ],
)
def test_private_addressing_passes(kind, props):
    assert check(ap.no_public_ips_policy, kind, props) == []


# --- customer-managed-encryption ----------------------------------------------------------------------


def inline_sse(default: dict) -> dict:
    return {"serverSideEncryptionConfiguration": {"rule": {"applyServerSideEncryptionByDefault": default}}}


def sse_rules(default: dict) -> dict:
    return {
        "bucket": "b",
        "rules": [{"applyServerSideEncryptionByDefault": default, "bucketKeyEnabled": True}],
    }


def lt_volume(ebs: dict) -> dict:
    return {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": ebs}, {"virtualName": "ephemeral0"}]}


@pytest.mark.parametrize(
    ("kind", "props", "fragment"),
    [
        (INSTANCE, {"ami": "ami-1"}, "no rootBlockDevice"),
        (INSTANCE, {"rootBlockDevice": {"encrypted": False}}, "not encrypted"),
        (INSTANCE, {"rootBlockDevice": {"encrypted": True}}, "no kmsKeyId"),
        (
            INSTANCE,
            {"rootBlockDevice": ENCRYPTED_ROOT, "ebsBlockDevices": [{"encrypted": False}]},
            "ebsBlockDevices[0]",
        ),
        (INSTANCE, {"rootBlockDevice": {"encrypted": True, "kmsKeyId": "alias/aws/ebs"}}, "AWS-managed"),
        (LAUNCH_TEMPLATE, {"imageId": "ami-1"}, "no blockDeviceMappings"),
        (LAUNCH_TEMPLATE, lt_volume({"encrypted": "true"}), "kmsKeyId"),
        (LAUNCH_TEMPLATE, lt_volume({"encrypted": "false", "kmsKeyId": KEY}), "not encrypted"),
        (VOLUME, {"availabilityZone": "us-gov-west-1a", "size": 100.0}, "not encrypted"),
        (VOLUME, {"encrypted": True, "kmsKeyId": ""}, "no kmsKeyId"),
        (BUCKET, inline_sse({"sseAlgorithm": "AES256"}), "AES256"),
        (BUCKET, inline_sse({"sseAlgorithm": "aws:kms"}), "kmsMasterKeyId"),
        (SSE, sse_rules({"sseAlgorithm": "AES256"}), "AES256"),
        (SSE_V2, sse_rules({"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "alias/aws/s3"}), "AWS-managed"),
        (SSE, {"bucket": "b", "rules": []}, "no rules"),
        (LOG_GROUP, {"retentionInDays": 365.0}, "no kmsKeyId"),
    ],
)
def test_data_without_a_customer_key_is_rejected(kind, props, fragment):
    assert_names(
        check(ap.customer_key_encryption_policy, kind, props, "data"), "data", fragment, "aws.kms.Key"
    )


@pytest.mark.parametrize(
    ("kind", "props"),
    [
        (INSTANCE, {"rootBlockDevice": ENCRYPTED_ROOT, "ebsBlockDevices": [ENCRYPTED_ROOT]}),
        (LAUNCH_TEMPLATE, lt_volume({"encrypted": "true", "kmsKeyId": KEY})),
        (VOLUME, {"encrypted": True, "kmsKeyId": KEY}),
        (BUCKET, inline_sse(KMS_DEFAULT)),
        (BUCKET, {"bucket": "plain"}),  # no inline config: s3-default-encryption-configured looks for one
        (SSE, sse_rules(KMS_DEFAULT)),
        (SSE_V2, sse_rules({**KMS_DEFAULT, "sseAlgorithm": "aws:kms:dsse"})),
        (LOG_GROUP, {"kmsKeyId": KEY, "retentionInDays": 365.0}),
        (VPC, {"cidrBlock": "10.20.0.0/16"}),
    ],
)
def test_customer_keys_pass(kind, props):
    assert check(ap.customer_key_encryption_policy, kind, props) == []


# --- imdsv2-required ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [INSTANCE, LAUNCH_TEMPLATE])
@pytest.mark.parametrize("metadata", [None, {"httpTokens": "optional"}, {"httpEndpoint": "enabled"}])
def test_imdsv1_is_rejected(kind, metadata):
    props = {"ami": "ami-1"} if metadata is None else {"metadataOptions": metadata}
    assert_names(check(ap.imdsv2_required_policy, kind, props, "gpu"), "gpu", "httpTokens", "'required'")


@pytest.mark.parametrize("kind", [INSTANCE, LAUNCH_TEMPLATE])
def test_imdsv2_passes(kind):
    assert check(ap.imdsv2_required_policy, kind, {"metadataOptions": IMDSV2}) == []
    assert check(ap.imdsv2_required_policy, SUBNET, {"cidrBlock": "10.20.1.0/24"}) == []


# --- unknown values in resource policies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "kind", "props"),
    [
        (ap.no_internet_routes_policy, ROUTE, {"destinationCidrBlock": UNKNOWN}),
        (ap.no_internet_routes_policy, ROUTE_TABLE, {"routes": [UNKNOWN]}),
        (ap.no_open_egress_policy, SG, {"egress": [{"protocol": "-1", "cidrBlocks": [UNKNOWN]}]}),
        (ap.no_open_egress_policy, EGRESS_RULE, {"cidrIpv4": UNKNOWN}),
        (ap.no_public_ips_policy, SUBNET, {"mapPublicIpOnLaunch": UNKNOWN_BOOLEAN_VALUE}),
        (ap.imdsv2_required_policy, INSTANCE, {"metadataOptions": {"httpTokens": UNKNOWN}}),
        (ap.customer_key_encryption_policy, BUCKET, {"serverSideEncryptionConfiguration": UNKNOWN}),
    ],
)
def test_unknown_values_at_preview_fail_closed(policy, kind, props):
    # the SDK would turn the read into an advisory "can't run policy" and pass; these policies report
    assert_names(check(policy, kind, props, "res"), "res", "unknown at preview")


def test_an_unknown_kms_key_is_accepted_at_preview():
    # kmsKeyId=key.arn for a key made in the same stack; `pulumi up` re-checks the real value
    props = {"rootBlockDevice": {"encrypted": True, "kmsKeyId": UNKNOWN}}
    assert check(ap.customer_key_encryption_policy, INSTANCE, props) == []
    assert check(ap.customer_key_encryption_policy, LOG_GROUP, {"kmsKeyId": UNKNOWN}) == []


def test_the_sdk_analyzer_reports_unknowns_as_mandatory_violations():
    # The analyzer itself (private in the SDK, no gRPC server): an unknown read would come back
    # ADVISORY "can't run policy during preview"; here it is a MANDATORY violation.
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import analyzer_pb2
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    analyzer = _PolicyAnalyzerServicer(
        "airlock-airgap",
        "0.1.0",
        ap.POLICIES,
        EnforcementLevel.MANDATORY,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
    )
    props = struct_pb2.Struct()
    props.update({"destinationCidrBlock": UNKNOWN})
    request = analyzer_pb2.AnalyzeRequest(type=ROUTE, properties=props, urn=urn(ROUTE, "r"), name="r")
    [diagnostic] = analyzer.Analyze(request, None).diagnostics
    assert diagnostic.policyName == "no-internet-routes"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "r: route destinationCidrBlock is unknown at preview" in diagnostic.message


# --- s3-public-access-blocked -------------------------------------------------------------------------


def test_every_bucket_needs_a_public_access_block():
    bucket = stack_resource(BUCKET, "models", {"id": "airlock-models", "bucket": "airlock-models"})
    other = stack_resource(PAB, "other-pab", {"bucket": "someone-else", **ALL_FLAGS})
    [(message, where)] = check_stack(ap.s3_public_access_blocked_policy, bucket, other)
    assert where == bucket.urn
    assert message.startswith("models: no BucketPublicAccessBlock") and "Fix:" in message

    block = stack_resource(PAB, "models-pab", {"bucket": "airlock-models", **ALL_FLAGS})
    assert check_stack(ap.s3_public_access_blocked_policy, bucket, block, other) == []


def test_a_public_access_block_needs_all_four_flags():
    bucket = stack_resource(BUCKET, "models", {"id": "airlock-models"})
    block = stack_resource(
        PAB, "models-pab", {"bucket": "airlock-models", **ALL_FLAGS, "restrictPublicBuckets": False}
    )
    [(message, where)] = check_stack(ap.s3_public_access_blocked_policy, bucket, block)
    assert where == block.urn
    assert message.startswith("models-pab (for bucket models)") and "restrictPublicBuckets=True" in message


def test_preview_matches_by_property_dependency_when_ids_are_unknown():
    bucket = stack_resource(BUCKET, "models", {"id": UNKNOWN, "bucket": UNKNOWN})
    block = stack_resource(PAB, "models-pab", {"bucket": UNKNOWN, **ALL_FLAGS}, bucket=bucket)
    assert check_stack(ap.s3_public_access_blocked_policy, bucket, block) == []


def test_preview_fails_closed_when_a_reference_cannot_be_resolved():
    bucket = stack_resource(BUCKET, "models", {"id": UNKNOWN})
    block = stack_resource(PAB, "models-pab", {"bucket": UNKNOWN, **ALL_FLAGS})  # no dependency recorded
    [(message, _)] = check_stack(ap.s3_public_access_blocked_policy, bucket, block)
    assert message.startswith("models: no BucketPublicAccessBlock")
    assert "models-pab could not be matched" in message and "unknown at preview" in message


# --- s3-default-encryption-configured -----------------------------------------------------------------


def test_every_bucket_declares_default_encryption():
    bucket = stack_resource(BUCKET, "models", {"id": "airlock-models"})
    [(message, where)] = check_stack(ap.s3_default_encryption_configured_policy, bucket)
    assert where == bucket.urn
    assert message.startswith("models: no server-side encryption configuration") and "SSE-S3" in message

    config = stack_resource(SSE, "models-sse", {"bucket": "airlock-models", "rules": [{}]})
    inline = stack_resource(
        BUCKET,
        "logs",
        {"serverSideEncryptionConfiguration": {"rule": {"applyServerSideEncryptionByDefault": KMS_DEFAULT}}},
    )
    assert check_stack(ap.s3_default_encryption_configured_policy, bucket, config, inline) == []


# --- audit-bucket-object-lock -------------------------------------------------------------------------

AUDIT_PROPS = {"id": "airlock-evidence", "bucket": "airlock-evidence", "tags": {"airlock:role": "audit"}}
COMPLIANCE_RULE = {"rule": {"defaultRetention": {"mode": "COMPLIANCE", "years": 7.0}}}


def test_the_audit_bucket_needs_compliance_mode_object_lock():
    bucket = stack_resource(BUCKET, "evidence", AUDIT_PROPS)
    [(message, where)] = check_stack(ap.audit_bucket_object_lock_policy, bucket)
    assert where == bucket.urn
    assert (
        message.startswith("evidence (audit bucket)")
        and "objectLockEnabled" in message
        and "COMPLIANCE" in message
    )

    locked = stack_resource(BUCKET, "evidence", {**AUDIT_PROPS, "objectLockEnabled": True})
    governance = stack_resource(
        LOCK,
        "evidence-lock",
        {"bucket": "airlock-evidence", "rule": {"defaultRetention": {"mode": "GOVERNANCE"}}},
    )
    [(message, _)] = check_stack(ap.audit_bucket_object_lock_policy, locked, governance)
    assert "GOVERNANCE can be bypassed" in message

    compliance = stack_resource(LOCK, "evidence-lock", {"bucket": "airlock-evidence", **COMPLIANCE_RULE})
    assert check_stack(ap.audit_bucket_object_lock_policy, locked, compliance) == []
    inline = {**AUDIT_PROPS, "objectLockEnabled": True, "objectLockConfiguration": COMPLIANCE_RULE}
    assert check_stack(ap.audit_bucket_object_lock_policy, stack_resource(BUCKET, "evidence", inline)) == []


@pytest.mark.parametrize(
    ("name", "props", "is_audit"),
    [
        ("evidence", {"tags": {"airlock:role": "audit"}}, True),
        ("evidence", {"tagsAll": {"airlock:role": "audit"}}, True),  # from the provider's default tags
        ("audit-log", {}, True),  # logical name
        ("store", {"bucket": "airlock-AUDIT-2026"}, True),  # physical name
        ("store", {"bucketPrefix": "audit-"}, True),
        ("store", {"tags": UNKNOWN}, True),  # fail closed
        (
            "models",
            {"bucket": "airlock-models", "tags": {"airlock:role": "models"}, "tagsAll": UNKNOWN},
            False,
        ),
    ],
)
def test_the_audit_bucket_rule(name, props, is_audit):
    assert ap.is_audit_bucket(stack_resource(BUCKET, name, props)) is is_audit


def test_other_buckets_need_no_object_lock():
    bucket = stack_resource(BUCKET, "models", {"bucket": "airlock-models"})
    assert check_stack(ap.audit_bucket_object_lock_policy, bucket) == []


# --- vpc-flow-logs ------------------------------------------------------------------------------------


def test_every_vpc_needs_a_flow_log_capturing_all_traffic():
    vpc = stack_resource(VPC, "enclave", {"id": "vpc-0123", "cidrBlock": "10.20.0.0/16"})
    [(message, where)] = check_stack(ap.vpc_flow_logs_policy, vpc)
    assert where == vpc.urn
    assert message.startswith("enclave: has no flow log") and "traffic_type='ALL'" in message

    rejects = stack_resource(FLOW_LOG, "enclave-rejects", {"vpcId": "vpc-0123", "trafficType": "REJECT"})
    [(message, _)] = check_stack(ap.vpc_flow_logs_policy, vpc, rejects)
    assert "do not capture ALL traffic (enclave-rejects: REJECT)" in message

    everything = stack_resource(FLOW_LOG, "enclave-flows", {"vpcId": "vpc-0123", "trafficType": "ALL"})
    assert check_stack(ap.vpc_flow_logs_policy, vpc, everything) == []


def test_flow_logs_at_preview():
    vpc = stack_resource(VPC, "enclave", {"id": UNKNOWN, "cidrBlock": "10.20.0.0/16"})
    matched = stack_resource(FLOW_LOG, "enclave-flows", {"vpcId": UNKNOWN, "trafficType": "ALL"}, vpcId=vpc)
    assert check_stack(ap.vpc_flow_logs_policy, vpc, matched) == []

    unmatched = stack_resource(FLOW_LOG, "enclave-flows", {"vpcId": UNKNOWN, "trafficType": "ALL"})
    [(message, _)] = check_stack(ap.vpc_flow_logs_policy, vpc, unmatched)
    assert "enclave-flows could not be matched" in message


# --- the pack -----------------------------------------------------------------------------------------

MODULE_POLICIES = [v for v in vars(ap).values() if isinstance(v, Policy)]


def _pack_call() -> ast.Call:
    tree = ast.parse((PACK / "__main__.py").read_text())
    [call] = [
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "PolicyPack"
    ]
    return call


def test_main_lists_every_policy_in_a_mandatory_pack():
    keywords = {k.arg: k.value for k in _pack_call().keywords}
    assert ast.literal_eval(keywords["name"]) == "airlock-airgap"
    assert ast.unparse(keywords["enforcement_level"]) == "EnforcementLevel.MANDATORY"
    assert ast.unparse(keywords["policies"]) == "POLICIES"  # the list run_all runs too
    assert sorted(p.name for p in ap.POLICIES) == sorted(p.name for p in MODULE_POLICIES)


CONTROL_ID = re.compile(r"CC\d\.\d|3\.\d{1,2}\.\d{1,2}|164\.\d{3}")


@pytest.mark.parametrize("policy", MODULE_POLICIES, ids=lambda p: p.name)
def test_each_policy_is_mandatory_and_names_its_controls(policy):
    assert policy.enforcement_level is EnforcementLevel.MANDATORY
    assert CONTROL_ID.search(policy.description), policy.description


def test_the_pack_project_file_is_a_python_pack():
    project = yaml.safe_load((PACK / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert (PACK / project["runtime"]["options"]["virtualenv"]).name == "venv"
    requirements = (PACK / "requirements.txt").read_text()
    assert "pulumi-policy==" in requirements


# --- run_all over mock records ------------------------------------------------------------------------


def record(kind: str, name: str, id_: str, **props) -> dict:
    """One mock record: what the mocks saw (type, name, camelCase inputs) plus the id they returned."""
    return {"type": kind, "name": name, "id": id_, "props": props}


def compliant_stack() -> list[dict]:
    """The records a mocked air-gapped stack would produce."""
    https_in_vpc = {"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["10.20.0.0/16"]}
    sse = sse_rules(KMS_DEFAULT)["rules"]
    volume = lt_volume({"encrypted": "true", "kmsKeyId": KEY})
    return [
        record("aws:kms/key:Key", "airlock", "key-1", enableKeyRotation=True),
        record(VPC, "enclave", "vpc-0123", cidrBlock="10.20.0.0/16"),
        record(SUBNET, "gpu-a", "subnet-1", vpcId="vpc-0123", cidrBlock="10.20.1.0/24"),
        record(ROUTE_TABLE, "private", "rtb-1", vpcId="vpc-0123"),
        record(SG, "gpu", "sg-1", vpcId="vpc-0123", egress=[https_in_vpc]),
        record(
            FLOW_LOG, "enclave-flows", "fl-1", vpcId="vpc-0123", trafficType="ALL", logDestinationType="s3"
        ),
        record(LOG_GROUP, "service", "lg-1", kmsKeyId=KEY, retentionInDays=365.0),
        record(LAUNCH_TEMPLATE, "gpu", "lt-1", metadataOptions=IMDSV2, **volume),
        record(
            INSTANCE,
            "gpu-0",
            "i-1",
            subnetId="subnet-1",
            metadataOptions=IMDSV2,
            rootBlockDevice=ENCRYPTED_ROOT,
        ),
        record(BUCKET, "models", "airlock-models", bucket="airlock-models"),
        record(SSE, "models-sse", "airlock-models", bucket="airlock-models", rules=sse),
        record(PAB, "models-pab", "airlock-models", bucket="airlock-models", **ALL_FLAGS),
        record(BUCKET, "evidence", "airlock-evidence", **AUDIT_PROPS, objectLockEnabled=True),
        record(LOCK, "evidence-lock", "airlock-evidence", bucket="airlock-evidence", **COMPLIANCE_RULE),
        record(SSE, "evidence-sse", "airlock-evidence", bucket="airlock-evidence", rules=sse),
        record(PAB, "evidence-pab", "airlock-evidence", bucket="airlock-evidence", **ALL_FLAGS),
    ]


def test_run_all_passes_a_compliant_stack():
    assert ap.run_all(compliant_stack()) == []


def test_run_all_reports_resource_and_stack_violations():
    resources = [r for r in compliant_stack() if r["name"] not in ("enclave-flows", "models-pab")]
    # no "id": run_all does without one where nothing has to be matched by id
    resources.append(
        {"type": "aws:ec2/internetGateway:InternetGateway", "name": "igw", "props": {"vpcId": "vpc-1"}}
    )
    [subnet] = [r for r in resources if r["name"] == "gpu-a"]
    subnet["props"]["mapPublicIpOnLaunch"] = True
    found = {(v.policy, v.resource) for v in ap.run_all(resources)}
    assert found == {
        ("no-internet-gateways", "igw"),
        ("no-public-ips", "gpu-a"),
        ("vpc-flow-logs", "enclave"),
        ("s3-public-access-blocked", "models"),
    }
    assert all(v.message.startswith(v.resource) and "Fix:" in v.message for v in ap.run_all(resources))
