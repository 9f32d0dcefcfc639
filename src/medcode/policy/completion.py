"""A predicted code list completed by the coding policy: what the engine does to documented
problems, done again on a model's answer.

- Codes listed apart that the policy combines become the combination code (I.A.15, I.C.4.a,
  I.C.9.a): I10 and I50.22 -> I11.0, I50.22; E11.9 and N18.4 -> E11.22, N18.4.
- A combination code whose tabular entry says "use additional code" gets its partner when no
  code of the partner's family is listed: the member the note names (``named``), else the
  family's unspecified code where that fits (E11.22 -> N18.4 when the note says stage 4,
  N18.9 when it names none; I11.0 -> I50.9).
- A hypertensive CKD code agrees with the listed CKD stage (I.C.9.a.2): I12.0 (stage 5 or
  ESRD) with N18.4 listed becomes I12.9.
- An etiology gets its manifestation (``manifestations.yaml``, I.A.13): G30.9 -> F02.80.

Each code added is reported as ``"CODE (reason)"``, the reason naming the codes it replaced;
:class:`Completed` also lists each code removed, likewise.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from medcode.policy.combinations import (
    HYPERTENSION,
    HYPERTENSION_SOURCE,
    Confirmed,
    hypertension_merge,
    table_merges,
)
from medcode.policy.tables import CodeSpec, PolicyTables, compact
from medcode.terminology import icd10cm

# The member of a code family that the note names (None: it names none).
Named = Callable[[tuple[CodeSpec, ...]], "str | None"]

# Hypertensive CKD codes: (CKD stage 1-4 or unspecified, stage 5 or ESRD), tabular I12, I13.
CKD_STAGE_PAIRS = (("I12.9", "I12.0"), ("I13.0", "I13.2"), ("I13.10", "I13.11"))
_END_STAGE = ("N185", "N186")


@dataclass(frozen=True, slots=True)
class PartnerRule:
    """A combination code and the family its "use additional code" partner comes from, with
    the code for a member the note does not name (None: add nothing then)."""

    code: str
    family: tuple[CodeSpec, ...]
    default: str | None
    source: str


@dataclass
class Completed:
    """A completed code list: codes, their scores (None in, None out), what was added and
    what was removed (``"CODE (reason)"`` each)."""

    codes: list[str]
    scores: list[float] | None
    added: list[str]
    dropped: list[str]


def complete(
    codes: Sequence[str],
    scores: Sequence[float] | None,
    tables: PolicyTables,
    *,
    code_set: Collection[str] | None = None,
    named: Named | None = None,
) -> Completed:
    """The codes completed by the policy (see the module docstring). An added code takes the
    score of the code that called for it; a code outside ``code_set`` (when given) or in an
    Excludes1 conflict with a listed code is never added."""
    items = [(code, None if scores is None else float(scores[i])) for i, code in enumerate(codes)]
    added: list[str] = []
    dropped: list[str] = []

    def allowed(code: str, listed: list[str]) -> bool:
        return (code_set is None or code in code_set) and excludes1_partner(code, listed) is None

    items = _combine(items, tables, allowed, added, dropped)
    items = _add_partners(items, partner_rules(tables), named, allowed, added)
    items = _agree_ckd_stage(items, allowed, added, dropped)
    items = _add_manifestations(items, tables, allowed, added)
    return Completed(
        [code for code, _ in items],
        None if scores is None else [score for _, score in items],
        added,
        dropped,
    )


def partner_rules(tables: PolicyTables) -> dict[str, tuple[PartnerRule, ...]]:
    """Combination code -> its partner rules: the combinations table's ``partner: keep`` rows
    and the hypertension table (I11.0 -> I50, I12 -> N18, I13 -> both)."""
    return tables._memoized("partner_rules", "", lambda _key: _partner_rules(tables))


def _partner_rules(tables: PolicyTables) -> dict[str, tuple[PartnerRule, ...]]:
    rules: dict[str, list[PartnerRule]] = {}
    for combination in tables.combinations:
        if not combination.keep_partner:
            continue
        default = _unspecified(combination.with_)
        for base in combination.base:
            code = icd10cm.normalize(base.first[:3] + combination.suffix.lstrip("."))
            rule = PartnerRule(code, combination.with_, default, combination.source)
            rules.setdefault(code, []).append(rule)
    failure, kidney = CodeSpec("I50", "I50", "I50"), CodeSpec("N18", "N18", "N18")
    for (heart, has_kidney, end_stage), code in HYPERTENSION.items():
        if heart == "failure":
            rule = PartnerRule(code, (failure,), "I50.9", HYPERTENSION_SOURCE)
            rules.setdefault(code, []).append(rule)
        if has_kidney:  # an unnamed stage fits only the stage 1-4 / unspecified codes
            default = None if end_stage else "N18.9"
            rule = PartnerRule(code, (kidney,), default, HYPERTENSION_SOURCE)
            rules.setdefault(code, []).append(rule)
    return {code: tuple(found) for code, found in rules.items()}


def _unspecified(family: tuple[CodeSpec, ...]) -> str | None:
    """The unspecified code (``.9``) of a one-category family, when billable."""
    if len(family) != 1 or family[0].first != family[0].last or len(family[0].first) != 3:
        return None
    code = family[0].first + ".9"
    return code if icd10cm.is_billable(code) else None


Item = tuple[str, "float | None"]


def _combine(
    items: list[Item], tables, allowed, added: list[str], dropped: list[str]
) -> list[Item]:
    confirmed = [
        Confirmed(i, code, [code], None) for i, (code, _) in enumerate(items) if is_icd(code)
    ]
    merges = table_merges(tables.combinations, confirmed)
    hypertension = hypertension_merge(confirmed)
    if hypertension is not None:
        merges.append(hypertension)
    listed = [code for code, _ in items]
    merges = [m for m in merges if m.code in listed or allowed(m.code, [])]
    if not merges:
        return items
    changes = len(added) + len(dropped)
    by_base: dict[int, list] = {}
    for merge in merges:
        by_base.setdefault(merge.base, []).append(merge)
    consumed = {index for merge in merges for index in merge.consumed}
    result: list[Item] = []
    for index, (code, score) in enumerate(items):
        group = by_base.get(index)
        if group is None:
            if index in consumed:
                into = [m for m in merges if index in m.consumed]
                if not any(code in m.partners for m in into):
                    dropped.append(f"{code} (combined into {into[0].code})")
            else:
                result.append((code, score))
            continue
        replace = all(m.replaces_base for m in group)
        if not replace:
            result.append((code, score))
        for merge in group:
            parts = [items[j][0] for j in merge.consumed]
            if merge.code not in listed:
                added.append(f"{merge.code} (combines {code} and {', '.join(parts)})")
            result.append((merge.code, score))
            partner_scores = {items[j][0]: items[j][1] for j in merge.consumed}
            result += [(p, partner_scores.get(p, score)) for p in merge.partners]
        if replace and code not in {m.code for m in group}:
            dropped.append(f"{code} (combined into {', '.join(m.code for m in group)})")
    if len(added) + len(dropped) == changes:  # combined as the policy would: order kept
        return items
    return _unique(result)


def _add_partners(
    items: list[Item], rules, named: Named | None, allowed, added: list[str]
) -> list[Item]:
    result = list(items)
    for code, score in items:
        for rule in rules.get(code, ()):
            listed = [c for c, _ in result]
            if any(spec.matches(compact(c)) for c in listed for spec in rule.family):
                continue
            member, how = (named(rule.family) if named else None), "named in the note"
            if member is not None and not (
                any(spec.matches(compact(member)) for spec in rule.family)
                and allowed(member, listed)
            ):
                member = None
            if member is None:
                member, how = rule.default, "unspecified"
                if member is None or not allowed(member, listed):
                    continue
            at = listed.index(code) + 1
            result.insert(at, (member, score))
            added.append(f"{member} (use additional code with {code}, {how})")
    return result


def _agree_ckd_stage(
    items: list[Item], allowed, added: list[str], dropped: list[str]
) -> list[Item]:
    stages = [compact(code) for code, _ in items if code.startswith("N18")]
    if not stages:
        return items
    end_stage = any(stage in _END_STAGE for stage in stages)
    result = []
    for code, score in items:
        for early, late in CKD_STAGE_PAIRS:
            want = late if end_stage else early
            if code in (early, late) and code != want and allowed(want, []):
                stage = ", ".join(c for c, _ in items if c.startswith("N18"))
                added.append(f"{want} (agrees with CKD {stage}, replaces {code})")
                dropped.append(f"{code} (disagrees with CKD {stage})")
                code = want
                break
        result.append((code, score))
    return _unique(result)


def _add_manifestations(items: list[Item], tables, allowed, added: list[str]) -> list[Item]:
    """Each etiology's default manifestation (``manifestations.yaml``) when no code of the
    manifestation's family is listed: right after the etiology (I.A.13, code first)."""
    result = list(items)
    for etiology, score in [item for item in items if is_icd(item[0])]:
        key = compact(etiology)
        for entry in tables.manifestations:
            if not entry.etiology.matches(key):
                continue
            listed = [c for c, _ in result]
            code = entry.manifestation
            if any(entry.family.matches(compact(c)) for c in listed) or not allowed(code, listed):
                continue
            result.insert(listed.index(etiology) + 1, (code, score))
            added.append(f"{code} (manifestation of {etiology}: {entry.label})")
    return result


def _unique(items: list[Item]) -> list[Item]:
    seen: set[str] = set()
    result = []
    for code, score in items:
        if code not in seen:
            seen.add(code)
            result.append((code, score))
    return result


def is_icd(code: str) -> bool:
    """An ICD-10-CM code, not CPT/HCPCS (G0438 is not ICD-10-CM G04.38)."""
    return icd10cm.looks_like(code) and icd10cm.is_valid(code)


def excludes1_partner(code: str, listed: Sequence[str]) -> str | None:
    """The first listed ICD-10-CM code in an Excludes1 conflict with ``code``, if any."""
    from medcode.errors import CodeError
    from medcode.policy.facts import excludes1_conflict

    if not is_icd(code):
        return None
    for other in listed:
        if other == code or not is_icd(other):
            continue
        try:
            if excludes1_conflict(other, code):
                return other
        except (CodeError, ValueError):
            continue
    return None
