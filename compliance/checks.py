"""Checks: small functions over collected facts, each answering one question about the live system.

A check returns pass / fail / not_applicable / manual with a one-line reason; the artifacts it read
are declared with it, so every claim in a pack points at raw evidence. Which controls a check serves
is data (compliance/catalogs/*.yaml): one check answers for every framework that asks the question.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from compliance import DRILL_MAX_AGE_DAYS

PASS, FAIL, NA, MANUAL = "pass", "fail", "not_applicable", "manual"


class Facts:
    """One subject's artifacts (a host's raw/<host>/ files, or the cloud's), parsed on demand."""

    def __init__(self, subject: str, kind: str, artifacts: dict[str, dict], context: dict[str, Any]):
        self.subject = subject
        self.kind = kind  # host | cloud: which checks apply
        self.artifacts = artifacts  # name -> {"content": str, "rc": int, "source": str, ...}
        self.context = context  # what the checks are judged against: egress policy, attestation, ...

    def text(self, name: str) -> str:
        artifact = self.artifacts.get(name)
        if artifact is None:
            raise MissingEvidence(f"{name} was not collected")
        return artifact["content"]

    def rc(self, name: str) -> int:
        self.text(name)
        return int(self.artifacts[name]["rc"])

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.text(name))
        except json.JSONDecodeError as exc:
            raise MissingEvidence(f"{name} is not JSON ({exc}); rc {self.rc(name)}") from exc

    def keyvalues(self, name: str, sep: str = "=") -> dict[str, str]:
        pairs = (line.split(sep, 1) for line in self.text(name).splitlines() if sep in line)
        return {k.strip(): v.strip() for k, v in pairs}


class MissingEvidence(Exception):
    """A check could not read what it needs: that is a FAIL (fail closed), never a pass."""


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    scope: str  # host | cloud | pulumi | dr (the controller's restore-drill reports)
    uses: tuple[str, ...]  # artifact names, within the subject's raw/ folder
    run: Callable[[Facts], tuple[str, str]]


CHECKS: dict[str, Check] = {}


def check(check_id: str, title: str, scope: str, *uses: str):
    def register(fn: Callable[[Facts], tuple[str, str]]) -> Callable[[Facts], tuple[str, str]]:
        if check_id in CHECKS:
            raise ValueError(f"check {check_id} defined twice")
        CHECKS[check_id] = Check(check_id, title, scope, uses, fn)
        return fn

    return register


@dataclass(frozen=True)
class Outcome:
    check: str
    subject: str
    status: str
    reason: str
    evidence: tuple[str, ...] = field(default=())


def evaluate(check_def: Check, facts: Facts) -> Outcome:
    try:
        status, reason = check_def.run(facts)
    except MissingEvidence as exc:
        status, reason = FAIL, f"evidence missing or unreadable: {exc}"
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:  # an artifact not shaped
        # as expected (truncated, another tool version): fail this check, not the whole pack build
        status, reason = FAIL, f"evidence missing or unreadable: {', '.join(check_def.uses)}: {exc!r}"
    evidence = tuple(name for name in check_def.uses if name in facts.artifacts)
    return Outcome(check_def.id, facts.subject, status, reason, evidence)


def verdict(problems: list[str], ok: str) -> tuple[str, str]:
    """FAIL naming the first problems, or PASS with what was seen."""
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return FAIL, "; ".join(problems[:3]) + more
    return PASS, ok


# ---- network: egress deny, listening services ----------------------------------------------------


def _nft(facts: Facts) -> tuple[dict, list[dict]]:
    items = facts.json("nft_ruleset.json").get("nftables", [])
    chains = {
        c["chain"]["name"]: c["chain"] for c in items if "chain" in c and c["chain"]["table"] == "airlock"
    }
    rules = [r["rule"] for r in items if "rule" in r and r["rule"]["table"] == "airlock"]
    return chains, rules


@check(
    "egress_default_deny",
    "Traffic in, out and through the host is dropped unless allowed",
    "host",
    "nft_ruleset.json",
)
def egress_default_deny(facts: Facts):
    chains, _ = _nft(facts)
    problems = []
    for hook in ("input", "forward", "output"):
        chain = next((c for c in chains.values() if c.get("hook") == hook), None)
        if chain is None:
            problems.append(f"table inet airlock has no {hook} chain")
        elif chain.get("policy") != "drop":
            problems.append(f"{hook} chain policy is {chain.get('policy')}, not drop")
    return verdict(problems, "table inet airlock: input, forward and output hooks with policy drop")


# Accept rules the renderer adds besides the policy's own (see airlock/policy/nftables.py).
FIXED_RULES = {"management-ssh", "service-api", "ping", "ipv6-neighbour-discovery"}


