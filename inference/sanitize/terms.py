"""Term lists: brand names, codenames, clients, places, matched case-insensitively as whole words.

"Patagonia" matches "patagonia" and "Patagonia's" but not "Patagonian": a term never matches inside
a longer word (letters, digits or '_' on either side). Words of a multi-word term may be separated by
any whitespace ("Project  Phoenix", a line break). At one position the longest term wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from inference.sanitize.detectors import Hit


def normalize(term: str) -> str:
    """How two terms are compared for duplicates: case and spacing do not count."""
    return " ".join(term.split()).casefold()


def _words(term: str) -> str:
    return r"\s+".join(re.escape(word) for word in term.split())


class TermList:
    def __init__(self, terms: Sequence[tuple[str, str | None]]):
        """terms: (term, its own replacement or None for the rule's placeholder), in the file's order."""
        self.replacements = tuple(replacement for _, replacement in terms)
        # One named group per term tells which term matched, whatever its case or spacing.
        longest_first = sorted(range(len(terms)), key=lambda i: -len(terms[i][0]))
        alternatives = "|".join(f"(?P<t{i}>{_words(terms[i][0])})" for i in longest_first)
        self.regex = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)

    def spans(self, text: str) -> Iterator[Hit]:
        for match in self.regex.finditer(text):
            yield match.start(), match.end(), self.replacements[int(match.lastgroup[1:])]
