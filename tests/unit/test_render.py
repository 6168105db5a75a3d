"""The evidence pack's human-facing renderers: diagram (DOT/SVG), index.html and the procedures."""

import re
import shutil
import xml.etree.ElementTree as ET

import jinja2
import pytest
from evidence_sample import sample
from typer.main import get_command

from airlock.cli import app
from airlock.errors import AirlockError
from compliance.render import diagram
from compliance.render.diagram import DiagramError, dot_source, render_svg
from compliance.render.html import check_anchor, render_index
from compliance.render.procedures import render_procedures

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")

FACTS = {
    "hosts": [
        {
            "name": "enclave",
            "address": "10.231.0.2",
            "service_unit": "airlock.service",
            "config": "/etc/airlock/airlock.toml",
            "audit_root": "/var/log/airlock/audit",
            "registry_root": "/srv/model_registry",
            "apikeys": "/var/lib/airlock/apikeys.json",
            "outputs": "/var/lib/airlock/outputs",
            "output_keys": "/var/lib/airlock/kek",
            "prompt_keys": "/var/lib/airlock/prompt-kek",
            "signing_key": "/etc/airlock/keys",
            "tls_dir": "/etc/airlock/tls",
            "bundle_dir": "/srv/airlock/bundles/current",
            "airlock": "/opt/airlock/venv/bin/airlock",
            "port": 8443,
        }
    ],
    "inventory": "inventory/lab",
    "system": "airlock-lab",
}


def topology() -> dict:
    return sample()["inventory"]["topology"]


def with_gateway() -> dict:
    topo = topology()
    topo["cloud"]["internet_gateways"] = [{"id": "igw-0bad", "attachments": [{"vpc_id": "vpc-0abc"}]}]
    return topo


# --- diagram -------------------------------------------------------------------------------------------


def test_dot_shows_every_host_network_rule_and_the_denied_internet():
    dot = dot_source(topology())
    assert '"host:enclave"' in dot and "10.231.0.2" in dot and "listening: 22, 8443" in dot
    for name, cidrs in topology()["networks"].items():
        assert f'"cluster_net_{name}"' in dot and all(c in dot for c in cidrs)
    for rule in ["management-ssh", "service-api", "internal-dns", "internal-services"]:
        assert rule in dot
    assert '"net:mgmt" -> "host:enclave" [label="tcp/22\\nmanagement-ssh"' in dot
    assert '"host:enclave" -> "cidr:10.231.1.1/32"' in dot
    assert '"host:enclave" -> "internet" [label="denied (nftables drop)"' in dot and "style=dashed" in dot
    assert '"cluster_cloud"' in dot and "vpc-0abc" in dot and "subnet-1" in dot and "vpce-1" in dot
    assert "INTERNET GATEWAY" not in dot


def test_an_internet_gateway_replaces_the_denied_edges_with_an_open_route_from_the_vpc():
    dot = dot_source(with_gateway())
    assert '"cloud:vpc" -> "internet" [label="INTERNET GATEWAY igw-0bad attached"' in dot
    assert "denied (nftables drop)" not in dot


def test_dot_labels_are_quoted_and_escaped():
    topo = topology()
    topo["hosts"][0]["name"] = 'gpu-1.example:a/b "x" \\y'
    dot = dot_source(topo)
    assert '"host:gpu-1.example:a/b \\"x\\" \\\\y"' in dot


def test_dot_is_the_same_whatever_the_input_order():
    topo = topology()
    shuffled = topology()
    shuffled["inbound"].reverse()
    shuffled["outbound"].reverse()
    shuffled["networks"] = dict(reversed(list(shuffled["networks"].items())))
    shuffled["hosts"][0]["listening"].reverse()
    assert dot_source(shuffled) == dot_source(topo)


@needs_dot
def test_svg_is_xml_and_byte_identical_across_renders():
    first = render_svg(topology())
    root = ET.fromstring(first)  # noqa: S314 - our own dot output
    assert root.tag.endswith("svg") and "denied (nftables drop)" in list(root.itertext())
    assert render_svg(topology()) == first
    gateway = ET.fromstring(render_svg(with_gateway()))  # noqa: S314 - our own dot output
    assert "INTERNET GATEWAY igw-0bad attached" in list(gateway.itertext())


def test_missing_dot_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(diagram.shutil, "which", lambda _name: None)
    with pytest.raises(DiagramError, match="graphviz") as caught:
        render_svg(topology())
    assert isinstance(caught.value, AirlockError)


# --- index.html ----------------------------------------------------------------------------------------


@pytest.fixture
def page() -> str:
    results = sample()
    svg = render_svg(results["inventory"]["topology"]).decode() if shutil.which("dot") else None
    return render_index(results, svg)


def test_index_is_self_contained(page):
    assert not re.search(r"https?://", page)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page and "url(" not in page
    assert "@media print" in page and "break-before: page" in page


def test_index_lists_every_control_check_and_evidence_file(page):
    results = sample()
    for framework in results["frameworks"]:
        assert framework["title"] in page
        assert all(control["id"] in page for control in framework["controls"])
    for check in results["checks"]:
        anchor = check_anchor(check["id"], check["subject"])
        assert f'id="{anchor}"' in page and f'href="#{anchor}"' in page
        assert all(f'href="{path}"' in page for path in check["evidence"])
    for artifact in results["artifacts"]:
        assert f'href="{artifact["path"]}"' in page and artifact["sha256"] in page
    assert "Are access rights reviewed at least quarterly" in page
    assert "airlock evidence verify &lt;pack dir&gt; --trust &lt;public key&gt;" in page
    assert (
        'href="procedures/incident-response.md"' in page and 'href="procedures/disaster-recovery.md"' in page
    )


