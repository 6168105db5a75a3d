"""Screening one text against a tenant's rules: findings, the sanitized text, the block decision.

Findings hold positions only, never the matched text, so they are safe to log and to repr. Overlapping
matches are replaced once: the earliest match wins (the longest of those starting together, then the
first rule), and it absorbs every match that starts inside it; one that runs past its end stretches
the replaced span, so no tail of a sensitive match survives. `allow` matches are reported, never
replaced. `block` matches are replaced in `sanitized` too: a refused prompt's sanitized text may
still be written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from inference.sanitize.detectors import Hit
from inference.sanitize.errors import PromptBlocked

Action = Literal["block", "redact", "allow"]
ModelInput = Literal["original", "sanitized"]
ACTIONS: tuple[Action, ...] = ("block", "redact", "allow")
MODEL_INPUTS: tuple[ModelInput, ...] = ("original", "sanitized")
TERMS = "terms"  # Finding.kind of a term-list rule (else the detector's name)


class Matcher(Protocol):
    def spans(self, text: str) -> Iterable[Hit]: ...


@dataclass(frozen=True)
class Rule:
    """One resolved rule of one tenant (default rules with the tenant's overrides applied)."""

    name: str
    kind: str  # detector name, or "terms"
    action: Action
    placeholder: str
    description: str  # in words, for PromptBlocked ("a US social security number")
    matcher: Matcher = field(repr=False, compare=False)


@dataclass(frozen=True)
class Finding:
    """Where a rule matched: positions in the original text, never the text itself."""

    rule: str
    kind: str
    action: Action
    start: int
    end: int


@dataclass(frozen=True)
class Screened:
    sanitized: str  # every block/redact match replaced; safe to log
    # What the model gets: the original text unless the tenant says `model_input: sanitized`. Kept out
    # of repr because it may be the original, sensitive text.
    model_text: str = field(repr=False)
    findings: tuple[Finding, ...]
    blocked_by: str | None  # the first `block` rule (in policy order) that matched, else None
    reason: str | None = field(default=None, repr=False, compare=False)  # that rule's description

    def raise_if_blocked(self, field: str = "prompt") -> None:
        if self.blocked_by is not None:
            raise PromptBlocked(self.blocked_by, self.reason or "a sensitive value", field)


@dataclass(frozen=True)
class ScreenedRequest:
    """A generation request's prompt and negative prompt, screened with the same tenant policy."""

    prompt: Screened
    negative_prompt: Screened

    @property
    def blocked_by(self) -> str | None:
        return self.prompt.blocked_by or self.negative_prompt.blocked_by

    def raise_if_blocked(self) -> None:
        self.prompt.raise_if_blocked("prompt")
        self.negative_prompt.raise_if_blocked("negative_prompt")


def screen(rules: Sequence[Rule], model_input: ModelInput, text: str) -> Screened:
    hits = []  # (start, -end, rule index, replacement): sorts earliest, longest, first rule
    for index, rule in enumerate(rules):
        for start, end, replacement in rule.matcher.spans(text):
            hits.append((start, -end, index, replacement))
    if not hits:
        return Screened(text, text, (), None)
    hits.sort()
    findings = tuple(
        Finding(rules[i].name, rules[i].kind, rules[i].action, start, -minus_end)
        for start, minus_end, i, _ in hits
    )
    blocking = min((i for _, _, i, _ in hits if rules[i].action == "block"), default=None)

    pieces: list[str] = []
    covered = 0  # end of the text already emitted or replaced
    for start, minus_end, i, replacement in hits:
        if rules[i].action == "allow":
            continue
        if start < covered:  # overlaps the previous replacement: absorb it
            covered = max(covered, -minus_end)
            continue
        pieces += (text[covered:start], replacement or rules[i].placeholder)
        covered = -minus_end
    pieces.append(text[covered:])
    sanitized = "".join(pieces)

    return Screened(
        sanitized=sanitized,
        model_text=sanitized if model_input == "sanitized" else text,
        findings=findings,
        blocked_by=None if blocking is None else rules[blocking].name,
        reason=None if blocking is None else rules[blocking].description,
    )
