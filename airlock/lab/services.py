"""Network services that stand in for the enclave's internal servers and for the internet.

Run inside a lab namespace by `airlock lab up` (`python -m airlock.lab.services ...`):
- HTTP on TCP 80 (IPv4 and IPv6) answering `airlock-lab <name>` (so a test knows which side it reached),
- DNS on UDP 53 answering A records from a zone (or one address for every name, like a public resolver),
- NTP (SNTP v4 server mode) on UDP 123, so time sync can be pointed at an internal server.
Only the standard library: this runs before and beside anything the playbooks install.
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01


def http_handler(name: str) -> type[BaseHTTPRequestHandler]:
    body = f"airlock-lab {name}\n".encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            print(f"http {self.client_address[0]} {format % args}", flush=True)

    return Handler


def parse_question(packet: bytes) -> tuple[str, int, int]:
    """Return (name, qtype, end offset of the question) of a DNS query."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length
    qtype, _qclass = struct.unpack("!HH", packet[offset + 1 : offset + 5])
    return ".".join(labels).lower(), qtype, offset + 5


def dns_answer(packet: bytes, zone: dict[str, str], wildcard: str | None) -> bytes:
    (txid,) = struct.unpack("!H", packet[:2])
    name, qtype, end = parse_question(packet)
    address = zone.get(name.rstrip("."), wildcard)
    found = address is not None
    answers = b""
    if found and qtype == 1:  # A
        answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(map(int, address.split(".")))
    flags = 0x8180 if found else 0x8183  # response, recursion available; rcode NXDOMAIN if unknown
    header = struct.pack("!HHHHHH", txid, flags, 1, 1 if answers else 0, 0, 0)
    return header + packet[12:end] + answers


def ntp_answer(packet: bytes) -> bytes:
    now = time.time() + NTP_EPOCH_OFFSET
    stamp = struct.pack("!II", int(now), int((now % 1) * 2**32))
    version = (packet[0] >> 3) & 0x7 or 4
    head = struct.pack("!BBbb", (version << 3) | 4, 2, 6, -20)  # server mode, stratum 2
    root = struct.pack("!II", 0, 0) + b"LAB\x00"
    originate = packet[40:48]
    return head + root + stamp + originate + stamp + stamp


class UDPResponder(socketserver.BaseRequestHandler):
    respond = staticmethod(lambda packet: b"")

    def handle(self) -> None:
        packet, sock = self.request
        try:
            sock.sendto(self.respond(packet), self.client_address)
        except (IndexError, struct.error, ValueError):
            print(f"udp {self.client_address[0]} malformed packet ignored", flush=True)


class DualStackHTTPServer(ThreadingHTTPServer):
    """Listens on :: with IPv4-mapped addresses too, so one server answers both address families."""

    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


class DualStackUDPServer(socketserver.ThreadingUDPServer):
    address_family = socket.AF_INET6

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def udp_server(port: int, respond, host: str = "::") -> socketserver.ThreadingUDPServer:
    """A UDP server answering each datagram with respond(packet), on every IPv4 and IPv6 address of a
    lab namespace."""
    handler = type("Handler", (UDPResponder,), {"respond": staticmethod(respond)})
    return DualStackUDPServer((host, port), handler)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help="name reported by the HTTP service")
    parser.add_argument("--zone", default="{}", help="JSON object of name -> IPv4 for DNS")
    parser.add_argument(
        "--wildcard", help="answer every other name with this IPv4 (public-resolver stand-in)"
    )
    args = parser.parse_args()
    zone = json.loads(args.zone)
    servers = [
        DualStackHTTPServer(("::", 80), http_handler(args.name)),  # inside a lab namespace
        udp_server(53, lambda packet: dns_answer(packet, zone, args.wildcard)),
        udp_server(123, ntp_answer),
    ]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"airlock-lab {args.name}: http 80, dns 53, ntp 123", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