@check(
    "egress_rules_match_policy",
    "The loaded egress rules are the ones rendered from policies/egress.yml",
    "host",
    "nft_ruleset.json",
    "nftables.conf",
)
def egress_rules_match_policy(facts: Facts):
    policy = facts.context["egress_policy"]
    _, rules = _nft(facts)
    allowed = {rule["name"] for rule in policy["allow"]} | FIXED_RULES
    problems = []
    header = re.search(r"sha256 ([0-9a-f]{64})", facts.text("nftables.conf"))
    if not header or header.group(1) != policy["sha256"]:
        seen = header.group(1)[:12] if header else "none"
        problems.append(f"nftables.conf was rendered from policy sha256 {seen}, not {policy['sha256'][:12]}")
    out = [r for r in rules if r["chain"] == "output" and any("accept" in e for e in r["expr"])]
    for rule in out:
        comment = rule.get("comment")
        plain = all(set(e) <= {"match", "accept"} for e in rule["expr"])  # lo / established
        if comment not in allowed and not (comment is None and plain and _is_base_accept(rule)):
            problems.append(
                f"output rule {rule.get('handle')} ({comment or 'no comment'}) is not in the policy"
            )
    loaded = {r.get("comment") for r in out}
    problems += [f"policy rule {name} is not loaded" for name in sorted(allowed - FIXED_RULES - loaded)]
    return verdict(
        problems, f"{len(out)} output accept rules, all from the policy (sha256 {policy['sha256'][:12]})"
    )


def _is_base_accept(rule: dict) -> bool:
    text = json.dumps(rule["expr"])
    return '"oif"' in text or '"ct"' in text


@check(
    "egress_probe_blocked",
    "Probes from the host toward the internet get no answer",
    "host",
    "egress_probe.json",
)
def egress_probe_blocked(facts: Facts):
    probe = facts.json("egress_probe.json")
    if not probe["outside"] or not probe["allowed"]:
        return FAIL, "no probe targets configured (evidence_egress_probe_outside / _allowed)"
    reached = [
        f"{t['proto']} {t['host']}:{t.get('port', '')} answered" for t in probe["outside"] if t["reached"]
    ]
    silent = [
        f"allowed {t['proto']} {t['host']} did not answer: the probe proves nothing"
        for t in probe["allowed"]
        if not t["reached"]
    ]
    return verdict(
        reached + silent,
        f"{len(probe['outside'])} outside targets unreachable, "
        f"{len(probe['allowed'])} allowed internal targets answered",
    )


@check("listening_services_expected", "Only SSH and the API listen on the network", "host", "sockets.txt")
def listening_services_expected(facts: Facts):
    expected = {facts.context["ssh_port"], facts.context["service_port"]}
    problems = []
    for line in facts.text("sockets.txt").splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        proto, local = cols[0], cols[4]
        address, _, port = local.rpartition(":")
        address = address.strip("[]").split("%")[0]
        wildcard = address in ("*", "0.0.0.0", "::")  # noqa: S104 - recognising a wildcard bind, not binding
        if not wildcard and ipaddress.ip_address(address).is_loopback:
            continue
        if proto != "tcp" or int(port) not in expected:
            problems.append(f"{proto} {local} listens")
    return verdict(problems, f"only tcp {sorted(expected)} listen beyond loopback")


# ---- SSH -----------------------------------------------------------------------------------------

STRONG_SSH = {
    "ciphers": {
        "chacha20-poly1305@openssh.com",
        "aes256-gcm@openssh.com",
        "aes128-gcm@openssh.com",
        "aes256-ctr",
        "aes192-ctr",
        "aes128-ctr",
    },
    "macs": {"hmac-sha2-512-etm@openssh.com", "hmac-sha2-256-etm@openssh.com", "umac-128-etm@openssh.com"},
    "kexalgorithms": {
        "sntrup761x25519-sha512@openssh.com",
        "curve25519-sha256",
        "curve25519-sha256@libssh.org",
        "diffie-hellman-group16-sha512",
        "diffie-hellman-group18-sha512",
        "ecdh-sha2-nistp256",
        "ecdh-sha2-nistp384",
        "ecdh-sha2-nistp521",
    },
}


@check("ssh_key_only", "SSH accepts keys only; no passwords, no root login", "host", "sshd_effective.txt")
def ssh_key_only(facts: Facts):
    sshd = facts.keyvalues("sshd_effective.txt", " ")
    want = {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitrootlogin": "no",
        "permitemptypasswords": "no",
        "pubkeyauthentication": "yes",
    }
    problems = [f"sshd -T: {k} {sshd.get(k, 'unset')}" for k, v in want.items() if sshd.get(k) != v]
    return verdict(problems, "sshd -T: keys only, no root login, no passwords")


@check(
    "ssh_strong_crypto", "SSH offers only strong ciphers, MACs and key exchange", "host", "sshd_effective.txt"
)
def ssh_strong_crypto(facts: Facts):
    sshd = facts.keyvalues("sshd_effective.txt", " ")
    problems = []
    for key, strong in STRONG_SSH.items():
        weak = sorted(set(sshd.get(key, "").split(",")) - strong)
        if weak:
            problems.append(f"{key}: {','.join(weak)}")
    return verdict(problems, "ciphers, MACs and key exchange all on the strong list")


