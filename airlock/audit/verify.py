"""`airlock audit verify`: every file, record, chain, seal and signature, with a precise report.

Finding kinds (each with the file and line where it shows):
  modified     a record's bytes do not match its hash, or it was changed and re-hashed
  inserted     a record repeats an earlier sequence number, or a file is not covered by its seal
  deleted      sequence numbers are missing, or a sealed day lost its newest records
  reordered    a record appears after a later one
  truncated    a file ends in a cut line (torn write or cut file)
  malformed    a line that is not an audit record at all
  misplaced    a record in the wrong day or category file
  prompt       prompt text that does not match the hash the chain holds
  missing_day  a sealed day that is gone (live and archived)
  unsealed_day a closed day that nobody sealed
  seal         SHA256SUMS damaged, a block re-ordered/removed, a file differing from its sealed hash
  signature    a block whose signature does not verify with the trusted key
"""

from __future__ import annotations

import tarfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airlock.audit import records
from airlock.audit.chain import Chain, Finding, check_file
from airlock.audit.integrity import (
    ParsedSums,
    archived_days,
    read_archive,
    read_sums,
    sealed_days,
)
from airlock.audit.layout import DAY, INTEGRITY, QUARANTINE, SUMS, day_file, live_days
from airlock.keys import Verifier


@dataclass
class Report:
    root: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    records: int = 0
    files: int = 0
    days: int = 0
    blocks: int = 0
    trusted_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def _check_blocks(parsed: ParsedSums, verifier: Verifier | None, report: Report) -> None:
    sums = f"{INTEGRITY}/{SUMS}"
    for line, what in parsed.problems:
        report.findings.append(Finding("seal", sums, line, what))
    prev = records.GENESIS
    for block in parsed.blocks:
        if records.sha256_hex(block.text) != block.hash:
            report.findings.append(
                Finding("seal", sums, block.line, f"#{block.kind} block content was altered")
            )
        if block.meta.get("prev") != prev:
            report.findings.append(
                Finding(
                    "seal",
                    sums,
                    block.line,
                    f"#{block.kind} block does not follow the "
                    "previous block: a block was removed, inserted or reordered",
                )
            )
        prev = block.hash
        if verifier is None:
            report.findings.append(Finding("signature", sums, block.line, "no trusted key to check it with"))
        elif block.key != verifier.fingerprint:
            report.findings.append(
                Finding(
                    "signature",
                    sums,
                    block.line,
                    f"signed by {block.key}, but the trusted key is {verifier.fingerprint}",
                )
            )
        elif not verifier.verify(block.signature, block.text):
            report.findings.append(Finding("signature", sums, block.line, "bad signature"))


def _day_sources(
    root: Path, parsed: ParsedSums, expected: dict[str, str], report: Report
) -> dict[str, dict[str, tuple[str, bytes]]]:
    """day -> {name in day: (display path, bytes)}, live or from archives."""
    sources: dict[str, dict[str, tuple[str, bytes]]] = {}
    for archive_rel in sorted(set(archived_days(parsed).values())):
        try:
            if records.sha256_hex((root / archive_rel).read_bytes()) != expected.get(archive_rel):
                report.findings.append(
                    Finding("seal", archive_rel, None, "archive differs from its signed hash")
                )
            members = read_archive(root / archive_rel)
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            report.findings.append(Finding("missing_day", archive_rel, None, f"archive unreadable: {exc}"))
            continue
        for name, data in members.items():
            day, _, rest = name.partition("/")
            sources.setdefault(day, {})[rest] = (f"{archive_rel}:{name}", data)
    for day in live_days(root):
        if day in sources:
            report.notes.append(
                f"{day} is both archived and live (interrupted archive?); the archive is used"
            )
            continue
        for path in sorted((root / day).rglob("*")):
            if path.is_file():
                rel = str(path.relative_to(root / day))
                sources.setdefault(day, {})[rel] = (f"{day}/{rel}", path.read_bytes())
    return sources


def _expected_hashes(parsed: ParsedSums) -> dict[str, str]:
    expected: dict[str, str] = {}
    for block in parsed.blocks:
        for sha, path in block.files:
            expected[path] = sha
    return expected


