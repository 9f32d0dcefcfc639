"""Cached per-code facts from the tabular, so coding 100,000 encounters stays fast."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from medcode.policy.tables import CodeSpec, compact
from medcode.terminology import icd10cm


@dataclass(frozen=True, slots=True)
class IcdFacts:
    code: str
    compact: str
    billable: bool
    description: str
    excludes1: tuple[CodeSpec, ...]
    additional: tuple[CodeSpec, ...]
    code_first: tuple[CodeSpec, ...]


@cache
def _specs_at(at: str, kind: str) -> tuple[CodeSpec, ...]:
    """Code references of the notes of one kind written at one code or block (cached: every
    code below a category shares its category's notes)."""
    return tuple(
        CodeSpec(compact(first), compact(last), f"{first}-{last}")
        for note in icd10cm.notes_at(at, kind)
        for first, last in note.references()
    )


@cache
def icd(code: str) -> IcdFacts:
    """Facts of a valid ICD-10-CM code (normalised, dotted)."""
    tabular = icd10cm.tabular()
    chain = (code, *(a for a in dict.fromkeys(tabular.get_ancestors(code)) if a != code))

    def specs(kind: str) -> tuple[CodeSpec, ...]:
        return tuple(spec for at in chain for spec in _specs_at(at, kind))

    return IcdFacts(
        code=code,
        compact=compact(code),
        billable=tabular.is_leaf(code),
        description=tabular.get_description(code),
        excludes1=specs("excludes1"),
        additional=specs("use_additional_code"),
        code_first=specs("code_first"),
    )


@cache
def require(code: str) -> str:
    """Normalised valid code, cached (raises :class:`CodeError`)."""
    return icd10cm.require(code)


@cache
def excludes1_conflict(first: str, second: str) -> bool:
    """Whether an Excludes1 note of either code covers the other."""
    a, b = icd(first), icd(second)
    return any(spec.matches(b.compact) for spec in a.excludes1) or any(
        spec.matches(a.compact) for spec in b.excludes1
    )


def matches_any(code: str, specs: tuple[CodeSpec, ...]) -> bool:
    key = compact(code)
    return any(spec.matches(key) for spec in specs)
