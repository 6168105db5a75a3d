"""inference_service: the HTTPS API runs under a hardened unit as `airlock`, is the only listener besides
sshd, speaks TLS 1.3 only, and generates an image for a caller with an API key (and not without); the
image is stored encrypted, carries provenance signed with the host's key, and the prompt policy is
the shipped one; the retention job runs."""

import base64
import re
import ssl
from pathlib import Path

import httpx
import pytest

from airlock.keys import load_verifier
from airlock.provenance import verify

AIRLOCK = "/opt/airlock/venv/bin/airlock"
HARDENING = {
    "User": "airlock",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "DevicePolicy": "closed",
    "ProtectKernelModules": "yes",
    "RestrictNamespaces": "yes",
}
UNORDERED = {
    "RestrictAddressFamilies": {"AF_UNIX", "AF_INET", "AF_INET6"},
    "IPAddressDeny": {"0.0.0.0/0", "::/0"},
}


@pytest.fixture(scope="module")
def api(host, tmp_path_factory):
    ca = tmp_path_factory.mktemp("tls") / "ca.crt"
    ca.write_text(host.file("/etc/airlock/tls/ca.crt").content_string)
    address = host.ansible.get_variables()["ansible_host"]
    return {"url": f"https://{address}:8443", "address": address, "ca": ca}


@pytest.fixture(scope="module")
def api_key(host):
    """A key made the way an operator makes one: as the service user, printed once, audited."""
    with host.sudo():
        out = host.check_output(
            f"runuser -u airlock -- {AIRLOCK} apikeys create --tenant lab_tenant "
            "--permissions generate,jobs:read,models:read --expires 30d --created-by infra-tests"
        )
    return re.search(r"api_key:\s+(alk_\S+)", out).group(1)


def context(ca, **versions) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    for name, value in versions.items():
        setattr(ctx, name, value)
    return ctx


def test_the_service_runs_enabled_as_the_airlock_user(host):
    service = host.service("airlock")
    assert service.is_enabled and service.is_running
    pid = host.check_output("systemctl show -p MainPID --value airlock")
    assert host.check_output(f"ps -o user= -p {pid}") == "airlock"


def test_the_unit_carries_every_hardening_property(host):
    names = [
        *HARDENING,
        *UNORDERED,
        "ReadWritePaths",
        "IPAddressAllow",
        "SystemCallFilter",
        "DeviceAllow",
        "Environment",
    ]
    shown = dict(
        line.split("=", 1)
        for line in host.check_output(f"systemctl show airlock -p {','.join(names)}").splitlines()
    )
    assert {k: shown[k] for k in HARDENING} == HARDENING
    assert {k: set(shown[k].split()) for k in UNORDERED} == UNORDERED
    # The encrypted stores, their KEKs and the audit root; not the key store, config or code.
    assert sorted(shown["ReadWritePaths"].split()) == [
        "/var/lib/airlock/kek",
        "/var/lib/airlock/outputs",
        "/var/lib/airlock/prompt-kek",
        "/var/lib/airlock/prompts",
        "/var/log/airlock/audit",
    ]
    assert "10.231.1.0/24" in shown["IPAddressAllow"] and "0.0.0.0/0" not in shown["IPAddressAllow"]
    assert "socket" in shown["SystemCallFilter"] and "reboot" not in shown["SystemCallFilter"].split()
    assert "char-nvidia-frontend rw" in shown["DeviceAllow"]
    assert "HF_HUB_OFFLINE=1" in shown["Environment"] and "TRANSFORMERS_OFFLINE=1" in shown["Environment"]


def test_the_running_service_is_really_confined(host):
    """Not just declared: the kernel's view of the live process and of its mount namespace."""
    pid = host.check_output("systemctl show -p MainPID --value airlock")
    with host.sudo():
        status = dict(
            line.split(":", 1) for line in host.file(f"/proc/{pid}/status").content_string.splitlines()
        )
        writable = {
            path: host.run(f"nsenter -t {pid} -m -- test -w {path}").rc == 0
            for path in ("/usr", "/etc/airlock", "/srv/model_registry", "/var/log/airlock/audit")
        }
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
    assert int(status["CapBnd"], 16) == 0 and int(status["CapEff"], 16) == 0
    assert writable == {
        "/usr": False,
        "/etc/airlock": False,
        "/srv/model_registry": False,
        "/var/log/airlock/audit": True,
    }


