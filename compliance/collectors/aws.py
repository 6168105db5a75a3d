"""Read the deployed AWS state of an enclave (boto3, read-only) and derive findings from it.

`collect()` returns plain JSON-able dicts: `facts` (what is there) and `findings` (each resource that
breaks an enclave rule, by id). The evidence pack checks the facts; callers can assert "no findings".

    python -m compliance.collectors.aws --region us-east-1 --vpc-id vpc-0abc --out facts.json

Every list call goes through a paginator; throttling is retried (botocore adaptive mode); a denied
call raises CollectorError naming the IAM action to grant. `endpoint_url` points every client at an
emulator (moto, LocalStack). Nothing here writes to AWS.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airlock.errors import AirlockError

WORLD = {"0.0.0.0/0", "::/0"}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess", "403"}
RETRIES = {"mode": "adaptive", "max_attempts": 8}  # adaptive: client-side rate limiting on throttles

# S3's IAM actions are not named like its API operations; every other service's are.
S3_ACTIONS = {
    "ListBuckets": "s3:ListAllMyBuckets",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "GetBucketPolicy": "s3:GetBucketPolicy",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "GetBucketVersioning": "s3:GetBucketVersioning",
    "GetObjectLockConfiguration": "s3:GetBucketObjectLockConfiguration",
    "GetBucketTagging": "s3:GetBucketTagging",
}
# The collector's whole read-only IAM policy (a test checks every call it makes is listed).
EC2_OPERATIONS = [
    "DescribeVpcs",
    "DescribeSubnets",
    "DescribeInternetGateways",
    "DescribeNatGateways",
    "DescribeEgressOnlyInternetGateways",
    "DescribeRouteTables",
    "DescribeSecurityGroups",
    "DescribeNetworkAcls",
    "DescribeVpcEndpoints",
    "DescribeFlowLogs",
    "DescribeNetworkInterfaces",
    "DescribeInstances",
    "DescribeLaunchTemplates",
    "DescribeLaunchTemplateVersions",
    "DescribeManagedPrefixLists",
    "GetManagedPrefixListEntries",
]
REQUIRED_ACTIONS = sorted(
    [
        "sts:GetCallerIdentity",
        *(f"ec2:{op}" for op in EC2_OPERATIONS),
        "logs:DescribeLogGroups",
        *(f"kms:{op}" for op in ["ListKeys", "ListAliases", "DescribeKey", "GetKeyRotationStatus"]),
        *S3_ACTIONS.values(),
    ]
)


class CollectorError(AirlockError):
    """The collector could not read the deployed state; the message says which call and what to do."""


def iam_action(service: str, operation: str) -> str:
    """The IAM action that authorises an API operation (`ec2`, `DescribeRouteTables` -> `ec2:...`)."""
    return S3_ACTIONS.get(operation, f"s3:{operation}") if service == "s3" else f"{service}:{operation}"


class _Aws:
    """Cached clients plus the two ways we call them: one request, or every page of a list."""

    def __init__(self, session: boto3.Session, region: str, endpoint_url: str | None, page_size: int | None):
        self._session, self._region, self._endpoint_url = session, region, endpoint_url
        self._config = Config(region_name=region, retries=RETRIES, connect_timeout=10, read_timeout=60)
        self._page_size = page_size
        self._clients: dict[str, Any] = {}

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self._session.client(
                service, region_name=self._region, endpoint_url=self._endpoint_url, config=self._config
            )
        return self._clients[service]

    def call(self, service: str, method: str, *, absent: Sequence[str] = (), **kwargs) -> dict | None:
        """One request; None when the error code says the thing is not configured (`absent`)."""
        client = self.client(service)
        try:
            return getattr(client, method)(**kwargs)
        except (ClientError, BotoCoreError) as error:
            if isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in absent:
                return None
            raise _explain(service, client.meta.method_to_api_mapping[method], error, kwargs) from error

    def pages(self, service: str, method: str, key: str, **kwargs) -> list[dict]:
        """Every item of every page. The page size applies to EC2 only: its lists are the long ones."""
        client = self.client(service)
        if self._page_size and service == "ec2":
            kwargs["PaginationConfig"] = {"PageSize": self._page_size}
        try:
            return [item for page in client.get_paginator(method).paginate(**kwargs) for item in page[key]]
        except (ClientError, BotoCoreError) as error:
            raise _explain(service, client.meta.method_to_api_mapping[method], error, kwargs) from error


def _explain(service: str, operation: str, error: Exception, kwargs: dict) -> CollectorError:
    action = iam_action(service, operation)
    where = f" on bucket {kwargs['Bucket']}" if "Bucket" in kwargs else ""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in DENIED_CODES:
            hint = ""
            if service == "s3" and where:
                hint = (
                    " If the bucket policy denies requests that do not come through the VPC endpoint, run the"
                    " collector inside the VPC or exempt its role in that statement."
                )
            return CollectorError(
                f"{action} was denied{where} ({code}). Grant {action} to the identity running the collector"
                " (compliance.collectors.aws.REQUIRED_ACTIONS lists every action it needs), then run again."
                + hint
            )
        return CollectorError(f"{action} failed{where}: {code}: {error.response['Error'].get('Message', '')}")
    return CollectorError(f"{action} failed{where}: {error}. Check the region, endpoint URL and credentials.")


# ---- EC2: the network ------------------------------------------------------------------------------------


def _vpcs(aws: _Aws, region: str, vpc_id: str | None) -> list[dict]:
    # A filter, not VpcIds: an unknown id then reads as "none", which we can explain.
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}] if vpc_id else []
    vpcs = aws.pages("ec2", "describe_vpcs", "Vpcs", Filters=filters)
    if vpc_id and not vpcs:
        raise CollectorError(f"VPC {vpc_id} was not found in {region}: check the VPC id and the region.")
    return [
        {
            "id": vpc["VpcId"],
            "is_default": vpc.get("IsDefault", False),
            "state": vpc.get("State"),
            "cidr_blocks": [
                a["CidrBlock"]
                for a in vpc.get("CidrBlockAssociationSet", [])
                if a.get("CidrBlockState", {}).get("State") == "associated"
            ],
            "ipv6_cidr_blocks": [
                a["Ipv6CidrBlock"]
                for a in vpc.get("Ipv6CidrBlockAssociationSet", [])
                if a.get("Ipv6CidrBlockState", {}).get("State") == "associated"
            ],
        }
        for vpc in vpcs
    ]


def _subnets(aws: _Aws, filters: list) -> list[dict]:
    return [
        {
            "id": s["SubnetId"],
            "vpc_id": s["VpcId"],
            "availability_zone": s["AvailabilityZone"],
            "cidr_block": s.get("CidrBlock"),
            "map_public_ip_on_launch": s.get("MapPublicIpOnLaunch", False),
        }
        for s in aws.pages("ec2", "describe_subnets", "Subnets", Filters=filters)
    ]


def _attachments(gateway: dict) -> list[dict]:
    return [{"vpc_id": a["VpcId"], "state": a.get("State")} for a in gateway.get("Attachments", [])]


def _gateways(aws: _Aws, vpc_id: str | None) -> dict[str, list[dict]]:
    igw_filters = [{"Name": "attachment.vpc-id", "Values": [vpc_id]}] if vpc_id else []
    igws = aws.pages("ec2", "describe_internet_gateways", "InternetGateways", Filters=igw_filters)
    nat_filters = [{"Name": "vpc-id", "Values": [vpc_id]}] if vpc_id else []
    nats = aws.pages("ec2", "describe_nat_gateways", "NatGateways", Filter=nat_filters)
    # This API filters by tag only: scope to the VPC here.
    eigws = aws.pages("ec2", "describe_egress_only_internet_gateways", "EgressOnlyInternetGateways")
    return {
        "internet_gateways": [{"id": g["InternetGatewayId"], "attachments": _attachments(g)} for g in igws],
        "nat_gateways": [
            {
                "id": n["NatGatewayId"],
                "vpc_id": n.get("VpcId"),
                "subnet_id": n.get("SubnetId"),
                "state": n.get("State"),
                "connectivity_type": n.get("ConnectivityType", "public"),
                "public_ips": [a["PublicIp"] for a in n.get("NatGatewayAddresses", []) if a.get("PublicIp")],
            }
            for n in nats
        ],
        "egress_only_internet_gateways": [
            {"id": g["EgressOnlyInternetGatewayId"], "attachments": _attachments(g)}
            for g in eigws
            if not vpc_id or any(a["VpcId"] == vpc_id for a in g.get("Attachments", []))
        ],
    }


ROUTE_TARGETS = (
    "GatewayId",
    "NatGatewayId",
    "EgressOnlyInternetGatewayId",
    "TransitGatewayId",
    "VpcPeeringConnectionId",
    "NetworkInterfaceId",
    "InstanceId",
    "CarrierGatewayId",
    "LocalGatewayId",
    "CoreNetworkArn",
)


def _route_tables(aws: _Aws, filters: list) -> list[dict]:
    tables = []
    for t in aws.pages("ec2", "describe_route_tables", "RouteTables", Filters=filters):
        routes = []
        for r in t.get("Routes", []):
            target = next((r[k] for k in ROUTE_TARGETS if r.get(k)), None)
            destination = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
            routes.append(
                {
                    "destination": destination or r.get("DestinationPrefixListId"),
                    "target": target,
                    "state": r.get("State"),
                    "origin": r.get("Origin"),
                }
            )
        associations = t.get("Associations", [])
        tables.append(
            {
                "id": t["RouteTableId"],
                "vpc_id": t["VpcId"],
                "main": any(a.get("Main") for a in associations),
                "subnet_ids": [a["SubnetId"] for a in associations if a.get("SubnetId")],
                "routes": routes,
            }
        )
    return tables


def _ports(permission: dict) -> str:
    if permission.get("IpProtocol") == "-1":
        return "all"
    low, high = permission.get("FromPort"), permission.get("ToPort")
    return str(low) if low == high else f"{low}-{high}"


def _sg_rules(permissions: list[dict]) -> list[dict]:
    """One rule per peer, so each open CIDR can be named on its own."""
    rules = []
    for p in permissions:
        base = {"protocol": p.get("IpProtocol"), "ports": _ports(p)}
        peers = [r["CidrIp"] for r in p.get("IpRanges", [])]
        peers += [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
        peers += [r["PrefixListId"] for r in p.get("PrefixListIds", [])]
        peers += [r["GroupId"] for r in p.get("UserIdGroupPairs", [])]
        rules += [{**base, "peer": peer} for peer in peers]
    return rules


def _security_groups(aws: _Aws, filters: list) -> list[dict]:
    return [
        {
            "id": g["GroupId"],
            "name": g.get("GroupName"),
            "vpc_id": g.get("VpcId"),
            "is_default": g.get("GroupName") == "default",
            "ingress": _sg_rules(g.get("IpPermissions", [])),
            "egress": _sg_rules(g.get("IpPermissionsEgress", [])),
        }
        for g in aws.pages("ec2", "describe_security_groups", "SecurityGroups", Filters=filters)
    ]


def _network_acls(aws: _Aws, filters: list) -> list[dict]:
    acls = []
    for acl in aws.pages("ec2", "describe_network_acls", "NetworkAcls", Filters=filters):
        entries = []
        for e in acl.get("Entries", []):
            ports = e.get("PortRange")
            entries.append(
                {
                    "rule_number": e["RuleNumber"],
                    "egress": e["Egress"],
                    "action": e["RuleAction"],
                    "protocol": e.get("Protocol"),
                    "cidr": e.get("CidrBlock") or e.get("Ipv6CidrBlock"),
                    "ports": f"{ports['From']}-{ports['To']}" if ports else "all",
                }
            )
        acls.append(
            {
                "id": acl["NetworkAclId"],
                "vpc_id": acl["VpcId"],
                "is_default": acl.get("IsDefault", False),
                "subnet_ids": [a["SubnetId"] for a in acl.get("Associations", []) if a.get("SubnetId")],
                "entries": sorted(entries, key=lambda e: (e["egress"], e["rule_number"])),
            }
        )
    return acls


def _vpc_endpoints(aws: _Aws, filters: list) -> list[dict]:
    return [
        {
            "id": e["VpcEndpointId"],
            "vpc_id": e["VpcId"],
            "type": e.get("VpcEndpointType"),
            "service": e.get("ServiceName"),
            "state": e.get("State"),
            "private_dns": e.get("PrivateDnsEnabled", False),
            "route_table_ids": e.get("RouteTableIds", []),
            "subnet_ids": e.get("SubnetIds", []),
            "security_group_ids": [g["GroupId"] for g in e.get("Groups", [])],
        }
        for e in aws.pages("ec2", "describe_vpc_endpoints", "VpcEndpoints", Filters=filters)
    ]


def _flow_logs(aws: _Aws, vpc_ids: list[str], vpc_id: str | None) -> list[dict]:
    filters = [{"Name": "resource-id", "Values": [vpc_id]}] if vpc_id else []
    logs = []
    for f in aws.pages("ec2", "describe_flow_logs", "FlowLogs", Filter=filters):
        if f.get("ResourceId") not in vpc_ids:
            continue  # subnet/ENI flow logs do not cover a whole VPC
        group = f.get("LogGroupName")
        logs.append(
            {
                "id": f["FlowLogId"],
                "resource_id": f["ResourceId"],
                "traffic_type": f.get("TrafficType"),
                "status": f.get("FlowLogStatus"),
                "delivery_status": f.get("DeliverLogsStatus"),
                "destination_type": f.get("LogDestinationType"),
                # CloudWatch flow logs may carry only the group name (moto always does).
                "destination": f.get("LogDestination") or group,
                "log_group": group,
                "log_group_kms_key": _log_group_key(aws, group) if group else None,
            }
        )
    return logs


def _log_group_key(aws: _Aws, name: str) -> str | None:
    groups = aws.pages("logs", "describe_log_groups", "logGroups", logGroupNamePrefix=name)
    return next((g.get("kmsKeyId") for g in groups if g["logGroupName"] == name), None)


def _public_ips(aws: _Aws, filters: list) -> list[dict]:
    """Every public address on a network interface in scope: instances, NAT, load balancers alike."""
    found = []
    for eni in aws.pages("ec2", "describe_network_interfaces", "NetworkInterfaces", Filters=filters):
        associations = [eni.get("Association")] + [
            p.get("Association") for p in eni.get("PrivateIpAddresses", [])
        ]
        for ip in dict.fromkeys(a["PublicIp"] for a in associations if a and a.get("PublicIp")):
            found.append(
                {
                    "network_interface_id": eni["NetworkInterfaceId"],
                    "public_ip": ip,
                    "instance_id": eni.get("Attachment", {}).get("InstanceId"),
                    "interface_type": eni.get("InterfaceType"),
                }
            )
    return found


def _metadata(options: dict | None) -> dict:
    options = options or {}
    return {
        "http_tokens": options.get("HttpTokens"),
        "hop_limit": options.get("HttpPutResponseHopLimit"),
        "http_endpoint": options.get("HttpEndpoint", "enabled"),
    }


def _instances(aws: _Aws, filters: list) -> list[dict]:
    live = {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
    reservations = aws.pages("ec2", "describe_instances", "Reservations", Filters=[*filters, live])
    return [
        {
            "id": i["InstanceId"],
            "state": i["State"]["Name"],
            "vpc_id": i.get("VpcId"),
            "subnet_id": i.get("SubnetId"),
            "public_ip": i.get("PublicIpAddress"),
            **_metadata(i.get("MetadataOptions")),
        }
        for r in reservations
        for i in r["Instances"]
    ]


def _launch_templates(aws: _Aws) -> list[dict]:
    """Regional, not per VPC: any of them can launch into the enclave. Default and latest versions."""
    templates = []
    for t in aws.pages("ec2", "describe_launch_templates", "LaunchTemplates"):
        versions = aws.pages(
            "ec2",
            "describe_launch_template_versions",
            "LaunchTemplateVersions",
            LaunchTemplateId=t["LaunchTemplateId"],
            Versions=["$Default", "$Latest"],
        )
        by_number = {}
        for v in versions:
            data = v.get("LaunchTemplateData", {})
            by_number[v["VersionNumber"]] = {
                "number": v["VersionNumber"],
                "default": v.get("DefaultVersion", False),
                **_metadata(data.get("MetadataOptions")),
                "associate_public_ip": any(
                    n.get("AssociatePublicIpAddress") for n in data.get("NetworkInterfaces", [])
                ),
            }
        templates.append(
            {
                "id": t["LaunchTemplateId"],
                "name": t.get("LaunchTemplateName"),
                "versions": list(by_number.values()),
            }
        )
    return templates


# ---- KMS and S3 ------------------------------------------------------------------------------------------


def _kms_keys(aws: _Aws) -> list[dict]:
    aliases: dict[str, list[str]] = {}
    for a in aws.pages("kms", "list_aliases", "Aliases"):
        if a.get("TargetKeyId"):
            aliases.setdefault(a["TargetKeyId"], []).append(a["AliasName"])
    keys = []
    for k in aws.pages("kms", "list_keys", "Keys"):
        meta = aws.call("kms", "describe_key", KeyId=k["KeyId"])["KeyMetadata"]
        rotation = None
        # Automatic rotation exists only for customer-managed symmetric keys with KMS key material.
        rotatable = (
            meta.get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
            and meta.get("Origin") == "AWS_KMS"
        )
        if (
            meta.get("KeyManager") == "CUSTOMER"
            and meta.get("KeyState") in ("Enabled", "Disabled")
            and rotatable
        ):
            status = aws.call("kms", "get_key_rotation_status", KeyId=meta["KeyId"])
            rotation = status["KeyRotationEnabled"]
        keys.append(
            {
                "id": meta["KeyId"],
                "arn": meta["Arn"],
                "manager": meta.get("KeyManager"),
                "state": meta.get("KeyState"),
                "spec": meta.get("KeySpec"),
                "origin": meta.get("Origin"),
                "aliases": sorted(aliases.get(meta["KeyId"], [])),
                "rotation_enabled": rotation,
            }
        )
    return keys


def _statements(policy: dict) -> list[dict]:
    statements = policy.get("Statement", [])
    return [statements] if isinstance(statements, dict) else statements


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _denies_everyone(statement: dict) -> bool:
    principal = statement.get("Principal")
    everyone = principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS")))
    return statement.get("Effect") == "Deny" and everyone


def _condition_values(statement: dict, operators: tuple[str, ...], key: str) -> list:
    """Values of `key` (case-insensitive, as IAM treats condition keys) under any of `operators`."""
    values = []
    for operator, conditions in statement.get("Condition", {}).items():
        if operator in operators:
            values += [v for k, vs in conditions.items() if k.lower() == key.lower() for v in _as_list(vs)]
    return values


def _policy_facts(text: str | None) -> dict:
    policy = json.loads(text) if text else {}
    denies = [s for s in _statements(policy) if _denies_everyone(s)]
    not_equals = ("StringNotEquals", "StringNotEqualsIfExists", "StringNotLike", "StringNotLikeIfExists")
    vpce = [v for s in denies for v in _condition_values(s, not_equals, "aws:SourceVpce")]
    secure = [
        v for s in denies for v in _condition_values(s, ("Bool", "BoolIfExists"), "aws:SecureTransport")
    ]
    return {
        "present": bool(text),
        "source_vpce": sorted(set(vpce)),
        "requires_source_vpce": bool(vpce),
        "requires_secure_transport": any(str(v).lower() == "false" for v in secure),
    }


ROLE_TAG = "airlock:role"  # models | outputs | audit, set by the Pulumi program (SecureStorage)

S3_ABSENT = (
    "NoSuchBucketPolicy",
    "ServerSideEncryptionConfigurationNotFoundError",
    "NoSuchPublicAccessBlockConfiguration",
    "ObjectLockConfigurationNotFoundError",
    "NoSuchTagSet",
)


def _bucket(aws: _Aws, name: str, region: str, audit: bool) -> dict:
    def get(method: str) -> dict | None:
        return aws.call("s3", method, absent=S3_ABSENT, Bucket=name)

    encryption = None
    if sse := get("get_bucket_encryption"):
        rule = sse["ServerSideEncryptionConfiguration"]["Rules"][0]
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        encryption = {
            "algorithm": default.get("SSEAlgorithm"),
            "kms_key_id": default.get("KMSMasterKeyID"),
            "bucket_key_enabled": rule.get("BucketKeyEnabled", False),
        }
    policy = get("get_bucket_policy")
    block = get("get_public_access_block")
    tags = {t["Key"]: t["Value"] for t in (get("get_bucket_tagging") or {}).get("TagSet", [])}
    role = tags.get(ROLE_TAG)
    # Bucket-level default retention: per-object GetObjectRetention is not needed (and moto answers 500).
    lock = (get("get_object_lock_configuration") or {}).get("ObjectLockConfiguration")
    retention = (lock or {}).get("Rule", {}).get("DefaultRetention", {})
    return {
        "name": name,
        "region": region,
        "audit": audit or role == "audit",
        "role": role,
        "encryption": encryption,
        "policy": _policy_facts(policy["Policy"] if policy else None),
        "public_access_block": block["PublicAccessBlockConfiguration"] if block else None,
        "versioning": get("get_bucket_versioning").get("Status"),
        "object_lock": {
            "enabled": (lock or {}).get("ObjectLockEnabled") == "Enabled",
            "mode": retention.get("Mode"),
            "days": retention.get("Days") or None,
            "years": retention.get("Years") or None,
        },
    }


def _s3_prefix_list(aws: _Aws, region: str) -> list[str]:
    """The ranges of the region's S3 prefix list (what the S3 gateway endpoint's routes lead to)."""
    name = [{"Name": "prefix-list-name", "Values": [f"com.amazonaws.{region}.s3"]}]
    found = list(aws.pages("ec2", "describe_managed_prefix_lists", "PrefixLists", Filters=name))
    return sorted(
        entry["Cidr"]
        for pl in found
        for entry in aws.pages(
            "ec2", "get_managed_prefix_list_entries", "Entries", PrefixListId=pl["PrefixListId"]
        )
    )


def _buckets(aws: _Aws, region: str, audit_buckets: Sequence[str] | None) -> list[dict]:
    """The region's buckets. Audit buckets are those named, else those with 'audit' in the name."""
    names = [b["Name"] for b in aws.pages("s3", "list_buckets", "Buckets", BucketRegion=region)]
    is_audit = (lambda n: n in audit_buckets) if audit_buckets is not None else (lambda n: "audit" in n)
    return [_bucket(aws, name, region, is_audit(name)) for name in names]


