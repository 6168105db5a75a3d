"""The Pulumi enclave (pulumi/), run under Pulumi's mocks: no CLI, no AWS account.

Each configuration runs the real program once (pulumi/__main__.py via enclave_mocks.run_enclave); the
tests then assert, with plain pytest, on every resource it registered: what an auditor would check
on the live account, checked before anything exists.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

PULUMI_DIR = Path(__file__).resolve().parents[2] / "pulumi"
sys.path.insert(0, str(PULUMI_DIR))  # no package there: `pulumi` would shadow the SDK

from enclave_mocks import Recording, load_stack_config, run_enclave  # noqa: E402
from enclave_settings import KEYS, SettingsError  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

NS = "airlock-enclave:"
OPEN = ("0.0.0.0/0", "::/0")
EXAMPLE = load_stack_config()


def with_settings(base: dict | None = None, **changes) -> dict:
    """A copy of a stack config (default: the example) with project settings changed or removed (None)."""
    config = dict(EXAMPLE if base is None else base)
    for key, value in changes.items():
        full = key if ":" in key else NS + key
        config.pop(full, None)
        if value is not None:
            config[full] = value
    return config


CONFIGS = {
    "example": EXAMPLE,
    # Commercial partition, two zones.
    "two-az": with_settings(
        **{"aws:region": "us-east-1"},
        namePrefix="ml-east",
        vpcCidr="10.50.0.0/16",
        availabilityZones=["us-east-1a", "us-east-1c"],
        privateSubnetCidrs=["10.50.0.0/24", "10.50.1.0/24"],
        certificateArn="arn:aws:acm:us-east-1:123456789012:certificate/11111111-2222-4333-8444-555555555555",
        instanceType="p5.48xlarge",
    ),
    # GovCloud, three zones.
    "three-az": with_settings(
        availabilityZones=["us-gov-west-1a", "us-gov-west-1b", "us-gov-west-1c"],
        privateSubnetCidrs=["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"],
        instanceType="g5.12xlarge",
        auditRetentionDays=2555,
    ),
}


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def stack(request) -> tuple[dict, Recording]:
    """(config, recording) of one run per configuration, shared by the tests that only read it."""
    config = CONFIGS[request.param]
    return config, run_enclave(config)


def setting(config: dict, key: str):
    return config.get(NS + key, KEYS[key])


def policy(resource) -> dict:
    return json.loads(resource.inputs["policy"])


def statements(resource) -> list[dict]:
    return policy(resource)["Statement"]


def key_arn(rec: Recording) -> str:
    return rec.one("aws:kms/key:Key").outputs["arn"]


# ---- no path to the internet -------------------------------------------------------------------------


def test_no_internet_gateway_nat_or_public_address(stack):
    _, rec = stack
    forbidden = {
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment",
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway",
        "aws:ec2/eip:Eip",
    }
    assert not [(r.type, r.name) for r in rec.resources if r.type in forbidden]


def test_no_route_to_the_internet(stack):
    _, rec = stack
    assert not rec.of_type("aws:ec2/route:Route")
    tables = rec.of_type("aws:ec2/routeTable:RouteTable") + rec.of_type(
        "aws:ec2/defaultRouteTable:DefaultRouteTable"
    )
    assert tables
    for table in tables:
        # Only the implicit local route: nothing listed at all, so nothing to 0.0.0.0/0 or ::/0.
        assert table.inputs.get("routes") == [], table.name


def test_no_security_group_egress_to_the_internet(stack):
    _, rec = stack
    groups = rec.of_type("aws:ec2/securityGroup:SecurityGroup") + rec.of_type(
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
    )
    assert len(groups) == 3  # endpoints, fleet, the VPC's default
    for group in groups:
        for rule in group.inputs.get("egress", []):
            assert not set(OPEN) & set(rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", [])), (
                group.name
            )
    assert not rec.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
    assert not rec.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")


def test_default_security_group_is_stripped(stack):
    _, rec = stack
    default = rec.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs["ingress"] == [] and default.inputs["egress"] == []
    acl = rec.one("aws:ec2/defaultNetworkAcl:DefaultNetworkAcl")
    assert not acl.inputs.get("ingress") and not acl.inputs.get("egress")


def test_subnets_are_private_one_per_zone(stack):
    config, rec = stack
    subnets = rec.of_type("aws:ec2/subnet:Subnet")
    assert sorted(s.inputs["availabilityZone"] for s in subnets) == sorted(
        setting(config, "availabilityZones")
    )
    assert sorted(s.inputs["cidrBlock"] for s in subnets) == sorted(setting(config, "privateSubnetCidrs"))
    for subnet in subnets:
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
        assert not subnet.inputs.get("assignIpv6AddressOnCreation")
    # Every subnet has its own local-only route table.
    associations = rec.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert sorted(a.inputs["subnetId"] for a in associations) == sorted(s.id for s in subnets)


def test_network_acl_allows_only_the_enclave_and_s3(stack):
    config, rec = stack
    acl = rec.one("aws:ec2/networkAcl:NetworkAcl")
    inside = [setting(config, "vpcCidr"), *setting(config, "internalCidrs")]
    s3 = rec.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3")
    assert s3.inputs["vpcEndpointType"] == "Gateway"
    for direction in ("ingress", "egress"):
        rules = acl.inputs[direction]
        assert all(r["action"] == "allow" for r in rules)  # the implicit last rule denies the rest
        for rule in rules:
            cidr = rule.get("cidrBlock") or rule["ipv6CidrBlock"]
            assert cidr not in OPEN
            if cidr not in inside:  # only the S3 prefix list's ranges, HTTPS only
                assert rule["protocol"] == "6", rule
                assert (rule["fromPort"], rule["toPort"]) == (
                    (443, 443) if direction == "egress" else (1024, 65535)
                )
    subnet_ids = sorted(s.id for s in rec.of_type("aws:ec2/subnet:Subnet"))
    assert sorted(acl.inputs["subnetIds"]) == subnet_ids


def test_fleet_egress_is_the_egress_policy_inside_the_enclave(stack):
    config, rec = stack
    fleet = rec.one("aws:ec2/securityGroup:SecurityGroup", "fleet-sg")
    allowed = [
        ipaddress.ip_network(c) for c in (setting(config, "vpcCidr"), *setting(config, "internalCidrs"))
    ]
    names = set()
    for rule in fleet.inputs["egress"]:
        names.add(rule["description"])
        if rule.get("prefixListIds"):  # the S3 gateway endpoint, HTTPS only
            assert (rule["protocol"], rule["fromPort"], rule["toPort"]) == ("tcp", 443, 443)
            assert rule["prefixListIds"] == [
                rec.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3").outputs["prefixListId"]
            ]
            continue
        for cidr in rule["cidrBlocks"] + rule["ipv6CidrBlocks"]:
            net = ipaddress.ip_network(cidr)
            assert any(net.version == a.version and net.subnet_of(a) for a in allowed), (rule, cidr)
    # Every rule of policies/egress.yml is there, by name, plus the endpoints.
    assert names == {
        "internal-dns",
        "internal-dns-tcp",
        "internal-ntp",
        "internal-services",
        "internal-backup",
        "internal-ping",
        "interface-endpoints",
        "s3-gateway-endpoint",
    }
    assert rec.outputs["egressPolicySha256"]


# ---- the GPU hosts ----------------------------------------------------------------------------------


def test_launch_template_requires_imdsv2_with_one_hop_and_no_public_ip(stack):
    config, rec = stack
    template = rec.one("aws:ec2/launchTemplate:LaunchTemplate")
    metadata = template.inputs["metadataOptions"]
    assert metadata["httpTokens"] == "required"
    assert metadata["httpPutResponseHopLimit"] == 1
    assert metadata["httpEndpoint"] == "enabled"
    assert [n["associatePublicIpAddress"] for n in template.inputs["networkInterfaces"]] == ["false"]
    assert template.inputs["instanceType"] == setting(config, "instanceType")
    assert template.inputs["imageId"] == setting(config, "amiId")


def test_fleet_role_is_least_privilege(stack):
    _, rec = stack
    role = rec.one("aws:iam/rolePolicy:RolePolicy", "fleet-role-policy")
    buckets = {r.outputs["arn"] for r in rec.of_type("aws:s3/bucket:Bucket")}
    log_groups = {r.outputs["arn"] for r in rec.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for statement in statements(role):
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all("*" not in a for a in actions), statement
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            # No wildcard but the object or stream part of one of our own named resources.
            owner = resource.removesuffix("/*").removesuffix(":log-stream:*")
            assert "*" not in owner and owner in buckets | log_groups | {key_arn(rec)}, resource
    granted = {
        a for s in statements(role) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert "s3:DeleteObject" not in granted and "s3:PutObject" in granted
    models = rec.one("aws:s3/bucket:Bucket", "-models").outputs["arn"]
    writes = [s for s in statements(role) if s["Action"] == "s3:PutObject"]
    assert all(not r.startswith(models) for s in writes for r in s["Resource"])  # models are read-only


def test_asg_in_the_private_subnets_behind_an_internal_tls_nlb(stack):
    config, rec = stack
    subnet_ids = sorted(s.id for s in rec.of_type("aws:ec2/subnet:Subnet"))
    asg = rec.one("aws:autoscaling/group:Group")
    assert sorted(asg.inputs["vpcZoneIdentifiers"]) == subnet_ids
    assert asg.inputs["launchTemplate"]["id"] == rec.one("aws:ec2/launchTemplate:LaunchTemplate").id
    nlb = rec.one("aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["internal"] is True
    assert nlb.inputs["loadBalancerType"] == "network"
    assert sorted(nlb.inputs["subnets"]) == subnet_ids
    listener = rec.one("aws:lb/listener:Listener")
    assert listener.inputs["protocol"] == "TLS" and listener.inputs["port"] == 443
    assert listener.inputs["certificateArn"] == setting(config, "certificateArn")
    assert listener.inputs["sslPolicy"].startswith("ELBSecurityPolicy-TLS13-")
    targets = rec.one("aws:lb/targetGroup:TargetGroup")
    assert targets.inputs["port"] == 8443  # service_api.port of policies/egress.yml
    assert asg.inputs["targetGroupArns"] == [targets.outputs["arn"]]


# ---- encryption, buckets, logs ------------------------------------------------------------------------


def test_kms_key_rotates(stack):
    _, rec = stack
    key = rec.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True
    principals = [s["Principal"] for s in statements(key)]
    assert {"Service": "delivery.logs.amazonaws.com"} in principals


def test_everything_at_rest_is_encrypted_with_the_customer_key(stack):
    _, rec = stack
    key = key_arn(rec)
    volumes = [
        m["ebs"] for m in rec.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["blockDeviceMappings"]
    ]
    assert volumes and all(v["encrypted"] == "true" and v["kmsKeyId"] == key for v in volumes)
    log_groups = rec.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert len(log_groups) == 2 and all(g.inputs["kmsKeyId"] == key for g in log_groups)
    encryption = {
        e.inputs["bucket"]: e.inputs["rules"]
        for e in rec.of_type(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
    }
    for bucket in rec.of_type("aws:s3/bucket:Bucket"):
        (rule,) = encryption[bucket.outputs["bucket"]]
        default = rule["applyServerSideEncryptionByDefault"]
        assert default == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}, bucket.name


def test_every_bucket_blocks_public_access(stack):
    _, rec = stack
    blocks = {
        b.inputs["bucket"]: b.inputs
        for b in rec.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    }
    buckets = rec.of_type("aws:s3/bucket:Bucket")
    assert len(buckets) == 3
    for bucket in buckets:
        block = blocks[bucket.outputs["bucket"]]
        assert all(
            block[k] is True
            for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
        )


def test_audit_bucket_object_lock_compliance(stack):
    config, rec = stack
    audit = rec.one("aws:s3/bucket:Bucket", "-audit")
    assert audit.inputs["objectLockEnabled"] is True
    (lock,) = rec.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["bucket"] == audit.outputs["bucket"]
    assert lock.inputs["rule"]["defaultRetention"] == {
        "mode": "COMPLIANCE",
        "days": setting(config, "auditRetentionDays"),
    }


def test_models_bucket_is_versioned(stack):
    _, rec = stack
    versioned = {
        v.inputs["bucket"]
        for v in rec.of_type("aws:s3/bucketVersioning:BucketVersioning")
        if v.inputs["versioningConfiguration"]["status"] == "Enabled"
    }
    assert rec.one("aws:s3/bucket:Bucket", "-models").outputs["bucket"] in versioned
    assert rec.one("aws:s3/bucket:Bucket", "-audit").outputs["bucket"] in versioned


def test_bucket_policies_deny_outside_the_endpoint_and_plain_http(stack):
    _, rec = stack
    endpoint = rec.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3").id
    policies = {p.inputs["bucket"]: p for p in rec.of_type("aws:s3/bucketPolicy:BucketPolicy")}
    for bucket in rec.of_type("aws:s3/bucket:Bucket"):
        denies = [s for s in statements(policies[bucket.outputs["bucket"]]) if s["Effect"] == "Deny"]
        assert any(
            s["Condition"].get("Bool") == {"aws:SecureTransport": "false"} and s["Action"] == "s3:*"
            for s in denies
        ), bucket.name
        vpce = [s for s in denies if s["Condition"].get("StringNotEquals") == {"aws:SourceVpce": endpoint}]
        assert vpce, bucket.name
        assert {"s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*"} <= set(vpce[0]["Action"])
        # Nothing in any bucket policy is granted to the world.
        assert all(
            s["Principal"] != "*"
            for s in statements(policies[bucket.outputs["bucket"]])
            if s["Effect"] == "Allow"
        )


def test_flow_logs_on_every_vpc_to_logs_and_the_audit_bucket(stack):
    _, rec = stack
    flows = rec.of_type("aws:ec2/flowLog:FlowLog")
    audit_arn = rec.one("aws:s3/bucket:Bucket", "-audit").outputs["arn"]
    log_group_arn = rec.one("aws:cloudwatch/logGroup:LogGroup", "network-flow-logs").outputs["arn"]
    for vpc in rec.of_type("aws:ec2/vpc:Vpc"):
        mine = {f.inputs["logDestinationType"]: f.inputs for f in flows if f.inputs["vpcId"] == vpc.id}
        assert set(mine) == {"cloud-watch-logs", "s3"}
        assert all(f["trafficType"] == "ALL" for f in mine.values())
        assert mine["s3"]["logDestination"] == audit_arn
        assert mine["cloud-watch-logs"]["logDestination"] == log_group_arn


# ---- endpoints ------------------------------------------------------------------------------------------


def test_interface_endpoints_with_private_dns_from_the_vpc_only(stack):
    config, rec = stack
    region = config["aws:region"]
    endpoints = [
        e
        for e in rec.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
        if e.inputs["vpcEndpointType"] == "Interface"
    ]
    assert sorted(e.inputs["serviceName"] for e in endpoints) == sorted(
        f"com.amazonaws.{region}.{s}" for s in setting(config, "interfaceEndpoints")
    )
    group = rec.one("aws:ec2/securityGroup:SecurityGroup", "endpoints-sg")
    assert [(r["fromPort"], r["toPort"], r["cidrBlocks"]) for r in group.inputs["ingress"]] == [
        (443, 443, [setting(config, "vpcCidr")])
    ]
    assert group.inputs["egress"] == []
    subnet_ids = sorted(s.id for s in rec.of_type("aws:ec2/subnet:Subnet"))
    for endpoint in endpoints:
        assert endpoint.inputs["privateDnsEnabled"] is True
        assert endpoint.inputs["securityGroupIds"] == [group.id]
        assert sorted(endpoint.inputs["subnetIds"]) == subnet_ids


def test_s3_gateway_endpoint_on_every_route_table(stack):
    config, rec = stack
    s3 = rec.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3")
    assert s3.inputs["serviceName"] == f"com.amazonaws.{config['aws:region']}.s3"
    assert sorted(s3.inputs["routeTableIds"]) == sorted(
        t.id for t in rec.of_type("aws:ec2/routeTable:RouteTable")
    )


def test_endpoint_policies_allow_only_this_account(stack):
    _, rec = stack
    account = "123456789012"  # what the mocks' getCallerIdentity answers
    for endpoint in rec.of_type("aws:ec2/vpcEndpoint:VpcEndpoint"):
        (statement,) = statements(endpoint)
        assert statement["Effect"] == "Allow"
        assert statement["Condition"]["StringEquals"] == {"aws:PrincipalAccount": account}
        assert statement["Condition"]["StringEqualsIfExists"] == {"aws:ResourceAccount": account}


# ---- what the evidence pack reads ------------------------------------------------------------------


def test_stack_outputs_for_the_evidence_pack(stack):
    config, rec = stack
    out = rec.outputs
    assert out["vpcId"] == rec.one("aws:ec2/vpc:Vpc").id
    assert out["s3EndpointId"] == rec.one("aws:ec2/vpcEndpoint:VpcEndpoint", "-s3").id
    assert set(out["interfaceEndpointIds"]) == set(setting(config, "interfaceEndpoints"))
    assert out["bucketNames"] == {
        p: rec.one("aws:s3/bucket:Bucket", f"-{p}").outputs["bucket"] for p in ("models", "outputs", "audit")
    }
    assert out["kmsKeyArn"] == key_arn(rec)
    assert out["nlbDnsName"] == rec.one("aws:lb/loadBalancer:LoadBalancer").outputs["dnsName"]
    assert len(out["subnetIds"]) == len(setting(config, "availabilityZones"))


def test_components_own_their_resources(stack):
    _, rec = stack
    components = sorted(r.type for r in rec.resources if not r.custom)
    assert components == [
        "airlock:enclave:EnclaveNetwork",
        "airlock:enclave:GpuFleet",
        "airlock:enclave:PrivateEndpoints",
        "airlock:enclave:SecureStorage",
    ]


def test_example_config_documents_every_setting():
    assert {k.removeprefix(NS) for k in EXAMPLE if k.startswith(NS)} == set(KEYS)
    lines = (PULUMI_DIR / "Pulumi.example.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith(NS):  # under a comment, or in a block of settings under one
            above = next(prev.strip() for prev in reversed(lines[:i]) if not prev.strip().startswith(NS))
            assert above.startswith("#"), line


# ---- refused configurations ---------------------------------------------------------------------------


def refused(config: dict) -> str:
    with pytest.raises(SettingsError) as exc:
        run_enclave(config)
    return str(exc.value)


def test_refuses_a_public_subnet():
    message = refused(with_settings(publicSubnets=True))
    assert "publicSubnets: true asks for a public subnet" in message
    assert "set it to false" in message


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_refuses_open_egress(cidr):
    message = refused(with_settings(internalCidrs=["10.231.0.0/16", cidr]))
    assert f"internalCidrs: {cidr} is open egress (the whole internet)" in message


def test_refuses_a_range_too_wide_to_be_internal():
    assert "wider than /8" in refused(with_settings(internalCidrs=["10.0.0.0/7"]))


@pytest.mark.parametrize("instance_type", ["m5.xlarge", "g4dn.xlarge", "p3.2xlarge", "g6"])
def test_refuses_an_unsupported_instance_type(instance_type):
    message = refused(with_settings(instanceType=instance_type))
    assert f"instanceType: {instance_type!r} is not in a supported GPU family" in message
    assert "g5, g6, p4d, p5" in message


def test_refuses_zero_availability_zones():
    message = refused(with_settings(availabilityZones=[], privateSubnetCidrs=[]))
    assert "availabilityZones: lists no availability zone" in message


def test_refuses_overlapping_subnets():
    message = refused(with_settings(privateSubnetCidrs=["10.40.0.0/20", "10.40.8.0/24"]))
    assert "privateSubnetCidrs: 10.40.8.0/24 overlaps 10.40.0.0/20" in message


def test_refuses_a_policy_rule_that_leaves_the_enclave(tmp_path):
    policy = (PULUMI_DIR.parent / "policies" / "egress.yml").read_text()
    policy = policy.replace('to: ["10.231.1.1/32"]\n', 'to: ["10.99.0.53/32"]\n', 1)
    (tmp_path / "egress.yml").write_text(policy)
    message = refused(with_settings(egressPolicy=str(tmp_path / "egress.yml")))
    assert "rule 'internal-dns' allows 10.99.0.53/32, outside the VPC and internalCidrs" in message
    assert "add the range to airlock-enclave:internalCidrs" in message


def test_refuses_an_unknown_setting():
    message = refused(with_settings(publicSubnet=False))
    assert "airlock-enclave:publicSubnet: unknown setting" in message


def test_refuses_a_missing_required_setting():
    assert "airlock-enclave:amiId: missing" in refused(with_settings(amiId=None))