def _check_seal_tips(day: str, seal, chains: dict[str, Chain], present: set[str], report: Report) -> None:
    tips = seal.meta.get("tips", {})
    for category, tip in tips.items():
        chain = chains.setdefault(category, Chain())
        file = day_file(day, category)
        if category not in present:
            report.findings.append(
                Finding("deleted", file, None, f"sealed with {tip['records']} records, now gone")
            )
        elif chain.last_seq < tip["seq"]:
            report.findings.append(
                Finding(
                    "deleted",
                    file,
                    None,
                    f"sealed through seq {tip['seq']}, the log "
                    f"ends at seq {chain.last_seq}: the newest records were removed",
                )
            )
        elif chain.last_seq == tip["seq"] and chain.last_hash.decode() != tip["hash"]:
            report.findings.append(
                Finding("modified", file, None, "the chain no longer ends at the sealed hash")
            )
    for category in present - set(tips):
        report.findings.append(
            Finding("inserted", day_file(day, category), None, "file not covered by the seal")
        )


def verify(
    root: Path,
    verifier: Verifier | None,
    *,
    clock=lambda: datetime.now(UTC),
    unsealed_grace: timedelta = timedelta(hours=1),
    deep: bool = False,
) -> Report:
    """Verify the whole log. A sealed file whose bytes match its signed hash is vouched for by the
    seal (the sealer checked every record before signing); only its links to its neighbours are
    checked then. Everything else, or everything with deep=True, is checked record by record."""
    report = Report(root=str(root), trusted_key=verifier.fingerprint if verifier else None)
    parsed = read_sums(root)
    report.blocks = len(parsed.blocks)
    _check_blocks(parsed, verifier, report)
    trust_seals = not deep and not report.findings  # any doubt about the journal: check everything
    sealed = sealed_days(parsed)
    expected = _expected_hashes(parsed)
    sources = _day_sources(root, parsed, expected, report)
    chains: dict[str, Chain] = {}
    for day in sorted(set(sources) | set(sealed)):
        if day not in sources:
            report.findings.append(
                Finding("missing_day", day, None, "sealed day is gone (not live, not archived)")
            )
            continue
        report.days += 1
        present = set()
        tips = sealed[day].meta.get("tips", {}) if day in sealed else {}
        for name, (display, data) in sorted(sources[day].items()):
            if name.startswith(QUARANTINE + "/"):
                report.notes.append(f"{display}: torn record quarantined after a crash ({len(data)} bytes)")
                continue
            category = name.removesuffix(".jsonl")
            if category not in records.CATEGORIES or "/" in name:
                report.findings.append(Finding("inserted", display, None, "unexpected file in the audit log"))
                continue
            present.add(category)
            report.files += 1
            chain = chains.setdefault(category, Chain())
            want = expected.get(day_file(day, category))
            matches = want is not None and records.sha256_hex(data) == want
            if want is not None and not matches:
                report.findings.append(Finding("seal", display, None, "file differs from its sealed hash"))
            if trust_seals and matches and category in tips:
                report.records += _vouched_file(data, display, tips[category], chain, report)
            else:
                report.records += check_file(data, display, day, category, chain, report.findings)
        if day in sealed:
            _check_seal_tips(day, sealed[day], chains, present, report)
        elif DAY.match(day) and _closed_for(day, clock()) > unsealed_grace:
            report.findings.append(
                Finding("unsealed_day", day, None, "closed day was never sealed (run `airlock audit seal`)")
            )
    for category, chain in chains.items():
        report.findings += chain.gap_findings(category)
    report.findings.sort(key=lambda f: (f.file, f.line or 0))
    return report


def _vouched_file(data: bytes, display: str, tip: dict, chain: Chain, report: Report) -> int:
    """A file the seal vouches for: check only how it joins the chain before it."""
    first = records.split(data[: data.index(b"\n")])
    if first.seq != tip["first_seq"] or first.seq <= chain.last_seq:
        report.findings.append(
            Finding("reordered", display, 1, f"seq {first.seq} follows seq {chain.last_seq}")
        )
    elif first.seq > chain.last_seq + 1:
        chain.gaps.append([chain.last_seq + 1, first.seq - 1, (display, 1)])
    elif first.prev_hash != chain.last_hash and chain.last_loc is not None:
        report.findings.append(
            Finding(
                "modified",
                chain.last_loc[0],
                chain.last_loc[1],
                f"seq {chain.last_seq} no longer links to {display}:1",
            )
        )
    chain.vouched.append((tip["first_seq"], tip["seq"]))
    chain.last_seq, chain.last_hash = tip["seq"], tip["hash"].encode()
    chain.last_loc = (display, tip["records"])
    return tip["records"]


def _closed_for(day: str, now: datetime) -> timedelta:
    end = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
    return now - end
