"""Every way of altering the log is detected, with the file and line where it shows."""

import shutil

import pytest

from airlock.audit.integrity import read_sums
from airlock.audit.verify import verify
from airlock.keys import init_keys, load_verifier

DAY1, DAY2, DAY3 = "2026-10-01", "2026-10-02", "2026-10-03"


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path, new_lines):
    path.write_bytes(b"".join(new_lines))


def findings(root, verifier, clock):
    report = verify(root, verifier, clock=clock)
    return report, {(f.kind, f.file, f.line) for f in report.findings}


@pytest.fixture
def log(write_days, root):
    write_days(days=3, per_day=4)
    return root


def test_a_clean_log_verifies(log, verifier, clock):
    report = verify(log, verifier, clock=clock)
    assert report.ok, report.findings
    assert report.records == 3 * 5 + 1 and report.days == 4 and report.blocks == 3


def test_modified_record_is_found_at_its_line(log, verifier, clock):
    path = log / DAY2 / "generations.jsonl"
    rows = lines(path)
    rows[1] = rows[1].replace(b'"tenant":"healthcare_system_b"', b'"tenant":"financial_institution_c"')
    rewrite(path, rows)
    _, found = findings(log, verifier, clock)
    assert ("modified", f"{DAY2}/generations.jsonl", 2) in found
    assert ("seal", f"{DAY2}/generations.jsonl", None) in found


def test_record_changed_and_rehashed_is_found_at_its_line(log, verifier, clock):
    from airlock.audit import records

    path = log / DAY2 / "generations.jsonl"
    rows = lines(path)
    old = records.split(rows[1].rstrip(b"\n"))
    body = old.body.replace(b'"duration_ms":1534', b'"duration_ms":9')
    rows[1] = body[:-1] + records.HASH_MARK + records.sha256_hex(body).encode() + b'"' + old.tail + b"}\n"
    rewrite(path, rows)
    _, found = findings(log, verifier, clock)
    assert ("modified", f"{DAY2}/generations.jsonl", 2) in found


def test_inserted_record_is_found(log, verifier, clock):
    path = log / DAY2 / "generations.jsonl"
    rows = lines(path)
    rewrite(path, [*rows[:3], rows[1], *rows[3:]])  # a replayed copy of line 2 as line 4
    _, found = findings(log, verifier, clock)
    assert ("inserted", f"{DAY2}/generations.jsonl", 4) in found


def test_inserted_garbage_line_is_found(log, verifier, clock):
    path = log / DAY2 / "api_access.jsonl"
    rewrite(path, [b'{"event":"auth.accepted","note":"forged"}\n', *lines(path)])
    _, found = findings(log, verifier, clock)
    assert ("malformed", f"{DAY2}/api_access.jsonl", 1) in found


def test_deleted_record_is_found_where_the_gap_is(log, verifier, clock):
    path = log / DAY2 / "generations.jsonl"
    rows = lines(path)
    rewrite(path, [rows[0], *rows[2:]])
    report, found = findings(log, verifier, clock)
    assert ("deleted", f"{DAY2}/generations.jsonl", 2) in found
    assert any("seq 6 missing" in f.detail for f in report.findings)


def test_reordered_records_are_found(log, verifier, clock):
    path = log / DAY2 / "generations.jsonl"
    rows = lines(path)
    rows[1], rows[2] = rows[2], rows[1]
    rewrite(path, rows)
    report, found = findings(log, verifier, clock)
    assert ("reordered", f"{DAY2}/generations.jsonl", 3) in found
    assert not any(f.kind == "deleted" for f in report.findings), "a swap is not a deletion"


def test_truncated_file_is_found(log, verifier, clock):
    path = log / DAY3 / "generations.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    _, found = findings(log, verifier, clock)
    assert ("truncated", f"{DAY3}/generations.jsonl", 4) in found


