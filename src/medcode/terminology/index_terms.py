"""Clinical phrases from the ICD-10-CM Alphabetic Index (FY2025), mapped to the FY2026 tabular.

``data/terminology/index_terms.csv.gz`` holds one row per (phrase, code): the index line
"Diabetes, diabetic" > "with" > "chronic kidney disease" becomes "diabetes with chronic
kidney disease" for E11.22, plus phrases of the Table of Neoplasms ("lung cancer") and the
Table of Drugs ("adverse effect of warfarin"). ``scripts/build_index_terms.py`` rebuilds it.
The file is read on first use, never at import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.datafiles import package_data, read_csv_rows
from medcode.errors import CodeError, DataFileError
from medcode.terminology import icd10cm

FILE = "terminology/index_terms.csv.gz"
COLUMNS = ("term", "code", "source", "path", "level")
SOURCES = ("index", "neoplasm", "drug")

# Not a clean phrase: capitals, brackets, NEC/NOS, or spacing to normalise.
_UNCLEAN = re.compile(r"[A-Z\[\]()]|\b(?:nec|nos)\b|^\s|\s$|\s\s")


@dataclass(frozen=True, slots=True)
class IndexTerm:
    """One phrase for one code; ``path`` is the index path ("Pneumonia > Klebsiella")."""

    term: str
    code: str
    source: str
    path: str
    level: int
    billable: bool

    def rank(self) -> tuple[int, int, int, str]:
        """Sort key, best first: index before tables, then fewer words, shorter, A-Z."""
        return (SOURCES.index(self.source), len(self.term.split()), len(self.term), self.term)


def _normalize_term(text: str) -> str:
    return " ".join(text.lower().split())


def load_index_terms(path: str | Path | None = None) -> tuple[IndexTerm, ...]:
    """Read and validate a term table (default: the shipped one); errors name file and line."""
    path = Path(path) if path else package_data(FILE)
    records: list[IndexTerm] = []
    seen: set[tuple[str, str]] = set()
    known: dict[str, tuple[str, bool]] = {}
    try:
        for line, row in read_csv_rows(path, COLUMNS):
            term, raw_code, source = row["term"], row["code"], row["source"]
            if not term:
                raise DataFileError(path, line, "empty term")
            if _UNCLEAN.search(term):
                raise DataFileError(
                    path,
                    line,
                    f"term {term!r} is not a clean lower-case phrase "
                    "(no NEC/NOS, brackets or parentheses)",
                )
            if raw_code not in known:
                try:
                    code = icd10cm.require(raw_code)
                except CodeError as exc:
                    raise DataFileError(path, line, f"code {raw_code!r}: {exc.problem}") from None
                if code != raw_code:
                    raise DataFileError(path, line, f"code {raw_code!r}: write it as {code}")
                known[raw_code] = (code, icd10cm.is_billable(code))
            code, billable = known[raw_code]
            if source not in SOURCES:
                raise DataFileError(
                    path, line, f"source {source!r}: expected one of {', '.join(SOURCES)}"
                )
            if not row["path"]:
                raise DataFileError(path, line, "empty path")
            if not row["level"].isdigit():
                raise DataFileError(path, line, f"level {row['level']!r}: expected 0 or more")
            if (term, code) in seen:
                raise DataFileError(path, line, f"term {term!r} listed twice for {code}")
            seen.add((term, code))
            records.append(IndexTerm(term, code, source, row["path"], int(row["level"]), billable))
    except (OSError, EOFError) as exc:  # a truncated or corrupt gzip file
        raise DataFileError(path, None, f"unreadable: {exc}") from None
    return tuple(records)


@cache
def index_terms() -> tuple[IndexTerm, ...]:
    """The shipped term table (loaded and validated once, about a second)."""
    return load_index_terms()


@cache
def _by_code() -> dict[str, tuple[IndexTerm, ...]]:
    grouped: dict[str, list[IndexTerm]] = {}
    for record in index_terms():
        grouped.setdefault(record.code, []).append(record)
    return {code: tuple(sorted(found, key=IndexTerm.rank)) for code, found in grouped.items()}


@cache
def _by_term() -> dict[str, tuple[IndexTerm, ...]]:
    grouped: dict[str, list[IndexTerm]] = {}
    for record in index_terms():
        grouped.setdefault(record.term, []).append(record)
    return {
        term: tuple(
            sorted(found, key=lambda r: (SOURCES.index(r.source), r.level, not r.billable, r.code))
        )
        for term, found in grouped.items()
    }


def records_for(code: str) -> tuple[IndexTerm, ...]:
    """Every phrase record of ``code`` (any spelling), best first; empty if it has none."""
    return _by_code().get(icd10cm.normalize(code), ())


def terms_for(code: str) -> tuple[str, ...]:
    """Natural phrases for ``code``, best first (index before tables, shorter first)."""
    return tuple(record.term for record in records_for(code))


def codes_for(term: str) -> tuple[str, ...]:
    """Codes whose phrase is exactly ``term`` (case and spacing ignored), the index's own
    default first (index before tables, shallower index line, billable, then A-Z)."""
    return tuple(record.code for record in _by_term().get(_normalize_term(term), ()))
