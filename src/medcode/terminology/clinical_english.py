"""How the retriever's lexicon reads clinical English (``data/terminology/clinical_english.yaml``):
relational adjectives read as their organ ("renal" -> "kidney"), British spellings as the US
one ("oedema" -> "edema"), acronyms as the phrase they stand for ("DKA"), so the lexicon
finds a phrase however the note writes it. Validated on load; every error names file, line
and problem."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

FILE = "terminology/clinical_english.yaml"
WORD_SECTIONS = ("spellings", "variants")  # in this order: "oesophageal" -> "esophagus"
SECTIONS = (*WORD_SECTIONS, "acronyms")
_WORD = re.compile(r"^[a-z0-9]+$")
_ACRONYM = re.compile(r"^[A-Za-z][A-Za-z0-9]+$")
_PHRASE = re.compile(r"^[a-z0-9]+(?: [a-z0-9]+)*$")


@dataclass(frozen=True)
class ClinicalEnglish:
    """The word map (word -> word read instead) and the acronyms (lower case -> phrase)."""

    words: dict[str, str]
    acronyms: dict[str, str]


def load_word_map(path: str | Path | None = None) -> dict[str, str]:
    """Word -> the word the lexicon reads instead (see :func:`load_clinical_english`)."""
    return load_clinical_english(path).words


def load_clinical_english(path: str | Path | None = None) -> ClinicalEnglish:
    """Read and validate the file: the two word sections composed (a spelling's US form, then
    its variant), and the acronyms."""
    from medcode.datafiles import cited_section, load_yaml, package_data

    path = Path(path) if path else package_data(FILE)
    data = load_yaml(path, strings=True)
    if not isinstance(data, dict) or set(data) != set(SECTIONS):
        raise DataFileError(path, getattr(data, "line", None), f"expected {', '.join(SECTIONS)}")
    maps = []
    for name in SECTIONS:
        pairs = cited_section(path, data, name, "words")
        if not isinstance(pairs, dict):
            raise DataFileError(path, data[name].line, f"{name}: words: a mapping of word: word")
        if name == "acronyms":
            maps.append(_acronyms(path, pairs))
            continue
        for word, canonical in pairs.items():
            line = getattr(canonical, "line", pairs.line)
            for item in (word, canonical):
                if not isinstance(item, str) or not _WORD.match(item):
                    raise DataFileError(path, line, f"{name}: {item!r} is not a lower-case word")
            if word == canonical or canonical in pairs:
                raise DataFileError(
                    path, line, f"{name}: {word!r} -> {canonical!r}: a canonical word is not mapped"
                )
        maps.append({str(w): str(c) for w, c in pairs.items()})
    spellings, variants, acronyms = maps
    composed = {w: variants.get(c, c) for w, c in spellings.items()}
    composed.update(variants)
    return ClinicalEnglish(composed, acronyms)


def _acronyms(path: Path, pairs: dict) -> dict[str, str]:
    found: dict[str, str] = {}
    for acronym, phrase in pairs.items():
        line = getattr(phrase, "line", pairs.line)
        if not isinstance(acronym, str) or not _ACRONYM.match(acronym):
            raise DataFileError(path, line, f"acronyms: {acronym!r} is not an acronym")
        if not isinstance(phrase, str) or not _PHRASE.match(phrase):
            raise DataFileError(
                path, line, f"acronyms: {acronym}: {phrase!r} is not a lower-case phrase"
            )
        if acronym.lower() in found:
            raise DataFileError(path, line, f"acronyms: {acronym} is listed twice")
        found[acronym.lower()] = str(phrase)
    return found


@cache
def shipped_clinical_english() -> ClinicalEnglish:
    """The shipped file (loaded once)."""
    return load_clinical_english()


def shipped_word_map() -> dict[str, str]:
    """The shipped word map."""
    return shipped_clinical_english().words
