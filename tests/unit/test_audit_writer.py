"""The writer: durable, fail-closed, crash-safe, and correct with several processes at once."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
from conftest import GENERATION

from airlock.audit import AuditLog, AuditRecordError, AuditWriteError
from airlock.audit.verify import verify

WRITER = textwrap.dedent("""
    import os, resource, signal, sys
    from airlock.audit import AuditLog
    root, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "fsize":
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    log = AuditLog(root)
    for i in range(count):
        try:
            receipt = log.append("system_events", "tick", component=f"writer-{os.getpid()}", n=i,
                                 outcome="success", detail="x" * 120)
        except Exception as exc:
            print(f"FAILED {type(exc).__name__}: {exc}", flush=True)
            sys.exit(3)
        print(receipt.seq, flush=True)
    log.close()
""")


def run_writer(root, mode, count, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), mode, str(count)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )


def all_records(root):
    out = []
    for path in sorted(root.glob("*/*.jsonl")):
        out += [json.loads(line) for line in path.read_bytes().splitlines()]
    return out


def test_append_returns_a_receipt_for_a_durable_chained_record(root, clock):
    with AuditLog(root, clock=clock) as log:
        first = log.append("generations", "generation.completed", **GENERATION)
        second = log.append("generations", "generation.completed", **GENERATION)
    assert (first.seq, second.seq) == (1, 2)
    rows = [json.loads(line) for line in (root / first.file).read_bytes().splitlines()]
    assert rows[1]["prev_hash"] == rows[0]["hash"] == first.hash
    assert rows[0]["ts"] == "2026-10-01T09:00:00.000000Z"
    assert rows[0]["prompt"] == GENERATION["prompt"] and len(rows[0]["prompt_sha256"]) == 64


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({**GENERATION, "api_key": "alk_live_123"}, "api_key: it looks like a secret"),
        ({**GENERATION, "parameters": {"auth": {"password": "x"}}}, "refusing to log password"),
        ({**GENERATION, "detail": "-----BEGIN PRIVATE KEY-----"}, "a private key value"),
        ({**GENERATION, "parameters": {"prompt_sha256": "0" * 64}}, "set by the audit log"),
        ({k: v for k, v in GENERATION.items() if k != "tenant"}, "missing tenant"),
        ({**GENERATION, "outcome": "ok"}, "outcome must be"),
        ({**GENERATION, "model": {"name": "x"}}, "model must name name, version, checksum"),
        ({**GENERATION, "seq": 5}, "set by the audit log"),
        ({**GENERATION, "parameters": {"x": float("nan")}}, "not plain JSON"),
    ],
)
def test_unacceptable_records_are_refused_before_anything_is_written(root, fields, message):
    with AuditLog(root) as log, pytest.raises(AuditRecordError, match=message):
        log.append("generations", "generation.completed", **fields)
    assert all_records(root) == []


def test_many_threads_are_group_committed_without_loss(root, clock):
    with AuditLog(root, clock=clock) as log:

        def work(n):
            for i in range(250):
                log.append(
                    "api_access",
                    "auth.accepted",
                    key_id=f"ak_{n}",
                    tenant="t",
                    method="GET",
                    path="/v1/jobs",
                    status=200,
                    client="10.0.0.1",
                    duration_ms=i,
                    outcome="success",
                )

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    seqs = [r["seq"] for r in all_records(root)]
    assert seqs == list(range(1, 2001))
    assert verify(root, None, clock=clock).ok


def test_four_processes_by_2000_records_lose_nothing(root):
    procs = [run_writer(root, "plain", 2000) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outputs]
    records = all_records(root)
    assert [r["seq"] for r in records] == list(range(1, 8001))
    per_writer = {}
    for r in records:
        per_writer.setdefault(r["component"], []).append(r["n"])
    assert sorted(map(sorted, per_writer.values())) == [list(range(2000))] * 4
    report = verify(root, None)
    assert report.ok, report.findings[:5]


def test_a_full_file_limit_makes_the_writer_raise_and_leaves_nothing_half_written(root):
    proc = run_writer(root, "fsize", 1000)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert "FAILED AuditWriteError" in out and "fail closed" in out
    acknowledged = [int(line) for line in out.splitlines() if line.isdigit()]
    data = next(root.glob("*/system_events.jsonl")).read_bytes()
    assert data.endswith(b"\n") and len(data) <= 4096
    assert [r["seq"] for r in all_records(root)] == acknowledged  # every acknowledged record, nothing more
    assert verify(root, None).ok


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root for a private tmpfs")
def test_a_full_filesystem_makes_the_writer_raise(tmp_path):
    script = (
        f"mount -t tmpfs -o size=64k tmpfs {tmp_path} && "
        f"{sys.executable} -c '{WRITER}' {tmp_path}/audit plain 5000; rc=$?; "
        f"{sys.executable} -c 'import sys; from airlock.audit.verify import verify; "
        f'r = verify(__import__("pathlib").Path("{tmp_path}/audit"), None); '
        f'print("VERIFY", r.ok, r.records)\'; exit $rc'
    )
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 3, result.stderr
    assert "FAILED AuditWriteError" in result.stdout and "No space left on device" in result.stdout
    acknowledged = len([line for line in result.stdout.splitlines() if line.isdigit()])
    assert f"VERIFY True {acknowledged}" in result.stdout


def test_a_killed_writer_leaves_a_recoverable_log_and_verify_stays_exact(root):
    proc = run_writer(root, "plain", 1_000_000)
    acknowledged = []
    for line in proc.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == 3000:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait()
    for line in proc.stdout:  # anything printed before the kill landed
        if line.strip().isdigit():
            acknowledged.append(int(line))
    # Simulate the torn tail a kill can leave mid-write.
    path = next(root.glob("*/system_events.jsonl"))
    with open(path, "ab") as fh:
        fh.write(b'{"seq":999999,"prev_hash":"00')
    assert not verify(root, None).ok  # torn tail shows before recovery

    with AuditLog(root) as log:
        receipt = log.append("system_events", "service.started", component="test", outcome="success")
    records = all_records(root)
    seqs = [r["seq"] for r in records]
    assert set(acknowledged) <= set(seqs), "an acknowledged record was lost"
    assert seqs == list(range(1, len(seqs) + 1))
    note = next(r for r in records if r["event"] == "audit.torn_record_quarantined")
    assert note["bytes"] > 0 and (root / note["quarantine"]).exists()
    assert receipt.seq == seqs[-1]
    report = verify(root, None)
    assert report.ok, report.findings[:5]
    assert any("quarantined" in n for n in report.notes)


def test_unwritable_root_fails_closed(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(AuditWriteError, match="cannot create the audit root"):
        AuditLog(blocker / "audit")


def test_a_corrupt_chain_tip_stops_the_writer(root, clock):
    with AuditLog(root, clock=clock) as log:
        log.append("system_events", "boot", component="test", outcome="success")
    path = next(root.glob("*/system_events.jsonl"))
    path.write_bytes(b"garbage that is not a record\n")
    with AuditLog(root, clock=clock) as log, pytest.raises(AuditWriteError, match="cannot continue"):
        log.append("system_events", "boot", component="test", outcome="success")


def test_writer_in_a_forked_child_still_writes(root):
    log = AuditLog(root)
    log.append("system_events", "parent", component="test", outcome="success")
    pid = os.fork()
    if pid == 0:
        try:
            log.append("system_events", "child", component="test", outcome="success")
            log.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    log.append("system_events", "parent-again", component="test", outcome="success")
    log.close()
    assert [r["event"] for r in all_records(root)] == ["parent", "child", "parent-again"]
