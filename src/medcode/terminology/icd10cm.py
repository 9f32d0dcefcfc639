"""ICD-10-CM look-ups through the ``simple-icd-10-cm`` package (CMS/CDC tabular, April 2026).

Codes are accepted in any spelling (``e11.22``, ``E1122``, `` E11.22 ``) and returned in
the dotted upper-case form (``E11.22``). The package loads its XML (about 2 s) on first use,
never at import of this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from types import ModuleType

from medcode.errors import CodeError

RELEASE = "April 2026"
SYSTEM = "ICD-10-CM"

# A letter, then letters or digits: since the April 2026 release a category may have a letter
# second (QA0, neurodevelopmental disorders related to genetic variants).
_UNDOTTED = re.compile(r"^[A-Z][0-9A-Z]{2}(?:[0-9A-Z]{1,4})?$")
# A code reference inside a tabular note: "(E10.-)", "(N18.1-N18.6)", "(Z79.4)", "(I12.-, I13.-)".
_REFERENCE = re.compile(
    r"\b((?:[A-Z][0-9][0-9A-Z]|Q[A-Z][0-9])(?:\.[0-9A-Z]{1,4})?)(?:\.-|-(?![A-Z0-9]))?"
    r"(?:\s*-\s*((?:[A-Z][0-9][0-9A-Z]|Q[A-Z][0-9])(?:\.[0-9A-Z]{1,4})?))?"
)


@cache
def _tabular() -> ModuleType:
    import simple_icd_10_cm

    return simple_icd_10_cm


def tabular() -> ModuleType:
    """The loaded ``simple_icd_10_cm`` module (its data loads on first call, about 2 s)."""
    return _tabular()


def normalize(code: str) -> str:
    """Return the dotted upper-case form of an ICD-10-CM code, or raise :class:`CodeError`.

    Only the spelling is checked here; use :func:`is_valid` to check the tabular.
    """
    if not isinstance(code, str):
        raise CodeError(str(code), "not a code (expected text such as E11.22)")
    return _normalized(code)


@cache
def _normalized(code: str) -> str:
    """:func:`normalize` of a string (cached: a pure function of the text)."""
    compact = code.strip().upper().replace(" ", "")
    if compact.count(".") > 1 or ("." in compact and compact.index(".") != 3):
        raise CodeError(code.strip(), "malformed ICD-10-CM code: the dot goes after 3 characters")
    compact = compact.replace(".", "")
    if not _UNDOTTED.match(compact):
        raise CodeError(
            code.strip(),
            "malformed ICD-10-CM code: expected a letter then 2 to 6 letters or digits "
            "(e.g. E11.22)",
        )
    return compact if len(compact) == 3 else f"{compact[:3]}.{compact[3:]}"


def looks_like(code: str) -> bool:
    """Whether ``code`` is spelled like an ICD-10-CM code (whether or not it exists)."""
    try:
        normalize(code)
    except CodeError:
        return False
    return True


def is_valid(code: str) -> bool:
    """Whether the code is a category, subcategory or code of the tabular (billable or not)."""
    try:
        dotted = normalize(code)
    except CodeError:
        return False
    return _tabular().is_valid_item(dotted)


def require(code: str) -> str:
    """Normalise and check the code exists; raise :class:`CodeError` naming the problem."""
    dotted = normalize(code)
    if not _tabular().is_valid_item(dotted):
        raise CodeError(dotted, f"not an ICD-10-CM code ({RELEASE} tabular)")
    return dotted


def is_billable(code: str) -> bool:
    """Whether the code is valid for claims: a leaf of the tabular (all characters present)."""
    return is_valid(code) and _tabular().is_leaf(normalize(code))


def description(code: str) -> str:
    """Tabular description of a code, or of a block (``E08-E13``) or chapter (``4``)."""
    if isinstance(code, str):
        return _description(code)
    return _tabular().get_description(require(code))


@cache
def _description(code: str) -> str:
    """:func:`description` of a string (cached: the tabular never changes)."""
    tabular = _tabular()
    if tabular.is_valid_item(code) and tabular.is_chapter_or_block(code):
        return tabular.get_description(code)
    return tabular.get_description(require(code))


def parents(code: str) -> list[str]:
    """Ancestors nearest first: subcategories, category, block (e.g. ``E08-E13``), chapter."""
    dotted = require(code)
    # A few categories share their name with a one-category block (Z66, B20): skip the self-match.
    return [a for a in dict.fromkeys(_tabular().get_ancestors(dotted)) if a != dotted]


def children(code: str) -> list[str]:
    """Direct children of a code (empty for a billable code)."""
    return list(_tabular().get_children(require(code)))


def descendants(code: str) -> list[str]:
    """All codes below ``code`` in the tabular."""
    return list(_tabular().get_descendants(require(code)))


def is_descendant(code: str, ancestor: str) -> bool:
    """Whether ``code`` lies below ``ancestor`` (strictly) in the tabular."""
    return _tabular().is_descendant(require(code), require(ancestor))


def all_codes() -> list[str]:
    """Every category, subcategory and code of the tabular (no chapters or blocks)."""
    tabular = _tabular()
    codes = (c for c in tabular.get_all_codes(True) if tabular.is_category_or_subcategory(c))
    return list(dict.fromkeys(codes))  # categories named like their block are listed twice


def inclusion_terms(code: str) -> list[str]:
    """Inclusion terms and 'includes' notes written at the code itself."""
    tabular, dotted = _tabular(), require(code)
    return list(tabular.get_inclusion_term(dotted)) + list(tabular.get_includes(dotted))


@dataclass(frozen=True, slots=True)
class Note:
    """An instructional note of the tabular, with the code (or block) where it is written."""

    kind: str
    text: str
    at: str

    def references(self) -> list[tuple[str, str]]:
        """Code ranges the note points to, as ``(first, last)`` pairs (equal for one code)."""
        return referenced_codes(self.text)


_NOTE_READERS = {
    "excludes1": lambda t, c: t.get_excludes1(c),
    "excludes2": lambda t, c: t.get_excludes2(c),
    "code_first": lambda t, c: _lines(t.get_code_first(c)),
    "use_additional_code": lambda t, c: _lines(t.get_use_additional_code(c)),
    "code_also": lambda t, c: _lines(t.get_code_also(c)),
}


def _lines(text: str) -> list[str]:
    # The package returns these notes as one string: a heading line then one item per line.
    return [text] if text else []


def notes(code: str, kind: str, *, inherited: bool = True) -> list[Note]:
    """Notes of one kind that apply to ``code``; with ``inherited``, also those written at
    its ancestors (tabular convention: a note at a category applies to every code below it)."""
    if kind not in _NOTE_READERS:
        raise ValueError(f"unknown note kind {kind!r}; one of {', '.join(_NOTE_READERS)}")
    tabular, dotted = _tabular(), require(code)
    chain = [dotted, *(parents(dotted) if inherited else [])]
    return [Note(kind, text, at) for at in chain for text in _NOTE_READERS[kind](tabular, at)]


def notes_at(at: str, kind: str) -> list[Note]:
    """Notes of one kind written at exactly ``at`` (a code, category, block or chapter)."""
    return [Note(kind, text, at) for text in _NOTE_READERS[kind](_tabular(), at)]


def excludes1(code: str, *, inherited: bool = True) -> list[Note]:
    """Excludes1 notes: conditions never coded together with this code."""
    return notes(code, "excludes1", inherited=inherited)


def excludes2(code: str, *, inherited: bool = True) -> list[Note]:
    """Excludes2 notes: conditions not included here that may be coded alongside."""
    return notes(code, "excludes2", inherited=inherited)


def code_first(code: str, *, inherited: bool = True) -> list[Note]:
    """'Code first' notes: an underlying condition to sequence before this code."""
    return notes(code, "code_first", inherited=inherited)


def use_additional_code(code: str, *, inherited: bool = True) -> list[Note]:
    """'Use additional code' notes: a partner code that completes this one."""
    return notes(code, "use_additional_code", inherited=inherited)


def code_also(code: str, *, inherited: bool = True) -> list[Note]:
    """'Code also' notes."""
    return notes(code, "code_also", inherited=inherited)


def referenced_codes(text: str) -> list[tuple[str, str]]:
    """Code references in a note's text as ``(first, last)`` ranges.

    ``"type 1 diabetes mellitus (E10.-)"`` gives ``[("E10", "E10")]``;
    ``"stage (N18.1-N18.6)"`` gives ``[("N18.1", "N18.6")]``.
    """
    found: list[tuple[str, str]] = []
    for group in re.findall(r"\(([^()]*)\)", text):
        for match in _REFERENCE.finditer(group):
            first, last = match.group(1), match.group(2) or match.group(1)
            found.append((first, last))
    return found


def in_range(code: str, first: str, last: str) -> bool:
    """Whether ``code`` is ``first``..``last`` or below one of the codes in that range."""
    compact = normalize(code).replace(".", "")
    low, high = normalize(first).replace(".", ""), normalize(last).replace(".", "")
    return low <= compact[: len(low)] and compact[: len(high)] <= high


def seventh_characters(code: str) -> dict[str, str]:
    """The 7th-character values allowed for ``code`` and what each means (empty if none).

    Definitions are written at a category or subcategory and apply below it.
    """
    tabular, dotted = _tabular(), require(code)
    for at in [dotted, *parents(dotted)]:
        definitions = tabular.get_seven_chr_def(at)
        if definitions:
            return {key: " ".join(value.split()) for key, value in definitions.items()}
    return {}


def with_seventh(code: str, character: str) -> str:
    """Build the full code: pad with placeholder X to six characters, then add the 7th.

    ``with_seventh("S72.001", "A") == "S72.001A"``;
    ``with_seventh("T36.0X5", "A") == "T36.0X5A"``; ``with_seventh("W19", "A") == "W19.XXXA"``.
    """
    dotted = require(code)
    allowed = seventh_characters(dotted)
    character = character.strip().upper()
    if not allowed:
        raise CodeError(dotted, "takes no 7th character")
    if character not in allowed:
        raise CodeError(
            dotted, f"7th character {character!r} not allowed; one of {', '.join(allowed)}"
        )
    compact = dotted.replace(".", "")
    if len(compact) >= 7:
        raise CodeError(dotted, "already has 7 characters")
    if _tabular().get_children(dotted) and not _is_seventh_level(dotted):
        raise CodeError(
            dotted,
            "needs more characters before the 7th: choose one of "
            + ", ".join(_tabular().get_children(dotted)[:12]),
        )
    full = normalize(compact.ljust(6, "X") + character)
    if not _tabular().is_valid_item(full):
        raise CodeError(full, f"not an ICD-10-CM code ({RELEASE} tabular)")
    return full


def _is_seventh_level(dotted: str) -> bool:
    # Whether the children of ``dotted`` are its 7th-character extensions (S72.001 -> S72.001A).
    kids = _tabular().get_children(dotted)
    return bool(kids) and all(len(kid.replace(".", "")) == 7 for kid in kids)
