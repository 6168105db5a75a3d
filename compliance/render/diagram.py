"""The network and data-flow diagram of an evidence pack: Graphviz DOT from the topology, SVG via `dot`.

`topology` is `results["inventory"]["topology"]`: hosts (address, listening ports), named networks
(CIDRs), the egress policy's inbound and outbound allow rules, and optionally the cloud VPC.
Everything is sorted so the same topology always gives the same bytes.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

from airlock.errors import AirlockError

DOT_TIMEOUT_S = 30
INTERNET = "internet"


class DiagramError(AirlockError):
    """The diagram could not be drawn (Graphviz missing or failing)."""


def _q(text: object) -> str:
    """A DOT quoted string: only backslash and double quote need escaping inside quotes."""
    escaped = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _label(*lines: object) -> str:
    # Each line is escaped on its own, then joined with DOT's centred line break.
    return '"' + "\\n".join(_q(line)[1:-1] for line in lines) + '"'


def _ports(rule: dict) -> str:
    ports = ",".join(str(p) for p in sorted(rule.get("ports") or []))
    return f"{rule.get('proto', 'any')}/{ports}" if ports else rule.get("proto", "any")


def _network_of(address: str, networks: dict) -> str | None:
    """The first named network (by name) whose CIDRs hold the address, so the host is drawn inside it."""
    ip = ipaddress.ip_address(address)
    for name in sorted(networks):
        for cidr in networks[name]:
            net = ipaddress.ip_network(cidr, strict=False)
            if ip.version == net.version and ip in net:
                return name
    return None


def _endpoint(target: str, networks: dict, extra: set[str]) -> str:
    """Node id of a rule's source or destination: a named network, or a bare CIDR drawn on its own."""
    if target in networks:
        return f"net:{target}"
    extra.add(target)
    return f"cidr:{target}"


def _host_node(host: dict) -> str:
    listening = ", ".join(str(p) for p in sorted(host.get("listening") or []))
    label = _label(host["name"], host["address"], f"listening: {listening or 'none'}")
    return f"{_q('host:' + host['name'])} [label={label}, shape=box, style=bold];"


def _cloud_lines(cloud: dict) -> list[str]:
    vpc = cloud["vpc"]
    lines = [
        f"  subgraph {_q('cluster_cloud')} {{",
        f"    label={_label('cloud VPC', vpc['id'])}; style=rounded; color=steelblue;",
        f"    {_q('cloud:vpc')} [label={_label(vpc['id'], vpc['cidr'])}, shape=box3d];",
    ]
    for subnet in sorted(cloud.get("subnets") or [], key=lambda s: s["id"]):
        label = _label("subnet " + subnet["id"], subnet["cidr"], subnet.get("zone", ""))
        lines.append(f"    {_q('cloud:' + subnet['id'])} [label={label}, shape=box];")
        lines.append(
            f"    {_q('cloud:vpc')} -> {_q('cloud:' + subnet['id'])} [arrowhead=none, style=dotted];"
        )
    for endpoint in sorted(cloud.get("endpoints") or [], key=lambda e: e["id"]):
        label = _label("endpoint " + endpoint["id"], f"{endpoint['service']} ({endpoint.get('type', '')})")
        lines.append(f"    {_q('cloud:' + endpoint['id'])} [label={label}, shape=component];")
        lines.append(
            f"    {_q('cloud:vpc')} -> {_q('cloud:' + endpoint['id'])} [arrowhead=none, style=dotted];"
        )
    lines.append("  }")
    return lines


def dot_source(topology: dict) -> str:
    """The diagram as DOT text: a cluster per network, hosts, allowed flows, cloud VPC, the internet."""
    networks = topology.get("networks") or {}
    hosts = sorted(topology.get("hosts") or [], key=lambda h: h["name"])
    cloud = topology.get("cloud")
    homes: dict[str | None, list[dict]] = {}
    for host in hosts:
        homes.setdefault(_network_of(host["address"], networks), []).append(host)

    lines = [
        f"digraph {_q('airlock')} {{",
        '  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.4, ranksep=1.0];',
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for name in sorted(networks):
        lines += [
            f"  subgraph {_q('cluster_net_' + name)} {{",
            f"    label={_label('network ' + name)}; style=rounded; color=gray40;",
            f"    {_q('net:' + name)} [label={_label(name, *sorted(networks[name]))}, shape=folder];",
            *(f"    {_host_node(h)}" for h in homes.get(name, [])),
            "  }",
        ]
    lines += [f"  {_host_node(h)}" for h in homes.get(None, [])]

    edges: list[str] = []
    extra: set[str] = set()
    for rule in sorted(topology.get("inbound") or [], key=lambda r: r["name"]):
        label = _label(_ports(rule), rule["name"])
        for source in sorted(rule.get("from") or []):
            node = _endpoint(source, networks, extra)
            edges += [
                f"  {_q(node)} -> {_q('host:' + h['name'])} [label={label}, color=darkgreen];" for h in hosts
            ]
    for rule in sorted(topology.get("outbound") or [], key=lambda r: r["name"]):
        label = _label(_ports(rule), rule["name"])
        for target in sorted(rule.get("to") or []):
            node = _endpoint(target, networks, extra)
            edges += [
                f"  {_q('host:' + h['name'])} -> {_q(node)} [label={label}, color=blue];" for h in hosts
            ]
    lines += [f"  {_q('cidr:' + cidr)} [label={_label(cidr)}, shape=ellipse];" for cidr in sorted(extra)]

    if cloud:
        lines += _cloud_lines(cloud)
    lines.append(
        f"  {_q(INTERNET)} [label={_label('internet')}, shape=doubleoctagon, color=red, fontcolor=red];"
    )
    gateways = sorted(g["id"] for g in (cloud or {}).get("internet_gateways") or [])
    if gateways:
        # An attached gateway is a path around every host firewall: draw it as an open, solid route.
        edges += [
            f"  {_q('cloud:vpc')} -> {_q(INTERNET)} "
            f"[label={_label(f'INTERNET GATEWAY {g} attached')}, color=red, fontcolor=red, penwidth=2];"
            for g in gateways
        ]
    else:
        edges += [
            f"  {_q('host:' + h['name'])} -> {_q(INTERNET)} "
            f"[label={_label('denied (nftables drop)')}, color=red, fontcolor=red, style=dashed];"
            for h in hosts
        ]
    return "\n".join([*lines, *edges, "}"]) + "\n"


def render_svg(topology: dict) -> bytes:
    """The diagram as SVG bytes, drawn by Graphviz `dot` (same topology, same bytes)."""
    dot = shutil.which("dot")
    if dot is None:
        raise DiagramError("Graphviz `dot` was not found on PATH: install Debian's `graphviz` package")
    try:
        result = subprocess.run(
            [dot, "-Tsvg"], input=dot_source(topology).encode(), capture_output=True, timeout=DOT_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise DiagramError(f"Graphviz `dot` did not finish within {DOT_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        raise DiagramError(f"Graphviz `dot` failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout
