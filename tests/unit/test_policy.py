"""The single egress allowlist: it refuses anything loose, and what it renders really loads and drops.

nft runs only inside a throwaway network namespace (`unshare --net`), so no test can touch this
machine's own firewall."""

import copy
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from airlock.cli import app
from airlock.policy import PolicyError, cidrs, load_policy, render_aws, render_k8s, render_nftables

SHIPPED = Path(__file__).resolve().parents[2] / "policies" / "egress.yml"
runner = CliRunner()


def shipped_data() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def write(tmp_path, data, name="egress.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def policy():
    return load_policy(SHIPPED)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


needs_netns = pytest.mark.skipif(
    not _can_unshare(),
    reason="needs root, nft and unshare to load the rules in a throwaway network namespace",
)


def in_netns(script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a fresh, empty network namespace: its rules vanish with it."""
    return subprocess.run(
        ["unshare", "--net", "sh", "-c", script], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def nft_file(tmp_path, policy):
    path = tmp_path / "nftables.conf"
    path.write_text(render_nftables(policy, source="policies/egress.yml"))
    return path


# ---- the shipped policy ---------------------------------------------------------------------------


def test_shipped_policy_loads_and_renders_for_every_target(policy):
    assert set(policy.networks) == {"mgmt", "internal"}
    assert [r.name for r in policy.allow] == [
        "internal-dns",
        "internal-dns-tcp",
        "internal-ntp",
        "internal-services",
        "internal-backup",
        "internal-ping",
    ]
    assert render_nftables(policy, source="policies/egress.yml").startswith("#!/usr/sbin/nft -f\n")
    assert render_aws(policy)["egress"]
    assert yaml.safe_load(render_k8s(policy))["kind"] == "NetworkPolicy"


def test_cidrs_expands_names_and_keeps_cidrs_once(policy):
    assert cidrs(policy, ["mgmt", "10.231.0.0/24", "10.231.1.1/32"]) == [
        "10.231.0.0/24",
        "fd00:a1::/64",
        "10.231.1.1/32",
    ]
    with pytest.raises(PolicyError, match="unknown network 'nope'"):
        cidrs(policy, ["nope"])


# ---- nftables ---------------------------------------------------------------------------------------


@needs_netns
def test_rendered_nftables_passes_nft_check(nft_file):
    result = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", str(nft_file)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@needs_netns
def test_rendered_nftables_loads_with_policy_drop(nft_file):
    result = in_netns(f"nft -f {nft_file} && nft list ruleset")
    assert result.returncode == 0, result.stderr
    listed = result.stdout
    for chain in ("input", "output", "forward"):
        assert re.search(
            rf"chain {chain} {{\n\s*type filter hook {chain} priority filter; policy drop;", listed
        )
    assert 'log prefix "airlock-egress-drop "' in listed
    assert 'log prefix "airlock-ingress-drop "' in listed
    assert re.search(r"counter packets \d+ bytes \d+ drop", listed)
    assert (
        'ip daddr 10.231.1.0/24 tcp dport { 80, 443, 6379, 6380, 8443 } accept comment "internal-services"'
        in (listed)
    )


@needs_netns
def test_applying_twice_is_idempotent_and_leaves_other_tables_alone(nft_file):
    result = in_netns(
        f"nft add table inet other && nft -f {nft_file} && nft -f {nft_file} && "
        "nft list tables && nft list table inet airlock"
    )
    assert result.returncode == 0, result.stderr
    assert "table inet other" in result.stdout  # no flush ruleset
    assert result.stdout.count("chain output {") == 1
    assert result.stdout.count('comment "internal-dns"') == 1


def test_management_ssh_is_accepted_without_a_ct_state_condition(policy):
    text = render_nftables(policy, source="x")
    ssh_in = [line.strip() for line in text.splitlines() if "tcp dport 22" in line and "saddr" in line]
    ssh_out = [line.strip() for line in text.splitlines() if "tcp sport 22" in line]
    assert ssh_in == [
        'ip saddr 10.231.0.0/24 tcp dport 22 accept comment "management-ssh"',
        'ip6 saddr fd00:a1::/64 tcp dport 22 accept comment "management-ssh"',
    ]
    assert ssh_out == [
        'ip daddr 10.231.0.0/24 tcp sport 22 accept comment "management-ssh"',
        'ip6 daddr fd00:a1::/64 tcp sport 22 accept comment "management-ssh"',
    ]
    # Ahead of the invalid-drop, so a session conntrack never saw start still gets through.
    assert text.index("tcp dport 22") < text.index("ct state invalid drop")


def test_nftables_manages_only_its_own_table(policy):
    text = render_nftables(policy, source="x")
    commands = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if line.lstrip().startswith("flush")]
    assert [line for line in commands if line.startswith("delete")] == ["delete table inet airlock"]
    assert text.count("table inet airlock {}\ndelete table inet airlock\n") == 1
    assert re.findall(r"^table (\S+ \S+)", text, re.M) == ["inet airlock", "inet airlock"]


def test_output_ends_with_rate_limited_log_then_counted_drop(policy):
    out = render_nftables(policy, source="x").split("chain output {")[1]
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    assert lines[-4:-2] == [
        'limit rate 10/minute log prefix "airlock-egress-drop " level warn',
        "counter drop",
    ]
    assert 'ip6 daddr fd00:a1:1::/64 icmpv6 type echo-request accept comment "internal-ping"' in lines


def test_rendering_is_deterministic_and_names_the_policy_hash(tmp_path):
    first = render_nftables(load_policy(SHIPPED), source="policies/egress.yml")
    assert first == render_nftables(load_policy(SHIPPED), source="policies/egress.yml")
    assert render_k8s(load_policy(SHIPPED)) == render_k8s(load_policy(SHIPPED))
    digest = hashlib.sha256(SHIPPED.read_bytes()).hexdigest()
    assert (
        first.splitlines()[1]
        == f"# rendered by airlock policy render from policies/egress.yml (sha256 {digest})"
    )
    assert "do not edit" in first.splitlines()[2]
    # Any change to the file, even a comment, shows in the header.
    edited = tmp_path / "egress.yml"
    edited.write_bytes(SHIPPED.read_bytes() + b"# reviewed\n")
    assert digest not in render_nftables(load_policy(edited), source="policies/egress.yml")


# ---- validation refuses, naming the field -------------------------------------------------------------


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        d[last] = value

    return mutate


def _delete(*path):
    def mutate(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        del d[last]

    return mutate


REFUSALS = [
    ("unknown top-level key", _set(["egress"], []), "egress", "unknown key"),
    ("missing top-level key", _delete("log"), "log", "missing"),
    ("unknown rule key", _set(["allow", 1, "port"], 53), "allow[1].port", "unknown key"),
    (
        "unknown network",
        _set(["allow", 3, "to"], ["intranet"]),
        "allow[3].to[0]",
        "unknown network 'intranet'",
    ),
    (
        "invalid CIDR",
        _set(["networks", "mgmt", 0], "10.231.0.300/24"),
        "networks.mgmt[0]",
        "not a valid CIDR",
    ),
    ("bare address", _set(["allow", 0, "to"], ["10.231.1.1"]), "allow[0].to[0]", "not a CIDR"),
    ("host bits", _set(["allow", 0, "to"], ["10.231.1.1/24"]), "allow[0].to[0]", "host bits set"),
    (
        "v6 host bits",
        _set(["networks", "internal", 1], "fd00:a1:1::1/64"),
        "networks.internal[1]",
        "host bits",
    ),
    ("port too big", _set(["allow", 3, "ports", 0], 70000), "allow[3].ports[0]", "not a port"),
    ("port zero", _set(["allow", 0, "ports", 0], 0), "allow[0].ports[0]", "not a port"),
    ("port not a number", _set(["allow", 0, "ports", 0], "53"), "allow[0].ports[0]", "not a port"),
    ("ssh port", _set(["management_ssh", "port"], 65536), "management_ssh.port", "not a port"),
    ("duplicate port", _set(["allow", 3, "ports"], [80, 80]), "allow[3].ports[1]", "listed twice"),
    ("icmp with ports", _set(["allow", 5, "ports"], [8]), "allow[5].ports", "icmp has no ports"),
    ("tcp without ports", _delete("allow", 1, "ports"), "allow[1].ports", "missing"),
    ("empty ports", _set(["allow", 1, "ports"], []), "allow[1].ports", "is empty"),
    ("unknown proto", _set(["allow", 0, "proto"], "sctp"), "allow[0].proto", "not a protocol"),
    ("duplicate rule name", _set(["allow", 2, "name"], "internal-dns"), "allow[2].name", "earlier rule"),
    (
        "v4 everything",
        _set(["allow", 3, "to"], ["0.0.0.0/0"]),
        "allow[3].to[0]",
        "0.0.0.0/0 is wider than /8",
    ),
    (
        "v6 everything",
        _set(["networks", "internal", 1], "::/0"),
        "networks.internal[1]",
        "::/0 is wider than /16",
    ),
    ("v4 /7", _set(["allow", 0, "to"], ["10.0.0.0/7"]), "allow[0].to[0]", "wider than /8"),
    ("v6 /15", _set(["allow", 0, "to"], ["fc00::/15"]), "allow[0].to[0]", "wider than /16"),
    ("internet via ssh", _set(["management_ssh", "from"], ["0.0.0.0/0"]), "management_ssh.from[0]", "wider"),
    ("internet via api", _set(["service_api", "from", 1], "::/0"), "service_api.from[1]", "wider"),
    ("NAT64", _set(["allow", 0, "to"], ["64:ff9b::/96"]), "allow[0].to[0]", "IPv4 internet"),
    ("version 2", _set(["version"], 2), "version", "set version: 1"),
    ("version true", _set(["version"], True), "version", "set version: 1"),
    ("empty ssh from", _set(["management_ssh", "from"], []), "management_ssh.from", "is empty"),
    ("empty to", _set(["allow", 0, "to"], []), "allow[0].to", "is empty"),
    ("bad log rate", _set(["log", "rate"], "lots"), "log.rate", "not a rate"),
    ("bad log prefix", _set(["log", "prefix"], 'x" accept'), "log.prefix", "not a log prefix"),
    ("bad rule name", _set(["allow", 0, "name"], "DNS server"), "allow[0].name", "not a valid name"),
]


@pytest.mark.parametrize(("why", "mutate", "field", "problem"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_validation_refuses_and_names_the_field(tmp_path, why, mutate, field, problem):
    data = copy.deepcopy(shipped_data())
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert problem in message
    assert "; " in message.split(f"{field}: ", 1)[1]  # and says how to fix it


def test_missing_and_unparsable_files_are_refused(tmp_path):
    with pytest.raises(PolicyError, match="no egress policy here"):
        load_policy(tmp_path / "absent.yml")
    (tmp_path / "bad.yml").write_text("allow: [\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(tmp_path / "bad.yml")


# ---- AWS ----------------------------------------------------------------------------------------------


def test_aws_one_entry_per_port_with_ipv6_in_ipv6_ranges(tmp_path):
    data = shipped_data()
    data["allow"] = [{"name": "web", "to": ["internal"], "proto": "tcp", "ports": [80, 443]}]
    egress = render_aws(load_policy(write(tmp_path, data)))["egress"]
    assert egress == [
        {
            "IpProtocol": "tcp",
            "FromPort": port,
            "ToPort": port,
            "IpRanges": [{"CidrIp": "10.231.1.0/24", "Description": "web"}],
            "Ipv6Ranges": [{"CidrIpv6": "fd00:a1:1::/64", "Description": "web"}],
        }
        for port in (80, 443)
    ]


def test_aws_icmp_echo_uses_type_and_code(policy):
    icmp = [e for e in render_aws(policy)["egress"] if e["IpProtocol"].startswith("icmp")]
    assert [(e["IpProtocol"], e["FromPort"], e["ToPort"]) for e in icmp] == [
        ("icmp", 8, -1),
        ("icmpv6", 128, -1),
    ]
    assert icmp[0]["IpRanges"] == [{"CidrIp": "10.231.1.0/24", "Description": "internal-ping"}]
    assert icmp[1]["Ipv6Ranges"] == [{"CidrIpv6": "fd00:a1:1::/64", "Description": "internal-ping"}]


def test_aws_ingress_is_ssh_and_api_and_nothing_is_open_to_the_internet(policy):
    rendered = render_aws(policy)
    assert [(e["IpProtocol"], e["FromPort"]) for e in rendered["ingress"]] == [("tcp", 22), ("tcp", 8443)]
    assert [r["CidrIp"] for r in rendered["ingress"][0]["IpRanges"]] == ["10.231.0.0/24"]
    for entry in rendered["egress"] + rendered["ingress"]:
        assert entry["IpRanges"] or entry["Ipv6Ranges"]
        assert all(r["CidrIp"] != "0.0.0.0/0" for r in entry["IpRanges"])
        assert all(r["CidrIpv6"] != "::/0" for r in entry["Ipv6Ranges"])
    assert len(rendered["egress"]) == 1 + 1 + 1 + 5 + 1 + 2  # dns, dns-tcp, ntp, 5 services, backup, 2 pings


# ---- Kubernetes ---------------------------------------------------------------------------------------


def test_k8s_network_policy_has_both_types_and_no_icmp(policy):
    text = render_k8s(policy, namespace="imaging", pod_selector={"app": "sdxl"})
    doc = yaml.safe_load(text)
    spec = doc["spec"]
    assert doc["apiVersion"] == "networking.k8s.io/v1"
    assert doc["metadata"]["namespace"] == "imaging"
    assert spec["podSelector"] == {"matchLabels": {"app": "sdxl"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    protocols = {p["protocol"] for rule in spec["egress"] for p in rule["ports"]}
    assert protocols == {"TCP", "UDP"}
    assert len(spec["egress"]) == 5  # internal-ping is left out ...
    assert "left out (NetworkPolicy cannot express ICMP): internal-ping" in text  # ... and says so
    assert all(rule["to"] for rule in spec["egress"])  # an empty `to` would mean anywhere
    assert spec["ingress"] == [
        {
            "from": [{"ipBlock": {"cidr": c}} for c in cidrs(policy, ["mgmt", "internal"])],
            "ports": [{"protocol": "TCP", "port": 8443}],
        }
    ]
    assert "0.0.0.0/0" not in text and "::/0" not in text


# ---- CLI ----------------------------------------------------------------------------------------------


def policy_cli(*args):
    return runner.invoke(app, ["policy", *map(str, args)], terminal_width=200)


def test_cli_render_nftables_to_stdout(policy):
    result = policy_cli("render", "--target", "nftables", "--policy", SHIPPED)
    assert result.exit_code == 0, result.output
    assert result.stdout == render_nftables(policy, source=str(SHIPPED))


def test_cli_render_out_writes_atomically_with_mode_0644(tmp_path, policy):
    out = tmp_path / "nftables.conf"
    result = policy_cli("render", "--target", "nftables", "--policy", SHIPPED, "--out", out)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert out.read_text() == render_nftables(policy, source=str(SHIPPED))
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["nftables.conf"]  # no temp file left behind


def test_cli_render_aws_is_sorted_json(policy):
    result = policy_cli("render", "--target", "aws", "--policy", SHIPPED)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == render_aws(policy)
    assert result.stdout == json.dumps(render_aws(policy), indent=2, sort_keys=True) + "\n"


def test_cli_default_policy_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRLOCK_EGRESS_POLICY", str(SHIPPED))
    monkeypatch.chdir(tmp_path)  # no policies/egress.yml here
    result = policy_cli("render", "--target", "k8s")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["kind"] == "NetworkPolicy"


def test_cli_unknown_target_is_a_usage_error():
    result = policy_cli("render", "--target", "iptables", "--policy", SHIPPED)
    assert result.exit_code == 2


def test_cli_broken_policy_exits_1_naming_the_field(tmp_path):
    data = shipped_data()
    data["allow"][2]["ports"] = [0]
    path = write(tmp_path, data)
    for args in (["render", "--target", "nftables"], ["check"]):
        result = policy_cli(*args, "--policy", path)
        assert result.exit_code == 1
        assert "allow[2].ports[0]" in result.stderr
        assert result.stdout == ""


def test_cli_missing_policy_is_a_usage_error(tmp_path):
    result = policy_cli("check", "--policy", tmp_path / "absent.yml")
    assert result.exit_code == 2
    assert "AIRLOCK_EGRESS_POLICY" in result.stderr


def test_cli_check_prints_a_summary():
    result = policy_cli("check", "--policy", SHIPPED)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert "ok: 2 networks, 6 allow rules" in result.stdout


def test_cli_help_shows_examples():
    for command in ("render", "check"):
        assert "Example: airlock policy" in policy_cli(command, "--help").output
