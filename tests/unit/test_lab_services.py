import socket
import struct
import threading

import pytest

from airlock.lab.services import dns_answer, ntp_answer, udp_server


def dns_query(name: str, qtype: int = 1) -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)


def test_dns_answers_a_zone_name_with_its_address():
    reply = dns_answer(
        dns_query("enclave.lab.airlock.test"), {"enclave.lab.airlock.test": "10.231.1.10"}, None
    )
    txid, flags, _qd, ancount = struct.unpack("!HHHH", reply[:8])
    assert (txid, flags & 0xF, ancount) == (0x1234, 0, 1)
    assert reply[-4:] == bytes([10, 231, 1, 10])


def test_dns_says_nxdomain_for_unknown_names_unless_it_is_a_wildcard_resolver():
    reply = dns_answer(dns_query("example.com"), {}, None)
    assert struct.unpack("!H", reply[2:4])[0] & 0xF == 3
    reply = dns_answer(dns_query("example.com"), {}, "203.0.113.80")
    assert reply[-4:] == bytes([203, 0, 113, 80])


def test_ntp_reply_is_server_mode_and_echoes_the_client_timestamp():
    request = bytearray(48)
    request[0] = (4 << 3) | 3  # v4, client
    request[40:48] = b"ORIGINAL"
    reply = ntp_answer(bytes(request))
    assert len(reply) == 48
    assert reply[0] & 0x7 == 4 and (reply[0] >> 3) & 0x7 == 4
    assert reply[24:32] == b"ORIGINAL"
    assert struct.unpack("!I", reply[40:44])[0] > 3_900_000_000  # after 2023 in NTP seconds


@pytest.mark.parametrize(
    ("family", "client_address"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
)
def test_udp_server_answers_ipv4_and_ipv6_and_survives_garbage(family, client_address):
    server = udp_server(0, lambda packet: dns_answer(packet, {"a.test": "10.0.0.1"}, None))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"\x00", (client_address, port))  # malformed: ignored, server keeps going
            sock.sendto(dns_query("a.test"), (client_address, port))
            reply, _ = sock.recvfrom(512)
        assert reply[-4:] == bytes([10, 0, 0, 1])
    finally:
        server.shutdown()
        server.server_close()
