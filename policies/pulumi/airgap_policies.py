"""Airlock's air-gap rules for the Pulumi AWS stack, as CrossGuard policies.

Each rule is a plain function (testable without the CLI) wrapped in a policy object; `__main__.py`
only lists them in the pack, because constructing `PolicyPack` starts a gRPC server and blocks.

Props use Pulumi's camelCase input names (`cidrBlock`, `mapPublicIpOnLaunch`), the same names the
stack's mocks see, so `run_all` can feed every mocked resource through every policy.

Unknown values (preview, when a value depends on a resource not yet created). The SDK raises
`UnknownValueError` when a policy reads one and turns that into an advisory warning: the policy
passes. These policies never let that happen; `_get` turns an unknown into `UNKNOWN` and:
- a CIDR, a public-IP flag, `httpTokens`, an encryption flag or algorithm that is unknown is a
  violation (fail closed): these are literals in an air-gapped stack, so state them;
- an unknown KMS key id is accepted: it is what `kmsKeyId=key.arn` looks like at preview when the
  key is created in the same stack, and `pulumi up` runs resource policies again on the real value
  before it creates the resource;
- stack policies match resources by id, and ids are unknown at preview for new resources. They
  match first through Pulumi's property dependencies (`bucket=bucket.id` records the bucket), then
  by known ids/names; a reference neither way can resolve is a violation that says so.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

MANDATORY = EnforcementLevel.MANDATORY


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""What `_get` returns for a value Pulumi cannot know yet (preview)."""


def _get(obj: Any, *path: str | int) -> Any:
    """The value at `path`, None when absent, UNKNOWN when not known yet."""
    try:
        for key in path:
            if obj is None or obj is UNKNOWN:
                return obj
            if isinstance(key, int):
                obj = obj[key] if isinstance(obj, Iterable) and key < len(obj) else None
            elif isinstance(obj, Mapping):
                obj = obj.get(key)
            else:
                return None
    except UnknownValueError:  # the SDK's proxy raises on unknowns, even for `key in obj`
        return UNKNOWN
    return obj


def _items(obj: Any, key: str) -> list[Any]:
    """The elements of the list at `key` ([] when absent); an unknown element comes back as UNKNOWN."""
    value = _get(obj, key)
    if value is None:
        return []
    if value is UNKNOWN or isinstance(value, str | Mapping):  # a whole unknown list, or a lone item
        return [value]
    return [_get(value, i) for i in range(len(value))]


def _is_true(value: Any) -> bool:
    # launch templates take "true"/"false" strings where other resources take booleans
    return value is True or (isinstance(value, str) and value.lower() == "true")


# --- network ------------------------------------------------------------------------------------

# IPv4 private space (RFC 1918) is at most a /8, so any IPv4 prefix shorter than /8 reaches public
# addresses; 0.0.0.0/1 + 128.0.0.0/1 is "anything" written in two halves. IPv6 uses /16 (regional
# registries hold /12s) outside ULA (fc00::/7) and link-local (fe80::/10), which never leave a VPC.
# A narrower public range (52.0.0.0/8) is not "anything": with no gateway it leads nowhere.
_PRIVATE_V6 = (ipaddress.ip_network("fc00::/7"), ipaddress.ip_network("fe80::/10"))


def open_cidr(cidr: Any) -> str | None:
    """Why `cidr` counts as "the internet" (None if it does not)."""
    if cidr is UNKNOWN:
        return "is unknown at preview, so it may be the internet (state it as a literal)"
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return f"{cidr!r} is not a valid CIDR"
    if net.version == 4 and net.prefixlen < 8:
        return f"{cidr} covers public address space (any IPv4 prefix shorter than /8 does)"
    if net.version == 6 and net.prefixlen < 16 and not any(net.subnet_of(p) for p in _PRIVATE_V6):
        return f"{cidr} covers public address space (IPv6 prefix shorter than /16 outside fc00::/7)"
    return None


_GATEWAYS = {
    "aws:ec2/internetGateway:InternetGateway": "an internet gateway",
    "aws:ec2/internetGatewayAttachment:InternetGatewayAttachment": "an internet gateway attachment",
    "aws:ec2/natGateway:NatGateway": "a NAT gateway",
    "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway": "an egress-only internet gateway",
    "aws:ec2/defaultVpc:DefaultVpc": "the default VPC (it comes with an internet gateway and route)",
}


