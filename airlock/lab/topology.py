"""The lab's address plan: which namespaces exist, how they are wired, which addresses they hold.

Pure data, no side effects, so it can be unit-tested and extended (more GPU hosts, a load balancer)
without touching the code that creates things.

Each network is an Ethernet segment: a bridge inside the namespace of the same name, which also
holds the segment's service address (.1). Every lab host (a systemd-nspawn machine in its own
namespace) has one veth leg on each segment at .10 + its index. The hosts' default route points at
`outside`, so only a firewall on the host stands between it and "the internet". Every segment is
dual-stack (a ULA /64 beside the IPv4 /24, same host numbering), so IPv6 egress is tested too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

# Private ranges that exist only inside the lab's namespaces; nothing links them to the machine's own.
MGMT_CIDR = "10.231.0.0/24"
INTERNAL_CIDR = "10.231.1.0/24"
OUTSIDE_CIDR = "10.231.2.0/24"
MGMT_CIDR6 = "fd00:a1:0::/64"
INTERNAL_CIDR6 = "fd00:a1:1::/64"
OUTSIDE_CIDR6 = "fd00:a1:2::/64"
# An address beyond the hosts' connected networks, reached only through the default route: the
# lab's stand-in for a server on the internet (TEST-NET-3, never routed anywhere real).
INTERNET_STANDIN_IP = "203.0.113.80"
INTERNET_STANDIN_IP6 = "2001:db8::80"  # the IPv6 documentation prefix: never routed anywhere real
LAB_DOMAIN = "lab.airlock.test"
MACHINE_PREFIX = "airlock-lab-"


@dataclass(frozen=True)
class Network:
    name: str  # also the namespace holding the bridge and the service address
    cidr: str
    cidr6: str
    host_iface: str  # interface name inside every lab host
    purpose: str

    @property
    def net(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.cidr)

    @property
    def service_ip(self) -> str:
        return str(self.net.network_address + 1)

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen

    @property
    def net6(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(self.cidr6)

    @property
    def service_ip6(self) -> str:
        return str(self.net6.network_address + 1)

    @property
    def bridge(self) -> str:
        return f"br-{self.name}"[:15]

    def host_ip(self, index: int) -> str:
        return str(self.net.network_address + 10 + index)

    def host_ip6(self, index: int) -> str:
        return str(self.net6.network_address + 0x10 + index)


MGMT = Network("mgmt", MGMT_CIDR, MGMT_CIDR6, "mgmt0", "controller: Ansible, tests and SSH to the hosts")
INTERNAL = Network(
    "internal", INTERNAL_CIDR, INTERNAL_CIDR6, "int0", "permitted internal services and host-to-host"
)
OUTSIDE = Network(
    "outside", OUTSIDE_CIDR, OUTSIDE_CIDR6, "ext0", "stands for the internet: egress must never reach it"
)
NETWORKS = (MGMT, INTERNAL, OUTSIDE)


@dataclass(frozen=True)
class Host:
    name: str  # namespace name, hostname and inventory name
    index: int
    groups: tuple[str, ...] = ("gpu_hosts",)

    @property
    def machine(self) -> str:
        return f"{MACHINE_PREFIX}{self.name}"

    def ip(self, network: Network) -> str:
        return network.host_ip(self.index)

    def ip6(self, network: Network) -> str:
        return network.host_ip6(self.index)

    def veth_peer(self, network: Network) -> str:
        """Name of this host's veth end that sits on the bridge (kernel limit: 15 chars)."""
        return f"{self.name[:10]}-{network.name[0]}"

    @property
    def default_gateway(self) -> str:
        return OUTSIDE.service_ip

    @property
    def default_gateway6(self) -> str:
        return OUTSIDE.service_ip6


@dataclass(frozen=True)
class Topology:
    hosts: tuple[Host, ...]
    networks: tuple[Network, ...] = NETWORKS
    # Names of the namespaces that only provide services (no systemd host inside).
    service_namespaces: tuple[str, ...] = field(default=("mgmt", "internal", "outside"))

    @property
    def namespaces(self) -> tuple[str, ...]:
        return self.service_namespaces + tuple(h.name for h in self.hosts)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise KeyError(f"no lab host named {name!r} (hosts: {known})")

    def hosts_entries(self) -> list[tuple[str, str]]:
        """(address, names) lines for /etc/hosts inside the lab: hosts by their internal address."""
        entries = [(INTERNAL.service_ip, f"internal.{LAB_DOMAIN} internal")]
        entries += [(MGMT.service_ip, f"mgmt.{LAB_DOMAIN} mgmt")]
        entries += [(h.ip(INTERNAL), f"{h.name}.{LAB_DOMAIN} {h.name}") for h in self.hosts]
        return entries

    def dns_zone(self) -> dict[str, str]:
        """Names the internal resolver answers (fully qualified, lower case)."""
        zone = {}
        for address, names in self.hosts_entries():
            for name in names.split():
                zone[name if "." in name else f"{name}.{LAB_DOMAIN}"] = address
        return zone


# The backup host (seed 4.5: secondary storage inside the enclave) takes the index after the last
# possible GPU host, so its addresses never move when GPU hosts are added.
BACKUP_HOST = Host("backup", 9, groups=("backup_hosts",))


def default_topology(gpu_hosts: int = 1) -> Topology:
    if not 1 <= gpu_hosts <= 9:
        raise ValueError(f"gpu_hosts must be between 1 and 9, got {gpu_hosts}")
    names = ["enclave"] + [f"enclave{i + 1}" for i in range(1, gpu_hosts)]
    return Topology(hosts=(*(Host(name, i) for i, name in enumerate(names)), BACKUP_HOST))