@check("ssh_idle_timeout", "Idle SSH sessions are disconnected", "host", "sshd_effective.txt")
def ssh_idle_timeout(facts: Facts):
    sshd = facts.keyvalues("sshd_effective.txt", " ")
    interval, count = int(sshd.get("clientaliveinterval", "0")), int(sshd.get("clientalivecountmax", "0"))
    if interval <= 0 or count <= 0 or interval * count > 3600:
        return (
            FAIL,
            f"clientaliveinterval {interval} x countmax {count}: idle sessions are not ended within 1 h",
        )
    return PASS, f"idle sessions end after {interval * count} s"


@check("login_banner", "A system-use notice is shown before login", "host", "sshd_effective.txt", "issue.net")
def login_banner(facts: Facts):
    banner = facts.keyvalues("sshd_effective.txt", " ").get("banner", "none")
    notice = facts.text("issue.net")
    problems = [] if banner != "none" else ["sshd shows no banner"]
    if "authorized" not in notice.lower():
        problems.append("/etc/issue.net has no authorized-use notice")
    return verdict(problems, f"sshd banner {banner}: authorized-use notice")


# ---- the service ---------------------------------------------------------------------------------

UNIT_WANT = {
    "ActiveState": "active",
    "SubState": "running",
    "User": "airlock",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "CapabilityBoundingSet": "",
}


@check(
    "service_hardened",
    "The API service runs unprivileged in a locked-down systemd unit",
    "host",
    "service_unit.txt",
)
def service_hardened(facts: Facts):
    unit = facts.keyvalues("service_unit.txt")
    problems = [
        f"{k}={unit.get(k, '(unset)')}, want {v or '(empty)'}"
        for k, v in UNIT_WANT.items()
        if unit.get(k) != v
    ]
    env = unit.get("Environment", "")
    problems += [
        f"Environment lacks {flag}"
        for flag in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1")
        if flag not in env
    ]
    return verdict(
        problems, "active as airlock: no new privileges, no capabilities, read-only system, offline"
    )


@check("tls13_only", "The API accepts TLS 1.3 only", "host", "tls_probe.json")
def tls13_only(facts: Facts):
    probe = facts.json("tls_probe.json")
    problems = []
    tls13 = probe["tls1_3_verified"]
    if not tls13["accepted"]:
        problems.append(f"TLS 1.3 handshake failed: {tls13.get('error')}")
    problems += [
        f"{name.replace('_', '.').upper()} accepted ({probe[name].get('cipher')})"
        for name in ("tls1_2", "tls1_1")
        if probe[name]["accepted"]
    ]
    return verdict(problems, f"TLS 1.3 ({tls13.get('cipher')}) accepted; TLS 1.2 and 1.1 refused")


@check(
    "tls_certificate_trusted",
    "The API's certificate chains to the internal CA, names the host, is valid",
    "host",
    "tls_probe.json",
)
def tls_certificate_trusted(facts: Facts):
    probe = facts.json("tls_probe.json")
    if not probe["tls1_3_verified"]["accepted"]:
        return FAIL, f"no verified TLS 1.3 handshake: {probe['tls1_3_verified'].get('error')}"
    cert = probe["certificate"]
    # Judged when the probe saw it, like every other fact: the same raw/ always gives the same result.
    now = probe.get("probed_at") or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    problems = [] if cert["not_after"] > now else [f"certificate expired {cert['not_after']}"]
    if probe["target"]["server_name"] not in cert["subject_alt_names"]:
        problems.append(f"{probe['target']['server_name']} not in SANs {cert['subject_alt_names']}")
    return verdict(problems, f"issued by {cert['issuer']}, valid until {cert['not_after']}")


def _modes(facts: Facts) -> dict[str, dict]:
    return {m["path"]: m for m in facts.json("file_modes.json")}


def _mode_problems(modes: dict[str, dict], path: str, forbid: int, owner: str | None = None) -> list[str]:
    entry = modes.get(path)
    if entry is None or not entry["exists"]:
        return [f"{path} missing"]
    problems = [f"{path} mode {entry['mode']}"] if int(entry["mode"], 8) & forbid else []
    if owner and entry["owner"] != owner:
        problems.append(f"{path} owned by {entry['owner']}, not {owner}")
    return problems


@check(
    "secrets_protected",
    "Keys, key stores and the config are readable only by who needs them",
    "host",
    "file_modes.json",
)
def secrets_protected(facts: Facts):
    modes, paths = _modes(facts), facts.context["paths"]
    conf, state, keys = paths["config_dir"], paths["state_dir"], paths["signing_key_dir"]
    problems = _mode_problems(modes, f"{keys}/signing.key", 0o077)  # owned by the signer: root or the service
    problems += _mode_problems(modes, f"{conf}/tls/server.key", 0o037)
    problems += _mode_problems(modes, f"{state}/apikeys.json", 0o027)
    problems += _mode_problems(modes, f"{state}/kek", 0o077)
    problems += _mode_problems(modes, f"{state}/prompt-kek", 0o077)
    problems += _mode_problems(modes, f"{conf}/airlock.toml", 0o022, "root")
    return verdict(problems, "signing key 0600, TLS key and key store closed to others, KEK folders 0700")