def no_internet_gateways(args: ResourceValidationArgs, report: ReportViolation) -> None:
    kind = _GATEWAYS.get(args.resource_type)
    if kind:
        report(
            f"{args.name}: {kind} gives the VPC a path to the internet. Fix: remove it; "
            "reach AWS services through VPC endpoints.",
            None,
        )


def no_internet_routes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == "aws:ec2/route:Route":
        routes = [("route ", args.props, ("destinationCidrBlock", "destinationIpv6CidrBlock"))]
    elif args.resource_type in (
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/defaultRouteTable:DefaultRouteTable",
    ):
        inline = enumerate(_items(args.props, "routes"))
        routes = [(f"routes[{i}].", r, ("cidrBlock", "ipv6CidrBlock")) for i, r in inline]
    else:
        return
    for where, route, keys in routes:
        if route is UNKNOWN:
            report(f"{args.name}: {where[:-1]} is unknown at preview. Fix: declare routes literally.", None)
            continue
        for key in keys:
            cidr = _get(route, key)
            why = open_cidr(cidr) if cidr is not None else None
            if why:
                report(f"{args.name}: {where}{key} {why}. Fix: route only private ranges.", None)
        # a gateway outside this stack (an id string) is just as much a way out
        for key in ("natGatewayId", "egressOnlyGatewayId", "gatewayId"):
            target = _get(route, key)
            if isinstance(target, str) and (key != "gatewayId" or target.startswith("igw-")):
                report(
                    f"{args.name}: {where}{key}={target} leads to the internet. Fix: remove the route.", None
                )


_SG_TYPES = ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")


def no_open_egress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, kind = args.props, args.resource_type
    cidrs: list[tuple[str, Any]] = []  # (where, cidr)
    if kind in _SG_TYPES:
        for i, rule in enumerate(_items(props, "egress")):
            if rule is UNKNOWN:
                cidrs.append((f"egress[{i}]", UNKNOWN))
                continue
            for key in ("cidrBlocks", "ipv6CidrBlocks"):
                cidrs += [(f"egress[{i}].{key}", c) for c in _items(rule, key)]
    elif kind == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if _get(props, "type") == "ingress":
            return
        for key in ("cidrBlocks", "ipv6CidrBlocks"):
            cidrs += [(f"egress rule {key}", c) for c in _items(props, key)]
    elif kind == "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule":
        cidrs = [
            (f"egress rule {k}", _get(props, k))
            for k in ("cidrIpv4", "cidrIpv6")
            if _get(props, k) is not None
        ]
    for where, cidr in cidrs:
        why = open_cidr(cidr)
        if why:
            report(
                f"{args.name}: {where} {why}. Fix: allow egress only to private CIDRs, "
                "security groups or VPC endpoint prefix lists.",
                None,
            )


