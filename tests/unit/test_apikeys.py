"""The hashed API-key store and `airlock apikeys ...`: keys shown once, never stored, every change audited."""

import json
import multiprocessing
import stat
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from airlock import apikeys
from airlock.apikeys import (
    ApiKeyError,
    ApiKeyInputError,
    UnknownKeyError,
    create_key,
    list_keys,
    load_store,
    revoke_key,
    rotate_key,
)
from airlock.audit import AuditLog, AuditWriteError
from airlock.cli import app
from inference.auth import Authenticator, AuthError, TokenBuckets

runner = CliRunner()
TENANT = "healthcare_system_b"


@pytest.fixture
def store(tmp_path):
    return tmp_path / "lib" / "apikeys.json"


@pytest.fixture
def audit(root, clock):
    with AuditLog(root, clock=clock) as log:
        yield log


def make(store, audit, clock, **overrides):
    args = {
        "tenant": TENANT,
        "permissions": ["generate", "jobs:read"],
        "created_by": "ops_lead",
        "audit": audit,
        "clock": clock,
        **overrides,
    }
    return create_key(store, **args)


def user_changes(root):
    return [json.loads(line) for f in sorted(root.glob("*/user_changes.jsonl")) for line in f.open()]


def test_create_returns_a_key_shown_once_and_stores_only_its_hash(store, audit, clock):
    key, record = make(store, audit, clock, rate="30/min", expires_in=timedelta(days=90))
    assert key.startswith("alk_") and len(key) == 47
    assert record.key_id.startswith("ak_") and len(record.key_id) == 15
    assert record.sha256 == apikeys.hash_key(key)
    assert record.expires_at == "2026-12-30T09:00:00Z" and record.created_at == "2026-10-01T09:00:00Z"
    raw = store.read_bytes()
    assert key.encode() not in raw and key[4:].encode() not in raw
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert json.loads(raw)["version"] == 1
    assert load_store(store).by_hash[record.sha256] == record


def test_store_entries_hold_exactly_the_documented_fields(store, audit, clock):
    make(store, audit, clock)
    (entry,) = json.loads(store.read_text())["keys"]
    assert set(entry) == {
        "key_id",
        "sha256",
        "tenant",
        "permissions",
        "rate",
        "expires_at",
        "created_by",
        "created_at",
        "revoked_at",
        "rotated_from",
    }


def test_list_revoke_rotate_round_trip(store, audit, clock):
    _, first = make(store, audit, clock)
    _, second = make(store, audit, clock, tenant="defense_a", permissions=["models:read"])
    assert [r.key_id for r in list_keys(store)] == [first.key_id, second.key_id]

    revoked = revoke_key(store, first.key_id, actor="ops_lead", audit=audit, clock=clock)
    assert revoked.revoked_at == "2026-10-01T09:00:00Z"
    assert load_store(store).by_id[first.key_id].revoked(clock())
    with pytest.raises(ApiKeyError, match="already revoked"):
        revoke_key(store, first.key_id, actor="ops_lead", audit=audit, clock=clock)

    new_key, new = rotate_key(store, second.key_id, actor="ops_lead", audit=audit, clock=clock)
    assert new.rotated_from == second.key_id
    assert (new.tenant, new.permissions, new.rate) == (second.tenant, second.permissions, second.rate)
    assert new.sha256 == apikeys.hash_key(new_key) != second.sha256
    assert load_store(store).by_id[second.key_id].revoked(clock())
    assert len(list_keys(store)) == 3