# ---- audit ---------------------------------------------------------------------------------------


@check(
    "audit_chain_intact", "Every audit record, chain and signed seal verifies", "host", "audit_verify.json"
)
def audit_chain_intact(facts: Facts):
    report = facts.json("audit_verify.json")
    findings = report.get("findings") or report.get("problems") or []
    if facts.rc("audit_verify.json") != 0 or findings:
        first = [f.get("message", str(f)) if isinstance(f, dict) else str(f) for f in findings]
        return verdict(first or [f"airlock audit verify exited {facts.rc('audit_verify.json')}"], "")
    return PASS, f"airlock audit verify: intact ({_audit_summary(report)})"


def _audit_summary(report: dict) -> str:
    counts = [f"{k} {v}" for k, v in sorted(report.items()) if isinstance(v, int) and not isinstance(v, bool)]
    return ", ".join(counts) or "no counts reported"


@check(
    "audit_store_protected",
    "The audit log is closed to the service's neighbours and sealed daily",
    "host",
    "file_modes.json",
    "timers.txt",
)
def audit_store_protected(facts: Facts):
    modes, paths = _modes(facts), facts.context["paths"]
    problems = _mode_problems(modes, paths["audit_root"], 0o027)
    timers = _units(facts.text("timers.txt"))
    for timer in ("airlock-audit-seal.timer", "airlock-audit-archive.timer", "airlock-audit-purge.timer"):
        state = timers.get(timer, {})
        if (state.get("ActiveState"), state.get("UnitFileState")) != ("active", "enabled"):
            problems.append(
                f"{timer} is {state.get('ActiveState', 'missing')}/{state.get('UnitFileState', '-')}"
            )
    return verdict(problems, "audit root closed to others; seal, archive and purge timers active and enabled")


def _units(text: str) -> dict[str, dict[str, str]]:
    """`systemctl show -p ... A B` prints blocks separated by blank lines."""
    units = {}
    for block in text.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if "Id" in props:
            units[props["Id"]] = props
    return units


@check("retention_scheduled", "Images and full prompts are purged on schedule", "host", "timers.txt")
def retention_scheduled(facts: Facts):
    state = _units(facts.text("timers.txt")).get("airlock-retention.timer", {})
    if (state.get("ActiveState"), state.get("UnitFileState")) != ("active", "enabled"):
        return (
            FAIL,
            f"airlock-retention.timer is {state.get('ActiveState', 'missing')}/{state.get('UnitFileState', '-')}",  # noqa: E501
        )
    return PASS, "airlock-retention.timer active and enabled"


# ---- backups (status.json written by `airlock backup run CLASS` on the host) ----------------------

BACKUP_CLASSES = ("models", "config", "outputs", "audit", "keys")
BACKUP_TIMERS = (  # compliance.collectors.host_probe.BACKUP_TIMERS: the probe runs without this module
    "airlock-backup-models.timer",
    "airlock-backup-config.timer",
    "airlock-backup-outputs.timer",
    "airlock-backup-audit.timer",
    "airlock-backup-keys.timer",
    "airlock-backup-check.timer",
)
REPOSITORY_CHECK_MAX_AGE = 8 * 86400  # `borg check` runs weekly: a day's grace


def _instant(text: str) -> datetime:
    """A UTC ISO-8601 timestamp ("...Z"); anything else is unreadable evidence (ValueError)."""
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return when