def no_public_ips(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, kind = args.props, args.resource_type

    def check(flag: Any, where: str, why: str = "") -> None:
        if flag is UNKNOWN or _is_true(flag):
            state = "is unknown at preview" if flag is UNKNOWN else "is true"
            report(f"{args.name}: {where} {state}{why}. Fix: set {where}=False.", None)

    if kind in ("aws:ec2/subnet:Subnet", "aws:ec2/defaultSubnet:DefaultSubnet"):
        check(_get(props, "mapPublicIpOnLaunch"), "mapPublicIpOnLaunch")
        # VPC IPv6 addresses are globally routable unless the subnet's block is a ULA (fc00::/7)
        if not _ula(_get(props, "ipv6CidrBlock")):
            why = " and ipv6CidrBlock is not a ULA (fc00::/7) block, so the addresses are public"
            check(_get(props, "assignIpv6AddressOnCreation"), "assignIpv6AddressOnCreation", why)
    elif kind == "aws:ec2/instance:Instance":
        check(_get(props, "associatePublicIpAddress"), "associatePublicIpAddress")
    elif kind == "aws:ec2/launchTemplate:LaunchTemplate":
        for i, nic in enumerate(_items(props, "networkInterfaces")):
            check(_get(nic, "associatePublicIpAddress"), f"networkInterfaces[{i}].associatePublicIpAddress")


def _ula(cidr: Any) -> bool:
    try:
        return ipaddress.ip_network(str(cidr), strict=False).subnet_of(_PRIVATE_V6[0])
    except (ValueError, TypeError):
        return False


# --- encryption ---------------------------------------------------------------------------------

_KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")


def _key_problem(key: Any, field: str) -> str | None:
    """Why `key` is not a customer-managed KMS key (None if it is, or is unknown: see module doc)."""
    if key is UNKNOWN:
        return None
    if not key:
        return f"has no {field} (a customer-managed KMS key)"
    if "alias/aws/" in str(key):
        return f"{field}={key} is an AWS-managed key, not a customer-managed one"
    return None


def _ebs_problems(device: Any, where: str) -> list[str]:
    if device is UNKNOWN:
        return [f"{where} is unknown at preview"]
    problems = [] if _is_true(_get(device, "encrypted")) else [f"{where} is not encrypted=true"]
    key = _key_problem(_get(device, "kmsKeyId"), "kmsKeyId")
    return [*problems, f"{where} {key}"] if key else problems


def _sse_problems(default: Any, where: str) -> list[str]:
    algorithm = _get(default, "sseAlgorithm")
    if algorithm not in _KMS_ALGORITHMS:
        shown = "unknown at preview" if algorithm is UNKNOWN else repr(algorithm)
        return [f"{where}.sseAlgorithm is {shown}, not aws:kms (AES256/SSE-S3 uses an AWS-owned key)"]
    key = _key_problem(_get(default, "kmsMasterKeyId"), "kmsMasterKeyId")
    return [f"{where} {key}"] if key else []


_SSE_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
_BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")


def customer_key_encryption(args: ResourceValidationArgs, report: ReportViolation) -> None:
    props, kind = args.props, args.resource_type
    problems: list[str] = []
    if kind == "aws:ec2/instance:Instance":
        root = _get(props, "rootBlockDevice")
        if root is None:
            problems.append("declares no rootBlockDevice, so the root volume uses the AMI's encryption")
        else:
            problems += _ebs_problems(root, "rootBlockDevice")
        for i, device in enumerate(_items(props, "ebsBlockDevices")):
            problems += _ebs_problems(device, f"ebsBlockDevices[{i}]")
    elif kind == "aws:ec2/launchTemplate:LaunchTemplate":
        mappings = _items(props, "blockDeviceMappings")
        if not mappings:
            problems.append("declares no blockDeviceMappings, so volumes use the AMI's encryption")
        for i, mapping in enumerate(mappings):
            if mapping is UNKNOWN or _get(mapping, "ebs") is not None:
                problems += _ebs_problems(_get(mapping, "ebs"), f"blockDeviceMappings[{i}].ebs")
    elif kind == "aws:ebs/volume:Volume":
        problems += _ebs_problems(props, "the volume")
    elif kind in _BUCKET_TYPES:
        # a bucket without inline config is covered by s3-default-encryption-configured
        inline = _get(props, "serverSideEncryptionConfiguration")
        if inline is not None:
            default = _get(inline, "rule", "applyServerSideEncryptionByDefault")
            problems += _sse_problems(default, "serverSideEncryptionConfiguration")
    elif kind in _SSE_TYPES:
        rules = _items(props, "rules")
        if not rules:
            problems.append("has no rules")
        for i, rule in enumerate(rules):
            problems += _sse_problems(_get(rule, "applyServerSideEncryptionByDefault"), f"rules[{i}]")
    elif kind == "aws:cloudwatch/logGroup:LogGroup":
        key = _key_problem(_get(props, "kmsKeyId"), "kmsKeyId")
        problems += [key] if key else []
    for problem in problems:
        report(
            f"{args.name}: {problem}. Fix: encrypt with a customer-managed aws.kms.Key "
            "(encrypted=True plus kmsKeyId / sseAlgorithm='aws:kms' plus kmsMasterKeyId).",
            None,
        )


def imdsv2_required(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in ("aws:ec2/instance:Instance", "aws:ec2/launchTemplate:LaunchTemplate"):
        return
    tokens = _get(args.props, "metadataOptions", "httpTokens")
    if tokens != "required":
        shown = "unknown at preview" if tokens is UNKNOWN else repr(tokens)
        report(
            f"{args.name}: metadataOptions.httpTokens is {shown}, so IMDSv1 can hand out the role's "
            "credentials. Fix: metadataOptions={'httpTokens': 'required'}.",
            None,
        )


# --- stack policies: resources that must come in pairs --------------------------------------------


def _refers_to(res: PolicyResource, prop: str, target: PolicyResource) -> bool | None:
    """Whether `res.props[prop]` names `target`; None when neither dependency nor value can tell."""
    if any(dep.urn == target.urn for dep in res.property_dependencies.get(prop, [])):
        return True
    value = _get(res.props, prop)
    if value is None or value is UNKNOWN:
        return None if value is UNKNOWN else False
    if value in [_get(target.props, k) for k in ("id", "bucket", "arn")]:
        return True
    return None if _get(target.props, "id") in (None, UNKNOWN) else False  # the target's id may be it


def _referrers(
    resources: list[PolicyResource], types: Iterable[str], prop: str, target: PolicyResource
) -> tuple[list[PolicyResource], list[PolicyResource]]:
    """Resources of `types` whose `prop` names `target`, and those that could not be matched."""
    matched, unresolved = [], []
    for res in resources:
        if res.resource_type in types:
            found = _refers_to(res, prop, target)
            if found:
                matched.append(res)
            elif found is None:
                unresolved.append(res)
    return matched, unresolved


def _unresolved_note(unresolved: list[PolicyResource]) -> str:
    if not unresolved:
        return ""
    names = ", ".join(r.name for r in unresolved)
    why = "a reference or id is unknown at preview or not recorded, so this fails closed"
    return f" ({names} could not be matched: {why})"


_PAB_TYPE = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
_PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def s3_public_access_blocked(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in (r for r in args.resources if r.resource_type in _BUCKET_TYPES):
        blocks, unresolved = _referrers(args.resources, [_PAB_TYPE], "bucket", bucket)
        if not blocks:
            report(
                f"{bucket.name}: no BucketPublicAccessBlock refers to this bucket"
                f"{_unresolved_note(unresolved)}. Fix: add aws.s3.BucketPublicAccessBlock("
                "bucket=<bucket>.id) with all four flags True.",
                bucket.urn,
            )
        for block in blocks:
            off = [f for f in _PAB_FLAGS if _get(block.props, f) is not True]
            if off:
                report(
                    f"{block.name} (for bucket {bucket.name}): {', '.join(off)} not true. "
                    f"Fix: set {', '.join(f'{f}=True' for f in off)}.",
                    block.urn,
                )


def s3_default_encryption_configured(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in (r for r in args.resources if r.resource_type in _BUCKET_TYPES):
        if _get(bucket.props, "serverSideEncryptionConfiguration") is not None:
            continue  # checked for a customer key by customer-managed-encryption
        configs, unresolved = _referrers(args.resources, _SSE_TYPES, "bucket", bucket)
        if not configs:
            report(
                f"{bucket.name}: no server-side encryption configuration refers to this bucket, so S3 "
                f"falls back to SSE-S3 (AWS-owned key){_unresolved_note(unresolved)}. Fix: add "
                "aws.s3.BucketServerSideEncryptionConfiguration(bucket=<bucket>.id) with "
                "sseAlgorithm='aws:kms' and a customer-managed kmsMasterKeyId.",
                bucket.urn,
            )


AUDIT_TAG = ("airlock:role", "audit")
_LOCK_TYPES = (
    "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration",
    "aws:s3/bucketObjectLockConfigurationV2:BucketObjectLockConfigurationV2",
)


def is_audit_bucket(bucket: PolicyResource) -> bool:
    """The audit bucket: tag airlock:role=audit, or "audit" in its logical or physical name.

    The name rule is a safety net: an untagged audit bucket must not escape Object Lock. Unknown
    `tags` count as audit (fail closed); `tagsAll` (tags plus provider defaults) is computed, so
    unknown at preview, and only counts when known.
    """
    role = _get(bucket.props, "tags", AUDIT_TAG[0])
    if role is UNKNOWN or AUDIT_TAG[1] in (role, _get(bucket.props, "tagsAll", AUDIT_TAG[0])):
        return True
    names = [bucket.name, _get(bucket.props, "bucket"), _get(bucket.props, "bucketPrefix")]
    return any(isinstance(n, str) and "audit" in n.lower() for n in names)


def audit_bucket_object_lock(args: StackValidationArgs, report: ReportViolation) -> None:
    for bucket in (r for r in args.resources if r.resource_type in _BUCKET_TYPES and is_audit_bucket(r)):
        props = bucket.props
        problems = []
        enabled = _get(props, "objectLockEnabled") is True or (
            _get(props, "objectLockConfiguration", "objectLockEnabled") == "Enabled"  # deprecated inline form
        )
        if not enabled:
            problems.append("objectLockEnabled is not true (it can only be set when the bucket is created)")
        modes = [_get(props, "objectLockConfiguration", "rule", "defaultRetention", "mode")]
        locks, unresolved = _referrers(args.resources, _LOCK_TYPES, "bucket", bucket)
        modes += [_get(lock.props, "rule", "defaultRetention", "mode") for lock in locks]
        if "COMPLIANCE" not in modes:
            found = ", ".join(str(m) for m in modes if m is not None)
            seen = f" (found {found}; GOVERNANCE can be bypassed, COMPLIANCE cannot)" if found else ""
            problems.append(f"no default retention in COMPLIANCE mode{seen}{_unresolved_note(unresolved)}")
        if problems:
            report(
                f"{bucket.name} (audit bucket): {'; '.join(problems)}. Fix: objectLockEnabled=True and "
                "aws.s3.BucketObjectLockConfiguration(bucket=<bucket>.id, rule={'defaultRetention': "
                "{'mode': 'COMPLIANCE', 'days': ...}}).",
                bucket.urn,
            )


_FLOW_LOG_TYPE = "aws:ec2/flowLog:FlowLog"


def vpc_flow_logs(args: StackValidationArgs, report: ReportViolation) -> None:
    for vpc in (r for r in args.resources if r.resource_type == "aws:ec2/vpc:Vpc"):
        logs, unresolved = _referrers(args.resources, [_FLOW_LOG_TYPE], "vpcId", vpc)
        if any(_get(log.props, "trafficType") == "ALL" for log in logs):
            continue
        if logs:
            found = ", ".join(f"{log.name}: {_get(log.props, 'trafficType')}" for log in logs)
            problem = f"its flow logs do not capture ALL traffic ({found})"
        else:
            problem = f"has no flow log{_unresolved_note(unresolved)}"
        report(
            f"{vpc.name}: {problem}. Fix: add aws.ec2.FlowLog(vpc_id=<vpc>.id, traffic_type='ALL').",
            vpc.urn,
        )


# --- the policy objects (listed in __main__.py) -------------------------------------------------

_NET = "SOC 2 CC6.6; NIST 800-171 3.13.1, 3.13.6; HIPAA 164.312(e)(1)"

no_internet_gateways_policy = ResourceValidationPolicy(
    name="no-internet-gateways",
    description="No internet, NAT or egress-only gateway and no default VPC: the enclave has no way out. "
    f"Controls: {_NET}; NIST 800-171 3.1.20.",
    validate=no_internet_gateways,
    enforcement_level=MANDATORY,
)
no_internet_routes_policy = ResourceValidationPolicy(
    name="no-internet-routes",
    description="No route to 0.0.0.0/0, ::/0 or anything as wide (e.g. 0.0.0.0/1 + 128.0.0.0/1), "
    f"and none to an internet or NAT gateway. Controls: {_NET}.",
    validate=no_internet_routes,
    enforcement_level=MANDATORY,
)
no_open_egress_policy = ResourceValidationPolicy(
    name="no-open-egress",
    description="No security-group egress to 0.0.0.0/0, ::/0 or anything as wide: egress is denied by "
    f"default and allowed by exception. Controls: {_NET}; NIST 800-171 3.1.3.",
    validate=no_open_egress,
    enforcement_level=MANDATORY,
)
no_public_ips_policy = ResourceValidationPolicy(
    name="no-public-ips",
    description="No public IPv4 or globally routable IPv6 address on subnets, instances or launch "
    f"templates. Controls: {_NET}; NIST 800-171 3.13.5.",
    validate=no_public_ips,
    enforcement_level=MANDATORY,
)
customer_key_encryption_policy = ResourceValidationPolicy(
    name="customer-managed-encryption",
    description="EBS volumes, S3 default encryption and CloudWatch log groups use a customer-managed KMS "
    "key (SSE-S3/AES256 and AWS-managed keys are not). Controls: SOC 2 CC6.1; NIST 800-171 3.13.16, "
    "3.13.10; HIPAA 164.312(a)(2)(iv).",
    validate=customer_key_encryption,
    enforcement_level=MANDATORY,
)
imdsv2_required_policy = ResourceValidationPolicy(
    name="imdsv2-required",
    description="Instances and launch templates require IMDSv2 tokens, so a request forgery cannot read "
    "the instance role's credentials. Controls: SOC 2 CC6.1; NIST 800-171 3.1.1; HIPAA 164.312(a)(1).",
    validate=imdsv2_required,
    enforcement_level=MANDATORY,
)
s3_public_access_blocked_policy = StackValidationPolicy(
    name="s3-public-access-blocked",
    description="Every S3 bucket has a BucketPublicAccessBlock with all four flags true. "
    "Controls: SOC 2 CC6.1, CC6.6; NIST 800-171 3.1.22, 3.13.1; HIPAA 164.312(a)(1), 164.312(e)(1).",
    validate=s3_public_access_blocked,
    enforcement_level=MANDATORY,
)
s3_default_encryption_configured_policy = StackValidationPolicy(
    name="s3-default-encryption-configured",
    description="Every S3 bucket declares default encryption (inline or a BucketServerSideEncryption"
    "Configuration), which customer-managed-encryption then checks for a customer key. "
    "Controls: SOC 2 CC6.1; NIST 800-171 3.13.16; HIPAA 164.312(a)(2)(iv).",
    validate=s3_default_encryption_configured,
    enforcement_level=MANDATORY,
)
audit_bucket_object_lock_policy = StackValidationPolicy(
    name="audit-bucket-object-lock",
    description="The audit bucket (tag airlock:role=audit, or 'audit' in its name) has Object Lock "
    "enabled with a COMPLIANCE-mode default retention, so no one can alter or delete audit records. "
    "Controls: SOC 2 CC7.2; NIST 800-171 3.3.1, 3.3.8; HIPAA 164.312(b), 164.312(c)(1).",
    validate=audit_bucket_object_lock,
    enforcement_level=MANDATORY,
)
vpc_flow_logs_policy = StackValidationPolicy(
    name="vpc-flow-logs",
    description="Every VPC has a flow log capturing ALL traffic, so attempted outbound connections are "
    "recorded. Controls: SOC 2 CC7.2; NIST 800-171 3.3.1, 3.13.1; HIPAA 164.312(b).",
    validate=vpc_flow_logs,
    enforcement_level=MANDATORY,
)

POLICIES: list[Policy] = [
    no_internet_gateways_policy,
    no_internet_routes_policy,
    no_open_egress_policy,
    no_public_ips_policy,
    customer_key_encryption_policy,
    imdsv2_required_policy,
    s3_public_access_blocked_policy,
    s3_default_encryption_configured_policy,
    audit_bucket_object_lock_policy,
    vpc_flow_logs_policy,
]


# --- running every policy over mocked resources ---------------------------------------------------


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str  # the resource's name; "" for a violation of the stack as a whole
    message: str


def _options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def policy_resource(resource: Mapping[str, Any]) -> PolicyResource:
    """A stack resource from a mock record: {"type", "name", "props"} plus optional "id" and "urn".

    Record the id your mock returned: real stack props carry it, and the stack policies match
    buckets and VPCs by it (dicts have no property dependencies to fall back on).
    """
    kind, name = resource["type"], resource["name"]
    props = dict(resource.get("props") or {})
    if "id" in resource:
        props.setdefault("id", resource["id"])
    urn = resource.get("urn") or f"urn:pulumi:mock::airlock::{kind}::{name}"
    return PolicyResource(kind, unknown_checking_proxy(props), urn, name, _options(), None, None, [], {})


def _collect(
    violations: list[Violation], policy: str, names: Mapping[str, str], default: str = ""
) -> Callable:
    def report(message: str, urn: str | None = None) -> None:
        violations.append(Violation(policy, names.get(urn or "", default), message))

    return report


def run_all(resources: list[dict]) -> list[Violation]:
    """Every resource and stack policy over mock records ({"type", "name", "props"}, optional "id")."""
    stack = [policy_resource(r) for r in resources]
    names = {r.urn: r.name for r in stack}
    violations: list[Violation] = []
    for policy in POLICIES:
        if isinstance(policy, ResourceValidationPolicy):
            for r in stack:
                args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, None)
                policy.validate(args, _collect(violations, policy.name, names, r.name))
        elif isinstance(policy, StackValidationPolicy):
            policy.validate(StackValidationArgs(stack), _collect(violations, policy.name, names))
    return violations
