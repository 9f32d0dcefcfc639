"""From the documented code to a billable one: laterality (I.B.13), the default
'unspecified' child (I.A.9), and the 7th character for the episode of care (I.C.19.a)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from medcode.errors import CodeError
from medcode.policy.facts import icd
from medcode.records import Episode
from medcode.terminology import icd10cm

SIDES = ("right", "left", "bilateral")
# Words that differ between the lateral codes of one family ("unspecified ear", "bilateral",
# "right upper limb", "bilateral upper limbs") and are ignored when matching them up.
_SIDE_WORDS = {
    "right",
    "left",
    "bilateral",
    "unilateral",
    "unspecified",
    "side",
    "ear",
    "eye",
    "limb",
    "of",
    "the",
    "and",
}
_WORD = re.compile(r"[a-z0-9]+")
_EPISODE_CHARACTER = {Episode.INITIAL: "A", Episode.SUBSEQUENT: "D", Episode.SEQUELA: "S"}


@dataclass
class Resolved:
    """Billable codes for one documented code, with the rules applied and any warnings."""

    codes: list[str]
    rules: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def _words(description: str) -> list[str]:
    return _WORD.findall(description.lower())


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


@cache
def _sideless(code: str) -> frozenset[str]:
    words = (_singular(w) for w in _words(icd(code).description))
    return frozenset(w for w in words if w not in _SIDE_WORDS)


@cache
def _sides(code: str) -> frozenset[str]:
    return frozenset(_words(icd(code).description)) & set(SIDES)


def _candidates(code: str) -> list[str]:
    """Children, siblings, and the siblings' parents' siblings (M17.10 -> M17.0 bilateral)."""
    parents = [
        p for p in icd10cm.parents(code)[:2] if icd10cm.looks_like(p) and icd10cm.is_valid(p)
    ]
    found = list(icd10cm.children(code))
    for parent in parents:
        found += icd10cm.children(parent)
    return found


@cache
def lateral(code: str, side: str) -> tuple[str, ...]:
    """The code(s) for ``side`` corresponding to ``code``; empty when the tabular has none.

    Bilateral with no bilateral code gives the right and the left code (I.B.13).
    """
    if side in _sides(code):
        return (code,)
    target = _sideless(code)
    found = [c for c in _candidates(code) if _sides(c) == {side} and _sideless(c) == target]
    if found:
        return (found[0],)
    if side == "bilateral":
        pair = [lateral(code, "right"), lateral(code, "left")]
        if all(len(p) == 1 and p[0] != code for p in pair):
            return (pair[0][0], pair[1][0])
    return ()


_SEX_WORDS = {"F": re.compile(r"\bfemale\b"), "M": re.compile(r"\bmale\b")}


@cache
def default_child(code: str, sex: str | None = None) -> str | None:
    """The child a coder takes when nothing more is documented: the patient's sex where the
    children differ by it (breast C50.91- female, C50.92- male), then 'without
    complications', then 'unspecified' (codes ending in 9, then 0, by convention)."""
    best, best_score = None, 0.0
    for child in icd10cm.children(code):
        text = icd(child).description.lower()
        score = 4.0 * ("without complication" in text) + 2.0 * ("unspecified" in text)
        if sex in _SEX_WORDS:
            other = "M" if sex == "F" else "F"
            score += 8.0 * bool(_SEX_WORDS[sex].search(text))
            score -= 8.0 * bool(_SEX_WORDS[other].search(text))
        score += {"9": 1.0, "0": 0.5}.get(child[-1], 0.0)
        if score > best_score:
            best, best_score = child, score
    return best


def _is_seventh_level(code: str) -> bool:
    kids = icd10cm.children(code)
    return bool(kids) and all(len(kid.replace(".", "")) == 7 for kid in kids)


def _seventh(code: str, episode: Episode | None, resolved: Resolved) -> str:
    allowed = icd10cm.seventh_characters(code)
    wanted = _EPISODE_CHARACTER.get(episode) if episode else None
    if wanted and wanted in allowed:
        character = wanted
    elif "A" in allowed and episode is None:
        character = "A"
        resolved.warnings.append(
            ("episode", f"{code}: episode of care not documented, initial encounter (A) assumed")
        )
    elif "0" in allowed:
        character = "0"
    else:
        character = next(iter(allowed))
        resolved.warnings.append(
            ("episode", f"{code}: episode {episode} has no 7th character here; {character} used")
        )
    resolved.rules.append("episode.seventh")
    return icd10cm.with_seventh(code, character)


def _complete(
    code: str, episode: Episode | None, resolved: Resolved, sex: str | None = None
) -> str:
    while not icd(code).billable:
        if _is_seventh_level(code):
            return _seventh(code, episode, resolved)
        child = default_child(code, sex)
        if child is None:
            options = ", ".join(icd10cm.children(code)[:10])
            raise CodeError(code, f"not billable and nothing more is documented ({options})")
        resolved.rules.append("specificity.default")
        code = child
    return code


def resolve(
    code: str,
    *,
    laterality: str | None = None,
    episode: Episode | None = None,
    sex: str | None = None,
) -> Resolved:
    """Billable code(s) for a documented code and its attributes (``sex``: the patient's,
    F or M, for families that differ by it); :class:`CodeError` when the code cannot be
    completed from what is documented."""
    codes, rules, warnings = _resolve(code, laterality, episode, sex)
    return Resolved(list(codes), list(rules), list(warnings))


@cache
def _resolve(
    code: str, laterality: str | None, episode: Episode | None, sex: str | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    resolved = Resolved(codes=[])
    starts = [code]
    if laterality:
        side = laterality.strip().lower()
        if side not in SIDES:
            raise CodeError(code, f"laterality {laterality!r} is not one of {', '.join(SIDES)}")
        current = code
        while True:
            found = lateral(current, side)
            if found or icd(current).billable or _is_seventh_level(current):
                break
            child = default_child(current, sex)
            if child is None:
                break
            current = child
        if found:
            if found != (code,):
                resolved.rules.append("laterality")
            starts = list(found)
        elif any(lateral(current, other) for other in ("right", "left")):
            # the category has lateral codes, but not this side (a bilateral M65.4 has none
            # at all: a documented side is then simply not part of the code, I.B.13)
            resolved.warnings.append(
                ("laterality", f"{code}: the tabular has no {side} code here; side not coded")
            )
    resolved.codes = [_complete(start, episode, resolved, sex) for start in starts]
    return tuple(resolved.codes), tuple(resolved.rules), tuple(resolved.warnings)