def test_index_shows_status_as_text_and_a_failed_control_as_fail(page):
    row = re.search(r'<tr id="control-soc2--CC6.1">(.*?)</tr>', page, re.S).group(1)
    assert '<span class="status status-fail">FAIL</span>' in row
    assert "NOT APPLICABLE" in page and "MANUAL" in page and "PASS" in page


def test_index_has_the_inventory(page):
    for text in [
        "sdxl_base",
        "ciso@example.org",
        "ak_4f3c2b1a",
        "generate, jobs:read",
        "2027-03-01T00:00:00Z",
        "SHA256:Zm9vYmFy",
        "%ops ALL=(ALL:ALL) NOPASSWD: ALL",
        "airlock-lab",
        "us-gov-west-1",
    ]:
        assert text in page
    assert "&#34;tenant&#34;: &#34;team-a&#34;" in page  # the audit sample, pretty-printed and escaped


@needs_dot
def test_index_inlines_the_diagram_without_namespace_urls(page):
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert "denied (nftables drop)" in svg
    ET.fromstring(svg)  # noqa: S314 - our own page


def test_index_without_a_diagram_says_so():
    assert "No diagram in this pack" in render_index(sample(), None)


def test_everything_from_the_results_is_escaped():
    results = sample()
    results["checks"][0]["reason"] = '<script>alert("x")</script>'
    results["system"]["name"] = "<b>sys</b>"
    page = render_index(results, None)
    assert "<script" not in page and "<b>sys" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "&lt;b&gt;sys&lt;/b&gt;" in page


def test_an_inlined_svg_loses_scripts_handlers_and_links():
    hostile = (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="x()">'
        '<script>alert(1)</script><a xlink:href="https://evil.example/"><text>t</text></a></svg>'
    )
    page = render_index(sample(), hostile)
    svg = re.search(r"<svg.*?</svg>", page, re.S).group(0)
    assert "script" not in svg and "onload" not in svg and "evil" not in svg and "<text>t</text>" in svg


def test_a_scheme_in_an_evidence_path_stays_a_relative_link():
    results = sample()
    results["checks"][0]["evidence"] = ["javascript:alert(1)"]
    assert 'href="javascript%3Aalert%281%29"' in render_index(results, None)


def test_index_is_deterministic():
    assert render_index(sample(), None) == render_index(sample(), None)


# --- procedures ----------------------------------------------------------------------------------------


def test_procedures_are_filled_with_the_real_names_and_paths():
    docs = render_procedures(sample(), FACTS)
    assert set(docs) == {"incident-response.md", "disaster-recovery.md"}
    host = FACTS["hosts"][0]
    for text in docs.values():
        assert "{{" not in text and "{%" not in text and "}}" not in text
        assert "inventory/lab" in text and "airlock-lab" in text and host["address"] in text
    incident, recovery = docs["incident-response.md"], docs["disaster-recovery.md"]
    assert "systemctl stop airlock.service" in incident
    assert "airlock apikeys revoke KEY_ID --store /var/lib/airlock/apikeys.json" in incident
    assert "airlock audit verify --root /var/log/airlock/audit --json" in incident
    assert "airlock evidence build --inventory inventory/lab" in incident
    assert "nft list table inet airlock" in incident
    assert "airlock models verify --root /srv/model_registry" in incident
    for key in [
        "audit_root",
        "registry_root",
        "apikeys",
        "output_keys",
        "prompt_keys",
        "signing_key",
        "tls_dir",
        "config",
        "outputs",
        "airlock",
    ]:
        assert f"`{host[key]}`" in recovery
    assert "ansible-playbook -i inventory/lab playbooks/site.yml" in recovery
    assert "systemctl start airlock.service" in recovery
    assert "airlock evidence verify" in recovery
    # Keys are restored before the data they protect, and the unit starts last.
    restore = recovery[recovery.index("## Restore order") :]
    assert restore.index(host["output_keys"]) < restore.index(host["outputs"] + "`, the")
    assert restore.index("airlock audit verify") < restore.index("systemctl start airlock.service")


def test_procedures_name_every_host():
    facts = {
        **FACTS,
        "hosts": [*FACTS["hosts"], {**FACTS["hosts"][0], "name": "gpu-2", "address": "10.231.0.3"}],
    }
    docs = render_procedures(sample(), facts)
    assert all("**gpu-2** (10.231.0.3)" in text for text in docs.values())


def test_procedures_refuse_missing_facts():
    facts = {**FACTS, "hosts": [{k: v for k, v in FACTS["hosts"][0].items() if k != "tls_dir"}]}
    with pytest.raises(jinja2.UndefinedError, match="tls_dir"):
        render_procedures(sample(), facts)


def test_procedures_use_only_cli_commands_that_exist():
    cli = get_command(app)
    docs = render_procedures(sample(), FACTS)
    for text in docs.values():
        for group, command in re.findall(r"\bairlock ([a-z]+) ([a-z-]+)", text):
            if group == "evidence":  # written alongside this renderer
                assert command in {"build", "verify"}
                continue
            assert command in cli.commands[group].commands, f"airlock {group} {command}"
