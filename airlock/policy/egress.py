"""The single egress allowlist (policies/egress.yml) and the three things rendered from it.

nftables on Debian hosts, the AWS security group rules of the Pulumi stack and the Kubernetes
NetworkPolicy all come from this one file, so they cannot drift apart. Loading fails closed: an
unknown key, a name that resolves to nothing or a range wide enough to reach the internet is refused
with the file, the field path and the fix, never skipped.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml

from airlock.errors import AirlockError

TOP = "(top level)"
TOP_KEYS = ("version", "networks", "management_ssh", "service_api", "allow", "log")
PROTOS = ("tcp", "udp", "icmp")
# Anything wider than this is "the internet" for the purposes of this file.
MIN_PREFIX = {4: 8, 6: 16}
# IPv6 ranges that embed IPv4 addresses: through a NAT64 / 6to4 translator they reach the whole IPv4
# internet whatever their prefix length, so they cannot be allowed either.
TRANSLATED = tuple(
    ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "2002::/16")
)
NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LOG_PREFIX = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RATE = re.compile(r"^[1-9][0-9]{0,5}/(second|minute|hour|day)$")
INGRESS_LOG_PREFIX = "airlock-ingress-drop"
DEFAULT_POD_SELECTOR: Mapping[str, str] = MappingProxyType({"app": "airlock"})
EXAMPLE = "the repository's policies/egress.yml documents every field"


class PolicyError(AirlockError):
    """The egress policy is missing or invalid; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Inbound:
    port: int
    sources: tuple[str, ...]  # network names or CIDRs, as written (the file's `from`)


@dataclass(frozen=True)
class Rule:
    name: str
    to: tuple[str, ...]  # network names or CIDRs, as written
    proto: str  # tcp | udp | icmp
    ports: tuple[int, ...]  # empty for icmp


@dataclass(frozen=True)
class EgressPolicy:
    version: int
    networks: Mapping[str, tuple[str, ...]]
    management_ssh: Inbound
    service_api: Inbound
    allow: tuple[Rule, ...]
    log_prefix: str
    log_rate: str
    path: Path
    sha256: str  # of the policy file's bytes: renderings name exactly what they came from


def policy_path(path: str | os.PathLike | None = None) -> Path:
    """The `--policy` argument, else $AIRLOCK_EGRESS_POLICY, else policies/egress.yml in the CWD."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("AIRLOCK_EGRESS_POLICY", "policies/egress.yml"))


def load_policy(path: str | os.PathLike) -> EgressPolicy:
    """Read and validate the policy file; PolicyError says which field is wrong and how to fix it."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: no egress policy here; pass --policy or set AIRLOCK_EGRESS_POLICY "
            "(the repository ships policies/egress.yml)"
        ) from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the egress policy: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML ({exc}); fix the syntax") from None
    return _Parser(path).policy(data, hashlib.sha256(raw).hexdigest())


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _key(field: str, key: object) -> str:
    return f"{field}.{key}" if field != TOP else str(key)