def test_rotate_with_grace_keeps_the_old_key_until_the_grace_ends(store, audit, clock):
    _, old = make(store, audit, clock, expires_in=timedelta(days=30))
    _, new = rotate_key(store, old.key_id, actor="ops", audit=audit, grace=timedelta(hours=24), clock=clock)
    stored = load_store(store).by_id[old.key_id]
    assert stored.revoked_at == "2026-10-02T09:00:00Z"
    assert not stored.revoked(clock())
    clock.advance(hours=24)
    assert stored.revoked(clock())
    assert new.expires_at == "2026-10-31T09:00:00Z"  # the new key gets the old one's lifetime
    with pytest.raises(ApiKeyError, match="revoked"):
        rotate_key(store, old.key_id, actor="ops", audit=audit, clock=clock)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"permissions": ["generate", "delete"]}, "valid permissions: generate, jobs:read, models:read"),
        ({"permissions": []}, "at least one permission"),
        ({"rate": "30/m"}, "use N/s, N/min or N/h"),
        ({"rate": "0/s"}, "N >= 1"),
        ({"tenant": "Tenant_A"}, "bad tenant id"),
        ({"tenant": "-a"}, "bad tenant id"),
        ({"tenant": "a" * 64}, "bad tenant id"),
        ({"expires_in": timedelta(0)}, "in the future"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(store, audit, clock, root, overrides, message):
    with pytest.raises(ApiKeyInputError, match=message):
        make(store, audit, clock, **overrides)
    assert not store.exists()
    assert user_changes(root) == []


def test_unknown_and_malformed_key_ids(store, audit, clock):
    make(store, audit, clock)
    with pytest.raises(UnknownKeyError, match="no API key ak_000000000000"):
        revoke_key(store, "ak_000000000000", actor="ops", audit=audit)
    with pytest.raises(ApiKeyInputError, match="key ids look like"):
        rotate_key(store, "alk_notanid", actor="ops", audit=audit)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30/min", (0.5, 30)), ("5/s", (5.0, 5)), ("3600/h", (1.0, 3600)), ("1/h", (1 / 3600, 1))],
)
def test_parse_rate(text, expected):
    assert apikeys.parse_rate(text) == pytest.approx(expected)


def test_parse_duration():
    assert apikeys.parse_duration("90d") == timedelta(days=90)
    assert apikeys.parse_duration("24h") == timedelta(hours=24)
    assert apikeys.parse_duration("15min") == timedelta(minutes=15)
    with pytest.raises(ApiKeyInputError, match="min"):
        apikeys.parse_duration("6m")  # months or minutes? refused rather than guessed


def test_every_change_is_audited_without_key_or_hash(store, audit, clock, root):
    key, record = make(store, audit, clock, rate="10/s", expires_in=timedelta(days=1))
    revoke_key(store, record.key_id, actor="sec_officer", audit=audit, clock=clock)
    _, other = make(store, audit, clock)
    new_key, new = rotate_key(store, other.key_id, actor="sec_officer", audit=audit, clock=clock)

    created, revoked, _, rotated = user_changes(root)
    assert created["event"] == "apikey.created"
    assert {k: created[k] for k in ("actor", "subject", "tenant", "action", "outcome")} == {
        "actor": "ops_lead",
        "subject": record.key_id,
        "tenant": TENANT,
        "action": "create",
        "outcome": "success",
    }
    assert created["permissions"] == ["generate", "jobs:read"]
    assert created["expires_at"] == "2026-10-02T09:00:00Z"
    assert (revoked["event"], revoked["action"], revoked["actor"]) == (
        "apikey.revoked",
        "revoke",
        "sec_officer",
    )
    assert revoked["subject"] == record.key_id
    assert (rotated["event"], rotated["action"], rotated["subject"]) == (
        "apikey.rotated",
        "rotate",
        new.key_id,
    )
    assert rotated["rotated_from"] == other.key_id

    everything = b"".join(f.read_bytes() for f in root.rglob("*.jsonl"))
    for secret in (key, new_key, record.sha256, other.sha256, new.sha256):
        assert secret.encode() not in everything


class FailingAudit:
    def append(self, *args, **fields):
        raise AuditWriteError("the audit disk is full")


def test_a_failing_audit_write_leaves_the_store_unchanged(store, audit, clock):
    _, record = make(store, audit, clock)
    before = store.read_bytes()
    with pytest.raises(AuditWriteError):
        make(store, FailingAudit(), clock)
    with pytest.raises(AuditWriteError):
        revoke_key(store, record.key_id, actor="ops", audit=FailingAudit())
    with pytest.raises(AuditWriteError):
        rotate_key(store, record.key_id, actor="ops", audit=FailingAudit())
    assert store.read_bytes() == before


def test_a_real_audit_log_that_cannot_write_refuses_the_change(store, tmp_path, clock):
    root = tmp_path / "audit"
    with AuditLog(root, clock=clock) as log:
        (root / "2026-10-01").write_text("not a directory")  # today's folder cannot be made
        with pytest.raises(AuditWriteError):
            make(store, log, clock)
    assert not store.exists()


def _create_many(store, root, worker, count):
    with AuditLog(root) as log:
        for n in range(count):
            create_key(
                store, tenant=f"t{worker}", permissions=["generate"], created_by=f"w{worker}-{n}", audit=log
            )


