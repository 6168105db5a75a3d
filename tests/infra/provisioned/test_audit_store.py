"""audit_store on a host that playbooks/site.yml converged: the audit root and the seal signing key
belong to the service account and nobody else, the seal/archive/purge timers are scheduled, the
jobs run in their sandbox, and what they leave behind verifies. Settings are read from the inventory
the tests run against (falling back to the role's defaults)."""

import re
from pathlib import Path

import jinja2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "audit_store" / "defaults" / "main.yml").read_text())
TIMERS = {
    "airlock-audit-seal.timer": "audit_store_seal_on_calendar",
    "airlock-audit-archive.timer": "audit_store_archive_on_calendar",
    "airlock-audit-purge.timer": "audit_store_purge_on_calendar",
}


def settings(host) -> dict:
    """audit_store's variables as the inventory under test sets them, else the role's defaults,
    with the defaults' own references ("{{ audit_store_log_dir }}/audit") resolved."""
    variables = host.ansible.get_variables()
    merged = {name: variables.get(name, default) for name, default in DEFAULTS.items()}
    for _ in range(3):
        merged = {
            name: jinja2.Template(value).render(**merged) if isinstance(value, str) else value
            for name, value in merged.items()
        }
    return merged


def run_as_airlock(host, command: str, *args):
    with host.sudo():
        return host.run("cd / && runuser -u airlock -- " + command, *args)


def owner_and_mode(host, path):
    info = host.file(path)
    assert info.exists, f"{path} is missing"
    return info.user, info.group, info.mode


# --- Folders and keys -----------------------------------------------------------------------------------


def test_audit_folders_belong_to_the_service_account(host):
    s = settings(host)
    assert owner_and_mode(host, s["audit_store_log_dir"]) == ("root", "airlock", 0o750)
    for path in (s["audit_store_root"], f"{s['audit_store_root']}/integrity_hashes"):
        assert owner_and_mode(host, path) == ("airlock", "airlock", 0o750)
    assert owner_and_mode(host, f"{s['audit_store_root']}/archives") == ("airlock", "airlock", 0o750)


def test_signing_key_is_private_to_the_service_account(host):
    s = settings(host)
    keys = s["audit_store_keys_dir"]
    assert owner_and_mode(host, f"{keys}/signing.key") == ("airlock", "airlock", 0o600)
    assert owner_and_mode(host, f"{keys}/signing.pub")[:2] == ("airlock", "airlock")
    assert owner_and_mode(host, keys) == ("root", "airlock", 0o750)
    assert owner_and_mode(host, s["audit_store_config_dir"]) == ("root", "airlock", 0o750)


def test_service_account_cannot_replace_the_key_or_write_outside_the_audit_root(host):
    s = settings(host)
    for path in (
        f"{s['audit_store_keys_dir']}/rogue.key",
        f"{s['audit_store_log_dir']}/rogue",
        f"{s['audit_store_config_dir']}/rogue",
    ):
        result = run_as_airlock(host, "touch %s", path)
        assert result.rc != 0, f"airlock could create {path}"


# --- Timers and jobs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("timer", sorted(TIMERS))
def test_timer_is_enabled_and_scheduled(host, timer):
    expected = settings(host)[TIMERS[timer]]
    assert host.run("systemctl is-enabled %s", timer).stdout.strip() == "enabled"
    assert host.run("systemctl is-active %s", timer).stdout.strip() == "active"
    calendar = host.check_output("systemctl show --property=TimersCalendar --value %s", timer)
    assert f"OnCalendar={expected} ;" in calendar, calendar
    assert host.check_output("systemctl show --property=Persistent --value %s", timer) == "yes"


@pytest.mark.parametrize("service", ["airlock-audit-seal", "airlock-audit-archive", "airlock-audit-purge"])
def test_job_runs_as_the_service_account_in_a_sandbox(host, service):
    props = host.check_output(
        "systemctl show --property=User,NoNewPrivileges,ProtectSystem,PrivateNetwork,PrivateTmp,"
        "ProtectHome,ReadWritePaths %s.service",
        service,
    )
    shown = dict(line.split("=", 1) for line in props.splitlines())
    assert shown == {
        "User": "airlock",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateNetwork": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "ReadWritePaths": settings(host)["audit_store_root"],
    }


