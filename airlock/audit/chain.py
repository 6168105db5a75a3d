"""Checking records line by line: hashes, sequence, links, prompt digests. Shared by verify (which
walks whatever it cannot vouch for by a signed file hash) and seal (which refuses to sign a day
that does not check out, so a signed hash stands for records that were checked)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from airlock.audit import records


@dataclass
class Finding:
    kind: str
    file: str
    line: int | None
    detail: str


@dataclass
class Chain:
    """Running state of one category's chain across files and days."""

    last_seq: int = 0
    last_hash: bytes = records.GENESIS.encode()
    last_loc: tuple[str, int] | None = None
    seen: set[int] = field(default_factory=set)
    vouched: list[tuple[int, int]] = field(default_factory=list)  # seq ranges taken from signed seals
    gaps: list[list] = field(default_factory=list)  # [first missing, last missing, (file, line)]

    def has_seen(self, seq: int) -> bool:
        return seq in self.seen or any(lo <= seq <= hi for lo, hi in self.vouched)

    def gap_findings(self, category: str) -> list[Finding]:
        out = []
        for first, last, (file, number) in self.gaps:
            span = f"seq {first}" if first == last else f"seq {first}-{last}"
            out.append(Finding("deleted", file, number, f"{category} {span} missing before this line"))
        return out


def check_file(
    data: bytes, display: str, day: str, category: str, chain: Chain, findings: list[Finding]
) -> int:
    """Check every line of one category file; returns the number of records."""
    lines = data.split(b"\n")
    if lines[-1]:
        findings.append(
            Finding("truncated", display, len(lines), "last line is cut short (torn write or cut file)")
        )
    marker = f'"category":"{category}"'.encode()
    for number, raw in enumerate(lines[:-1], start=1):
        _check_line(raw, display, number, day, marker, chain, findings)
    return len(lines) - 1


def _check_line(
    raw: bytes, file: str, number: int, day: str, marker: bytes, chain: Chain, findings: list[Finding]
) -> None:
    try:
        line = records.split(raw)
    except ValueError:
        findings.append(Finding("malformed", file, number, "not an audit record (inserted or damaged)"))
        return
    seq = line.seq
    intact = hashlib.sha256(line.body).hexdigest().encode() == line.hash
    if not intact:
        findings.append(Finding("modified", file, number, f"seq {seq}: content does not match its hash"))
        if seq != chain.last_seq + 1:
            return  # its seq is not to be trusted either
    if not line.ts.startswith(day) or marker not in line.body:
        findings.append(
            Finding("misplaced", file, number, f"seq {seq} ({line.ts}) does not belong in this file")
        )
    if line.tail:
        _check_texts(line, file, number, findings)
    if chain.has_seen(seq):
        findings.append(Finding("inserted", file, number, f"seq {seq} appears a second time"))
        return
    chain.seen.add(seq)
    if seq == chain.last_seq + 1:
        if intact and line.prev_hash != chain.last_hash:
            where = chain.last_loc or (file, number)
            findings.append(
                Finding(
                    "modified",
                    where[0],
                    where[1],
                    f"seq {seq - 1} was changed and re-hashed: "
                    f"seq {seq} ({file}:{number}) no longer links to it",
                )
            )
    elif seq > chain.last_seq + 1:
        chain.gaps.append([chain.last_seq + 1, seq - 1, (file, number)])
    else:
        findings.append(Finding("reordered", file, number, f"seq {seq} appears after seq {chain.last_seq}"))
        for gap in chain.gaps:
            if gap[0] <= seq <= gap[1]:
                chain.gaps.remove(gap)
                chain.gaps += [
                    g for g in ([gap[0], seq - 1, gap[2]], [seq + 1, gap[1], gap[2]]) if g[0] <= g[1]
                ]
                break
        return
    chain.last_seq, chain.last_hash, chain.last_loc = seq, line.hash, (file, number)


def _check_texts(line: records.Line, file: str, number: int, findings: list[Finding]) -> None:
    try:
        texts = line.texts()
    except ValueError:
        findings.append(Finding("prompt", file, number, f"seq {line.seq}: prompt text is not valid JSON"))
        return
    for key, text in texts.items():
        expected = line.digest(key) if key in records.REDACTABLE else None
        if expected is None:
            findings.append(Finding("prompt", file, number, f"seq {line.seq}: unexpected field {key}"))
        elif not isinstance(text, str) or not hmac.compare_digest(
            records.sha256_hex(text.encode()), expected
        ):
            findings.append(
                Finding("prompt", file, number, f"seq {line.seq}: {key} text does not match its hash")
            )