class _Parser:
    def __init__(self, path: Path):
        self.path = path
        self.networks: dict[str, tuple[str, ...]] = {}

    def fail(self, field: str, problem: str, fix: str) -> NoReturn:
        raise PolicyError(f"{self.path}: {field}: {problem}; {fix}")

    def mapping(self, value: Any, field: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
        if not isinstance(value, dict):
            self.fail(field, f"must be a mapping, got {_kind(value)}", EXAMPLE)
        for key in value:
            if key not in required + optional:
                # A typo must never silently loosen (or void) a rule.
                self.fail(
                    _key(field, key),
                    "unknown key",
                    f"the keys here are {', '.join(required + optional)}",
                )
        for key in required:
            if key not in value:
                self.fail(_key(field, key), "missing", f"add it; {EXAMPLE}")
        return value

    def listing(self, value: Any, field: str, *, empty_ok: bool = False) -> list:
        if not isinstance(value, list):
            self.fail(
                field, f"must be a list, got {_kind(value)}", "write it as [a, b] or one '- a' per line"
            )
        if not value and not empty_ok:
            self.fail(field, "is empty", "list at least one entry")
        return value

    def port(self, value: Any, field: str) -> int:
        if type(value) is not int or not 1 <= value <= 65535:
            self.fail(field, f"{value!r} is not a port", "use a whole number from 1 to 65535")
        return value

    def name(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not NAME.match(value):
            self.fail(
                field,
                f"{value!r} is not a valid name",
                "use lower-case letters, digits, '-' and '_', starting with a letter (at most 63)",
            )
        return value

    def cidr(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or "/" not in value:
            self.fail(
                field,
                f"{value!r} is not a CIDR",
                "give the prefix length too, e.g. 10.231.1.1/32 for one host or fd00:a1:1::/64",
            )
        try:
            net = ipaddress.ip_network(value)
        except ValueError:
            try:
                loose = ipaddress.ip_network(value, strict=False)
            except ValueError:
                self.fail(
                    field, f"{value!r} is not a valid CIDR", "write e.g. 10.231.1.0/24 or fd00:a1:1::/64"
                )
            host = "/32" if loose.version == 4 else "/128"
            self.fail(
                field,
                f"{value} has host bits set",
                f"write the network {loose}, or {value.split('/')[0]}{host} for one host",
            )
        if net.prefixlen < MIN_PREFIX[net.version]:
            self.fail(
                field,
                f"{net} is wider than /{MIN_PREFIX[net.version]}"
                + (" (everything)" if not net.prefixlen else ""),
                "this file allows internal networks only, never the internet: list the internal ranges",
            )
        if net.version == 6 and any(net.overlaps(t) for t in TRANSLATED):
            self.fail(
                field,
                f"{net} embeds IPv4 addresses (NAT64, 6to4 or IPv4-mapped) and can reach the IPv4 internet",
                "list the internal IPv4 CIDR instead",
            )
        return str(net)

    def ref(self, value: Any, field: str) -> str:
        if isinstance(value, str) and value in self.networks:
            return value
        if isinstance(value, str) and NAME.match(value):
            known = ", ".join(sorted(self.networks)) or "none"
            self.fail(
                field,
                f"unknown network {value!r}",
                f"define it under networks (defined: {known}) or give a CIDR",
            )
        return self.cidr(value, field)

    def refs(self, value: Any, field: str) -> tuple[str, ...]:
        return tuple(self.ref(v, f"{field}[{i}]") for i, v in enumerate(self.listing(value, field)))

    def inbound(self, value: Any, field: str) -> Inbound:
        value = self.mapping(value, field, ("port", "from"))
        return Inbound(self.port(value["port"], f"{field}.port"), self.refs(value["from"], f"{field}.from"))

    def rule(self, value: Any, field: str) -> Rule:
        value = self.mapping(value, field, ("name", "to", "proto"), ("ports",))
        name = self.name(value["name"], f"{field}.name")
        to = self.refs(value["to"], f"{field}.to")
        proto = value["proto"]
        if proto not in PROTOS:
            self.fail(f"{field}.proto", f"{proto!r} is not a protocol", f"use one of {' | '.join(PROTOS)}")
        if proto == "icmp":
            if "ports" in value:
                self.fail(
                    f"{field}.ports", "icmp has no ports", "remove ports (icmp allows echo requests only)"
                )
            return Rule(name, to, proto, ())
        if "ports" not in value:
            self.fail(f"{field}.ports", "missing", f"{proto} rules must list their ports, e.g. ports: [443]")
        ports = []
        for i, p in enumerate(self.listing(value["ports"], f"{field}.ports")):
            port = self.port(p, f"{field}.ports[{i}]")
            if port in ports:
                self.fail(f"{field}.ports[{i}]", f"port {port} is listed twice", "list each port once")
            ports.append(port)
        return Rule(name, to, proto, tuple(ports))

    def policy(self, data: Any, sha256: str) -> EgressPolicy:
        data = self.mapping(data, TOP, TOP_KEYS)
        version = data["version"]
        if type(version) is not int or version != 1:
            self.fail("version", f"{version!r} is not a known version", "set version: 1")
        if not isinstance(data["networks"], dict):
            self.fail(
                "networks",
                f"must be a mapping of names to CIDR lists, got {_kind(data['networks'])}",
                EXAMPLE,
            )
        for name, values in data["networks"].items():
            self.name(name, f"networks.{name}")
            field = f"networks.{name}"
            self.networks[name] = tuple(
                self.cidr(v, f"{field}[{i}]") for i, v in enumerate(self.listing(values, field))
            )
        rules: list[Rule] = []
        for i, value in enumerate(self.listing(data["allow"], "allow", empty_ok=True)):
            rule = self.rule(value, f"allow[{i}]")
            if any(r.name == rule.name for r in rules):
                self.fail(
                    f"allow[{i}].name",
                    f"{rule.name!r} is used by an earlier rule",
                    "give each rule its own name",
                )
            rules.append(rule)
        log = self.mapping(data["log"], "log", ("prefix", "rate"))
        if not isinstance(log["prefix"], str) or not LOG_PREFIX.match(log["prefix"]):
            self.fail(
                "log.prefix",
                f"{log['prefix']!r} is not a log prefix",
                "use letters, digits, '_', '.', ':', '-' (1-64)",
            )
        if not isinstance(log["rate"], str) or not RATE.match(log["rate"]):
            self.fail(
                "log.rate", f"{log['rate']!r} is not a rate", "write N/second, N/minute, N/hour or N/day"
            )
        return EgressPolicy(
            version=version,
            networks=MappingProxyType(self.networks),
            management_ssh=self.inbound(data["management_ssh"], "management_ssh"),
            service_api=self.inbound(data["service_api"], "service_api"),
            allow=tuple(rules),
            log_prefix=log["prefix"],
            log_rate=log["rate"],
            path=self.path,
            sha256=sha256,
        )


def cidrs(policy: EgressPolicy, names_or_cidrs: Iterable[str]) -> list[str]:
    """Expand network names into their CIDRs (CIDRs pass through); in order, each CIDR once."""
    out: list[str] = []
    for ref in names_or_cidrs:
        if ref not in policy.networks and "/" not in ref:
            raise PolicyError(f"{policy.path}: unknown network {ref!r}; define it under networks")
        for cidr in policy.networks.get(ref, (ref,)):
            if cidr not in out:
                out.append(cidr)
    return out


def _families(values: list[str]) -> tuple[list[str], list[str]]:
    return [c for c in values if ":" not in c], [c for c in values if ":" in c]


# ---- nftables ---------------------------------------------------------------------------------------


def _nft_set(items: Iterable[object]) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _by_family(values: list[str], match: str, comment: str, direction: str) -> list[str]:
    """One rule line per address family: `ip saddr {...} <match>` / `ip6 saddr {...} <match>`."""
    v4, v6 = _families(values)
    lines = []
    for family, group in (("ip", v4), ("ip6", v6)):
        if group:
            lines.append(f'{family} {direction} {_nft_set(group)} {match} accept comment "{comment}"')
    return lines


def render_nftables(policy: EgressPolicy, *, source: str) -> str:
    """A complete /etc/nftables.conf that manages only `table inet airlock` (other tables untouched)."""
    ssh = cidrs(policy, policy.management_ssh.sources)
    api = cidrs(policy, policy.service_api.sources)
    ssh_port, api_port = policy.management_ssh.port, policy.service_api.port
    pingers = cidrs(policy, policy.management_ssh.sources + policy.service_api.sources)
    v4_ping, v6_ping = _families(pingers)

    inp = [
        "type filter hook input priority 0; policy drop;",
        'iif "lo" accept',
        "ct state established,related accept",
        # Before the invalid-drop: a session conntrack has never seen (Ansible's, while this ruleset
        # loads) can look invalid when loose TCP pickup is off; management must survive it.
        *_by_family(ssh, f"tcp dport {ssh_port}", "management-ssh", "saddr"),
        "ct state invalid drop",
        *_by_family(api, f"tcp dport {api_port}", "service-api", "saddr"),
    ]
    if v4_ping:
        inp.append(f'ip saddr {_nft_set(v4_ping)} icmp type echo-request accept comment "ping"')
    inp.append(
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept "
        'comment "ipv6-neighbour-discovery"'
    )
    if v6_ping:
        inp.append(f'ip6 saddr {_nft_set(v6_ping)} icmpv6 type echo-request accept comment "ping"')
    inp.append(f'limit rate {policy.log_rate} log prefix "{INGRESS_LOG_PREFIX} " level warn')

    out = [
        "type filter hook output priority 0; policy drop;",
        'oif "lo" accept',
        "ct state established,related accept",
        # Replies of the management session, whether or not conntrack has seen it start.
        *_by_family(ssh, f"tcp sport {ssh_port}", "management-ssh", "daddr"),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept "
        'comment "ipv6-neighbour-discovery"',
    ]
    for rule in policy.allow:
        v4, v6 = _families(cidrs(policy, rule.to))
        if rule.proto == "icmp":
            if v4:
                out.append(f'ip daddr {_nft_set(v4)} icmp type echo-request accept comment "{rule.name}"')
            if v6:
                out.append(f'ip6 daddr {_nft_set(v6)} icmpv6 type echo-request accept comment "{rule.name}"')
        else:
            match = f"{rule.proto} dport {_nft_set(rule.ports)}"
            out.extend(_by_family(v4 + v6, match, rule.name, "daddr"))
    out += [
        f'limit rate {policy.log_rate} log prefix "{policy.log_prefix} " level warn',
        "counter drop",  # explicit and counted, so evidence collectors can see drops happened
    ]

    def chain(name: str, lines: list[str]) -> str:
        return f"\tchain {name} {{\n" + "".join(f"\t\t{line}\n" for line in lines) + "\t}\n"

    return (
        "#!/usr/sbin/nft -f\n"
        f"# rendered by airlock policy render from {source} (sha256 {policy.sha256})\n"
        "# do not edit: change the policy file and render again.\n"
        "# Only table inet airlock is managed here (no flush ruleset: other tables are left alone).\n"
        "# Create-then-delete makes `nft -f` work whether the table exists or not, in one transaction.\n"
        "table inet airlock {}\n"
        "delete table inet airlock\n"
        "\n"
        "table inet airlock {\n"
        + chain("input", inp)
        + "\n"
        + chain("forward", ["type filter hook forward priority 0; policy drop;"])
        + "\n"
        + chain("output", out)
        + "}\n"
    )


# ---- AWS security groups ----------------------------------------------------------------------------


def _aws_entry(proto: str, from_port: int, to_port: int, values: list[str], description: str) -> dict:
    v4, v6 = _families(values)
    return {
        "IpProtocol": proto,
        "FromPort": from_port,
        "ToPort": to_port,
        "IpRanges": [{"CidrIp": c, "Description": description} for c in v4],
        "Ipv6Ranges": [{"CidrIpv6": c, "Description": description} for c in v6],
    }


def render_aws(policy: EgressPolicy) -> dict:
    """EC2 IpPermissions for the Pulumi stack's security groups: one entry per (rule, port).

    For ICMP, FromPort is the ICMP type and ToPort the code (-1: any), as the EC2 API defines it:
    echo request is type 8 (icmp) and type 128 (icmpv6). Security groups are stateful, so replies
    need no rules.
    """
    egress = []
    for rule in policy.allow:
        values = cidrs(policy, rule.to)
        if rule.proto == "icmp":
            v4, v6 = _families(values)
            if v4:
                egress.append(_aws_entry("icmp", 8, -1, v4, rule.name))
            if v6:
                egress.append(_aws_entry("icmpv6", 128, -1, v6, rule.name))
        else:
            egress += [_aws_entry(rule.proto, p, p, values, rule.name) for p in rule.ports]
    ingress = [
        _aws_entry("tcp", inbound.port, inbound.port, cidrs(policy, inbound.sources), name)
        for name, inbound in (("management_ssh", policy.management_ssh), ("service_api", policy.service_api))
    ]
    return {"egress": egress, "ingress": ingress}


# ---- Kubernetes NetworkPolicy -----------------------------------------------------------------------


def render_k8s(
    policy: EgressPolicy,
    *,
    namespace: str = "airlock",
    pod_selector: Mapping[str, str] = DEFAULT_POD_SELECTOR,
) -> str:
    """A networking.k8s.io/v1 NetworkPolicy for the service pods: the allowlist out, the API in."""

    def peers(values: list[str]) -> list[dict]:
        return [{"ipBlock": {"cidr": c}} for c in values]

    # Every rule has a non-empty `to`/`from` (the loader refuses empty lists): in a NetworkPolicy an
    # empty peer list would mean "anywhere".
    egress = [
        {
            "to": peers(cidrs(policy, rule.to)),
            "ports": [{"protocol": rule.proto.upper(), "port": p} for p in rule.ports],
        }
        for rule in policy.allow
        if rule.proto != "icmp"
    ]
    skipped = [rule.name for rule in policy.allow if rule.proto == "icmp"]
    api = policy.service_api
    doc = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "airlock-egress", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": dict(pod_selector)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": peers(cidrs(policy, api.sources)), "ports": [{"protocol": "TCP", "port": api.port}]}
            ],
            "egress": egress,
        },
    }
    header = [
        "---",
        f"# rendered by airlock policy render (policy sha256 {policy.sha256}); do not edit.",
        "# ICMP rules are left out (NetworkPolicy cannot express ICMP): "
        + (", ".join(skipped) or "none")
        + ".",
        "# Management SSH is not rendered: pods run no sshd. ipBlock is for addresses outside the",
        "# cluster; in-cluster peers (e.g. kube-dns) need their own podSelector rules.",
    ]
    return "\n".join(header) + "\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
