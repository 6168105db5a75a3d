"""base_hardening on a host that playbooks/site.yml converged: the locked service account, an SSH daemon
that takes keys only and speaks only strong cryptography, network sysctls, a persistent journal,
internal-only time sync and the login banner. Settings are read from the inventory the tests run
against (falling back to the role's defaults), so the lab and a production inventory both work.

    ip netns exec mgmt .venv/bin/pytest tests/infra/provisioned --hosts=ansible://gpu_hosts \
        --ansible-inventory=inventory/lab
"""

from pathlib import Path

import paramiko
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "base_hardening" / "defaults" / "main.yml").read_text())

STRONG_CIPHERS = "chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com"
STRONG_MACS = "hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com"
STRONG_KEX = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org"


def setting(host, name):
    """A base_hardening variable as the inventory under test sets it, else the role's default."""
    return host.ansible.get_variables().get(name, DEFAULTS[name])


def skip_unless_switched_on(host, switch, reason):
    """Skip only when the inventory itself switches the control off (and say so)."""
    variables = host.ansible.get_variables()
    if not setting(host, switch):
        assert variables.get(switch) is False, f"{switch} is off without the inventory saying so"
        pytest.skip(f"{switch}=false in this inventory: {reason}")


def sshd_effective(host) -> dict[str, list[str]]:
    with host.sudo():
        out = host.check_output("sshd -T")
    effective: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        effective.setdefault(key, []).append(value)
    return effective


# --- Service account ------------------------------------------------------------------------------------


def test_service_account_is_a_locked_system_user_without_a_shell(host):
    user = host.user("airlock")
    assert user.exists
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/airlock"
    assert user.group == "airlock"
    assert user.uid < 1000, "not a system account"
    with host.sudo():
        password = host.check_output("getent shadow airlock").split(":")[1]
    assert password.startswith(("!", "*")), "the airlock account has a usable password"
    home = host.file("/var/lib/airlock")
    assert home.is_directory
    assert (home.user, home.group, home.mode) == ("airlock", "airlock", 0o750)


def test_service_account_cannot_log_in(host):
    with host.sudo():
        refused = host.run("su - airlock -c true </dev/null")
    assert refused.rc != 0, "a login shell for airlock ran: " + refused.stdout + refused.stderr
    assert "airlock" in sshd_effective(host).get("denyusers", [])


# --- SSH daemon -----------------------------------------------------------------------------------------


def test_sshd_effective_settings(host):
    effective = sshd_effective(host)
    expected = {
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitrootlogin": "no",
        "pubkeyauthentication": "yes",
        "permitemptypasswords": "no",
        "maxauthtries": "3",
        "logingracetime": "30",
        "x11forwarding": "no",
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "clientaliveinterval": "300",
        "clientalivecountmax": "2",
        "banner": "/etc/issue.net",
        "subsystem": "sftp internal-sftp",
        "usepam": "yes",
        "ciphers": STRONG_CIPHERS,
        "macs": STRONG_MACS,
        "kexalgorithms": STRONG_KEX,
    }
    actual = {key: " ".join(effective.get(key, ["<unset>"])) for key in expected}
    assert actual == expected
    assert effective["hostkeyalgorithms"][0].split(",")[0] == "ssh-ed25519"


def test_sshd_allows_only_the_configured_groups(host):
    allowed = setting(host, "base_hardening_ssh_allow_groups")
    assert set(sshd_effective(host).get("allowgroups", [])) == set(allowed)


def test_sshd_config_is_readable_by_root_only(host):
    config = host.file("/etc/ssh/sshd_config")
    assert (config.user, config.group, config.mode) == ("root", "root", 0o600)


def test_sshd_refuses_password_login(host, mgmt_address, lab_password):
    """A real password login attempt for ops, with ops' real password, over the network."""
    with paramiko.Transport((mgmt_address, 22)) as transport:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("ops", lab_password)
        assert refused.value.allowed_types == ["publickey"]
        assert not transport.is_authenticated()


def test_sshd_negotiates_only_strong_algorithms(host, mgmt_address):
    with paramiko.Transport((mgmt_address, 22)) as transport:
        transport.start_client(timeout=10)
        assert transport.remote_cipher in STRONG_CIPHERS.split(",")
        assert transport.local_cipher in STRONG_CIPHERS.split(",")
        assert transport.host_key_type == "ssh-ed25519"