def test_concurrent_creates_lose_no_key(store, root):
    ctx = multiprocessing.get_context("spawn")  # no fork of a threaded test process
    procs = [ctx.Process(target=_create_many, args=(store, root, w, 5)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    records = list_keys(store)
    assert len(records) == 20
    assert len({r.key_id for r in records}) == 20
    assert sorted(r.created_by for r in records) == sorted(f"w{w}-{n}" for w in range(4) for n in range(5))
    assert len(user_changes(root)) == 20


def test_a_damaged_store_is_refused_not_half_read(store, audit, clock):
    make(store, audit, clock)
    doc = json.loads(store.read_text())
    doc["keys"][0]["permissions"] = ["everything"]
    store.write_text(json.dumps(doc))
    with pytest.raises(ApiKeyError, match="damaged"):
        load_store(store)
    with pytest.raises(ApiKeyError, match="damaged"):
        make(store, audit, clock)


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRLOCK_APIKEYS", str(tmp_path / "apikeys.json"))
    monkeypatch.setenv("AIRLOCK_AUDIT_ROOT", str(tmp_path / "audit"))
    return tmp_path


def cli(*args):
    return runner.invoke(app, ["apikeys", *args], terminal_width=200)


def created_key(result):
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    return lines["api_key"].strip(), lines["key_id"].strip()


def test_cli_create_prints_a_key_that_authenticates(env):
    result = cli("create", "--tenant", TENANT, "--permissions", "generate,jobs:read", "--rate", "30/min")
    assert result.exit_code == 0, result.output
    assert "only time the key is shown" in result.output
    key, key_id = created_key(result)
    auth = Authenticator(env / "apikeys.json", TokenBuckets())
    principal = auth.authenticate(key, "generate", tenant=TENANT)
    assert (principal.key_id, principal.tenant) == (key_id, TENANT)
    with pytest.raises(AuthError) as refused:
        auth.authenticate(key, "models:read")
    assert refused.value.code == "insufficient_permission"


def test_cli_list_never_shows_hashes(env):
    key, key_id = created_key(cli("create", "--tenant", TENANT, "--permissions", "generate"))
    digest = apikeys.hash_key(key)
    table = cli("list")
    as_json = cli("list", "--json")
    assert table.exit_code == as_json.exit_code == 0
    assert key_id in table.output and key_id in as_json.output
    for output in (table.output, as_json.output):
        assert digest not in output and key not in output and "sha256" not in output
    (entry,) = json.loads(as_json.stdout)
    assert entry["status"] == "active" and entry["tenant"] == TENANT


def test_cli_revoke_and_rotate(env):
    _, first = created_key(cli("create", "--tenant", TENANT, "--permissions", "generate"))
    _, second = created_key(cli("create", "--tenant", TENANT, "--permissions", "generate"))
    assert cli("revoke", first).exit_code == 0
    again = cli("revoke", first)
    assert again.exit_code == 1 and "already revoked" in again.output
    rotated = cli("rotate", second, "--grace", "24h")
    assert rotated.exit_code == 0, rotated.output
    new_key, new_id = created_key(rotated)
    assert new_id != second and "keeps working for 24h" in rotated.output
    auth = Authenticator(env / "apikeys.json", TokenBuckets())
    assert auth.authenticate(new_key, "generate").key_id == new_id


def test_cli_usage_errors_exit_2_with_a_message(env):
    bad = cli("create", "--tenant", TENANT, "--permissions", "generate,superuser")
    assert bad.exit_code == 2
    assert "superuser" in bad.output and "jobs:read, models:read, audit:read-full, admin" in bad.output
    assert cli("create", "--tenant", TENANT, "--permissions", "generate", "--rate", "lots").exit_code == 2
    assert cli("create", "--tenant", TENANT, "--permissions", "generate", "--expires", "6m").exit_code == 2
    unknown = cli("revoke", "ak_000000000000")
    assert unknown.exit_code == 2 and "no API key ak_000000000000" in unknown.output
    assert not (env / "apikeys.json").exists()


def test_cli_fails_closed_when_the_audit_log_cannot_be_written(env, monkeypatch):
    cli("create", "--tenant", TENANT, "--permissions", "generate")
    before = (env / "apikeys.json").read_bytes()
    blocked = env / "blocked"
    blocked.write_text("a regular file where the audit root should be")
    monkeypatch.setenv("AIRLOCK_AUDIT_ROOT", str(blocked))
    result = cli("create", "--tenant", TENANT, "--permissions", "generate")
    assert result.exit_code == 1
    assert "audit" in result.output and "api_key" not in result.stdout
    assert (env / "apikeys.json").read_bytes() == before