def _collected_at(facts: Facts, name: str) -> datetime:
    """When the artifact was collected: ages are judged then, so the same raw/ always judges the same."""
    facts.text(name)
    return _instant(facts.artifacts[name]["collected_at"])


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _every(seconds: float) -> str:
    """An interval: 3600 -> "1 h", 86400 -> "1 day"."""
    for unit, size in ((" day", 86400), (" h", 3600), (" min", 60)):
        if seconds % size == 0:
            count = int(seconds // size)
            return f"{count}{unit}" + ("s" if unit == " day" and count > 1 else "")
    return f"{seconds:.0f} s"


def _backup_status_path(facts: Facts) -> str:
    paths = facts.context["paths"]
    return paths.get("backup_status") or f"{paths['state_dir']}/backup/status.json"


def _interval(entry: dict) -> float | None:
    interval = entry.get("interval_seconds")
    if not isinstance(interval, int | float) or isinstance(interval, bool) or interval <= 0:
        return None
    return interval


def _class_problems(name: str, entry: dict, now: datetime) -> list[str]:
    interval = _interval(entry)
    if interval is None:
        return [f"{name} backup has no interval_seconds"]
    problems = []
    if not entry.get("last_success"):
        problems.append(f"{name} backup never succeeded")
    else:
        age = (now - _instant(entry["last_success"])).total_seconds()
        if age > 2 * interval:
            problems.append(
                f"{name} backup last succeeded {_age(age)} ago ({entry['last_success']}), "
                f"over twice its {_every(interval)} interval"
            )
    if entry.get("last_error") is not None:
        problems.append(f"{name} backup failed at {entry.get('last_attempt')}: {entry['last_error']}")
    return problems


def _worm_problems(audit: dict, now: datetime) -> list[str]:
    worm, interval = audit.get("worm") or {}, _interval(audit)
    if interval is None:
        return []  # already named: the class has no interval
    problems = []
    if not worm.get("last_success"):
        problems.append("audit has no write-once copy (worm.last_success missing)")
    else:
        age = (now - _instant(worm["last_success"])).total_seconds()
        if age > 2 * interval:
            problems.append(
                f"audit write-once copy last succeeded {_age(age)} ago ({worm['last_success']}), "
                f"over twice its {_every(interval)} interval"
            )
    if worm.get("last_error") is not None:
        problems.append(f"audit write-once copy failed: {worm['last_error']}")
    return problems


def _repository_problems(name: str, repo: dict, now: datetime) -> list[str]:
    problems = []
    if repo.get("encryption") in (None, "", "none"):
        encryption = repo.get("encryption") or "missing"
        problems.append(f"repository {name} is not encrypted (encryption {encryption})")
    if repo.get("last_check_ok") is not True:
        error = repo.get("last_check_error") or ("never checked" if not repo.get("last_check") else "failed")
        problems.append(f"repository {name} check not ok: {error}")
    if not repo.get("last_check"):
        if repo.get("last_check_ok") is True:
            problems.append(f"repository {name} has no last_check time")
    else:
        age = (now - _instant(repo["last_check"])).total_seconds()
        if age > REPOSITORY_CHECK_MAX_AGE:
            problems.append(
                f"repository {name} last checked {_age(age)} ago ({repo['last_check']}), over 8 days"
            )
    return problems


@check(
    "backup_scheduled",
    "Backups of every asset class run on schedule, encrypted, with a write-once audit copy",
    "host",
    "backup_status.json",
    "timers.txt",
)
def backup_scheduled(facts: Facts):
    path = _backup_status_path(facts)
    if facts.rc("backup_status.json") != 0:
        stderr = facts.artifacts["backup_status.json"].get("stderr", "").strip()
        if "No such file" in stderr:
            return FAIL, f"backup status {path} missing: no backup has run (is the backup client installed?)"
        return FAIL, f"backup status {path} unreadable: {stderr[-200:] or 'no error text'}"
    status = facts.json("backup_status.json")
    if not isinstance(status, dict) or status.get("version") != 1:
        version = status.get("version") if isinstance(status, dict) else type(status).__name__
        return FAIL, f"backup status {path}: version {version!r} unknown (expected 1)"
    now = _collected_at(facts, "backup_status.json")
    classes, repositories = status.get("classes") or {}, status.get("repositories") or {}
    problems = []
    for name in BACKUP_CLASSES:
        entry = classes.get(name)
        if not isinstance(entry, dict):
            problems.append(f"backup class {name} missing")
            continue
        problems += _class_problems(name, entry, now)
        if name == "audit":
            problems += _worm_problems(entry, now)
        if repositories and entry.get("repository") not in repositories:
            problems.append(f"{name} backup goes to repository {entry.get('repository')!r}, unknown")
    if not repositories:
        problems.append("no backup repository in the status")
    for name, repo in sorted(repositories.items()):
        problems += _repository_problems(name, repo, now)
    timers = _units(facts.text("timers.txt"))
    for timer in BACKUP_TIMERS:
        state = timers.get(timer, {})
        if (state.get("ActiveState"), state.get("UnitFileState")) != ("active", "enabled"):
            problems.append(
                f"{timer} is {state.get('ActiveState', 'missing')}/{state.get('UnitFileState', '-') or '-'}"
            )
    if problems:
        return verdict(problems, "")
    audit_age = (now - _instant(classes["audit"]["last_success"])).total_seconds()
    worm_age = (now - _instant(classes["audit"]["worm"]["last_success"])).total_seconds()
    return (
        PASS,
        f"{len(BACKUP_CLASSES)} classes backed up on schedule; newest audit backup {_age(audit_age)} old, "
        f"its write-once copy {_age(worm_age)} old; {len(repositories)} encrypted repositories checked "
        f"({', '.join(sorted({r['encryption'] for r in repositories.values()}))}); "
        f"{len(BACKUP_TIMERS)} backup timers active and enabled",
    )


# ---- models, bundle, configuration ---------------------------------------------------------------


@check(
    "models_verified",
    "Every model file matches the signed manifest; nothing unlisted",
    "host",
    "models_verify.txt",
    "model_manifest.yaml",
)
def models_verified(facts: Facts):
    rc, out = facts.rc("models_verify.txt"), facts.artifacts["models_verify.txt"]
    if rc != 0:
        lines = [line.strip() for line in (out["content"] + out["stderr"]).splitlines() if line.strip()]
        return FAIL, "airlock models verify: " + "; ".join(lines[-3:])
    return PASS, f"airlock models verify: {len(_manifest_models(facts))} models match the signed manifest"


def _manifest_models(facts: Facts) -> list[dict]:
    manifest = yaml.safe_load(facts.text("model_manifest.yaml")) or {}
    return manifest.get("models", [])


@check("models_read_only", "The service cannot change the model registry", "host", "file_modes.json")
def models_read_only(facts: Facts):
    modes, root = _modes(facts), facts.context["paths"]["registry_root"]
    problems = _mode_problems(modes, root, 0o022, "root")
    problems += _mode_problems(modes, f"{root}/model_manifest.yaml", 0o022, "root")
    return verdict(problems, f"{root} and its manifest are root-owned, not group- or world-writable")


@check(
    "bundle_verified",
    "What is installed came from the signed transfer bundle, unaltered",
    "host",
    "bundle_verify.txt",
    "bundle_manifest.yaml",
)
def bundle_verified(facts: Facts):
    artifact = facts.artifacts.get("bundle_verify.txt")
    if artifact is None:
        raise MissingEvidence("bundle_verify.txt was not collected")
    if int(artifact["rc"]) != 0:
        lines = [line for line in (artifact["content"] + artifact["stderr"]).splitlines() if line.strip()]
        return FAIL, "published bundle: " + "; ".join(lines[:3])
    manifest = yaml.safe_load(facts.text("bundle_manifest.yaml")) or {}
    return (
        PASS,
        f"bundle {manifest.get('name')} {manifest.get('version')}: every file matches its signed checksum",
    )


def _config(facts: Facts) -> dict:
    try:
        return tomllib.loads(facts.text("airlock.toml"))
    except tomllib.TOMLDecodeError as exc:
        raise MissingEvidence(f"airlock.toml does not parse: {exc}") from exc


@check(
    "outputs_encrypted",
    "Images and full prompts are stored encrypted",
    "host",
    "store_scan.json",
    "airlock.toml",
)
def outputs_encrypted(facts: Facts):
    scan, paths = facts.json("store_scan.json"), _config(facts).get("paths", {})
    problems = [
        f"{len(files)} {kind} file(s) in the clear, e.g. {files[0]}"
        for kind, files in sorted(scan["plaintext_like"].items())
    ]
    problems += [f"{path} is not an encrypted envelope" for path in scan["not_envelope"]]
    problems += [f"{path} does not belong in the store" for path in scan["unexpected"]]
    problems += [
        f"airlock.toml sets no {key}"
        for key in ("outputs", "output_keys", "prompts", "prompt_keys")
        if not paths.get(key)
    ]
    return verdict(
        problems,
        f"{scan['envelopes']} encrypted objects and {scan['wrapped_keys']} wrapped keys, nothing else",
    )


@check(
    "prompt_policy_enforced",
    "Prompts are screened by the installed policy before generation",
    "host",
    "airlock.toml",
    "prompts.yml",
)
def prompt_policy_enforced(facts: Facts):
    configured = _config(facts).get("paths", {}).get("prompt_policy")
    if not configured:
        return FAIL, "airlock.toml sets no prompt_policy"
    if facts.rc("prompts.yml") != 0 or not yaml.safe_load(facts.text("prompts.yml")):
        return FAIL, f"{configured} is missing or empty"
    return PASS, f"prompt policy {configured} installed"


@check(
    "service_egress_guard",
    "The engine refuses connections outside the internal ranges",
    "host",
    "airlock.toml",
)
def service_egress_guard(facts: Facts):
    allowed = _config(facts).get("engine", {}).get("egress_allowed_cidrs", [])
    inside = _policy_networks(facts)
    outside = [
        c
        for c in allowed
        if not any(
            ipaddress.ip_network(c).subnet_of(n)
            for n in inside
            if ipaddress.ip_network(c).version == n.version
        )
    ]
    return verdict(
        [f"egress_allowed_cidrs includes {c}, outside the policy's networks" for c in outside],
        f"engine may reach only {len(allowed)} internal ranges",
    )


@check(
    "api_keys_scoped", "Every API key is tenant-scoped, least-privilege and expiring", "host", "apikeys.json"
)
def api_keys_scoped(facts: Facts):
    if facts.rc("apikeys.json") != 0:
        return (
            FAIL,
            f"airlock apikeys list failed: {facts.artifacts['apikeys.json']['stderr'].strip()[-200:]}",
        )
    keys = [k for k in facts.json("apikeys.json") if k.get("status") == "active"]
    problems = []
    for key in keys:
        if not key.get("tenant") or not key.get("permissions"):
            problems.append(f"{key['key_id']} has no tenant or no permissions")
        if not key.get("expires_at"):
            problems.append(f"{key['key_id']} never expires")
    return verdict(problems, f"{len(keys)} active keys, each with a tenant, permissions and an expiry")


@check("journal_persistent", "System logs persist across reboots", "host", "journald.txt")
def journal_persistent(facts: Facts):
    storage = facts.keyvalues("journald.txt").get("Storage", "auto")
    return (
        (PASS, "journald Storage=persistent")
        if storage == "persistent"
        else (FAIL, f"journald Storage={storage}")
    )


@check("time_source_internal", "Clocks sync to internal time servers only", "host", "timesyncd.txt")
def time_source_internal(facts: Facts):
    servers = facts.keyvalues("timesyncd.txt").get("NTP", "").split()
    if not servers:
        return FAIL, "no NTP server configured (audit timestamps need a trusted clock)"
    outside = [s for s in servers if not _is_inside(s, _policy_networks(facts))]
    return verdict(
        [f"NTP server {s} is not an internal address" for s in outside], f"NTP {', '.join(servers)}"
    )


def _policy_networks(facts: Facts) -> list:
    """The egress policy's named internal networks: what counts as inside the enclave."""
    return [
        ipaddress.ip_network(c)
        for cidrs in facts.context["egress_policy"]["networks"].values()
        for c in cidrs
    ]


def _is_inside(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # a name: cannot be judged internal from here
    return any(ip in n for n in networks if n.version == ip.version)


@check(
    "us_person_access",
    "Only attested US persons hold SSH access or API keys (ITAR)",
    "host",
    "authorized_keys.json",
    "apikeys.json",
    "attestation.json",
)
def us_person_access(facts: Facts):
    attestation = facts.json("attestation.json") if "attestation.json" in facts.artifacts else None
    if not attestation:
        return FAIL, "no US-person attestation in the inventory (set evidence_us_persons)"
    users, tenants = set(attestation.get("users", [])), set(attestation.get("tenants", []))
    problems = [
        f"SSH key {k['fingerprint']} for {k['user']}: not an attested user"
        for k in facts.json("authorized_keys.json")
        if k["user"] not in users
    ]
    problems += [
        f"API key {k['key_id']} of tenant {k['tenant']}: tenant not attested"
        for k in facts.json("apikeys.json")
        if k.get("status") == "active" and k["tenant"] not in tenants
    ]
    return verdict(
        problems,
        f"attested by {attestation.get('attested_by')} on {attestation.get('attested_on')}: "
        f"{len(users)} users, {len(tenants)} tenants",
    )


# ---- disaster recovery (`airlock dr drill` reports, read on the controller) ----------------------

DRILL_SCHEMA = "airlock.dr-drill/1"
NO_DRILL = "no disaster-recovery drill report: run `airlock dr drill` and pass --drill-report drills/"


def _over(measured, target: float, what: str) -> list[str]:
    if measured is None:
        return [f"{what} not measured (null in the report)"]
    if float(measured) > target:
        return [f"{what} {float(measured):.0f} s over its target {target:.0f} s"]
    return []


@check(
    "dr_drill_recent",
    "A restore drill passed recently, within its RTO and RPO targets",
    "dr",
    "drill_report.json",
)
def dr_drill_recent(facts: Facts):
    if "drill_report.json" not in facts.artifacts:
        searched = facts.context.get("drill_report_searched")
        if searched:
            return FAIL, f"{NO_DRILL} ({searched} holds no */report.json)"
        return FAIL, NO_DRILL
    report = facts.json("drill_report.json")
    schema = report.get("schema") if isinstance(report, dict) else None
    if schema != DRILL_SCHEMA:
        return FAIL, f"drill report schema {schema!r} unknown (expected {DRILL_SCHEMA})"
    drill, max_days = report["drill_id"], facts.context.get("drill_max_age_days", DRILL_MAX_AGE_DAYS)
    rto, rto_target = report["rto_seconds"], float(report["rto_target_seconds"])
    rpo, rpo_target = report["rpo"], float(report["rpo_target_seconds"])
    problems = [] if report.get("result") == "pass" else [f"drill {drill} result {report.get('result')}"]
    problems += [
        f"phase {p['name']} failed" + (f": {p['detail']}" if p.get("detail") else "")
        for p in report["phases"]
        if p.get("ok") is not True
    ]
    problems += [
        f"drill check {c['name']} failed" + (f": {c['detail']}" if c.get("detail") else "")
        for c in report["checks"]
        if c.get("ok") is not True
    ]
    problems += [
        f"the report lists no {key}: nothing shows the restore worked"
        for key in ("phases", "checks")
        if not report[key]
    ]
    problems += _over(rto, rto_target, "RTO")
    problems += _over(rpo["audit_seconds"], rpo_target, "RPO (audit)")
    problems += _over(rpo["outputs_seconds"], rpo_target, "RPO (outputs)")
    age = (_collected_at(facts, "drill_report.json") - _instant(report["finished_at"])).total_seconds()
    if age < -3600:
        problems.append(f"drill {drill} finished_at {report['finished_at']} is later than its collection")
    if age > max_days * 86400:
        problems.append(
            f"drill {drill} finished {_age(age)} ago ({report['finished_at']}), older than {max_days} days"
        )
    if problems:
        return verdict(problems, "")
    return (
        PASS,
        f"drill {drill} on {report.get('host')} passed {_age(age)} ago: RTO {float(rto):.0f} s "
        f"(target {rto_target:.0f} s), RPO audit {float(rpo['audit_seconds']):.0f} s, outputs "
        f"{float(rpo['outputs_seconds']):.0f} s (target {rpo_target:.0f} s)",
    )


# ---- cloud (compliance.collectors.aws findings) --------------------------------------------------


def _findings(*keys: str):
    def run(facts: Facts):
        findings = facts.json("aws.json")["findings"]
        problems = [f"{f['id']}: {f['detail']}" for key in keys for f in findings.get(key, [])]
        return verdict(problems, f"none of: {', '.join(keys)}")

    return run


for _id, _title, _keys in (
    (
        "aws_no_internet_gateway",
        "No internet or egress-only gateway is attached",
        ("internet_gateways", "egress_only_gateways"),
    ),
    ("aws_no_nat_gateway", "No public NAT gateway exists", ("nat_gateways",)),
    ("aws_no_route_to_internet", "No route leads outside the enclave", ("open_routes",)),
    ("aws_no_public_ips", "No public IP address is assigned", ("public_ips",)),
    (
        "aws_egress_restricted",
        "Security groups and NACLs allow no egress outside the enclave",
        ("open_egress_rules", "open_nacl_egress"),
    ),
    ("aws_ingress_restricted", "Nothing is reachable from outside the enclave", ("open_ingress_rules",)),
    (
        "aws_private_endpoints",
        "AWS services are reached only through private endpoints",
        ("interface_endpoints_without_private_dns",),
    ),
    (
        "aws_flow_logs",
        "VPC flow logs record all traffic, encrypted",
        ("vpcs_without_flow_logs", "flow_log_groups_without_kms"),
    ),
    ("aws_kms_rotation", "Customer keys rotate", ("keys_without_rotation",)),
    ("aws_storage_encrypted", "Buckets are encrypted with the enclave's key", ("unencrypted_buckets",)),
    (
        "aws_storage_private",
        "Buckets are private, VPC-endpoint-only and TLS-only",
        (
            "buckets_without_public_access_block",
            "buckets_not_restricted_to_vpce",
            "buckets_allowing_plain_http",
        ),
    ),
    (
        "aws_audit_retention",
        "Audit buckets are versioned and object-locked",
        ("buckets_without_versioning", "audit_bucket_without_object_lock"),
    ),
    ("aws_imdsv2", "Instances require IMDSv2 with one hop", ("imdsv1_instances", "imds_hop_limit_above_1")),
):
    check(_id, _title, "cloud", "aws.json")(_findings(*_keys))


@check("data_residency", "Every cloud resource is in an allowed region (ITAR)", "cloud", "aws.json")
def data_residency(facts: Facts):
    region, allowed = facts.json("aws.json")["region"], facts.context["allowed_regions"]
    if region in allowed:
        return PASS, f"collected region {region} is allowed ({', '.join(allowed)})"
    return FAIL, f"resources in {region}, outside the allowed regions {', '.join(allowed)}"


# ---- the Pulumi stack's state (compliance.collectors.pulumi_state) -------------------------------


@check(
    "stack_no_internet_path",
    "The stack declares no internet path (gateways, NAT, public IPs, 0.0.0.0/0 routes)",
    "pulumi",
    "stack_findings.json",
)
def stack_no_internet_path(facts: Facts):
    found = facts.json("stack_findings.json")["findings"]
    problems = [
        f"{f['urn']}: {f['detail']}"
        for key in ("internet_resources", "open_routes", "public_ips")
        for f in found[key]
    ]
    return verdict(problems, f"{facts.json('stack_findings.json')['resources']} resources, no internet path")


@check(
    "stack_egress_restricted",
    "The stack's security groups allow no egress to anywhere",
    "pulumi",
    "stack_findings.json",
)
def stack_egress_restricted(facts: Facts):
    found = facts.json("stack_findings.json")["findings"]["open_egress"]
    return verdict(
        [f"{f['urn']}: {f['detail']}" for f in found], "no security group egress to 0.0.0.0/0 or ::/0"
    )


@check(
    "stack_residency",
    "Every provider of the stack deploys to an allowed region (ITAR)",
    "pulumi",
    "stack_findings.json",
)
def stack_residency(facts: Facts):
    regions, allowed = facts.json("stack_findings.json")["provider_regions"], facts.context["allowed_regions"]
    if not regions:
        return FAIL, "the state names no AWS provider region"
    outside = [
        f"provider {name} deploys to {region}"
        for name, region in sorted(regions.items())
        if region not in allowed
    ]
    return verdict(outside, f"providers deploy to {', '.join(sorted(set(regions.values())))} only")