def test_only_sshd_and_the_api_listen_on_tcp(host):
    ports = {int(s.rsplit(":", 1)[1]) for s in host.socket.get_listening_sockets() if s.startswith("tcp")}
    assert ports == {22, 8443}


def test_tls_12_is_refused_and_tls_13_accepted(api):
    with pytest.raises((ssl.SSLError, httpx.ConnectError)):
        httpx.get(f"{api['url']}/ping", verify=context(api["ca"], maximum_version=ssl.TLSVersion.TLSv1_2))
    answer = httpx.get(f"{api['url']}/ping", verify=context(api["ca"]))
    assert answer.status_code == 200


def test_config_keys_and_certificates_have_tight_modes(host):
    expected = {
        "/etc/airlock": ("root", "airlock", 0o750),
        "/etc/airlock/airlock.toml": ("root", "airlock", 0o640),
        "/etc/airlock/tls/server.key": ("root", "airlock", 0o640),
        "/var/lib/airlock/apikeys.json": ("airlock", "airlock", 0o600),
    }
    with host.sudo():
        actual = {
            path: (host.file(path).user, host.file(path).group, host.file(path).mode) for path in expected
        }
        assert not host.file("/etc/airlock/tls/ca.key").exists  # the CA key never leaves the controller
    assert actual == expected


def test_an_image_is_generated_over_https_with_a_key_and_not_without(api, api_key):
    body = {
        "prompt": "a lighthouse",
        "performance_selection": "Lightning",
        "aspect_ratios_selection": "1024*1024",
        "image_seed": 11,
        "require_base64": True,
    }
    client = httpx.Client(base_url=api["url"], verify=context(api["ca"]), timeout=120)
    refused = client.post("/v1/generation/text-to-image", json=body)
    assert refused.status_code == 401
    answer = client.post("/v1/generation/text-to-image", json=body, headers={"X-API-KEY": api_key})
    assert answer.status_code == 200, answer.text
    image = base64.b64decode(answer.json()[0]["base64"])
    assert (
        image.startswith(b"\x89PNG") and answer.json()[0]["seed"] == "11"
    )  # Fooocus-API sends seeds as strings


def test_the_image_is_encrypted_at_rest_and_its_provenance_verifies(host, api, api_key, tmp_path):
    body = {"prompt": "a harbour at dawn", "performance_selection": "Lightning", "image_seed": 12}
    client = httpx.Client(base_url=api["url"], verify=context(api["ca"]), timeout=120)
    answer = client.post("/v1/generation/text-to-image", json=body, headers={"X-API-KEY": api_key})
    assert answer.status_code == 200, answer.text
    image = client.get(answer.json()[0]["url"], headers={"X-API-KEY": api_key})
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    (tmp_path / "signing.pub").write_text(host.file("/etc/airlock/keys/signing.pub").content_string)
    verdict = verify(image.content, [load_verifier(tmp_path / "signing.pub")])
    assert verdict.valid, verdict.reasons
    with host.sudo():
        stores = "/var/lib/airlock/outputs /var/lib/airlock/prompts"
        plaintext = host.run(f"LC_ALL=C grep -rlaP '\\x89PNG' {stores}")
        keks = host.check_output("stat -c '%U %a' /var/lib/airlock/kek /var/lib/airlock/prompt-kek")
    assert plaintext.rc == 1 and plaintext.stdout == "", plaintext.stdout  # grep found nothing
    assert keks.split("\n") == ["airlock 700", "airlock 700"]


def test_the_prompt_policy_is_the_shipped_one(host):
    shipped = (Path(__file__).resolve().parents[3] / "policies" / "prompts.yml").read_text()
    installed = host.file("/etc/airlock/prompts.yml")
    assert installed.content_string == shipped
    assert (installed.user, installed.group, installed.mode) == ("root", "airlock", 0o640)


def test_the_retention_job_is_scheduled_and_runs(host):
    assert host.service("airlock-retention.timer").is_enabled
    with host.sudo():
        started = host.run("systemctl start airlock-retention.service")
        result = host.check_output("systemctl show --property=Result --value airlock-retention.service")
        journal = host.run("journalctl --no-pager -n 20 -u airlock-retention.service").stdout
    assert started.rc == 0, started.stderr + journal
    assert result == "success", journal
