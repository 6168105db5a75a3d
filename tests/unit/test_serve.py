"""`airlock serve --config FILE` as an operator runs it: a separate process, a TOML config, mutual TLS,
an audited start and stop, and a refusal that names the setting when the config is insecure."""

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import TENANT, build_registry
from redis_server import free_port

from airlock.apikeys import create_key
from airlock.audit import AuditLog
from airlock.ca import client_context, init_ca, issue

AIRLOCK = [sys.executable, "-m", "airlock.cli"]
ROOT = Path(__file__).resolve().parents[2]


def toml(sections: dict) -> str:
    def value(v):
        return json.dumps(str(v) if isinstance(v, Path) else v)

    return "\n".join(
        f"[{name}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items())
        for name, body in sections.items()
    )


@pytest.fixture(scope="module")
def deployment(tiny, tmp_path_factory):
    """What the inference_service role lays down: CA, server and client certs, keys, registry, config."""
    work = tmp_path_factory.mktemp("serve")
    _, setup_audit, registry = build_registry(work, tiny)
    setup_audit.close()
    for path in (registry, registry / "model_manifest.yaml"):  # models are read-only to the service
        path.chmod(path.stat().st_mode & ~0o222)
    ca = init_ca(work / "tls")
    cert, key = issue(ca, ["localhost", "127.0.0.1"], work / "tls")
    client_cert, client_key = issue(ca, ["batch-renderer"], work / "tls", client=True)
    with AuditLog(work / "audit") as audit:
        api_key, _ = create_key(
            work / "apikeys.json", tenant=TENANT, permissions=["models:read"], created_by="t", audit=audit
        )
    port = free_port()
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "tls_cert": cert,
            "tls_key": key,
            "client_ca": ca.cert_path,
        },
        "paths": {
            "apikeys": work / "apikeys.json",
            "audit_root": work / "audit",
            "registry": registry,
            "trust_key": work / "keys",
            "outputs": work / "outputs",
            "output_keys": work / "kek",
            "prompts": work / "prompts",
            "prompt_keys": work / "prompt-kek",
            "prompt_policy": ROOT / "policies" / "prompts.yml",  # the shipped policy, as the role installs it
            "signing_key": work / "keys",
        },
        "engine": {"device": "cpu", "dtype": "float32", "optimize": False},
        "limits": {"min_side": 64},
    }
    yield {
        "work": work,
        "config": config,
        "url": f"https://localhost:{port}",
        "ca": ca.cert_path,
        "client": (client_cert, client_key),
        "api_key": api_key,
    }
    for path in (registry, registry / "model_manifest.yaml"):
        path.chmod(path.stat().st_mode | 0o200)


def write_config(deployment, name, **overrides) -> Path:
    config = {
        section: {**body, **overrides.get(section, {})} for section, body in deployment["config"].items()
    }
    path = deployment["work"] / name
    path.write_text(toml(config))
    return path


def test_an_insecure_config_is_refused_naming_the_setting(deployment):
    config = write_config(deployment, "no-tls.toml", server={"tls_cert": "", "tls_key": ""})
    config.write_text(config.read_text().replace('tls_cert = ""\n', "").replace('tls_key = ""\n', ""))
    result = subprocess.run(
        [*AIRLOCK, "serve", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "server.tls_cert / server.tls_key: TLS is required" in result.stderr


def test_serve_with_mutual_tls_audits_start_and_stop(deployment):
    config = write_config(deployment, "airlock.toml")
    process = subprocess.Popen(
        [*AIRLOCK, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    try:
        cert, key = deployment["client"]
        with_cert = client_context(deployment["ca"], cert=cert, key=key)
        http = httpx.Client(base_url=deployment["url"], verify=with_cert, timeout=30)
        deadline = time.monotonic() + 180
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.5)

        styles = http.get("/v1/engines/styles", headers={"X-API-KEY": deployment["api_key"]})
        assert styles.status_code == 200 and "Airlock Sharp" in styles.json()

        # Without a client certificate the TLS handshake itself fails: no request reaches the app.
        anonymous = httpx.Client(base_url=deployment["url"], verify=client_context(deployment["ca"]))
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            anonymous.get("/v1/engines/styles", headers={"X-API-KEY": deployment["api_key"]})
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 0, output
    events = [
        json.loads(line)
        for path in (deployment["work"] / "audit").glob("*/system_events.jsonl")
        for line in path.read_text().splitlines()
    ]
    started = [e for e in events if e["event"] == "service.started"]
    assert started and started[-1]["mutual_tls"] is True and started[-1]["models_loaded"] == 1
    assert events[-1]["event"] == "service.stopped"
