"""The policy engine: turns an :class:`Encounter` into ordered, rule-tagged codes.

Order of the output (docs/policy.md): preventive exam code; the problems that are coded, in
documented order, each followed by its partners; history codes; long-term drug therapy;
the E/M code; procedures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medcode.errors import CodeError
from medcode.policy import combinations, em, specificity
from medcode.policy.facts import excludes1_conflict, icd, matches_any, require
from medcode.policy.procedures import procedure_lines, shipped_procedure_rules
from medcode.policy.rules import RULES
from medcode.policy.tables import PolicyTables, compact, organism_combination, shipped_tables
from medcode.records import Code, Encounter, Episode, RecordError, Setting, Status, System
from medcode.terminology import cpt, icd10cm

NOT_CODED = (Status.NEGATED, Status.RULED_OUT, Status.RESOLVED)
CONFIRMED = (Status.ACTIVE, Status.CHRONIC)


@dataclass(frozen=True, slots=True)
class Step:
    """One line of the explanation: a fact, the rule that fired, and what it did."""

    fact: str
    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class PolicyWarning:
    """A problem with the encounter that did not stop coding (``--strict`` makes it fail)."""

    kind: str
    message: str
    fact: str = ""


@dataclass(frozen=True)
class CodingResult:
    """The codes in order; ``facts[i]`` lists the encounter facts behind ``codes[i]`` as
    paths (``problems[0]``, ``problems[3].symptoms[1]``, ``medications[0]``, ``visit``,
    ``procedures[0]``): what a note must mention for the code to be supported."""

    encounter_id: str
    codes: tuple[Code, ...]
    warnings: tuple[PolicyWarning, ...]
    steps: tuple[Step, ...]
    facts: tuple[tuple[str, ...], ...] = ()

    @property
    def code_list(self) -> list[str]:
        return [code.code for code in self.codes]

    @property
    def rules_fired(self) -> set[str]:
        return {step.rule for step in self.steps}

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.encounter_id,
            "codes": [
                {
                    "code": c.code,
                    "system": c.system.value,
                    "description": c.description,
                    "rule": c.rule,
                    "source": c.source,
                }
                for c in self.codes
            ],
            "warnings": [
                {"kind": w.kind, "message": w.message, "fact": w.fact} for w in self.warnings
            ],
        }


@dataclass
class _Item:
    code: str
    rule: str
    fact: str
    source: str = ""
    paths: tuple[str, ...] = ()
    slot: int = -1  # the problem (slot) it belongs to; -1 outside the problems


@dataclass
class _Draft:
    encounter: Encounter
    tables: PolicyTables
    slots: dict[int, list[_Item]] = field(default_factory=dict)
    history: dict[int, _Item] = field(default_factory=dict)
    ruled_out: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    warnings: list[PolicyWarning] = field(default_factory=list)
    trace: bool = True

    def step(self, fact: str, rule: str, message: str) -> None:
        if self.trace:
            self.steps.append(Step(fact, rule, message))

    def warn(self, kind: str, fact: str, message: str) -> None:
        self.warnings.append(PolicyWarning(kind, message, fact))


def _fact(index: int, problem) -> str:
    return f"problems[{index}] {problem.code} ({problem.status.value})"


def _symptom_codes(draft: _Draft, index: int, problem) -> list[str]:
    codes = []
    for j, symptom in enumerate(problem.symptoms):
        where = f"encounter.problems[{index}].symptoms[{j}]"
        try:
            codes.extend(specificity.resolve(require(symptom)).codes)
        except CodeError as exc:
            raise RecordError(where, str(exc)) from None
    return codes


def _history_item(draft: _Draft, index: int, problem, code: str) -> None:
    family = problem.status is Status.FAMILY_HISTORY
    rule = "history.family" if family else "history.personal"
    entry = draft.tables.history_entry(code, family)
    fact = _fact(index, problem)
    if entry is None:
        draft.warn(
            "history", fact, f"no {'family' if family else 'personal'}-history code for {code}"
        )
        return
    draft.history[index] = _Item(entry.code, rule, fact, entry.source, (f"problems[{index}]",))
    draft.step(fact, rule, f"{entry.label} -> {entry.code}")


def _first_pass(draft: _Draft) -> list[combinations.Confirmed]:
    """Status rules, specificity and organism for each problem; returns the confirmed ones."""
    encounter = draft.encounter
    confirmed: list[combinations.Confirmed] = []
    for index, problem in enumerate(encounter.problems):
        fact = _fact(index, problem)
        where = f"encounter.problems[{index}]"
        try:
            documented = require(problem.code)
        except CodeError as exc:
            raise RecordError(f"{where}.code", str(exc)) from None
        status = problem.status
        if status is Status.RULED_OUT and problem.symptoms:
            symptoms = _symptom_codes(draft, index, problem)
            draft.ruled_out[index] = list(enumerate(symptoms))
            draft.step(fact, "status.not_coded", f"{status.value}: not coded")
            continue
        if status in NOT_CODED:
            draft.step(fact, "status.not_coded", f"{status.value}: not coded")
            continue
        if status in (Status.HISTORY, Status.FAMILY_HISTORY):
            _history_item(draft, index, problem, documented)
            continue
        symptoms = _symptom_codes(draft, index, problem)
        if status is Status.UNCERTAIN and encounter.setting is not Setting.INPATIENT:
            draft.slots[index] = [
                _Item(
                    c,
                    "status.uncertain_outpatient",
                    fact,
                    paths=(f"problems[{index}].symptoms[{j}]",),
                )
                for j, c in enumerate(symptoms)
            ]
            if symptoms:
                draft.step(
                    fact,
                    "status.uncertain_outpatient",
                    f"uncertain in {encounter.setting.value}: symptoms {', '.join(symptoms)}",
                )
            else:
                draft.warn(
                    "uncertain_no_symptoms",
                    fact,
                    f"uncertain {documented} with no documented symptom: nothing coded",
                )
            continue
        try:
            resolved = specificity.resolve(
                documented,
                laterality=problem.laterality,
                episode=problem.episode,
                sex=encounter.patient.sex.value,
            )
        except CodeError as exc:
            raise RecordError(where, str(exc)) from None
        for kind, message in resolved.warnings:
            draft.warn(kind, fact, message)
        base_rule = (
            "status.uncertain_inpatient" if status is Status.UNCERTAIN else "diagnosis.documented"
        )
        rule = resolved.rules[-1] if resolved.rules else base_rule
        for applied in dict.fromkeys(resolved.rules):
            draft.step(fact, applied, f"{documented} -> {', '.join(resolved.codes)}")
        draft.step(fact, base_rule, f"coded {', '.join(resolved.codes)}")
        items = [_Item(c, rule, fact, paths=(f"problems[{index}]",)) for c in resolved.codes]
        # Symptoms are integral unless the diagnosis's tabular note asks for them (N40.1:
        # "use additional code for associated symptoms"; I.B.5 "unless otherwise instructed").
        asked = [c for c in symptoms if matches_any(c, icd(resolved.codes[0]).additional)]
        for j in range(len(problem.symptoms)):
            code_j = symptoms[j] if j < len(symptoms) else None
            if code_j in asked:
                items.append(
                    _Item(
                        code_j,
                        "partner.symptoms",
                        fact,
                        paths=(f"problems[{index}].symptoms[{j}]",),
                    )
                )
                draft.step(fact, "partner.symptoms", f"{code_j} after {resolved.codes[0]}")
        integral = [c for c in symptoms if c not in asked]
        if integral:
            draft.step(
                fact,
                "integral.symptoms",
                f"symptoms {', '.join(integral)} are part of {documented}: not coded",
            )
        if problem.organism:
            combined = _organism_combination(draft, index, problem, resolved.codes[0], fact)
            if combined is not None:
                items[0] = combined
            else:
                items.extend(_organism(draft, index, problem, resolved.codes[0], fact))
        if problem.episode is Episode.SEQUELA:
            items = _sequela(draft, index, problem, items, fact) + items
        draft.slots[index] = items
        codes = [item.code for item in items if item.rule != "sequela.residual"]
        confirmed.append(
            combinations.Confirmed(
                index, documented, codes[:1] + list(resolved.codes[1:]), problem.linked_to
            )
        )
    return confirmed


def _organism_combination(draft: _Draft, index: int, problem, code: str, fact: str):
    """The index's organism-specific code for the infection (J18.9 + B96.1 -> J15.0)."""
    where = f"encounter.problems[{index}].organism"
    try:
        organism = require(problem.organism)
    except CodeError as exc:
        raise RecordError(where, str(exc)) from None
    entry = organism_combination(draft.tables, code, organism)
    if entry is None:
        return None
    draft.step(fact, "combination.organism", f"{code} due to {organism} -> {entry.code}")
    return _Item(
        entry.code,
        "combination.organism",
        fact,
        f"{RULES['combination.organism'].source}; {entry.source}",
        (f"problems[{index}]",),
    )


