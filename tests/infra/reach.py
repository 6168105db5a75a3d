"""What a lab host can reach, probed from the host itself: TCP, UDP and ICMP, over IPv4 and IPv6.

`outside` (the internet stand-in) answers HTTP on 203.0.113.80 / 2001:db8::80, DNS on its segment
addresses and pings; `internal` answers the same on the allowed side. Each probe returns True only
when an answer came back, so "unreachable" means the packets really did not get through.
"""

from __future__ import annotations

DNS_QUERY = (
    "import socket,struct;"
    "q=struct.pack('!HHHHHH',7,256,1,0,0,0)+b''.join(bytes([len(p)])+p.encode() for p in '{name}'.split('.'))"
    "+b'\\0\\0\\1\\0\\1';"
    "s=socket.socket(socket.{family},socket.SOCK_DGRAM);s.settimeout(3);s.sendto(q,('{server}',53));"
    "r=s.recv(512);print('.'.join(map(str,r[-4:])) if struct.unpack('!H',r[6:8])[0] else 'NXDOMAIN')"
)

OUTSIDE = {
    "tcp4": ("http", "203.0.113.80"),
    "tcp6": ("http", "[2001:db8::80]"),
    "udp4": ("dns", "10.231.2.1"),
    "udp6": ("dns", "fd00:a1:2::1"),
    "icmp4": ("ping", "203.0.113.80"),
    "icmp6": ("ping", "2001:db8::80"),
}
INTERNAL = {
    "tcp4": ("http", "10.231.1.1"),
    "tcp6": ("http", "[fd00:a1:1::1]"),
    "udp4": ("dns", "10.231.1.1"),
    "icmp4": ("ping", "10.231.1.1"),
    "icmp6": ("ping", "fd00:a1:1::1"),
}


def dns(host, server: str, name: str) -> str | None:
    family = "AF_INET6" if ":" in server else "AF_INET"
    result = host.run("python3 -c %s", DNS_QUERY.format(name=name, server=server, family=family))
    return result.stdout.strip() if result.rc == 0 else None


def reaches(host, probe: tuple[str, str]) -> bool:
    kind, address = probe
    if kind == "http":
        result = host.run("curl -sS --max-time 3 http://%s/", address)
        return result.rc == 0 and result.stdout.startswith("airlock-lab ")
    if kind == "dns":
        return dns(host, address, "internal.lab.airlock.test") is not None
    with host.sudo():  # raw ICMP sockets need root
        return host.run("ping -c 1 -W 2 %s", address).rc == 0
