"""Built-in detectors: one regex each (plus a Luhn check for cards), tuned against near misses.

Every detector yields the spans of its matches. Where a pattern has a group named `hit`, only that
group is the sensitive part (a date of birth keeps its "born" cue, for instance). Python's `\\d` also
matches non-ASCII digits, so e.g. full-width digits are caught too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# (start, end, replacement): detectors have no replacement of their own (the rule's placeholder is used)
Hit = tuple[int, int, str | None]


@dataclass(frozen=True)
class Detector:
    name: str
    description: str  # in words, for PromptBlocked's message ("a US social security number")
    regex: re.Pattern[str]
    check: Callable[[str], bool] | None = None  # a second look at the match (Luhn for cards)
    needs: str | None = None  # a character every match contains: absent from the text, skip the regex

    def spans(self, text: str) -> Iterator[Hit]:
        if self.needs is not None and self.needs not in text:
            return
        group = "hit" if "hit" in self.regex.groupindex else 0
        for match in self.regex.finditer(text):
            start, end = match.span(group)
            if start < end and (self.check is None or self.check(match.group(group))):
                yield start, end, None


def luhn(number: str) -> bool:
    """The card-number checksum; all zeros passes Luhn but is no card."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0 and any(digits)


# Not part of a longer digit run on either side (a card or an account number is no SSN).
SSN = re.compile(
    r"(?<!\d)(?<!\d-)"
    r"(?!000|666|9\d\d)\d{3}"  # area: never 000 or 666 (never issued), nor 900-999 (ITINs)
    r"(?P<sep>[- ]?)(?!00)\d{2}"  # group: never 00; same separator (or none) both times
    r"(?P=sep)(?!0000)\d{4}"  # serial: never 0000
    r"(?!-?\d)"
)

# Starts only at a token boundary, which also keeps a long run without '@' linear.
EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w-])"
)

# NANP needs visible structure (parentheses, or '-'/'.' used consistently): bare or space-separated
# digit groups are too often sizes and seeds ("512 768 1024"). A leading '+' means E.164 (7-15 digits).
PHONE = re.compile(
    r"(?<![\w+])(?<!\d[-.])(?:"
    r"(?:\+?1[-. ]?)?\(\d{3}\) ?\d{3}[-. ]\d{4}"  # (555) 123-4567, +1 (555) 123-4567
    r"|(?:\+?1[-.])?\d{3}(?P<sep>[-.])\d{3}(?P=sep)\d{4}"  # 555-123-4567, 1-555.123.4567
    r"|\+[1-9](?:[-. ]?\d){6,14}"  # +1 555 123 4567, +44 20 7946 0958, +15551234567
    r")(?![-.]?\d)"
)

# 13-19 digits, single spaces or dashes between any of them; the whole run or nothing.
PAYMENT_CARD = re.compile(r"(?<!\d)(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")

DEFAULT_MRN = r"(?i)\bMRN[:#\s]*\d{6,10}\b"

_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_YEAR = r"(?:19|20)\d{2}"
_MONTH_NAME = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = (
    rf"{_YEAR}[-/]{_MONTH}[-/]{_DAY}"  # 1980-04-12
    rf"|{_DAY}(?P<sep>[/.-]){_DAY}(?P=sep)(?:{_YEAR}|\d{{2}})"  # 04/12/1980, 12.04.1980 (either order)
    rf"|{_MONTH_NAME}\s+{_DAY}(?:st|nd|rd|th)?,?\s+{_YEAR}"  # April 12, 1980
    rf"|{_DAY}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH_NAME},?\s+{_YEAR}"  # 12 April 1980
)
# A date is a birth date only after a cue, at most 24 digit-free characters before it: a date alone
# ("the 04/12/1980 concert poster") is left alone, so is a compound ("born-to-run"). Only the date
# is replaced; the cue stays.
DOB = re.compile(
    r"(?<![\w-])(?:dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|birthday|born)(?![\w-])"
    rf"[^\d\n]{{0,24}}?(?P<hit>{_DATE})(?!\d)",
    re.IGNORECASE,
)

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"  # 0-255, no leading zeros
# Not glued to a word ("v1.2.3.4") nor part of a longer dotted run ("1.2.3.4.5"); a full stop may follow.
IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\w|\.\d)")


def _a_real_date(date: str) -> bool:
    """04/12/1980 may be month/day or day/month, but one of the first two must be a month."""
    parts = re.split(r"[/.-]", date)
    if len(parts) == 3 and len(parts[0]) <= 2:
        return min(int(parts[0]), int(parts[1])) <= 12
    return True


def mrn(pattern: str = DEFAULT_MRN) -> Detector:
    """Medical record numbers differ per site, so the policy may give its own pattern."""
    return Detector("mrn", "a medical record number", re.compile(pattern))


BUILTIN: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("ssn", "a US social security number", SSN),
        Detector("email", "an email address", EMAIL, needs="@"),
        Detector("phone", "a phone number", PHONE),
        Detector("payment_card", "a payment card number", PAYMENT_CARD, check=luhn),
        mrn(),
        Detector("dob", "a date of birth", DOB, check=_a_real_date),
        Detector("ipv4", "an IPv4 address", IPV4, needs="."),
    )
}
