"""Evidence packs end to end, on a raw/ folder really collected from the lab host `enclave`.

tests/unit/data/evidence_raw is what `airlock evidence build` gathered from a provisioned host: with it
every automated control passes. Each check is then shown failing on the one edit to the live system
it exists to catch (and the controls citing it failing with it), and the signed pack is shown to
betray every kind of tampering.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from markupsafe import escape
from typer.testing import CliRunner

from airlock.audit import AuditLog
from airlock.cli import app
from airlock.keys import init_keys, load_verifier
from airlock.store import FileKeks, OutputStore
from airlock.store.envelope import MAGIC
from compliance import catalogs, collect, pack
from compliance.checks import CHECKS, FAIL, MANUAL, NA, PASS
from compliance.collectors import host_probe
from compliance.evaluate import build_results, control_status
from compliance.render import diagram

DATA = Path(__file__).parent / "data" / "evidence_raw"
TS = "2026-12-04T06:00:00Z"
TS_LATER = "2026-12-05T07:30:00Z"
HOST_CHECKS = sorted(c.id for c in CHECKS.values() if c.scope == "host")
CLOUD_CHECKS = sorted(c.id for c in CHECKS.values() if c.scope == "cloud")
DR_CHECKS = sorted(c.id for c in CHECKS.values() if c.scope == "dr")
OTHER_CHECKS = sorted(c.id for c in CHECKS.values() if c.scope not in ("host", "dr"))

runner = CliRunner()


# ---- helpers -------------------------------------------------------------------------------------


def copy_src(dest: Path) -> Path:
    """A pack-like folder holding a copy of the captured raw/: what `--from-raw` reads."""
    shutil.copytree(DATA, dest / "raw")
    return dest


@pytest.fixture
def src(tmp_path) -> Path:
    return copy_src(tmp_path / "src")


def build_pack(src: Path, out: Path, signer, generated_at: str = TS) -> tuple[Path, dict]:
    return pack.build(out, lambda staging: collect.copy_raw(src, staging), signer, generated_at)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evidence-keys") / "keys"
    return init_keys(folder), folder / "signing.pub"


@pytest.fixture(scope="module")
def good(tmp_path_factory, keys) -> tuple[Path, dict]:
    """One signed pack from the captured raw/, shared read-only (copy it before changing it)."""
    base = tmp_path_factory.mktemp("good")
    return build_pack(copy_src(base / "src"), base / "pack", keys[0])


@pytest.fixture(scope="module")
def drifted(tmp_path_factory, keys) -> tuple[Path, dict]:
    """A later pack of the same host after someone enabled SSH passwords and stopped the seal timer."""
    base = tmp_path_factory.mktemp("drifted")
    source = copy_src(base / "src")
    password_login(source / "raw")
    seal_timer_stopped(source / "raw")
    return build_pack(source, base / "pack", keys[0], TS_LATER)


def host(raw: Path, name: str) -> Path:
    return raw / "enclave" / name


def edit(raw: Path, name: str, fn: Callable[[str], str]) -> None:
    path = host(raw, name)
    before = path.read_text()
    after = fn(before)
    assert after != before, f"the mutation of {name} changed nothing"
    path.write_text(after)


def replace(raw: Path, name: str, old: str, new: str) -> None:
    def swap(text: str) -> str:
        assert old in text, f"{old!r} not in {name}"
        return text.replace(old, new)

    edit(raw, name, swap)


def edit_json(raw: Path, name: str, fn: Callable[[object], object]) -> None:
    path = host(raw, name)
    data = json.loads(path.read_text())
    data = fn(data) or data
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def set_rc(raw: Path, name: str, rc: int, stderr: str = "") -> None:
    """What collection.json says the command producing raw/enclave/NAME exited with."""
    index = raw / "collection.json"
    collection = json.loads(index.read_text())
    (entry,) = [a for a in collection["artifacts"] if a["path"] == f"raw/enclave/{name}"]
    entry.update(rc=rc, stderr=stderr)
    index.write_text(json.dumps(collection, indent=2, sort_keys=True) + "\n")


def controls_citing(check_ids: set[str]) -> set[tuple[str, str]]:
    return {
        (catalog["id"], control["id"])
        for catalog in catalogs.load_all()
        for control in catalog["controls"]
        if check_ids & set(control["checks"])
    }


def statuses(results: dict) -> dict[tuple[str, str], str]:
    return {(f["id"], c["id"]): c["status"] for f in results["frameworks"] for c in f["controls"]}


def failing_controls(results: dict) -> set[tuple[str, str]]:
    return {key for key, status in statuses(results).items() if status == FAIL}


def host_checks(results: dict) -> dict[str, dict]:
    return {c["id"]: c for c in results["checks"] if c["subject"] == "enclave"}


def cli(*args: str):
    nouns = {group.name for group in app.registered_groups}
    assert "evidence" in nouns, (
        "`airlock evidence` is not registered: the airlock.commands entry point is not visible "
        "(a stale airlock.egg-info/ in the repo root shadows the installed metadata? pip install -e .)"
    )
    return runner.invoke(app, ["evidence", *map(str, args)], terminal_width=250)


def verify_cli(pack_dir: Path, pubkey: Path):
    return cli("verify", pack_dir, "--trust", pubkey)


# ---- mutations of the live system, as the collected artifacts would show them ------------------------


def flushed_ruleset(raw):  # `nft flush ruleset`: what is left is nft's own metainfo
    edit_json(raw, "nft_ruleset.json", lambda d: {"nftables": d["nftables"][:1]})


def chain(d: dict, name: str) -> dict:
    return next(i["chain"] for i in d["nftables"] if i.get("chain", {}).get("name") == name)


def output_policy_accept(raw):
    edit_json(raw, "nft_ruleset.json", lambda d: chain(d, "output").update(policy="accept"))


def extra_accept_rule(raw):
    rule = {
        "family": "inet",
        "table": "airlock",
        "chain": "output",
        "handle": 99,
        "comment": "debug-anywhere",
        "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 443}},
            {"accept": None},
        ],
    }
    edit_json(raw, "nft_ruleset.json", lambda d: d["nftables"].insert(-2, {"rule": rule}))


def conf_from_other_policy(raw):
    edit(raw, "nftables.conf", lambda t: re.sub(r"sha256 [0-9a-f]{64}", "sha256 " + "ab" * 32, t))


def outside_reached(raw):
    edit_json(raw, "egress_probe.json", lambda d: d["outside"][0].update(reached=True, detail="answered"))


def allowed_silent(raw):
    edit_json(raw, "egress_probe.json", lambda d: d["allowed"][1].update(reached=False, detail="timed out"))


def add_socket(line: str):
    return lambda raw: edit(raw, "sockets.txt", lambda t: t + line + "\n")


def sshd(old: str, new: str):
    return lambda raw: replace(raw, "sshd_effective.txt", f"\n{old}\n", f"\n{new}\n")


def password_login(raw):
    sshd("passwordauthentication no", "passwordauthentication yes")(raw)


def weak_cipher(raw):
    edit(
        raw,
        "sshd_effective.txt",
        lambda t: re.sub(r"^(ciphers .*)$", r"\1,aes128-cbc", t, flags=re.MULTILINE),
    )


def unit(old: str, new: str):
    return lambda raw: replace(raw, "service_unit.txt", f"\n{old}\n", f"\n{new}\n")


def cert_valid_when_probed(probe: dict) -> None:
    probe["probed_at"] = "2020-01-01T00:00:00Z"
    probe["certificate"]["not_after"] = "2020-06-01T00:00:00Z"


def tls(fn: Callable[[dict], object]):
    return lambda raw: edit_json(raw, "tls_probe.json", fn)


def mode(path: str, new: str):
    def change(entries):
        (entry,) = [e for e in entries if e["path"] == path]
        entry["mode"] = new

    return lambda raw: edit_json(raw, "file_modes.json", change)


def audit_broken(raw):
    finding = {"message": "2026-12-04/generations.jsonl line 3: hash does not chain", "kind": "chain"}
    edit_json(raw, "audit_verify.json", lambda d: d.update(findings=[finding], ok=False))
    set_rc(raw, "audit_verify.json", 1)


def timer_state(timer: str, state: str):
    def change(raw):
        replace(raw, "timers.txt", f"Id={timer}\nActiveState=active", f"Id={timer}\nActiveState={state}")

    return change


def seal_timer_stopped(raw):
    timer_state("airlock-audit-seal.timer", "inactive")(raw)


def models_altered(raw):
    host(raw, "models_verify.txt").write_text("")
    set_rc(raw, "models_verify.txt", 1, "sd_xl_base_1.0 1.0: model.safetensors sha256 differs\n")


def bundle_altered(raw):
    host(raw, "bundle_verify.txt").write_text("FAILED: wheels/airlock-0.1.0.whl checksum mismatch\n")
    set_rc(raw, "bundle_verify.txt", 1)


def png_in_store(raw):
    path = "/var/lib/airlock/outputs/lab_tenant/0001.png"
    edit_json(raw, "store_scan.json", lambda d: d.update(files=1, plaintext_like={"png": [path]}))


def api_key(**fields):
    key = {
        "key_id": "ak_0123456789ab",
        "tenant": "lab_tenant",
        "permissions": ["generate"],
        "rate": None,
        "status": "active",
        "created_at": "2026-12-01T00:00:00Z",
        "created_by": "ops",
        "expires_at": "2027-03-01T00:00:00Z",
        "revoked_at": None,
        **fields,
    }
    return lambda raw: edit_json(raw, "apikeys.json", lambda keys: [*keys, key])


def ssh_key_of(user: str):
    def add(keys):
        return [*keys, {**keys[0], "user": user, "file": f"/home/{user}/.ssh/authorized_keys"}]

    return lambda raw: edit_json(raw, "authorized_keys.json", add)


def delete(name: str):
    return lambda raw: host(raw, name).unlink()


def ntp(servers: str):
    return lambda raw: replace(raw, "timesyncd.txt", "\nNTP=10.231.1.1\n", f"\nNTP={servers}\n")


# (mutation, {check: reason fragment} that must fail -- exactly those --, the artifact that changed)
MUTATIONS = [
    pytest.param(
        flushed_ruleset,
        {
            "egress_default_deny": "has no output chain",
            "egress_rules_match_policy": "policy rule internal-dns is not loaded",
        },
        "nft_ruleset.json",
        id="ruleset-flushed",
    ),
    pytest.param(
        output_policy_accept,
        {"egress_default_deny": "output chain policy is accept, not drop"},
        "nft_ruleset.json",
        id="output-policy-accept",
    ),
    pytest.param(
        extra_accept_rule,
        {"egress_rules_match_policy": "output rule 99 (debug-anywhere) is not in the policy"},
        "nft_ruleset.json",
        id="unknown-accept-rule",
    ),
    pytest.param(
        lambda raw: (
            host(raw, "nft_ruleset.json").write_text(""),
            set_rc(raw, "nft_ruleset.json", 1, "Error: Could not process rule"),
        ),
        {
            "egress_default_deny": "nft_ruleset.json is not JSON",
            "egress_rules_match_policy": "nft_ruleset.json is not JSON",
        },
        "nft_ruleset.json",
        id="nft-failed",
    ),
    pytest.param(  # valid JSON of another shape (an older probe): this check fails, the pack still builds
        lambda raw: host(raw, "egress_probe.json").write_text('{"targets": []}\n'),
        {"egress_probe_blocked": "evidence missing or unreadable: egress_probe.json: KeyError('outside')"},
        "egress_probe.json",
        id="probe-other-shape",
    ),
    pytest.param(
        conf_from_other_policy,
        {"egress_rules_match_policy": "nftables.conf was rendered from policy sha256 abababababab"},
        "nftables.conf",
        id="conf-other-policy",
    ),
    pytest.param(
        outside_reached,
        {"egress_probe_blocked": "tcp 203.0.113.80:80 answered"},
        "egress_probe.json",
        id="outside-reached",
    ),
    pytest.param(
        allowed_silent,
        {"egress_probe_blocked": "allowed udp 10.231.1.1 did not answer: the probe proves nothing"},
        "egress_probe.json",
        id="allowed-silent",
    ),
    pytest.param(
        add_socket("udp UNCONN 0      0            0.0.0.0:5353      0.0.0.0:*"),
        {"listening_services_expected": "udp 0.0.0.0:5353 listens"},
        "sockets.txt",
        id="udp-wildcard",
    ),
    pytest.param(
        add_socket("tcp LISTEN 0      511          0.0.0.0:6379      0.0.0.0:*"),
        {"listening_services_expected": "tcp 0.0.0.0:6379 listens"},
        "sockets.txt",
        id="tcp-wildcard",
    ),
    pytest.param(
        add_socket("tcp LISTEN 0      511      10.231.0.10:9000      0.0.0.0:*"),
        {"listening_services_expected": "tcp 10.231.0.10:9000 listens"},
        "sockets.txt",
        id="tcp-on-address",
    ),
    pytest.param(
        add_socket("tcp LISTEN 0      511        127.0.0.1:6379      0.0.0.0:*"),
        {},
        "sockets.txt",
        id="loopback-listener-ok",
    ),
    pytest.param(
        add_socket("tcp LISTEN 0      511            [::1]:6379         [::]:*"),
        {},
        "sockets.txt",
        id="ipv6-loopback-listener-ok",
    ),
    pytest.param(
        password_login,
        {"ssh_key_only": "passwordauthentication yes"},
        "sshd_effective.txt",
        id="ssh-passwords",
    ),
    pytest.param(
        sshd("permitrootlogin no", "permitrootlogin prohibit-password"),
        {"ssh_key_only": "permitrootlogin prohibit-password"},
        "sshd_effective.txt",
        id="ssh-root",
    ),
    pytest.param(
        weak_cipher, {"ssh_strong_crypto": "ciphers: aes128-cbc"}, "sshd_effective.txt", id="ssh-weak-cipher"
    ),
    pytest.param(
        sshd("clientaliveinterval 300", "clientaliveinterval 0"),
        {"ssh_idle_timeout": "clientaliveinterval 0"},
        "sshd_effective.txt",
        id="ssh-no-idle-timeout",
    ),
    pytest.param(
        sshd("clientaliveinterval 300", "clientaliveinterval 1800"),
        {},
        "sshd_effective.txt",
        id="ssh-idle-1h-ok",
    ),
    pytest.param(
        sshd("banner /etc/issue.net", "banner none"),
        {"login_banner": "sshd shows no banner"},
        "sshd_effective.txt",
        id="no-banner",
    ),
    pytest.param(
        lambda raw: host(raw, "issue.net").write_text("Debian GNU/Linux 12\n"),
        {"login_banner": "no authorized-use notice"},
        "issue.net",
        id="no-notice",
    ),
    pytest.param(
        unit("User=airlock", "User=root"),
        {"service_hardened": "User=root, want airlock"},
        "service_unit.txt",
        id="unit-root",
    ),
    pytest.param(
        unit("NoNewPrivileges=yes", "NoNewPrivileges=no"),
        {"service_hardened": "NoNewPrivileges=no, want yes"},
        "service_unit.txt",
        id="unit-new-privileges",
    ),
    pytest.param(
        unit("CapabilityBoundingSet=", "CapabilityBoundingSet=cap_net_admin"),
        {"service_hardened": "CapabilityBoundingSet=cap_net_admin, want (empty)"},
        "service_unit.txt",
        id="unit-capability",
    ),
    pytest.param(
        lambda raw: replace(raw, "service_unit.txt", "Environment=HF_HUB_OFFLINE=1 ", "Environment="),
        {"service_hardened": "Environment lacks HF_HUB_OFFLINE=1"},
        "service_unit.txt",
        id="unit-online",
    ),
    pytest.param(
        tls(lambda d: d["tls1_2"].update(accepted=True, cipher="ECDHE-ECDSA-AES256-GCM-SHA384")),
        {"tls13_only": "TLS1.2 accepted (ECDHE-ECDSA-AES256-GCM-SHA384)"},
        "tls_probe.json",
        id="tls12-accepted",
    ),
    pytest.param(
        tls(lambda d: d["tls1_3_verified"].update(accepted=False, error="CERTIFICATE_VERIFY_FAILED")),
        {
            "tls13_only": "TLS 1.3 handshake failed: CERTIFICATE_VERIFY_FAILED",
            "tls_certificate_trusted": "no verified TLS 1.3 handshake",
        },
        "tls_probe.json",
        id="tls13-unverified",
    ),
    pytest.param(
        tls(lambda d: d["certificate"].update(not_after="2026-12-01T00:00:00Z")),
        {"tls_certificate_trusted": "certificate expired 2026-12-01T00:00:00Z"},
        "tls_probe.json",
        id="cert-expired",
    ),
    pytest.param(  # judged as of the probe, like every other artifact: old raw/ re-evaluates the same
        tls(cert_valid_when_probed),
        {},
        "tls_probe.json",
        id="cert-valid-when-probed",
    ),
    pytest.param(
        tls(lambda d: d["target"].update(server_name="enclave.example.com")),
        {"tls_certificate_trusted": "enclave.example.com not in SANs"},
        "tls_probe.json",
        id="cert-san-mismatch",
    ),
    pytest.param(
        mode("/etc/airlock/keys/signing.key", "0640"),
        {"secrets_protected": "/etc/airlock/keys/signing.key mode 0640"},
        "file_modes.json",
        id="signing-key-0640",
    ),
    pytest.param(
        mode("/etc/airlock/airlock.toml", "0666"),
        {"secrets_protected": "/etc/airlock/airlock.toml mode 0666"},
        "file_modes.json",
        id="config-world-writable",
    ),
    pytest.param(
        audit_broken,
        {"audit_chain_intact": "line 3: hash does not chain"},
        "audit_verify.json",
        id="audit-chain-broken",
    ),
    pytest.param(
        lambda raw: set_rc(raw, "audit_verify.json", 2, "Traceback ..."),
        {"audit_chain_intact": "airlock audit verify exited 2"},
        "audit_verify.json",
        id="audit-verify-crashed",
    ),
    pytest.param(
        seal_timer_stopped,
        {"audit_store_protected": "airlock-audit-seal.timer is inactive/enabled"},
        "timers.txt",
        id="seal-timer-stopped",
    ),
    pytest.param(
        mode("/var/log/airlock/audit", "0755"),
        {"audit_store_protected": "/var/log/airlock/audit mode 0755"},
        "file_modes.json",
        id="audit-root-world-readable",
    ),
    pytest.param(
        models_altered,
        {"models_verified": "model.safetensors sha256 differs"},
        "models_verify.txt",
        id="models-altered",
    ),
    pytest.param(
        mode("/srv/model_registry", "0775"),
        {"models_read_only": "/srv/model_registry mode 0775"},
        "file_modes.json",
        id="registry-group-writable",
    ),
    pytest.param(
        bundle_altered,
        {"bundle_verified": "published bundle: FAILED: wheels/airlock-0.1.0.whl checksum mismatch"},
        "bundle_verify.txt",
        id="bundle-altered",
    ),
    pytest.param(
        png_in_store,
        {"outputs_encrypted": "1 png file(s) in the clear, e.g. /var/lib/airlock/outputs/lab_tenant/"},
        "store_scan.json",
        id="png-in-store",
    ),
    pytest.param(
        lambda raw: replace(raw, "airlock.toml", 'prompt_policy = "/etc/airlock/prompts.yml"\n', ""),
        {"prompt_policy_enforced": "airlock.toml sets no prompt_policy"},
        "airlock.toml",
        id="no-prompt-policy",
    ),
    pytest.param(
        lambda raw: (host(raw, "prompts.yml").write_text(""), set_rc(raw, "prompts.yml", 1, "No such file")),
        {"prompt_policy_enforced": "/etc/airlock/prompts.yml is missing or empty"},
        "prompts.yml",
        id="prompt-policy-file-missing",
    ),
    pytest.param(
        lambda raw: replace(raw, "airlock.toml", '"fd00:a1:1::/64"]', '"fd00:a1:1::/64", "8.8.8.0/24"]'),
        {"service_egress_guard": "egress_allowed_cidrs includes 8.8.8.0/24"},
        "airlock.toml",
        id="engine-egress-outside",
    ),
    pytest.param(
        api_key(expires_at=None),
        {"api_keys_scoped": "ak_0123456789ab never expires"},
        "apikeys.json",
        id="api-key-never-expires",
    ),
    pytest.param(
        api_key(permissions=[]),
        {"api_keys_scoped": "ak_0123456789ab has no tenant or no permissions"},
        "apikeys.json",
        id="api-key-no-permissions",
    ),
    pytest.param(
        api_key(expires_at=None, status="revoked", revoked_at="2026-12-02T00:00:00Z"),
        {},
        "apikeys.json",
        id="revoked-key-ok",
    ),
    pytest.param(
        api_key(),
        {},
        "apikeys.json",
        id="scoped-expiring-key-ok",
    ),
    pytest.param(
        lambda raw: replace(raw, "journald.txt", "\nStorage=persistent\n", "\nStorage=volatile\n"),
        {"journal_persistent": "journald Storage=volatile"},
        "journald.txt",
        id="journal-volatile",
    ),
    pytest.param(
        ntp("time.google.com"),
        {"time_source_internal": "NTP server time.google.com is not an internal address"},
        "timesyncd.txt",
        id="ntp-by-name",
    ),
    pytest.param(
        ntp("10.231.1.1 162.159.200.1"),
        {"time_source_internal": "NTP server 162.159.200.1 is not an internal address"},
        "timesyncd.txt",
        id="ntp-outside-ip",
    ),
    pytest.param(
        ntp(""),
        {"time_source_internal": "no NTP server configured"},
        "timesyncd.txt",
        id="ntp-none",
    ),
    pytest.param(
        ssh_key_of("contractor"),
        {"us_person_access": "for contractor: not an attested user"},
        "authorized_keys.json",
        id="ssh-key-unattested-user",
    ),
    pytest.param(
        api_key(tenant="overseas_tenant"),
        {"us_person_access": "API key ak_0123456789ab of tenant overseas_tenant: tenant not attested"},
        "apikeys.json",
        id="api-key-unattested-tenant",
    ),
    pytest.param(
        timer_state("airlock-retention.timer", "inactive"),
        {"retention_scheduled": "airlock-retention.timer is inactive/enabled"},
        "timers.txt",
        id="retention-timer-inactive",
    ),
]


@pytest.mark.parametrize(("mutate", "expected", "artifact"), MUTATIONS)
def test_each_check_fails_on_what_it_guards_and_only_then(src, mutate, expected, artifact):
    mutate(src / "raw")
    results = build_results(src, TS)
    checks = host_checks(results)
    failing = {check_id for check_id, c in checks.items() if c["status"] == FAIL}
    assert failing == set(expected), {i: checks[i]["reason"] for i in failing}
    for check_id, fragment in expected.items():
        assert fragment in checks[check_id]["reason"]
        assert f"raw/enclave/{artifact}" in checks[check_id]["evidence"]
    assert failing_controls(results) == controls_citing(failing)
    assert all(c["status"] in (PASS, NA) for c in checks.values() if c["id"] not in failing)


def test_missing_attestation_fails_us_person_access(src):
    delete("attestation.json")(src / "raw")
    check = host_checks(build_results(src, TS))["us_person_access"]
    assert check["status"] == FAIL
    assert "no US-person attestation" in check["reason"]


# Every (check, artifact it reads) pair. Left out: us_person_access without attestation.json (its own
# reason, tested above) and outputs_encrypted/file_modes.json (declared, but the check never reads it).
MISSING = [
    (check_id, name)
    for check_id in HOST_CHECKS
    for name in CHECKS[check_id].uses
    if (check_id, name)
    not in {("outputs_encrypted", "file_modes.json"), ("us_person_access", "attestation.json")}
]


@pytest.mark.parametrize(("check_id", "name"), MISSING, ids=[f"{c}-{n}" for c, n in MISSING])
def test_a_missing_artifact_fails_closed(src, check_id, name):
    delete(name)(src / "raw")
    results = build_results(src, TS)
    check = host_checks(results)[check_id]
    assert check["status"] == FAIL
    assert "evidence missing or unreadable" in check["reason"]
    assert name in check["reason"]
    assert f"raw/enclave/{name}" not in check["evidence"]  # nothing cited that is not in the pack
    statuses_now = statuses(results)
    assert all(statuses_now[key] == FAIL for key in controls_citing({check_id}))


def test_an_artifact_missing_from_the_index_fails_closed(src):
    index = src / "raw" / "collection.json"
    collection = json.loads(index.read_text())
    collection["artifacts"] = [a for a in collection["artifacts"] if not a["path"].endswith("sockets.txt")]
    index.write_text(json.dumps(collection))
    check = host_checks(build_results(src, TS))["listening_services_expected"]
    assert (check["status"], check["evidence"]) == (FAIL, [])
    assert "sockets.txt was not collected" in check["reason"]


# ---- the captured pack ------------------------------------------------------------------------------


def test_the_captured_raw_passes_every_control_and_verifies(good, keys):
    pack_dir, results = good
    checks = results["checks"]
    assert {c["id"] for c in checks} == set(CHECKS)
    assert [c["status"] for c in checks if c["subject"] == "enclave"] == [PASS] * len(HOST_CHECKS)
    assert sorted(c["id"] for c in checks if c["subject"] == "enclave") == HOST_CHECKS
    # the restore drill's report (raw/dr/) passes; nothing else was collected: the cloud (and any
    # other non-host) checks do not apply, never pass
    assert {c["id"]: c["status"] for c in checks if c["subject"] == "dr"} == dict.fromkeys(DR_CHECKS, PASS)
    assert {c["id"]: c["status"] for c in checks if c["subject"] not in ("enclave", "dr")} == dict.fromkeys(
        OTHER_CHECKS, NA
    )
    assert {c["subject"] for c in checks if c["id"] in CLOUD_CHECKS} == {"cloud"}
    assert [f["id"] for f in results["frameworks"]] == list(catalogs.ORDER)
    for framework in results["frameworks"]:
        assert framework["summary"][FAIL] == 0, framework["id"]
        assert framework["summary"][PASS] > 0, framework["id"]
    assert json.loads((pack_dir / "results.json").read_text()) == results
    result = verify_cli(pack_dir, keys[1])
    assert result.exit_code == 0, result.output
    assert "signature and every file intact" in result.output
    assert pack.verify(pack_dir, load_verifier(keys[1])) == []


UUID5 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def number_uuids(text: str) -> str:
    """OSCAL uuids of a run are uuid5s of its time: number them by first appearance instead."""
    seen: dict[str, str] = {}
    return UUID5.sub(lambda m: seen.setdefault(m.group(0), f"<uuid {len(seen)}>"), text)


def test_same_raw_gives_the_same_pack_apart_from_the_time(good, keys, tmp_path):
    first, _ = good
    again, _ = build_pack(copy_src(tmp_path / "src"), tmp_path / "again", keys[0], TS)
    later, _ = build_pack(copy_src(tmp_path / "src2"), tmp_path / "later", keys[0], TS_LATER)
    names = pack.files(first)
    assert pack.files(again) == pack.files(later) == names
    # same time: byte for byte (Ed25519 signatures are deterministic too)
    assert [(again / n).read_bytes() for n in names] == [(first / n).read_bytes() for n in names]

    def normalised(root: Path, stamp: str) -> dict[str, str]:
        texts = {}
        for name in names:
            text = (root / name).read_text().replace(stamp, "<generated_at>")
            texts[name] = number_uuids(text)
        return texts

    a, b = normalised(first, TS), normalised(later, TS_LATER)
    timed = {n for n in names if TS.encode() in (first / n).read_bytes()}
    assert {"results.json", "manifest.json", "index.html"} <= timed
    for name in names:
        if name in ("checksums.txt", "manifest.json", "manifest.sig"):
            continue
        assert a[name] == b[name], name
    # checksums.txt differs only in the digests of files that differ (all of which carry the time)
    old = dict(reversed(line.split("  ", 1)) for line in (first / "checksums.txt").read_text().splitlines())
    new = dict(reversed(line.split("  ", 1)) for line in (later / "checksums.txt").read_text().splitlines())
    assert old.keys() == new.keys() == set(names) - set(pack.SIGNED)
    changed = {n for n in old if old[n] != new[n]}
    assert changed
    assert all((first / n).read_bytes() != (later / n).read_bytes() for n in changed)
    oscal_docs = {"assessment-plan.json", "assessment-results.json", "poam.json"}
    assert changed <= timed | oscal_docs
    assert not any(n.startswith("raw/") for n in changed)
    strip = re.compile(r'"checksums_sha256": "[0-9a-f]{64}"')
    assert strip.sub("", a["manifest.json"]) == strip.sub("", b["manifest.json"])


# ---- tampering ---------------------------------------------------------------------------------------


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def claim_more(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["summary"]["soc2"]["pass"] += 1
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


TAMPERING = [
    pytest.param(
        lambda p: flip_byte(p / "raw/enclave/sshd_effective.txt"),
        "altered: raw/enclave/sshd_effective.txt",
        id="raw-artifact",
    ),
    pytest.param(lambda p: flip_byte(p / "index.html"), "altered: index.html", id="index-html"),
    pytest.param(lambda p: flip_byte(p / "results.json"), "altered: results.json", id="results-json"),
    pytest.param(
        lambda p: (p / "procedures" / "incident-response.md").unlink(),
        "missing: procedures/incident-response.md",
        id="deleted-file",
    ),
    pytest.param(
        lambda p: (p / "raw" / "enclave" / "shadow.txt").write_text("root:x:0:0\n"),
        "extra (not in checksums.txt): raw/enclave/shadow.txt",
        id="added-file",
    ),
    pytest.param(
        lambda p: os.symlink("/etc/hostname", p / "raw" / "enclave" / "link.txt"),
        "extra (not in checksums.txt): raw/enclave/link.txt",
        id="added-symlink",
    ),
    pytest.param(
        lambda p: claim_more(p / "manifest.json"), "manifest.sig does not verify", id="manifest-json"
    ),
    pytest.param(
        lambda p: flip_byte(p / "checksums.txt"),
        "checksums.txt does not match the signed manifest",
        id="checksums-txt",
    ),
    pytest.param(lambda p: (p / "manifest.sig").unlink(), "manifest.sig is missing", id="no-signature"),
]


@pytest.mark.parametrize(("tamper", "problem"), TAMPERING)
def test_verify_names_what_was_tampered_with(good, keys, tmp_path, tamper, problem):
    copy = tmp_path / "pack"
    shutil.copytree(good[0], copy, symlinks=True)
    assert pack.verify(copy, load_verifier(keys[1])) == []
    tamper(copy)
    problems = pack.verify(copy, load_verifier(keys[1]))
    assert any(problem in p for p in problems), problems
    result = verify_cli(copy, keys[1])
    assert result.exit_code == 1
    assert problem in result.output


def test_verify_refuses_a_pack_signed_by_another_key(good, keys, tmp_path):
    other = init_keys(tmp_path / "other")
    assert pack.verify(good[0], load_verifier(tmp_path / "other")) == [
        f"manifest.sig does not verify with {tmp_path / 'other' / 'signing.pub'} ({other.fingerprint}): "
        "altered manifest or a different signer"
    ]
    result = verify_cli(good[0], tmp_path / "other" / "signing.pub")
    assert result.exit_code == 1
    assert "manifest.sig does not verify" in result.output
    resigned = tmp_path / "resigned"
    shutil.copytree(good[0], resigned)
    pack.seal(resigned, json.loads((resigned / "results.json").read_text()), other)
    assert pack.verify(resigned, load_verifier(tmp_path / "other")) == []
    assert verify_cli(resigned, tmp_path / "other" / "signing.pub").exit_code == 0
    assert verify_cli(resigned, keys[1]).exit_code == 1


# ---- catalogs and the control rule -------------------------------------------------------------------


def test_every_catalog_loads_and_every_check_is_used():
    loaded = catalogs.load_all()
    assert [c["id"] for c in loaded] == list(catalogs.ORDER)
    used = {check for catalog in loaded for control in catalog["controls"] for check in control["checks"]}
    assert used <= set(CHECKS)
    assert not set(CHECKS) - used, f"checks no control cites: {sorted(set(CHECKS) - used)}"
    for catalog in loaded:
        assert catalog["controls"], catalog["id"]
        for control in catalog["controls"]:
            assert control["checks"] or control["manual"], (catalog["id"], control["id"])


def test_cmmc_mirrors_800_171_and_itar_extends_it():
    nist, cmmc, itar = (catalogs.load(n) for n in ("nist800_171", "cmmc_l2", "itar"))
    assert "SC.L2-3.13.6" in {c["id"] for c in cmmc["controls"]}
    assert len(cmmc["controls"]) == len(nist["controls"])
    for practice, requirement in zip(cmmc["controls"], nist["controls"], strict=True):
        assert re.fullmatch(r"[A-Z]{2}\.L2-3\.\d+\.\d+", practice["id"]), practice["id"]
        assert practice["id"].split("-", 1)[1] == requirement["id"]
        assert practice["checks"] == requirement["checks"]
        assert practice["manual"] == requirement["manual"]
        assert practice["derived_from"] == f"nist800_171 {requirement['id']}"
    itar_by_id = {c["id"]: c for c in itar["controls"]}
    for requirement in nist["controls"]:
        assert itar_by_id[requirement["id"]]["checks"] == requirement["checks"]
    extra = set(itar_by_id) - {c["id"] for c in nist["controls"]}
    assert extra == {"ITAR-US-PERSONS", "ITAR-RESIDENCY", "ITAR-NO-EXPORT"}
    assert "us_person_access" in itar_by_id["ITAR-US-PERSONS"]["checks"]
    assert "data_residency" in itar_by_id["ITAR-RESIDENCY"]["checks"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "controls:\n  - {id: X-1, title: t, checks: [ssh_key_only, no_such_check]}\n",
            "bad.yaml control X-1: unknown check(s) no_such_check",
        ),
        ("controls:\n  - {id: X-2, title: t}\n", "bad.yaml control X-2: no checks and no manual question"),
        (
            "controls:\n  - {id: X-3, title: t, manual: ask}\n  - {id: X-3, title: t, manual: ask}\n",
            "bad.yaml control X-3: listed twice",
        ),
    ],
    ids=["unknown-check", "no-checks-no-manual", "duplicate"],
)
def test_a_catalog_claiming_what_it_cannot_evidence_is_refused(tmp_path, monkeypatch, body, message):
    (tmp_path / "bad.yaml").write_text("id: bad\ntitle: Bad\n" + body)
    (tmp_path / "ok.yaml").write_text(
        "id: ok\ntitle: OK\ncontrols:\n  - {id: Y-1, title: t, checks: [ssh_key_only]}\n"
        "  - {id: Y-2, title: t, manual: 'Who signs?'}\n"
    )
    monkeypatch.setattr(catalogs, "HERE", tmp_path)
    assert [c["id"] for c in catalogs.load("ok")["controls"]] == ["Y-1", "Y-2"]
    with pytest.raises(catalogs.CatalogError, match=re.escape(message)):
        catalogs.load("bad")


@pytest.mark.parametrize(
    ("statuses_in", "expected"),
    [
        ([PASS, FAIL, NA], FAIL),
        ([FAIL], FAIL),
        ([NA, FAIL], FAIL),
        ([PASS, NA], PASS),
        ([NA, PASS, PASS], PASS),
        ([NA, NA], NA),
        ([], MANUAL),
    ],
)
def test_control_status_fail_beats_pass_beats_not_applicable(statuses_in, expected):
    assert control_status(statuses_in) == expected


# ---- drift, refusal, rendering ----------------------------------------------------------------------


def test_diff_lists_exactly_the_controls_that_flipped(good, drifted):
    (old, _), (new, new_results) = good, drifted
    flipped = controls_citing({"ssh_key_only", "audit_store_protected"})
    assert {c["id"] for c in new_results["checks"] if c["status"] == FAIL} == {
        "ssh_key_only",
        "audit_store_protected",
    }
    changes = pack.diff(old, new)
    assert {(c["framework"], c["control"]) for c in changes} == flipped
    assert {(c["old"], c["new"]) for c in changes} == {(PASS, FAIL)}
    result = cli("diff", old, new)
    assert result.exit_code == 1
    assert f"{len(flipped)} controls changed status" in result.output
    lines = [line.split() for line in result.output.splitlines()]
    assert {(w[0], w[1]) for w in lines if w[2:] == [PASS, "->", FAIL]} == flipped
    assert json.loads(cli("diff", old, new, "--json").output) == changes
    back = cli("diff", new, old)  # getting better is a change, not a failure
    assert back.exit_code == 0
    assert f"{len(flipped)} controls changed status" in back.output
    assert pack.diff(old, old) == []
    same = cli("diff", old, old)
    assert same.exit_code == 0
    assert "0 controls changed status" in same.output


def test_diff_of_something_that_is_not_a_pack_exits_2(good, tmp_path):
    result = cli("diff", good[0], tmp_path)
    assert result.exit_code == 2
    assert "results.json" in result.output


def test_an_existing_out_is_never_overwritten(keys, src, tmp_path):
    out = tmp_path / "pack"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(pack.PackError, match="already exists"):
        build_pack(src, out, keys[0])
    result = cli("build", "--from-raw", src, "--out", out, "--key", keys[0].path)
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    fresh = tmp_path / "fresh"
    result = cli("build", "--from-raw", src, "--out", fresh, "--key", keys[0].path)
    assert result.exit_code == 0, result.output
    assert pack.verify(fresh, load_verifier(keys[1])) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "pack", "src"]


def test_a_build_from_failing_raw_writes_the_pack_and_exits_1(keys, src, tmp_path):
    password_login(src / "raw")
    out = tmp_path / "pack"
    result = cli("build", "--from-raw", src, "--out", out, "--key", keys[0].path)
    assert result.exit_code == 1
    assert "FAIL ssh_key_only (enclave): sshd -T: passwordauthentication yes" in result.output
    assert pack.verify(out, load_verifier(keys[1])) == []


def test_a_failed_render_leaves_no_partial_pack(keys, src, tmp_path, monkeypatch):
    def broken(topology):
        raise RuntimeError("dot crashed")

    monkeypatch.setattr(diagram, "render_svg", broken)
    out = tmp_path / "packs" / "p1"
    with pytest.raises(RuntimeError, match="dot crashed"):
        build_pack(src, out, keys[0])
    assert not out.exists()
    assert list((tmp_path / "packs").iterdir()) == []  # no .p1.partial either
    monkeypatch.undo()
    build_pack(src, out, keys[0])
    assert [p.name for p in (tmp_path / "packs").iterdir()] == ["p1"]


def test_the_index_shows_every_failing_reason(good, drifted):
    page = (drifted[0] / "index.html").read_text()
    failing = [c for c in drifted[1]["checks"] if c["status"] == FAIL]
    assert len(failing) == 2
    for check in failing:
        assert str(escape(check["reason"])) in page
    clean = (good[0] / "index.html").read_text()
    assert not any(str(escape(c["reason"])) in clean for c in failing)
    for check in good[1]["checks"]:
        assert str(escape(check["reason"])) in clean


def test_results_carry_the_sha256_of_every_raw_file(good):
    pack_dir, results = good
    collection = json.loads((pack_dir / "raw" / "collection.json").read_text())
    assert [a["path"] for a in results["artifacts"]] == sorted(a["path"] for a in collection["artifacts"])
    for artifact in results["artifacts"]:
        digest = hashlib.sha256((pack_dir / artifact["path"]).read_bytes()).hexdigest()
        assert artifact["sha256"] == digest, artifact["path"]
    on_disk = {str(p.relative_to(pack_dir)) for p in (pack_dir / "raw").rglob("*") if p.is_file()}
    assert on_disk - {a["path"] for a in results["artifacts"]} == {"raw/collection.json"}


def test_a_changed_artifact_changes_its_recorded_sha256(src):
    before = {a["path"]: a["sha256"] for a in build_results(src, TS)["artifacts"]}
    weak_cipher(src / "raw")
    after = {a["path"]: a["sha256"] for a in build_results(src, TS)["artifacts"]}
    assert {p for p in before if before[p] != after[p]} == {"raw/enclave/sshd_effective.txt"}


# ---- host_probe helpers (they run on the host; here with the standard library only) -----------------


def test_redact_urls_hides_passwords():
    redacted = host_probe.redact_urls('redis_url = "rediss://:s3cret@redis:6380/0"\n')
    assert "s3cret" not in redacted
    assert redacted == 'redis_url = "rediss://:***@redis:6380/0"\n'
    assert host_probe.redact_urls("redis://user:pw@10.0.0.1/1") == "redis://user:***@10.0.0.1/1"
    plain = 'url = "https://internal.lab.airlock.test:8443/v1"\n'
    assert host_probe.redact_urls(plain) == plain


def test_store_scan_knows_the_real_store_and_flags_everything_else(tmp_path):
    """Objects written by the real OutputStore are envelopes + wrapped keys (JSON by design): a clean
    scan; a plaintext image, a non-envelope object or a stray file are each named."""
    assert host_probe.ENVELOPE == MAGIC  # the probe runs on the host without airlock: its own copy
    with AuditLog(tmp_path / "audit") as audit:
        store = OutputStore(tmp_path / "outputs", FileKeks(tmp_path / "kek"), audit)
        store.put("lab_tenant", "job-0", b"\x89PNG\r\n\x1a\n" + os.urandom(64), {"seed": 1})
    scan = host_probe.store_scan([str(tmp_path / "outputs")])
    assert (scan["envelopes"], scan["wrapped_keys"], scan["not_envelope"], scan["unexpected"]) == (
        1,
        1,
        [],
        [],
    )
    assert scan["plaintext_like"] == {}
    tenant = tmp_path / "outputs" / "lab_tenant"
    (tenant / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    (tenant / "job-1.enc").write_bytes(b"\x00" + os.urandom(255))
    (tenant / "notes.txt").write_bytes(b"hello")
    scan = host_probe.store_scan([str(tmp_path / "outputs")])
    assert scan["plaintext_like"] == {"png": [str(tenant / "0001.png")]}
    assert scan["not_envelope"] == [str(tenant / "job-1.enc")] and scan["unexpected"] == [
        str(tenant / "notes.txt")
    ]


def test_probe_reports_reached_only_when_something_answers():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    missed = host_probe.probe({"proto": "tcp", "host": "127.0.0.1", "port": port})
    assert missed["reached"] is False
    assert "ConnectionRefusedError" in missed["detail"]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        target = {"proto": "tcp", "host": "127.0.0.1", "port": server.getsockname()[1]}
        reached = host_probe.probe(target)
    assert reached == {**target, "reached": True, "detail": "answered", "seconds": reached["seconds"]}
    assert host_probe.probe({"proto": "sctp", "host": "127.0.0.1"})["reached"] is False