# ---- findings --------------------------------------------------------------------------------------------


def _outside(cidr: str | None, vpc_cidrs: list[str]) -> bool:
    """True when `cidr` reaches addresses outside every VPC CIDR of the same IP version."""
    if not cidr:
        return False
    net = ipaddress.ip_network(cidr, strict=False)
    inside = [ipaddress.ip_network(c) for c in vpc_cidrs if ipaddress.ip_network(c).version == net.version]
    return not any(net.subnet_of(c) for c in inside)


FINDING_KEYS = (
    "internet_gateways",
    "nat_gateways",
    "egress_only_gateways",
    "open_routes",
    "open_egress_rules",
    "open_ingress_rules",
    "open_nacl_egress",
    "public_ips",
    "interface_endpoints_without_private_dns",
    "vpcs_without_flow_logs",
    "flow_log_groups_without_kms",
    "keys_without_rotation",
    "unencrypted_buckets",
    "buckets_without_public_access_block",
    "buckets_not_restricted_to_vpce",
    "buckets_allowing_plain_http",
    "buckets_without_versioning",
    "audit_bucket_without_object_lock",
    "imdsv1_instances",
    "imds_hop_limit_above_1",
)


def derive_findings(facts: dict) -> dict[str, list[dict]]:
    """Each broken enclave rule -> [{"id": resource id, "detail": what is wrong}]; all empty = compliant."""
    found: dict[str, list[dict]] = {key: [] for key in FINDING_KEYS}

    def add(key: str, resource_id: str, detail: str) -> None:
        found[key].append({"id": resource_id, "detail": detail})

    for igw in facts["internet_gateways"]:
        for a in igw["attachments"]:
            add("internet_gateways", igw["id"], f"attached to {a['vpc_id']}")
    public_nats = set()
    for nat in facts["nat_gateways"]:
        if nat["connectivity_type"] == "public" and nat["state"] not in ("deleted", "deleting", "failed"):
            public_nats.add(nat["id"])
            add("nat_gateways", nat["id"], f"public NAT gateway in {nat['vpc_id']}")
    for eigw in facts["egress_only_internet_gateways"]:
        for a in eigw["attachments"]:
            add("egress_only_gateways", eigw["id"], f"attached to {a['vpc_id']}")

    for table in facts["route_tables"]:
        for r in table["routes"]:
            target = r["target"] or ""
            to_internet = target.startswith(("igw-", "eigw-")) or target in public_nats
            if r["destination"] in WORLD or to_internet:
                add("open_routes", table["id"], f"{r['destination']} -> {target or 'nothing'} ({r['state']})")

    for group in facts["security_groups"]:
        for rule in group["egress"]:
            if rule["peer"] in WORLD:
                add(
                    "open_egress_rules",
                    group["id"],
                    f"egress {rule['protocol']} {rule['ports']} to {rule['peer']}",
                )
        for rule in group["ingress"]:
            if rule["peer"] in WORLD:
                add(
                    "open_ingress_rules",
                    group["id"],
                    f"ingress {rule['protocol']} {rule['ports']} from {rule['peer']}",
                )

    # NACL egress may reach the VPC, the internal ranges and the S3 gateway endpoint's prefix list
    # (NACLs cannot name a prefix list, so its ranges are listed): anything else leaves the enclave.
    allowed = facts["internal_cidrs"] + facts["s3_prefix_list_cidrs"]
    cidrs = {v["id"]: v["cidr_blocks"] + v["ipv6_cidr_blocks"] + allowed for v in facts["vpcs"]}
    for acl in facts["network_acls"]:
        for e in acl["entries"]:
            if e["egress"] and e["action"] == "allow" and _outside(e["cidr"], cidrs.get(acl["vpc_id"], [])):
                add("open_nacl_egress", acl["id"], f"rule {e['rule_number']} allows egress to {e['cidr']}")

    for ip in facts["public_ips"]:
        add(
            "public_ips",
            ip["network_interface_id"],
            f"{ip['public_ip']} on {ip['instance_id'] or ip['interface_type']}",
        )
    for subnet in facts["subnets"]:
        if subnet["map_public_ip_on_launch"]:
            add("public_ips", subnet["id"], "subnet assigns public IPs on launch")
    for instance in facts["instances"]:
        _imds(add, instance["id"], instance, "")
    for template in facts["launch_templates"]:
        for v in template["versions"]:
            label = f"version {v['number']}{' (default)' if v['default'] else ''}: "
            _imds(add, template["id"], v, label)
            if v["associate_public_ip"]:
                add("public_ips", template["id"], label + "associates a public IP")

    for endpoint in facts["vpc_endpoints"]:
        if endpoint["type"] == "Interface" and not endpoint["private_dns"]:
            add("interface_endpoints_without_private_dns", endpoint["id"], f"{endpoint['service']}")

    for vpc in facts["vpcs"]:
        full = [
            f
            for f in facts["flow_logs"]
            if f["resource_id"] == vpc["id"]
            and f["traffic_type"] == "ALL"
            and f["status"] == "ACTIVE"
            and f["delivery_status"] != "FAILED"
        ]
        if not full:
            add("vpcs_without_flow_logs", vpc["id"], "no active flow log capturing ALL traffic")
    for f in facts["flow_logs"]:
        if f["destination_type"] == "cloud-watch-logs" and not f["log_group_kms_key"]:
            add(
                "flow_log_groups_without_kms",
                f["id"],
                f"log group {f['log_group']} is missing or not KMS-encrypted",
            )

    for key in facts["kms_keys"]:
        if key["rotation_enabled"] is False:
            add(
                "keys_without_rotation",
                key["id"],
                f"rotation off ({', '.join(key['aliases']) or 'no alias'})",
            )

    for b in facts["s3_buckets"]:
        _bucket_findings(add, b)
    present = {b["name"] for b in facts["s3_buckets"]}
    for name in facts["audit_buckets"]:
        if name not in present:
            add("audit_bucket_without_object_lock", name, "audit bucket not found in the region")
    return found


