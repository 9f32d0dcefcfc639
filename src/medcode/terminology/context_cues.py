"""The cues that tell a condition's context in a note (``data/terminology/context_cues.yaml``):
negation, uncertainty, history, family and hypothetical triggers before and after a match,
pseudo-triggers that are no cue, and the terminators that end a cue's reach. Validated on
load; every error names file, line and problem."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.errors import DataFileError

FILE = "terminology/context_cues.yaml"
CUE_SECTIONS = (
    "negation_before",
    "negation_after",
    "uncertain_before",
    "uncertain_after",
    "history_before",
    "history_after",
    "family",
    "hypothetical_before",
    "hypothetical_after",
)
SECTIONS = (*CUE_SECTIONS, "pseudo", "terminators")
_PHRASE = re.compile(r"^[a-z0-9/]+(?: [a-z0-9/]+)*$")


@dataclass(frozen=True)
class ContextCues:
    """Each section's phrases, as written (lower case)."""

    sections: dict[str, tuple[str, ...]]

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return self.sections[name]


def load_context_cues(path: str | Path | None = None) -> ContextCues:
    """Read and validate the file (the shipped one unless ``path``)."""
    from medcode.datafiles import cited_section, load_yaml, package_data

    path = Path(path) if path else package_data(FILE)
    data = load_yaml(path, strings=True)
    if not isinstance(data, dict) or set(data) != set(SECTIONS):
        raise DataFileError(path, getattr(data, "line", None), f"expected {', '.join(SECTIONS)}")
    sections: dict[str, tuple[str, ...]] = {}
    for name in SECTIONS:
        phrases = cited_section(path, data, name, "phrases")
        if not isinstance(phrases, list):
            raise DataFileError(path, data[name].line, f"{name}: phrases: a list of phrases")
        seen: set[str] = set()
        for phrase in phrases:
            line = getattr(phrase, "line", data[name].line)
            if isinstance(phrase, bool):
                raise DataFileError(
                    path, line, f"{name}: {phrase!r}: quote no, yes, on, off (YAML reads a bool)"
                )
            if not isinstance(phrase, str) or not _PHRASE.match(phrase):
                raise DataFileError(path, line, f"{name}: {phrase!r} is not a lower-case phrase")
            if phrase in seen:
                raise DataFileError(path, line, f"{name}: {phrase!r} is listed twice")
            seen.add(str(phrase))
        sections[name] = tuple(str(p) for p in phrases)
    return ContextCues(sections)


@cache
def shipped_context_cues() -> ContextCues:
    """The shipped file (loaded once)."""
    return load_context_cues()
