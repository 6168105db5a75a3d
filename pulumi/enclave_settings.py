"""Every setting of the enclave stack, read and validated here and nowhere else.

`load_settings()` reads the stack's config (Pulumi.<stack>.yaml) and the organisation's egress allowlist
(policies/egress.yml) and returns one frozen `Settings`. It fails closed, like the egress policy loader:
an unknown key, a request for a public subnet, an open or too wide CIDR, a GPU family we do not
support or a policy rule that would leave the enclave is refused with the key and the fix, before a
single resource is registered.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pulumi
from airlock.policy import PolicyError, load_policy, render_aws
from airlock.policy.egress import MIN_PREFIX
from pulumi.runtime import config as runtime_config

HERE = Path(__file__).resolve().parent
DEFAULT_POLICY = HERE.parent / "policies" / "egress.yml"
GPU_FAMILIES = ("g5", "g6", "p4d", "p5")
DEFAULT_ENDPOINTS = ("logs", "kms", "ssm", "ssmmessages", "ec2messages", "sts")
# The values CloudWatch Logs accepts for retention_in_days.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192)
LOG_RETENTION_DAYS += (2557, 2922, 3288, 3653)
AMI = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
INSTANCE_TYPE = re.compile(r"^([a-z0-9]+)\.([a-z0-9-]+)$")
CERT_ARN = re.compile(r"^arn:(aws|aws-us-gov):acm:([a-z0-9-]+):[0-9]{12}:certificate/[0-9a-f-]{36}$")
NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{1,19}$")
ENDPOINT = re.compile(r"^[a-z0-9][a-z0-9.-]{1,62}$")

# Every setting and its default (REQUIRED: none); a key not listed here is a typo and refused.
REQUIRED = object()
KEYS: dict[str, Any] = {
    "namePrefix": "airlock",
    "vpcCidr": "10.40.0.0/16",
    "availabilityZones": REQUIRED,
    "privateSubnetCidrs": REQUIRED,
    "publicSubnets": False,
    "internalCidrs": [],
    "interfaceEndpoints": list(DEFAULT_ENDPOINTS),
    "egressPolicy": str(DEFAULT_POLICY),
    "logRetentionDays": 365,
    "auditRetentionDays": 2190,
    "amiId": REQUIRED,
    "instanceType": REQUIRED,
    "fleetMinSize": 1,
    "fleetMaxSize": 2,
    "fleetDesiredCapacity": 1,
    "rootDeviceName": "/dev/xvda",
    "rootVolumeGb": 200,
    "certificateArn": REQUIRED,
    "sslPolicy": "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "healthCheckPath": "/readyz",
}


class SettingsError(pulumi.RunError):
    """The stack config is refused; RunError makes Pulumi print the message without a traceback."""


@dataclass(frozen=True)
class SgRule:
    """One security group rule, in the shape of the EC2 API (icmp: from_port = type, to_port = code)."""

    protocol: str
    from_port: int
    to_port: int
    cidr_blocks: tuple[str, ...]
    ipv6_cidr_blocks: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class Settings:
    stack: str
    name_prefix: str
    region: str
    partition: str  # aws | aws-us-gov: every ARN we write ourselves uses it
    vpc_cidr: str
    availability_zones: tuple[str, ...]
    private_subnet_cidrs: tuple[str, ...]  # one per AZ, same order
    internal_cidrs: tuple[str, ...]  # internal ranges outside the VPC that the enclave may reach
    interface_endpoints: tuple[str, ...]  # service short names: logs, kms, ...
    log_retention_days: int
    audit_retention_days: int
    ami_id: str
    instance_type: str
    fleet_min_size: int
    fleet_max_size: int
    fleet_desired_capacity: int
    root_device_name: str
    root_volume_gb: int
    certificate_arn: str
    ssl_policy: str
    health_check_path: str
    api_port: int  # the service's TLS port, from the egress policy's service_api
    egress_policy: str  # path of the policy file the rules came from
    egress_policy_sha256: str
    fleet_egress: tuple[SgRule, ...]  # the policy's allow rules, all inside the enclave
    api_ingress: tuple[SgRule, ...]  # the policy's service_api sources, all inside the enclave


class _Reader:
    def __init__(self) -> None:
        self.project = pulumi.get_project()
        self.stack = pulumi.get_stack()
        self.config = pulumi.Config()
        self.where = f"Pulumi.{self.stack}.yaml"

    def fail(self, key: str, problem: str, fix: str) -> NoReturn:
        full = key if ":" in key else f"{self.project}:{key}"  # aws:region is the provider's
        raise SettingsError(f"{self.where}: {full}: {problem}; {fix}")

    def refuse_unknown_keys(self) -> None:
        # A typo (publicSubnet, internalCidr) must never be silently ignored. The SDK has no public
        # way to list config keys: read its map (set by the engine) and the environment it falls back to.
        keys = set(runtime_config.CONFIG.get()) | set(runtime_config.get_config_env())
        prefix = f"{self.project}:"
        for key in sorted(k for k in keys if k.startswith(prefix)):
            name = key[len(prefix) :]
            if name not in KEYS:
                self.fail(
                    name, "unknown setting", f"the settings are {', '.join(KEYS)} (see Pulumi.example.yaml)"
                )

    def raw(self, key: str) -> Any:
        """The value as written in the stack file: strings stay strings, the rest arrives as JSON."""
        text = self.config.get(key)
        if text is None:
            if KEYS[key] is REQUIRED:
                self.fail(key, "missing", "set it (Pulumi.example.yaml documents every setting)")
            return KEYS[key]
        try:
            return json.loads(text)
        except ValueError:
            return text

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str) or not value:
            self.fail(key, f"{value!r} is not a string", "write it as text")
        return value

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.raw(key)
        if type(value) is not int or not low <= value <= high:
            self.fail(key, f"{value!r} is not a whole number from {low} to {high}", "give one in that range")
        return value

    def flag(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            self.fail(key, f"{value!r} is not true or false", "write true or false")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(key, f"{value!r} is not a list of strings", "write it as a YAML list")
        if len(set(value)) != len(value):
            self.fail(key, "lists an entry twice", "list each entry once")
        return tuple(value)

    def network(self, key: str, value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        try:
            return ipaddress.ip_network(value)
        except ValueError:
            self.fail(key, f"{value!r} is not a CIDR (or has host bits set)", "write e.g. 10.40.0.0/16")


def _partition(reader: _Reader, region: str) -> str:
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    if region.startswith(("cn-", "us-iso", "eu-isoe-")):
        reader.fail(
            "aws:region", f"{region} is in a partition this stack does not support", "use aws or GovCloud"
        )
    return "aws"


def _outside(cidrs: list[str], allowed: list) -> list[str]:
    """The CIDRs not inside any allowed range of their own address family."""
    outside = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr)
        if not any(net.version == a.version and net.subnet_of(a) for a in allowed):
            outside.append(cidr)
    return outside


def _name(entry: dict) -> str:
    """render_aws puts the rule's name in every range's Description."""
    return (entry["IpRanges"] or entry["Ipv6Ranges"])[0]["Description"]


def _sg_rules(reader: _Reader, entries: list[dict], allowed: list, policy_path: str) -> tuple[SgRule, ...]:
    """EC2 IpPermissions from render_aws as SgRules, refusing any range that leaves the enclave."""
    rules = []
    for entry in entries:
        v4 = [r["CidrIp"] for r in entry["IpRanges"]]
        v6 = [r["CidrIpv6"] for r in entry["Ipv6Ranges"]]
        name = _name(entry)
        outside = _outside(v4 + v6, allowed)
        if outside:
            raise SettingsError(
                f"{policy_path}: rule {name!r} allows {', '.join(outside)}, outside the VPC and "
                f"internalCidrs ({', '.join(str(a) for a in allowed)}); the enclave maps only internal "
                f"destinations: add the range to {reader.project}:internalCidrs in {reader.where} if it "
                "is internal, or remove it from the policy"
            )
        rules.append(
            SgRule(entry["IpProtocol"], entry["FromPort"], entry["ToPort"], tuple(v4), tuple(v6), name)
        )
    return tuple(rules)


def load_settings() -> Settings:
    """Read and validate the stack config; SettingsError names the key and the fix."""
    r = _Reader()
    r.refuse_unknown_keys()

    region = pulumi.Config("aws").get("region")
    if not region:
        r.fail("aws:region", "missing", "set aws:region (e.g. us-gov-west-1)")
    partition = _partition(r, region)

    prefix = r.text("namePrefix")
    if not NAME_PREFIX.match(prefix):
        r.fail(
            "namePrefix", f"{prefix!r} is not a valid prefix", "use 2-20 lower-case letters, digits or '-'"
        )

    if r.flag("publicSubnets"):
        r.fail(
            "publicSubnets",
            "true asks for a public subnet, but the enclave has no path to the internet by design "
            "(no internet gateway, no NAT, no public IPs)",
            "remove the key or set it to false; clients reach the API through the internal load balancer",
        )

    vpc = r.network("vpcCidr", r.text("vpcCidr"))
    if vpc.version != 4 or not 16 <= vpc.prefixlen <= 28 or not vpc.is_private:
        r.fail("vpcCidr", f"{vpc} is not a private IPv4 range from /16 to /28", "use e.g. 10.40.0.0/16")

    azs = r.texts("availabilityZones")
    if not azs:
        r.fail("availabilityZones", "lists no availability zone", "list at least one (two or more for HA)")
    for az in azs:
        if not (az.startswith(region) and len(az) == len(region) + 1):
            r.fail("availabilityZones", f"{az!r} is not a zone of {region}", f"use e.g. {region}a")

    subnets = [r.network("privateSubnetCidrs", c) for c in r.texts("privateSubnetCidrs")]
    if len(subnets) != len(azs):
        r.fail(
            "privateSubnetCidrs",
            f"lists {len(subnets)} CIDRs for {len(azs)} availability zones",
            "give one subnet CIDR per zone, in the same order",
        )
    for i, net in enumerate(subnets):
        if net.version != 4 or not net.subnet_of(vpc) or not 16 <= net.prefixlen <= 28:
            r.fail(
                "privateSubnetCidrs", f"{net} is not a /16../28 inside vpcCidr {vpc}", "pick one inside it"
            )
        for other in subnets[:i]:
            if net.overlaps(other):
                r.fail("privateSubnetCidrs", f"{net} overlaps {other}", "give each zone its own range")

    internal = []
    for cidr in r.texts("internalCidrs"):
        net = r.network("internalCidrs", cidr)
        if net.prefixlen == 0:
            r.fail("internalCidrs", f"{net} is open egress (the whole internet)", "list internal ranges only")
        if net.prefixlen < MIN_PREFIX[net.version]:
            r.fail(
                "internalCidrs",
                f"{net} is wider than /{MIN_PREFIX[net.version]}, too wide to be internal",
                "list the internal ranges themselves",
            )
        if net.overlaps(vpc):
            r.fail("internalCidrs", f"{net} overlaps vpcCidr {vpc}", "list only ranges outside the VPC")
        internal.append(net)

    endpoints = r.texts("interfaceEndpoints")
    for name in endpoints:
        if not ENDPOINT.match(name) or name == "s3":
            r.fail(
                "interfaceEndpoints",
                f"{name!r} is not an interface endpoint service",
                "use short names like logs or kms (the S3 gateway endpoint is always created)",
            )

    instance_type = r.text("instanceType")
    match = INSTANCE_TYPE.match(instance_type)
    if not match or match.group(1) not in GPU_FAMILIES:
        r.fail(
            "instanceType",
            f"{instance_type!r} is not in a supported GPU family",
            f"use a {', '.join(GPU_FAMILIES)} instance type, e.g. g6.xlarge",
        )
    ami = r.text("amiId")
    if not AMI.match(ami):
        r.fail(
            "amiId", f"{ami!r} is not an AMI id", "give the imported image's id, e.g. ami-0123456789abcdef0"
        )

    low, high = r.integer("fleetMinSize", 0, 100), r.integer("fleetMaxSize", 1, 100)
    desired = r.integer("fleetDesiredCapacity", 0, 100)
    if not low <= desired <= high:
        r.fail("fleetDesiredCapacity", f"{desired} is not between {low} and {high}", "fix min/desired/max")

    cert = r.text("certificateArn")
    cert_match = CERT_ARN.match(cert)
    if not cert_match or cert_match.group(2) != region:
        r.fail(
            "certificateArn",
            f"{cert!r} is not an ACM certificate ARN in {region}",
            "give the one for the API",
        )
    ssl_policy = r.text("sslPolicy")
    if not ssl_policy.startswith("ELBSecurityPolicy-TLS13-"):
        r.fail(
            "sslPolicy", f"{ssl_policy!r} does not offer TLS 1.3", "use an ELBSecurityPolicy-TLS13-* policy"
        )
    health = r.text("healthCheckPath")
    if not health.startswith("/"):
        r.fail("healthCheckPath", f"{health!r} is not a path", "write it as /readyz")
    root_device = r.text("rootDeviceName")
    if not root_device.startswith("/dev/"):
        r.fail(
            "rootDeviceName", f"{root_device!r} is not a device name", "write it as /dev/xvda or /dev/sda1"
        )

    retention = r.integer("logRetentionDays", 1, 3653)
    if retention not in LOG_RETENTION_DAYS:
        r.fail("logRetentionDays", f"{retention} is not a CloudWatch Logs retention", "use e.g. 365 or 731")

    policy_file = Path(r.text("egressPolicy"))
    policy_file = (HERE / policy_file).resolve()  # relative to the project folder, as documented
    try:
        policy = load_policy(policy_file)
    except PolicyError as exc:
        raise SettingsError(f"{r.where}: {r.project}:egressPolicy: {exc}") from None
    rendered = render_aws(policy)
    allowed = [vpc, *internal]
    # Inbound, only the API: operators manage the fleet through SSM Session Manager, not SSH.
    api = [e for e in rendered["ingress"] if _name(e) == "service_api"]

    return Settings(
        stack=r.stack,
        name_prefix=prefix,
        region=region,
        partition=partition,
        vpc_cidr=str(vpc),
        availability_zones=azs,
        private_subnet_cidrs=tuple(str(n) for n in subnets),
        internal_cidrs=tuple(str(n) for n in internal),
        interface_endpoints=endpoints,
        log_retention_days=retention,
        audit_retention_days=r.integer("auditRetentionDays", 1, 36500),
        ami_id=ami,
        instance_type=instance_type,
        fleet_min_size=low,
        fleet_max_size=high,
        fleet_desired_capacity=desired,
        root_device_name=root_device,
        root_volume_gb=r.integer("rootVolumeGb", 8, 16384),
        certificate_arn=cert,
        ssl_policy=ssl_policy,
        health_check_path=health,
        api_port=policy.service_api.port,
        egress_policy=str(policy_file),
        egress_policy_sha256=policy.sha256,
        fleet_egress=_sg_rules(r, rendered["egress"], allowed, str(policy_file)),
        api_ingress=_sg_rules(r, api, allowed, str(policy_file)),
    )
