"""Privacy checks: PHI scanning of user templates and n-gram overlap with a reference corpus."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

_PATTERNS = {
    "a phone number": re.compile(r"\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b"),
    "a date": re.compile(
        r"\b(?:\d{1,2}[/-]\d{1,2}[/-]\d{2,4}|\d{4}-\d{2}-\d{2}|"
        r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2},? \d{4})\b"
    ),
    "an MRN or account number": re.compile(
        r"\b(?:MRN|Acct|Account|MR#|Med Rec)\b\W{0,3}\d{5,}|\b\d{7,}\b", re.IGNORECASE
    ),
    "a social security number": re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),
    "an email address": re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b"),
    "a street address": re.compile(
        r"\b\d{1,5} [A-Z][a-z]+(?: [A-Z][a-z]+)* (?:Street|St|Avenue|Ave|Road|"
        r"Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way)\b\.?"
    ),
}
_JINJA = re.compile(r"{{.*?}}|{%.*?%}|{#.*?#}", re.S)


@cache
def _names() -> tuple[frozenset[str], frozenset[str]]:
    from faker.providers.person.en_US import Provider

    return frozenset(Provider.first_names), frozenset(Provider.last_names)


def find_phi(text: str) -> list[tuple[int, str, str]]:
    """(line, kind, excerpt) for every line that looks like it holds PHI.

    Jinja expressions are ignored (they are filled with synthetic values); literal text is
    checked for phone numbers, dates, MRNs, SSNs, emails, street addresses and
    'First Last' person names from the US census name lists.
    """
    first, last = _names()
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        literal = _JINJA.sub(" ", line)
        for kind, pattern in _PATTERNS.items():
            match = pattern.search(literal)
            if match:
                findings.append((number, kind, match.group(0)))
        for match in re.finditer(r"\b([A-Z][a-z]+)(?= ([A-Z][a-z]+)\b)", literal):
            if match.group(1) in first and match.group(2) in last:
                name = f"{match.group(1)} {match.group(2)}"
                findings.append((number, "a person's name", name))
    return findings


def scan_template(path: Path, source: str) -> None:
    """Refuse a user template that looks like it contains PHI, naming the line."""
    findings = find_phi(source)
    if findings:
        line, kind, excerpt = findings[0]
        raise DataFileError(
            path,
            line,
            f"looks like {kind} ({excerpt!r}): templates must not "
            "contain patient data; use the template variables",
        )


@dataclass(frozen=True)
class OverlapReport:
    n: int
    notes: int
    notes_with_overlap: int
    reference_ngrams: int
    top: list[tuple[str, int]]

    @property
    def share(self) -> float:
        return self.notes_with_overlap / self.notes if self.notes else 0.0


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = _tokens(text)
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def overlap(notes, reference_texts, n: int = 8, top: int = 20) -> OverlapReport:
    """Verbatim n-gram overlap between generated notes and a reference corpus."""
    reference: set[tuple[str, ...]] = set()
    for text in reference_texts:
        reference |= ngrams(text, n)
    counts: Counter[tuple[str, ...]] = Counter()
    total = with_overlap = 0
    for text in notes:
        total += 1
        shared = ngrams(text, n) & reference
        if shared:
            with_overlap += 1
            counts.update(shared)
    return OverlapReport(
        n,
        total,
        with_overlap,
        len(reference),
        [(" ".join(gram), count) for gram, count in counts.most_common(top)],
    )


def read_reference(folder: Path) -> list[str]:
    """Every .txt file below ``folder`` (e.g. a CodiEsp text_en directory)."""
    files = sorted(Path(folder).rglob("*.txt"))
    if not files:
        raise DataFileError(folder, None, "no .txt files found in the reference folder")
    return [f.read_text(encoding="utf-8", errors="replace") for f in files]
