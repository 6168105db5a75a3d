"""egress_deny: the ruleset from policies/egress.yml is loaded, default-deny both ways, and really stops
every kind of packet to "the internet" while the internal services stay reachable."""

import pytest
from reach import INTERNAL, OUTSIDE, reaches


def test_the_egress_table_is_loaded_with_policy_drop(host):
    with host.sudo():
        table = host.check_output("nft list table inet airlock")
    for chain in ("input", "output", "forward"):
        assert f"chain {chain} {{" in table
    assert table.count("policy drop;") == 3
    assert 'log prefix "airlock-egress-drop "' in table


def test_the_ruleset_is_loaded_at_boot(host):
    assert host.service("nftables").is_enabled
    with host.sudo():
        assert host.run("nft -c -f /etc/nftables.conf").rc == 0
    assert "rendered by airlock policy render" in host.file("/etc/nftables.conf").content_string


@pytest.mark.parametrize("probe", sorted(OUTSIDE))
def test_outside_is_unreachable(host, probe):
    assert not reaches(host, OUTSIDE[probe]), f"{probe} reached the internet stand-in"


@pytest.mark.parametrize("probe", sorted(INTERNAL))
def test_internal_services_stay_reachable(host, probe):
    assert reaches(host, INTERNAL[probe]), f"{probe} to the internal services was blocked"


def test_dropped_packets_are_counted(host):
    """Evidence that egress was attempted and stopped: the final drop rule's counter moves."""
    reaches(host, OUTSIDE["tcp4"])
    with host.sudo():
        output = host.check_output("nft list chain inet airlock output")
    packets = int(output.split("counter packets ")[1].split()[0])
    assert packets > 0
