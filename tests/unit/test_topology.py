import ipaddress

import pytest

from airlock.lab.topology import (
    INTERNAL,
    INTERNET_STANDIN_IP,
    INTERNET_STANDIN_IP6,
    NETWORKS,
    OUTSIDE,
    default_topology,
)


@pytest.mark.parametrize("gpu_hosts", [1, 2, 3])
def test_every_address_is_unique_and_inside_its_private_network(gpu_hosts):
    topo = default_topology(gpu_hosts)
    seen = set()
    for net in NETWORKS:
        assert net.net.is_private
        addresses = [net.service_ip] + [h.ip(net) for h in topo.hosts]
        assert all(ipaddress.IPv4Address(a) in net.net for a in addresses)
        seen.update(addresses)
    assert len(seen) == len(NETWORKS) * (gpu_hosts + 2)  # + the service address and the backup host


def test_the_internet_standin_is_reached_only_through_the_default_route():
    addr = ipaddress.IPv4Address(INTERNET_STANDIN_IP)
    assert not any(addr in net.net for net in NETWORKS)
    assert all(h.default_gateway == OUTSIDE.service_ip for h in default_topology(3).hosts)


def test_interface_names_fit_the_kernel_limit_and_do_not_collide():
    topo = default_topology(9)
    peers = [h.veth_peer(net) for h in topo.hosts for net in NETWORKS]
    assert all(len(name) <= 15 for name in peers + [n.bridge for n in NETWORKS])
    assert len(set(peers)) == len(peers)


def test_namespaces_are_the_documented_ones_and_more_hosts_extend_them():
    assert default_topology().namespaces == ("mgmt", "internal", "outside", "enclave", "backup")
    assert default_topology(2).namespaces[-2:] == ("enclave2", "backup")


def test_the_backup_host_is_its_own_group_at_a_fixed_address():
    for count in (1, 9):
        backup = default_topology(count).host("backup")
        assert backup.groups == ("backup_hosts",) and backup.ip(INTERNAL) == "10.231.1.19"
    assert [h.name for h in default_topology(2).hosts if "gpu_hosts" in h.groups] == ["enclave", "enclave2"]


def test_dns_zone_answers_lab_names_with_internal_addresses():
    zone = default_topology(2).dns_zone()
    assert zone["enclave.lab.airlock.test"] == "10.231.1.10"
    assert zone["enclave2.lab.airlock.test"] == "10.231.1.11"
    assert zone["internal.lab.airlock.test"] == "10.231.1.1"


def test_unknown_host_and_bad_host_count_say_what_is_wrong():
    with pytest.raises(KeyError, match="no lab host named 'nope'"):
        default_topology().host("nope")
    with pytest.raises(ValueError, match="between 1 and 9"):
        default_topology(0)


def test_every_segment_is_dual_stack_with_unique_private_ipv6():
    topo = default_topology(3)
    seen = set()
    for net in NETWORKS:
        assert net.net6.is_private and net.net6.prefixlen == 64
        addresses = [net.service_ip6] + [h.ip6(net) for h in topo.hosts]
        assert all(ipaddress.IPv6Address(a) in net.net6 for a in addresses)
        seen.update(addresses)
    assert len(seen) == len(NETWORKS) * 5  # service address, 3 GPU hosts, the backup host
    standin = ipaddress.IPv6Address(INTERNET_STANDIN_IP6)
    assert not any(standin in net.net6 for net in NETWORKS)
