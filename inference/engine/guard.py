"""In-process egress guard: defence in depth behind the host firewall.

A `sys.addaudithook` hook sees every socket connect, send-to and name lookup the process makes
(Python code and the libraries it loads alike) and refuses any that leaves the allowlist: loopback,
Unix sockets, the configured internal CIDRs and internal domain names. A refused attempt raises
EgressBlocked before a packet is sent, and is reported to `on_block` (the engine writes it to the
audit log). Audit hooks cannot be removed, so the guard is installed once per process; installing
again replaces the policy.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = ("127.0.0.0/8", "::1/128")


class EgressBlocked(PermissionError):
    """A network connection outside the allowlist was attempted and refused."""


@dataclass
class EgressPolicy:
    allowed_cidrs: list[str] = field(default_factory=list)
    allowed_domains: list[str] = field(default_factory=list)  # suffixes, e.g. "lab.airlock.test"
    on_block: Callable[[dict], None] | None = None

    def __post_init__(self) -> None:
        self.networks = [ipaddress.ip_network(c, strict=False) for c in (*LOOPBACK, *self.allowed_cidrs)]
        self.domains = [d.lower().strip(".") for d in self.allowed_domains]

    def host_allowed(self, host: str | bytes | None) -> bool:
        if host is None:
            return True  # getaddrinfo(None, port): the local wildcard, nothing leaves
        name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]").split("%")[0]
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            lowered = name.lower().rstrip(".")
            return lowered == "localhost" or any(
                lowered == d or lowered.endswith("." + d) for d in self.domains
            )
        if address.is_unspecified:
            return True
        # A dual-stack socket names IPv4 peers as ::ffff:a.b.c.d: judge the IPv4 address it carries.
        mapped = getattr(address, "ipv4_mapped", None)
        return any((mapped or address) in network for network in self.networks)


_policy: EgressPolicy | None = None
_installed = False
_reporting = threading.local()


def _destination(event: str, args: tuple) -> tuple[str | None, object] | None:
    """(host, port) an event would reach, or None when the event reaches nothing remote."""
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or not address:
            return None
        if isinstance(address, tuple):
            return address[0], address[1] if len(address) > 1 else None
        return None
    if event == "socket.getaddrinfo":
        return args[0], args[1]
    if event in ("socket.gethostbyname", "socket.gethostbyname_ex", "socket.gethostbyaddr"):
        return args[0], None
    return None


def _hook(event: str, args: tuple) -> None:
    if _policy is None or not event.startswith("socket.") or getattr(_reporting, "active", False):
        return
    destination = _destination(event, args)
    if destination is None or _policy.host_allowed(destination[0]):
        return
    host, port = destination
    detail = {"operation": event, "host": str(host), "port": port}
    if _policy.on_block is not None:
        _reporting.active = True  # the report itself must not be judged (or blocked) again
        try:
            _policy.on_block(detail)
        finally:
            _reporting.active = False
    raise EgressBlocked(
        f"egress blocked by Airlock: {event} to {host}:{port} is outside the allowlist "
        "(loopback and the configured internal networks only)"
    )


def install(policy: EgressPolicy) -> EgressPolicy:
    """Install the guard (once per process) or replace its policy."""
    global _policy, _installed
    _policy = policy
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
    return policy