def test_purge_keeps_prompts_for_the_configured_retention(host):
    days = settings(host)["audit_store_prompt_retention_days"]
    assert 30 <= int(days) <= 90
    exec_start = host.check_output("systemctl show --property=ExecStart --value airlock-audit-purge.service")
    assert f"--prompts-older-than {days}d" in exec_start


def test_archive_keeps_the_configured_months_live(host):
    s = settings(host)
    exec_start = host.check_output(
        "systemctl show --property=ExecStart --value airlock-audit-archive.service"
    )
    assert f"-{s['audit_store_archive_after_months']} months" in exec_start
    # What the unit's shell computes for --before: the current month minus N, as YYYY-MM.
    months = int(s["audit_store_archive_after_months"])
    before = host.check_output('date -u -d "$(date -u +%%Y-%%m-01) -%s months" +%%Y-%%m', str(months))
    assert re.fullmatch(r"\d{4}-\d{2}", before)


@pytest.mark.parametrize("service", ["airlock-audit-seal", "airlock-audit-purge", "airlock-audit-archive"])
def test_job_succeeds(host, service):
    with host.sudo():
        started = host.run("systemctl start %s.service", service)
        result = host.check_output("systemctl show --property=Result --value %s.service", service)
        journal = host.run("journalctl --no-pager -n 20 -u %s.service", service).stdout
    assert started.rc == 0, started.stderr + journal
    assert result == "success", journal


def test_audit_log_verifies_after_sealing(host):
    s = settings(host)
    with host.sudo():
        assert host.run("systemctl start airlock-audit-seal.service").rc == 0
    verify = run_as_airlock(
        host,
        "%s audit verify --root %s --trust %s",
        s["audit_store_cli"],
        s["audit_store_root"],
        f"{s['audit_store_keys_dir']}/signing.pub",
    )
    assert verify.rc == 0, verify.stdout + verify.stderr
    assert verify.stdout.startswith("intact"), verify.stdout


def test_audit_configuration_change_was_recorded(host):
    root = settings(host)["audit_store_root"]
    with host.sudo():
        found = host.run("grep -l -s audit_store.configured %s/*/system_events.jsonl", root)
    assert found.rc == 0, "no system_events record of the audit configuration"


def test_sealed_days_are_immutable(host):
    s = settings(host)
    if not s["audit_store_immutable_days"]:
        assert host.ansible.get_variables().get("audit_store_immutable_days") is False
        pytest.skip(
            "audit_store_immutable_days=false in this inventory: a container has no CAP_LINUX_IMMUTABLE"
        )
    script = host.file(s["audit_store_immutable_script"])
    assert (script.user, script.mode) == ("root", 0o755)
    exec_post = host.check_output(
        "systemctl show --property=ExecStartPost --value airlock-audit-seal.service"
    )
    assert s["audit_store_immutable_script"] in exec_post
    root = s["audit_store_root"]
    with host.sudo():
        sums = host.run("cat %s/integrity_hashes/SHA256SUMS", root).stdout
        today = host.check_output("date -u +%Y-%m-%d")
        sealed = sorted(
            {
                line[66:]
                for line in sums.splitlines()
                if re.match(r"[0-9a-f]{64}  \d{4}-\d{2}-\d{2}/", line) and line[66:76] < today
            }
        )
        for rel in sealed:
            if host.file(f"{root}/{rel}").exists:
                flags = host.check_output("lsattr -d %s", f"{root}/{rel}").split()[0]
                assert "i" in flags, f"{rel} is sealed but not immutable"
        # The service account owns the files but cannot change a sealed one.
        for rel in sealed[:1]:
            assert run_as_airlock(host, "sh -c %s", f"echo x >> {root}/{rel}").rc != 0