def _imds(add, resource_id: str, options: dict, label: str) -> None:
    if options["http_endpoint"] == "disabled":
        return  # no metadata service at all
    if options["http_tokens"] != "required":
        add(
            "imdsv1_instances",
            resource_id,
            f"{label}HttpTokens={options['http_tokens'] or 'unset (optional)'}",
        )
    if (options["hop_limit"] or 1) > 1:
        add("imds_hop_limit_above_1", resource_id, f"{label}hop limit {options['hop_limit']}")


def _bucket_findings(add, b: dict) -> None:
    name, sse = b["name"], b["encryption"]
    if sse is None:
        add("unencrypted_buckets", name, "no default encryption")
    elif not sse["algorithm"].startswith("aws:kms"):
        add("unencrypted_buckets", name, f"default encryption {sse['algorithm']} (SSE-S3), not a KMS key")
    block = b["public_access_block"]
    if block is None:
        add("buckets_without_public_access_block", name, "no public access block")
    elif off := [flag for flag, on in sorted(block.items()) if not on]:
        add("buckets_without_public_access_block", name, f"{', '.join(off)} off")
    if not b["policy"]["requires_source_vpce"]:
        add("buckets_not_restricted_to_vpce", name, "no Deny unless aws:SourceVpce in the bucket policy")
    if not b["policy"]["requires_secure_transport"]:
        add("buckets_allowing_plain_http", name, "no Deny when aws:SecureTransport is false")
    # The outputs bucket stays unversioned on purpose: retention and erasure must really delete.
    if b["versioning"] != "Enabled" and b["role"] != "outputs":
        add("buckets_without_versioning", name, f"versioning {b['versioning'] or 'never enabled'}")
    if b["audit"]:
        lock = b["object_lock"]
        if not lock["enabled"]:
            add("audit_bucket_without_object_lock", name, "Object Lock is off")
        elif lock["mode"] != "COMPLIANCE" or not (lock["days"] or lock["years"]):
            add(
                "audit_bucket_without_object_lock",
                name,
                f"default retention {lock['mode'] or 'none'}, not COMPLIANCE",
            )