def _sequela(draft: _Draft, index: int, problem, items: list[_Item], fact: str) -> list[_Item]:
    """The residual condition of a sequela, coded before the injury (I.C.19.a)."""
    if not items or not items[0].code.endswith("S"):
        return []
    # Older encounters list the residual as the problem just before the sequela.
    before = draft.encounter.problems[index - 1] if index else None
    residual_listed = (
        before is not None
        and before.status in CONFIRMED
        and before.code.strip().upper()[:1] not in "STVWXY"
    )
    if not problem.residual and residual_listed:
        return []  # the residual documented as the problem before it (older encounters)
    if not problem.residual:
        draft.warn(
            "sequela",
            fact,
            f"{items[0].code} is a sequela with no residual condition documented",
        )
        return []
    where = f"encounter.problems[{index}].residual"
    try:
        residual = specificity.resolve(require(problem.residual)).codes[0]
    except CodeError as exc:
        raise RecordError(where, str(exc)) from None
    draft.step(fact, "sequela.residual", f"{residual} first, then {items[0].code}")
    return [_Item(residual, "sequela.residual", fact, paths=(f"problems[{index}]",))]


def _substance_hierarchy(
    draft: _Draft, confirmed: list[combinations.Confirmed]
) -> list[combinations.Confirmed]:
    """Use, abuse and dependence of one substance (F10-F19) documented together: only the
    highest is coded, dependence over abuse over use (I.C.5.b.1)."""
    rank = {"2": 3, "1": 2, "9": 1}

    def level(code: str) -> tuple[str, int] | None:
        key = compact(code)
        if "F10" <= key[:3] <= "F19" and len(key) > 3 and key[3] in rank:
            return key[:3], rank[key[3]]
        return None

    best: dict[str, int] = {}
    for problem in confirmed:
        found = level(problem.codes[0]) if problem.codes else None
        if found:
            best[found[0]] = max(best.get(found[0], 0), found[1])
    kept = []
    for problem in confirmed:
        found = level(problem.codes[0]) if problem.codes else None
        if found and found[1] < best[found[0]]:
            fact = _fact(problem.index, draft.encounter.problems[problem.index])
            draft.slots[problem.index] = []
            draft.step(
                fact,
                "substance.hierarchy",
                f"{problem.codes[0]}: a higher level of the same substance is documented",
            )
            continue
        kept.append(problem)
    return kept


