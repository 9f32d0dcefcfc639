"""Combination codes: diabetes and COPD "with" (table-driven, I.A.15, I.C.4.a, I.C.10.a) and
hypertension with heart failure and/or CKD (I.C.9.a)."""

from __future__ import annotations

from dataclasses import dataclass

from medcode.policy.tables import Combination, compact
from medcode.terminology import icd10cm


@dataclass
class Confirmed:
    """A confirmed problem during coding: its index, documented and resolved codes."""

    index: int
    documented: str
    codes: list[str]
    linked_to: str | None


@dataclass(frozen=True, slots=True)
class Merge:
    """A combination decided: ``code`` replaces or joins the base problem; the
    complications are consumed, their codes kept as partners when ``partners``."""

    base: int
    code: str
    consumed: tuple[int, ...]
    partners: tuple[str, ...]
    rule: str
    source: str
    replaces_base: bool


def _is_plain(code: str) -> bool:
    """A documented base with nothing more said: the category or its .9 code (E11, E11.9)."""
    key = compact(code)
    return len(key) == 3 or (len(key) == 4 and key.endswith("9"))


def _linked_elsewhere(problem: Confirmed, base_codes: list[str]) -> bool:
    if not problem.linked_to:
        return False
    link = compact(problem.linked_to.upper())
    return not any(compact(code).startswith(link[:3]) for code in base_codes)


def table_merges(table: tuple[Combination, ...], confirmed: list[Confirmed]) -> list[Merge]:
    """Merges from the combinations table, in documented order of the complications."""
    merges: list[Merge] = []
    keyed = [(p, compact(p.codes[0])) for p in confirmed if p.codes]
    present = {key[:3] for _, key in keyed}
    for combination in table:
        if not present & combination.base_categories or not present & combination.with_categories:
            continue
        bases = [
            p
            for p, key in keyed
            if key[:3] in combination.base_categories
            and any(s.matches(key) for s in combination.base)
        ]
        if not bases:
            continue
        base = bases[0]
        category = compact(base.codes[0])[:3]
        for problem, key in keyed:
            if problem is base or key[:3] not in combination.with_categories:
                continue
            if not any(s.matches(key) for s in combination.with_):
                continue
            if _linked_elsewhere(problem, base.codes):
                continue
            merges.append(
                Merge(
                    base=base.index,
                    code=icd10cm.normalize(category + combination.suffix.lstrip(".")),
                    consumed=(problem.index,),
                    partners=tuple(problem.codes) if combination.keep_partner else (),
                    rule=combination.rule,
                    source=f"{combination.source} ({combination.label})",
                    replaces_base=_is_plain(base.documented)
                    or any(spec.matches(compact(base.codes[0])) for spec in combination.replaces),
                )
            )
    merges.sort(key=lambda merge: merge.consumed)
    return merges


HYPERTENSION_SOURCE = "ICD-10-CM Guidelines I.C.9.a.1-3; tabular I11, I12, I13"
# (heart involvement: "failure" | "other" | None, CKD documented, CKD stage 5 or ESRD) ->
# combination code. "other" is a heart condition of I51.4-I51.7, I51.89 or I51.9, which the
# classification presumes hypertensive (I.C.9.a.1); its own code is not kept (the I51
# codes' Excludes1 "due to hypertension (I11.-)").
HYPERTENSION = {
    ("failure", False, False): "I11.0",
    ("other", False, False): "I11.9",
    (None, True, False): "I12.9",
    (None, True, True): "I12.0",
    ("failure", True, False): "I13.0",
    ("failure", True, True): "I13.2",
    ("other", True, False): "I13.10",
    ("other", True, True): "I13.11",
}
HYPERTENSIVE_HEART = ("I514", "I515", "I516", "I517", "I5189", "I519")


def _ckd_stage_5(code: str) -> bool:
    return compact(code) in ("N185", "N186")


def hypertension_merge(confirmed: list[Confirmed]) -> Merge | None:
    """I10 with heart involvement (heart failure I50, or I51.4-I51.7/I51.89/I51.9) and/or CKD
    (N18): I11.x, I12.x or I13.x, followed by the heart-failure and CKD codes (the tabular's
    use-additional-code); the other heart conditions' own codes are not kept."""
    hypertension = next((p for p in confirmed if p.codes and p.codes[0] == "I10"), None)
    if hypertension is None:
        return None

    def related(prefix: str) -> list[Confirmed]:
        return [
            p
            for p in confirmed
            if p.codes
            and compact(p.codes[0]).startswith(prefix)
            and not _linked_elsewhere(p, ["I10"])
        ]

    failure, kidney = related("I50"), related("N18")
    other_heart = [p for prefix in HYPERTENSIVE_HEART for p in related(prefix)]
    if not failure and not kidney and not other_heart:
        return None
    heart = "failure" if failure else "other" if other_heart else None
    end_stage = any(_ckd_stage_5(p.codes[0]) for p in kidney)
    code = HYPERTENSION[(heart, bool(kidney), end_stage)]
    partners = [c for p in (*failure, *kidney) for c in p.codes]
    consumed = sorted(p.index for p in (*failure, *other_heart, *kidney))
    return Merge(
        base=hypertension.index,
        code=code,
        consumed=tuple(consumed),
        partners=tuple(partners),
        rule="combination.hypertension",
        source=HYPERTENSION_SOURCE,
        replaces_base=True,
    )