# ---- entry points ----------------------------------------------------------------------------------------


def collect(
    session: boto3.Session | None = None,
    *,
    region: str,
    endpoint_url: str | None = None,
    vpc_id: str | None = None,
    audit_buckets: Sequence[str] | None = None,
    internal_cidrs: Sequence[str] = (),
    page_size: int | None = None,
) -> dict:
    """Facts and findings for one region (one VPC when `vpc_id` is given; S3, KMS and launch
    templates are regional either way). internal_cidrs: ranges outside the VPC the enclave may reach
    (the stack's internalCidrs). Raises CollectorError when a call is denied or fails."""
    aws = _Aws(session or boto3.Session(region_name=region), region, endpoint_url, page_size)
    account = aws.call("sts", "get_caller_identity")["Account"]
    vpcs = _vpcs(aws, region, vpc_id)
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}] if vpc_id else []
    buckets = _buckets(aws, region, audit_buckets)
    facts = {
        "vpcs": vpcs,
        "subnets": _subnets(aws, filters),
        **_gateways(aws, vpc_id),
        "route_tables": _route_tables(aws, filters),
        "security_groups": _security_groups(aws, filters),
        "network_acls": _network_acls(aws, filters),
        "vpc_endpoints": _vpc_endpoints(aws, filters),
        "flow_logs": _flow_logs(aws, [v["id"] for v in vpcs], vpc_id),
        "public_ips": _public_ips(aws, filters),
        "instances": _instances(aws, filters),
        "launch_templates": _launch_templates(aws),
        "kms_keys": _kms_keys(aws),
        "internal_cidrs": [str(ipaddress.ip_network(c)) for c in internal_cidrs],
        "s3_prefix_list_cidrs": _s3_prefix_list(aws, region),
        "s3_buckets": buckets,
        "audit_buckets": list(audit_buckets)
        if audit_buckets is not None
        else [b["name"] for b in buckets if b["audit"]],
    }
    return {
        "collector": "aws",
        "collected_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "account": account,
        "region": region,
        "vpc_id": vpc_id,
        "endpoint_url": endpoint_url,
        "facts": facts,
        "findings": derive_findings(facts),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compliance.collectors.aws",
        description="Collect the deployed AWS state of an enclave as JSON facts and findings (read-only).",
        epilog="example: %(prog)s --region us-east-1 --vpc-id vpc-0abc --out facts.json",
    )
    parser.add_argument("--region", required=True)
    parser.add_argument("--endpoint-url", help="an emulator such as moto_server (http://127.0.0.1:5000)")
    parser.add_argument("--vpc-id", help="collect this VPC only (default: every VPC in the region)")
    parser.add_argument(
        "--audit-bucket", action="append", help="the audit bucket (repeatable; default: names with 'audit')"
    )
    parser.add_argument(
        "--internal-cidr",
        action="append",
        default=[],
        help="a range outside the VPC the enclave may reach (repeatable; the stack's internalCidrs)",
    )
    parser.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    args = parser.parse_args(argv)  # exits 2 on a usage error
    try:
        result = collect(
            region=args.region,
            endpoint_url=args.endpoint_url,
            vpc_id=args.vpc_id,
            audit_buckets=args.audit_bucket,
            internal_cidrs=args.internal_cidr,
        )
    except CollectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.out:
        args.out.write_text(text)
        total = sum(len(v) for v in result["findings"].values())
        print(f"wrote {args.out}: {total} finding(s)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