@pytest.mark.parametrize(
    ("option", "weak"),
    [
        ("ciphers", ("aes256-ctr", "aes128-cbc")),
        ("kex", ("diffie-hellman-group14-sha256", "ecdh-sha2-nistp256")),
    ],
)
def test_sshd_refuses_clients_that_offer_only_weak_algorithms(host, mgmt_address, option, weak):
    transport = paramiko.Transport((mgmt_address, 22))
    try:
        setattr(transport.get_security_options(), option, weak)
        with pytest.raises(paramiko.SSHException):
            transport.start_client(timeout=10)
    finally:
        transport.close()


def test_ops_still_logs_in_with_its_key(controller_login):
    result = controller_login()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ops"


def test_ssh_shows_the_banner_before_authentication(host, mgmt_address):
    banner = setting(host, "base_hardening_banner")
    with paramiko.Transport((mgmt_address, 22)) as transport:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType):
            transport.auth_none("ops")
        shown = transport.get_banner()
    assert shown is not None
    assert shown.decode().strip() == banner.strip()


# --- Sysctls and modules --------------------------------------------------------------------------------


def test_network_sysctls_are_in_effect(host):
    wanted = setting(host, "base_hardening_net_sysctls")
    assert wanted.get("net.ipv4.conf.all.rp_filter") == 1
    assert wanted.get("net.ipv4.ip_forward") == 0
    actual = {key: host.file("/proc/sys/" + key.replace(".", "/")).content_string.strip() for key in wanted}
    assert actual == {key: str(value) for key, value in wanted.items()}


def test_network_sysctls_persist_across_reboots(host):
    content = host.file("/etc/sysctl.d/90-airlock-net.conf").content_string
    for key, value in setting(host, "base_hardening_net_sysctls").items():
        assert f"{key} = {value}" in content.splitlines()


def test_kernel_sysctls_are_in_effect(host):
    skip_unless_switched_on(
        host, "base_hardening_kernel_sysctls", "a container cannot set non-network sysctls"
    )
    wanted = setting(host, "base_hardening_kernel_sysctl_settings")
    actual = {key: host.file("/proc/sys/" + key.replace(".", "/")).content_string.strip() for key in wanted}
    assert actual == {key: str(value) for key, value in wanted.items()}


def test_blacklisted_modules_cannot_load(host):
    skip_unless_switched_on(host, "base_hardening_kernel_modules", "a container cannot load modules")
    content = host.file("/etc/modprobe.d/airlock-blacklist.conf").content_string.splitlines()
    for module in setting(host, "base_hardening_kernel_modules_blacklist"):
        assert f"install {module} /bin/false" in content
    with host.sudo():
        dry_run = host.run("modprobe --dry-run --verbose usb-storage")
    assert "/bin/false" in dry_run.stdout + dry_run.stderr


# --- journald and time ----------------------------------------------------------------------------------


def test_journal_is_persistent(host):
    dropin = host.file("/etc/systemd/journald.conf.d/90-airlock.conf").content_string.splitlines()
    assert "Storage=persistent" in dropin
    assert "Compress=yes" in dropin
    assert "ForwardToSyslog=no" in dropin
    assert f"SystemMaxUse={setting(host, 'base_hardening_journald_system_max_use')}" in dropin
    assert host.file("/var/log/journal").is_directory
    with host.sudo():
        on_disk = host.check_output("find /var/log/journal -name system.journal -size +0")
    assert on_disk, "journald is not writing the system journal to /var/log/journal"


def test_time_sync_uses_only_the_internal_ntp_servers(host):
    servers = setting(host, "base_hardening_ntp_servers")
    assert servers
    dropin = host.file("/etc/systemd/timesyncd.conf.d/90-airlock.conf").content_string.splitlines()
    assert f"NTP={' '.join(servers)}" in dropin
    assert "FallbackNTP=" in dropin
    # The merged configuration timesyncd reads: no later file brings a fallback (the internet pool) back.
    merged = host.check_output("systemd-analyze cat-config systemd/timesyncd.conf").splitlines()
    settings = [line for line in merged if line and not line.startswith("#")]
    assert [line for line in settings if line.startswith("FallbackNTP=")][-1] == "FallbackNTP="
    assert [line for line in settings if line.startswith("NTP=")][-1] == f"NTP={' '.join(servers)}"


def test_time_sync_service_runs(host):
    skip_unless_switched_on(
        host,
        "base_hardening_time_sync_service",
        "systemd-timesyncd does not start in a container (ConditionVirtualization=!container)",
    )
    service = host.service("systemd-timesyncd")
    assert service.is_enabled
    assert service.is_running


# --- Banners --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/etc/issue", "/etc/issue.net", "/etc/motd"])
def test_login_banner_is_present(host, path):
    banner = setting(host, "base_hardening_banner")
    assert banner.strip()
    assert host.file(path).content_string == banner
