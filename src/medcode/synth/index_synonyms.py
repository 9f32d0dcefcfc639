"""Index synonyms of catalog conditions (``data/synth/index_synonyms.csv``): phrases of the
ICD-10-CM Alphabetic Index that name a catalog form's condition the way clinicians write it
("dyslipidemia" for E78.5, "myxedema" for E03.9), each reviewed by a coder.

``scripts/build_index_synonyms.py`` lists the candidates (the index phrases a coder reads
back to the form's code alone, :func:`medcode.synth.sampler.index_phrases`) and keeps the
decisions already taken; only rows whose ``decision`` is ``accept`` are used, as further
``formal`` phrases of the form. The file is validated on load: every error names file, line
and problem.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

FILE = "synth/index_synonyms.csv"
COLUMNS = ("code", "phrase", "decision", "reason", "index_path")
DECISIONS = ("accept", "reject", "pending")


def synonyms_path() -> Path:
    from medcode.datafiles import package_data

    return package_data(FILE)


def load_index_synonyms(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Accepted synonyms by ICD-10-CM code, in file order. A row is refused when its code is
    not a billable FY2026 code, its decision is unknown, a decided row gives no reason, the
    pair is listed twice, or an accepted phrase does not read back to its code alone in the
    index (the gold would not follow from the text)."""
    from medcode.datafiles import read_csv_rows
    from medcode.errors import CodeError
    from medcode.terminology import icd10cm
    from medcode.terminology.index_terms import codes_for

    path = Path(path) if path else synonyms_path()
    found: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in read_csv_rows(path, COLUMNS):
        code, phrase, decision = row["code"], row["phrase"], row["decision"]
        try:
            canonical = icd10cm.require(code)
        except CodeError as exc:
            raise DataFileError(path, line, f"code {code!r}: {exc.problem}") from None
        if canonical != code or not icd10cm.is_billable(code):
            raise DataFileError(path, line, f"code {code!r}: write a billable code as {canonical}")
        if not phrase or phrase != " ".join(phrase.lower().split()):
            raise DataFileError(path, line, f"phrase {phrase!r}: a lower-case phrase")
        if decision not in DECISIONS:
            raise DataFileError(
                path, line, f"decision {decision!r}: expected one of {', '.join(DECISIONS)}"
            )
        if decision != "pending" and not row["reason"]:
            raise DataFileError(path, line, f"{phrase!r}: a {decision} needs its reason")
        if (code, phrase) in seen:
            raise DataFileError(path, line, f"{phrase!r} listed twice for {code}")
        seen.add((code, phrase))
        if decision != "accept":
            continue
        if codes_for(phrase) != (code,):
            raise DataFileError(
                path,
                line,
                f"{phrase!r}: the index gives {', '.join(codes_for(phrase)) or 'no code'}, "
                f"not {code} alone",
            )
        found.setdefault(code, []).append(phrase)
    return {code: tuple(phrases) for code, phrases in found.items()}


@cache
def shipped_index_synonyms() -> dict[str, tuple[str, ...]]:
    """The shipped, reviewed synonyms (loaded once)."""
    return load_index_synonyms()