def test_newest_records_of_a_sealed_day_removed_are_found(log, verifier, clock):
    path = log / DAY3 / "generations.jsonl"
    rewrite(path, lines(path)[:-2])  # cut whole lines: the file still parses
    report, found = findings(log, verifier, clock)
    assert ("deleted", f"{DAY3}/generations.jsonl", None) in found
    assert any("newest records were removed" in f.detail for f in report.findings)


def test_missing_day_is_found(log, verifier, clock):
    shutil.rmtree(log / DAY2)
    report, found = findings(log, verifier, clock)
    assert ("missing_day", DAY2, None) in found
    assert any(f.kind == "deleted" and f.file == f"{DAY3}/generations.jsonl" for f in report.findings)


def test_bad_signature_is_found(log, verifier, clock):
    sums = log / "integrity_hashes" / "SHA256SUMS"
    block = read_sums(log).blocks[1]
    data = sums.read_bytes().splitlines(keepends=True)
    sig_line = block.line + len(block.files) + 1  # zero-based index of the #sig line
    data[sig_line] = data[sig_line][:-10] + b"AAAAAAAAA\n"
    sums.write_bytes(b"".join(data))
    _, found = findings(log, verifier, clock)
    assert ("signature", "integrity_hashes/SHA256SUMS", block.line) in found


def test_seals_signed_by_another_key_are_refused(log, clock, tmp_path):
    other = load_verifier(init_keys(tmp_path / "other").path.parent)
    report = verify(log, other, clock=clock)
    assert {f.kind for f in report.findings} == {"signature"}
    assert all("trusted key is" in f.detail for f in report.findings)


def test_removed_seal_block_is_found(log, verifier, clock):
    sums = log / "integrity_hashes" / "SHA256SUMS"
    blocks = read_sums(log).blocks
    data = sums.read_bytes().splitlines(keepends=True)
    first, end = blocks[1].line - 1, blocks[2].line - 1
    sums.write_bytes(b"".join(data[:first] + data[end:]))
    report, found = findings(log, verifier, clock)
    assert any(f.kind == "seal" and "does not follow" in f.detail for f in report.findings)
    assert ("unsealed_day", DAY2, None) in found


def test_prompt_text_not_matching_its_hash_is_found(log, verifier, clock):
    path = log / DAY1 / "generations.jsonl"
    rows = lines(path)
    rows[2] = rows[2].replace(b"soft studio lighting", b"patient John Smith DOB 1961")
    rewrite(path, rows)
    _, found = findings(log, verifier, clock)
    assert ("prompt", f"{DAY1}/generations.jsonl", 3) in found


def test_record_moved_to_another_day_is_found(log, verifier, clock):
    src, dst = log / DAY1 / "api_access.jsonl", log / DAY2 / "api_access.jsonl"
    rewrite(dst, [*lines(src), *lines(dst)])
    rewrite(src, [])
    _, found = findings(log, verifier, clock)
    assert ("misplaced", f"{DAY2}/api_access.jsonl", 1) in found


def test_closed_day_nobody_sealed_is_found(root, clock, verifier):
    from airlock.audit import AuditLog

    with AuditLog(root, clock=clock) as log:  # no signer: nothing seals at rollover
        log.append("system_events", "boot", component="test", outcome="success")
    clock.advance(days=1)
    _, found = findings(root, verifier, clock)
    assert ("unsealed_day", DAY1, None) in found


def test_sealed_files_are_vouched_for_and_a_deep_walk_agrees(log, verifier, clock):
    fast, deep = verify(log, verifier, clock=clock), verify(log, verifier, clock=clock, deep=True)
    assert fast.ok and deep.ok and fast.records == deep.records == 16


def test_without_a_trusted_key_seals_are_not_taken_on_faith(log, clock):
    report = verify(log, None, clock=clock)
    assert {f.kind for f in report.findings} == {"signature"}
    assert report.records == 16  # every record was still walked