def _subsumed(
    draft: _Draft, confirmed: list[combinations.Confirmed]
) -> list[combinations.Confirmed]:
    """Codes the index folds into another documented code (``subsumed.yaml``): not coded."""
    keys = [compact(p.codes[0]) for p in confirmed if p.codes]
    kept = []
    for problem in confirmed:
        key = compact(problem.codes[0]) if problem.codes else ""
        entry = next(
            (
                e
                for e in draft.tables.subsumed
                if e.code.matches(key) and any(s.matches(k) for s in e.by for k in keys if k != key)
            ),
            None,
        )
        if entry is None:
            kept.append(problem)
            continue
        fact = _fact(problem.index, draft.encounter.problems[problem.index])
        draft.slots[problem.index] = []
        draft.step(fact, "diagnosis.subsumed", f"{problem.codes[0]}: {entry.label}")
    return kept


def _condition_combinations(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    """An infection in a confirmed condition documented beside it (pneumonia in COVID-19 ->
    J12.82 after U07.1), unless documented as due to something else."""
    for problem in confirmed:
        key = compact(problem.codes[0]) if problem.codes else ""
        for entry in draft.tables.organisms:
            if not entry.condition or not any(s.matches(key) for s in entry.infection):
                continue
            cause = next(
                (
                    other
                    for other in confirmed
                    if other is not problem
                    and other.codes
                    and any(s.matches(compact(other.codes[0])) for s in entry.condition)
                    and not combinations._linked_elsewhere(problem, other.codes)
                ),
                None,
            )
            if cause is None:
                continue
            fact = _fact(problem.index, draft.encounter.problems[problem.index])
            slot = draft.slots.get(problem.index, [])
            if slot:
                slot[0] = _Item(
                    entry.code,
                    "combination.condition",
                    fact,
                    f"{RULES['combination.condition'].source}; {entry.source}",
                    (*slot[0].paths, f"problems[{cause.index}]"),
                )
            draft.step(
                fact,
                "combination.condition",
                f"{problem.codes[0]} in {cause.codes[0]} -> {entry.code}",
            )
            problem.codes[0] = entry.code
            break


def _ckd_with_esrd(
    draft: _Draft, confirmed: list[combinations.Confirmed]
) -> list[combinations.Confirmed]:
    """A CKD stage documented together with ESRD: N18.6 only (I.C.14.a.1)."""
    if not any(p.codes and p.codes[0] == "N18.6" for p in confirmed):
        return confirmed
    kept = []
    for problem in confirmed:
        if problem.codes and problem.codes[0].startswith("N18") and problem.codes[0] != "N18.6":
            fact = _fact(problem.index, draft.encounter.problems[problem.index])
            draft.slots[problem.index] = []
            draft.step(fact, "ckd.esrd", f"{problem.codes[0]} with ESRD documented: N18.6 only")
            continue
        kept.append(problem)
    return kept


_F02_CAUSES = "F02.80"


def _dementia_in_other_disease(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    """Dementia (F03) documented with a condition that the tabular lists under F02's "code
    first" (Parkinson's, Lewy body, Huntington's ...) is dementia in other diseases: the F02
    code of the same severity and disturbance; sequencing puts the cause first."""
    causes = icd(_F02_CAUSES).code_first
    for problem in confirmed:
        code = problem.codes[0] if problem.codes else ""
        if not code.startswith("F03."):
            continue
        cause = next(
            (
                other
                for other in confirmed
                if other is not problem
                and other.codes
                and matches_any(other.codes[0], causes)
                and not combinations._linked_elsewhere(problem, other.codes)
            ),
            None,
        )
        if cause is None:
            continue
        rest = code[4:]
        new = "F02." + ("8" + rest[1:] if rest.startswith("9") else rest)
        if not icd10cm.is_billable(new):
            continue
        fact = _fact(problem.index, draft.encounter.problems[problem.index])
        slot = draft.slots.get(problem.index, [])
        if slot:
            slot[0] = _Item(new, "dementia.other_disease", fact, paths=slot[0].paths)
        problem.codes[0] = new
        draft.step(
            fact, "dementia.other_disease", f"{code} with {cause.codes[0]} -> {new} (cause first)"
        )


def _ruled_out_symptoms(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    """Symptoms behind a ruled-out diagnosis are coded (II.A, IV.D) unless a confirmed
    diagnosis explains them (documented as its symptom, or integral to it)."""
    explained = {
        compact(code)
        for index, problem in enumerate(draft.encounter.problems)
        if problem.status in CONFIRMED
        for code in _symptom_codes(draft, index, problem)
    }
    hosts = [compact(c) for p in confirmed for c in p.codes]
    for index, symptoms in draft.ruled_out.items():
        fact = _fact(index, draft.encounter.problems[index])
        items = []
        for j, symptom in symptoms:
            integral = any(
                any(s.matches(host) for s in entry.diagnosis for host in hosts)
                for entry in draft.tables.integral_hosts(symptom)
            )
            if compact(symptom) in explained or integral:
                draft.step(fact, "integral.symptoms", f"{symptom} explained by another diagnosis")
                continue
            items.append(
                _Item(
                    symptom,
                    "status.ruled_out_symptoms",
                    fact,
                    paths=(f"problems[{index}].symptoms[{j}]",),
                )
            )
            draft.step(fact, "status.ruled_out_symptoms", f"{symptom}: the reason for the visit")
        draft.slots[index] = items


def _bmi(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    """Z68 only with an associated diagnosis (obesity, underweight, malnutrition ...), from
    the documented BMI, right after that diagnosis (I.C.21.c.3)."""
    rule = draft.tables.bmi
    if rule is None:
        return
    documented = [
        (index, item)
        for index in sorted(draft.slots)
        for item in draft.slots[index]
        if item.code.startswith("Z68")
    ]
    for index, item in documented:
        draft.slots[index].remove(item)
    host = next(
        (
            index
            for index in sorted(draft.slots)
            for item in draft.slots[index]
            if any(spec.matches(compact(item.code)) for spec in rule.associated)
        ),
        None,
    )
    if host is None:
        for _, item in documented:
            draft.step(item.fact, "bmi.z68", f"{item.code} dropped: no associated diagnosis")
        return
    host_fact = draft.slots[host][0].fact
    vitals = draft.encounter.vitals
    if vitals is not None and vitals.bmi is not None:
        if draft.encounter.patient.age < rule.adult_min_age:
            draft.step(host_fact, "bmi.z68", "BMI documented under age 20: percentile needed")
            return
        code = rule.adult_code(vitals.bmi)
        draft.slots[host].append(_Item(code, "bmi.z68", host_fact, rule.source, ("vitals.bmi",)))
        draft.step(host_fact, "bmi.z68", f"BMI {vitals.bmi:g} -> {code}")
        return
    for _, item in documented:
        draft.slots[host].append(_Item(item.code, "bmi.z68", item.fact, rule.source, item.paths))
        draft.step(item.fact, "bmi.z68", f"{item.code} after its associated diagnosis")


_ORGANISM_RANGE = ("B95", "B97")


def _organism(draft: _Draft, index: int, problem, code: str, fact: str) -> list[_Item]:
    where = f"encounter.problems[{index}].organism"
    try:
        organism = require(problem.organism)
    except CodeError as exc:
        raise RecordError(where, str(exc)) from None
    if not ("B95" <= compact(organism)[:3] <= "B97") or not icd(organism).billable:
        raise RecordError(where, f"{organism} is not a billable B95-B97 infectious-agent code")
    if not matches_any(organism, icd(code).additional):
        draft.warn(
            "organism",
            fact,
            f"{code} does not take an additional organism code; {organism} not coded",
        )
        return []
    draft.step(fact, "partner.organism", f"{organism} after {code} (use additional code)")
    return [_Item(organism, "partner.organism", fact, paths=(f"problems[{index}]",))]


def _integral(
    draft: _Draft, confirmed: list[combinations.Confirmed]
) -> list[combinations.Confirmed]:
    """Drop confirmed symptom problems routinely part of another confirmed diagnosis."""
    kept = []
    for problem in confirmed:
        host = next(
            (
                (other, entry)
                for entry in draft.tables.integral_hosts(problem.codes[0])
                for other in confirmed
                if other is not problem
                and any(s.matches(compact(other.codes[0])) for s in entry.diagnosis)
            ),
            None,
        )
        if host is None:
            kept.append(problem)
            continue
        other, entry = host
        fact = _fact(problem.index, draft.encounter.problems[problem.index])
        draft.slots[problem.index] = []
        draft.step(
            fact,
            "integral.symptoms",
            f"{problem.codes[0]} is part of {other.codes[0]} ({entry.label}): not coded",
        )
    return kept


def _apply_merges(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    merges = combinations.table_merges(draft.tables.combinations, confirmed)
    hypertension = combinations.hypertension_merge(confirmed)
    if hypertension:
        merges.append(hypertension)
    by_base: dict[int, list[combinations.Merge]] = {}
    for merge in merges:
        by_base.setdefault(merge.base, []).append(merge)
    consumed = {index for merge in merges for index in merge.consumed}
    for base, group in by_base.items():
        problem = draft.encounter.problems[base]
        fact = _fact(base, problem)
        old = draft.slots.get(base, [])
        combined: list[_Item] = []
        for merge in group:
            paths = tuple(f"problems[{i}]" for i in (merge.base, *merge.consumed))
            combined.append(_Item(merge.code, merge.rule, fact, merge.source, paths))
            draft.step(fact, merge.rule, f"{merge.code} ({merge.source})")
            for partner in merge.partners:
                partner_paths = tuple(f"problems[{i}]" for i in merge.consumed)
                combined.append(_Item(partner, "combination.partner", fact, paths=partner_paths))
                draft.step(fact, "combination.partner", f"{partner} kept after {merge.code}")
        replace = all(merge.replaces_base for merge in group)
        # The base's own partners (e.g. organism) stay after the combination codes.
        head, tail = old[:1], old[1:]
        draft.slots[base] = (combined + tail) if replace else (head + combined + tail)
    for index in consumed - set(by_base):
        draft.slots[index] = [item for item in draft.slots.get(index, [])[1:]]


def _manifestations(draft: _Draft, confirmed: list[combinations.Confirmed]) -> None:
    documented = [compact(c) for p in confirmed for c in p.codes]
    for problem in confirmed:
        key = compact(problem.codes[0])
        for entry in draft.tables.manifestations:
            if not entry.etiology.matches(key):
                continue
            if any(entry.family.matches(code) for code in documented):
                continue
            fact = _fact(problem.index, draft.encounter.problems[problem.index])
            slot = draft.slots.setdefault(problem.index, [])
            slot.insert(
                0 if entry.underlying else 1,
                _Item(
                    entry.manifestation,
                    "partner.manifestation",
                    fact,
                    entry.source,
                    (f"problems[{problem.index}]",),
                ),
            )
            draft.step(fact, "partner.manifestation", f"{entry.manifestation} ({entry.label})")


def _code_first(draft: _Draft, items: list[_Item]) -> list[_Item]:
    """A code with a 'code first' note (a manifestation) never precedes the underlying
    condition it names: that condition is moved to just before it (I.A.13)."""
    ordered = list(items)
    for item in list(ordered):
        specs = icd(item.code).code_first
        if not specs:
            continue
        position = ordered.index(item)
        if any(matches_any(other.code, specs) for other in ordered[:position]):
            continue
        later = [o for o in ordered[position + 1 :] if matches_any(o.code, specs)]
        if later:
            underlying = later[0]
            # The underlying condition moves with its own problem's codes (I12.9 with its
            # CKD stage stays a pair when D63.1 asks for the N18 code first).
            group = [underlying]
            if underlying.slot >= 0 and underlying.slot != item.slot:
                group = [o for o in ordered[position + 1 :] if o.slot == underlying.slot]
            for moved in group:
                ordered.remove(moved)
            at = ordered.index(item)
            ordered[at:at] = group
            draft.step(
                item.fact,
                "sequencing.code_first",
                f"{underlying.code} placed before {item.code} (code first)",
            )
    return ordered


def _is_external_cause(code: str) -> bool:
    return "V00" <= code[:3] <= "Y99"


def _external_cause_not_first(draft: _Draft, items: list[_Item]) -> list[_Item]:
    """An external cause code is never first-listed (I.C.20.a.6): leading external cause
    codes move to just after the first other code."""
    lead = 0
    while lead < len(items) and _is_external_cause(items[lead].code):
        lead += 1
    if lead == 0 or lead == len(items):
        return items
    moved = items[:lead]
    for item in moved:
        draft.step(
            item.fact,
            "sequencing.external_cause",
            f"{item.code} placed after {items[lead].code}: never first-listed",
        )
    return [items[lead], *moved, *items[lead + 1 :]]


def _excludes1(draft: _Draft, items: list[_Item]) -> list[_Item]:
    kept: list[_Item] = []
    for item in items:
        clash = next((k for k in kept if excludes1_conflict(k.code, item.code)), None)
        if clash is None:
            kept.append(item)
            continue
        draft.step(item.fact, "edit.excludes1", f"{item.code} dropped: Excludes1 with {clash.code}")
        draft.warn(
            "excludes1",
            item.fact,
            f"{item.code} and {clash.code} are Excludes1: {item.code} not assigned",
        )
    return kept


def _edits(draft: _Draft, items: list[_Item]) -> None:
    patient = draft.encounter.patient
    for item in items:
        sex_edits, age_edits = draft.tables.edits_for(item.code)
        for edit in sex_edits:
            if edit.sex != patient.sex.value:
                draft.step(item.fact, "edit.sex", f"{item.code}: {edit.label} ({edit.sex} only)")
                draft.warn(
                    "sex",
                    item.fact,
                    f"{item.code} ({edit.label}) is for {edit.sex} patients; patient is "
                    f"{patient.sex.value}",
                )
        for edit in age_edits:
            low = edit.min_age if edit.min_age is not None else 0
            high = edit.max_age if edit.max_age is not None else 200
            if not low <= patient.age <= high:
                draft.step(item.fact, "edit.age", f"{item.code}: {edit.label} (age {low}-{high})")
                draft.warn(
                    "age",
                    item.fact,
                    f"{item.code} ({edit.label}) is for ages {low}-{high}; patient is "
                    f"{patient.age}",
                )


def _medications(draft: _Draft, coded: list[_Item]) -> list[_Item]:
    items = []
    for index, medication in enumerate(draft.encounter.medications):
        fact = f"medications[{index}] {medication.drug_class}"
        entry = draft.tables.medications.get(medication.drug_class)
        if entry is None:
            known = ", ".join(sorted(draft.tables.medications))
            raise RecordError(
                f"encounter.medications[{index}].class",
                f"unknown class {medication.drug_class!r}; one of {known}",
            )
        blocker = next((c.code for c in coded if matches_any(c.code, entry.not_with)), None)
        if blocker:
            draft.step(fact, "medication.z79", f"{entry.code} not assigned with {blocker}")
            continue
        if entry.only_with and not any(matches_any(c.code, entry.only_with) for c in coded):
            needs = ", ".join(spec.text for spec in entry.only_with)
            draft.step(fact, "medication.z79", f"{entry.code} only with {needs} coded")
            continue
        items.append(
            _Item(entry.code, "medication.z79", fact, entry.source, (f"medications[{index}]",))
        )
        draft.step(fact, "medication.z79", f"{entry.label} -> {entry.code}")
    return items


def _dedupe(items: list[_Item]) -> list[_Item]:
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.code not in seen:
            seen.add(item.code)
            unique.append(item)
    return unique


def _icd_code(item: _Item) -> Code:
    return Code(
        item.code,
        System.ICD10CM,
        icd(item.code).description,
        item.rule,
        item.source or RULES[item.rule].source,
    )


def emittable_codes(tables: PolicyTables | None = None) -> set[str]:
    """Every ICD-10-CM code the rules themselves can emit (documented codes aside, which
    :mod:`specificity` always completes to a billable code or rejects)."""
    tables = tables or shipped_tables()
    return (
        tables.emittable_codes()
        | set(combinations.HYPERTENSION.values())
        | set(em.EXAM_CODES.values())
        | {shipped_procedure_rules().vaccine_diagnosis}
    )


def code(
    encounter: Encounter, tables: PolicyTables | None = None, *, trace: bool = True
) -> CodingResult:
    """Code one encounter. Raises :class:`RecordError` for a malformed encounter (nothing is
    half-coded); edit failures come back as warnings. ``trace=False`` skips recording the
    explanation steps (faster, for bulk generation)."""
    draft = _Draft(encounter, tables or shipped_tables(), trace=trace)
    confirmed = _first_pass(draft)
    confirmed = _ckd_with_esrd(draft, confirmed)
    confirmed = _substance_hierarchy(draft, confirmed)
    confirmed = _subsumed(draft, confirmed)
    _condition_combinations(draft, confirmed)
    confirmed = _integral(draft, confirmed)
    _ruled_out_symptoms(draft, confirmed)
    _dementia_in_other_disease(draft, confirmed)
    _apply_merges(draft, confirmed)
    _manifestations(draft, confirmed)
    _bmi(draft, confirmed)

    conditions = []
    for index in sorted(draft.slots):
        for item in draft.slots[index]:
            item.slot = index
            conditions.append(item)
    conditions = _code_first(draft, _dedupe(conditions))
    conditions = _external_cause_not_first(draft, conditions)
    choice = em.choose(encounter)
    claim = procedure_lines(encounter, choice.code)
    z23 = shipped_procedure_rules().vaccine_diagnosis
    if claim.immunization and not any(item.code == z23 for item in conditions):
        given = tuple(f"procedures[{line.index}]" for line in claim.kept if line.vaccine)
        conditions.append(_Item(z23, "immunization.z23", "procedures", paths=given))
        draft.step("procedures", "immunization.z23", f"vaccine administered: {z23}")
    history = [draft.history[index] for index in sorted(draft.history)]
    items: list[_Item] = []
    exam = em.exam_code(encounter)
    if exam:
        items.append(
            _Item(exam, "preventive.exam", f"visit {encounter.visit.kind.value}", paths=("visit",))
        )
        draft.step(f"visit {encounter.visit.kind.value}", "preventive.exam", f"{exam} first")
    items += conditions + history
    items += _medications(draft, items)
    items = _excludes1(draft, _dedupe(items))
    _edits(draft, items)

    codes = [_icd_code(item) for item in items]
    facts = [item.paths for item in items]
    visit_fact = f"visit {encounter.visit.kind.value}"
    if choice.warning:
        draft.warn("em", visit_fact, choice.warning)
    if choice.code:
        entry = cpt.procedure_table().require(choice.code)
        codes.append(
            Code(
                entry.code, entry.system, entry.description, choice.rule, RULES[choice.rule].source
            )
        )
        facts.append(("visit",))
        draft.step(visit_fact, choice.rule, f"{entry.code}: {choice.reason}")
    elif choice.reason:  # no E/M by rule (a minor procedure's global package)
        draft.step(visit_fact, choice.rule, choice.reason)
    for kind, message in claim.warnings:
        draft.warn(kind, "procedures", message)
    for line in claim.removed:
        draft.step(f"procedures[{line.index}] {line.code}", line.rule, line.message)
    table = cpt.procedure_table()
    for line in claim.kept:
        entry = table.require(line.code)
        codes.append(
            Code(
                entry.code,
                entry.system,
                entry.description,
                line.rule,
                line.source or RULES[line.rule].source,
            )
        )
        facts.append(
            ("vitals.bp",)
            if line.rule == "procedure.blood_pressure"
            else (f"procedures[{line.index}]",)
        )
        draft.step(f"procedures[{line.index}] {entry.code}", line.rule, entry.description)
    return CodingResult(
        encounter.id, tuple(codes), tuple(draft.warnings), tuple(draft.steps), tuple(facts)
    )
