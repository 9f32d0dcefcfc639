"""Clinical coherence of sampled encounters: one check per rule, each returning the
:class:`Violation` records it finds. A scenario is coherent when :func:`check_all` finds
nothing (and :func:`check_patient` nothing across one patient's notes).

Each ``check_x(scenario, result, text=None)`` reads the scenario's facts and the engine's
result; checks about wording also read the rendered note ``text`` when it is given. The
tables the rules read (drug classes, control states, thresholds, exam systems, functional
levels, encounter facts) are data: ``data/synth/*.yaml`` through :mod:`medcode.synth.clinical`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from medcode.policy.engine import CodingResult
from medcode.records import Episode, Setting, Status, System, VisitKind
from medcode.synth.clinical import ClinicalRules, shipped_rules
from medcode.synth.scenario import ProblemFact, Scenario

CODED = (Status.ACTIVE, Status.CHRONIC)
HOSPITAL_KINDS = (
    VisitKind.EMERGENCY,
    VisitKind.HOSPITAL_ADMISSION,
    VisitKind.HOSPITAL_SUBSEQUENT,
    VisitKind.HOSPITAL_DISCHARGE,
)
PREVENTIVE_KINDS = (VisitKind.PREVENTIVE, VisitKind.ANNUAL_WELLNESS)
SCREENING = ("Z11", "Z12", "Z13")


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    encounter: str
    message: str

    def __str__(self) -> str:
        return f"{self.encounter} [{self.rule}] {self.message}"


def _v(rule: str, scenario: Scenario, message: str) -> Violation:
    return Violation(rule, scenario.encounter.id, message)


def _rules(rules: ClinicalRules | None) -> ClinicalRules:
    return rules or shipped_rules()


# -- helpers --------------------------------------------------------------------------------


def reason(scenario: Scenario) -> tuple[int, ProblemFact] | None:
    """The problem the note gives as the reason for the visit: the first active, chronic or
    uncertain problem (what the templates print first)."""
    for index, fact in enumerate(scenario.problems):
        if fact.status in (*CODED, Status.UNCERTAIN):
            return index, fact
    return None


def _icd_codes(result: CodingResult) -> list[str]:
    return [c.code for c in result.codes if c.system is System.ICD10CM]


def _documented(scenario: Scenario, result: CodingResult) -> list[str]:
    """The codes of the confirmed diagnoses: the engine's ICD-10-CM codes and the documented
    codes of active and chronic problems (before any combination)."""
    codes = _icd_codes(result)
    codes += [f.code for f in scenario.problems if f.status in CODED]
    return list(dict.fromkeys(codes))


def _printed(scenario: Scenario) -> dict[str, float]:
    """Printed numeric measurements (vitals and labs) by key."""
    values = {}
    for result in (*scenario.vitals, *scenario.labs):
        try:
            values[result.measure.key] = float(result.value)
        except ValueError:
            continue
    return values


def _fmt(value: float) -> str:
    return f"{value:g}"


def _in(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9


def _visit_date(scenario: Scenario) -> dt.date | None:
    try:
        return dt.date.fromisoformat(scenario.visit_date)
    except (TypeError, ValueError):
        return None


def _age_on(dob: dt.date, day: dt.date) -> int:
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def _quoted_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r'"[^"\n]*"', text)]


def _phrase_regex(phrase: str) -> re.Pattern:
    parts = re.split(r"\{[^}]*\}", phrase)
    body = r"[\w' -]+?".join(re.escape(p) for p in parts)
    return re.compile(rf"(?<![\w]){body}(?![\w])", re.IGNORECASE)


# -- 1. the reason for the visit fits the setting -------------------------------------------


def check_visit_reason(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """An emergency visit or a hospital stay is for an acute problem or an exacerbation
    (never a screening, a Z code or a stable chronic problem); the first problem of any
    visit is one its concept can be the reason for; Z68 is never first-listed; a screening
    code is first-listed only when the screening is the reason (I.C.21.c.5); the facility
    fits the setting (a discharge summary comes from a hospital)."""
    rules = _rules(rules)
    found = []
    visit = scenario.encounter.visit
    kind = visit.kind
    facility = rules.encounters.facility_kind(scenario.facility)
    setting = scenario.encounter.setting.value
    if facility is None or setting not in facility.settings:
        found.append(
            _v(
                "visit_reason",
                scenario,
                f"{kind.value} visit ({setting}) at {scenario.facility!r}, "
                f"a {facility.kind if facility else 'facility of unknown kind'}",
            )
        )
    first = reason(scenario)
    icd = _icd_codes(result)
    if icd and icd[0].startswith("Z68"):
        found.append(_v("visit_reason", scenario, f"BMI code {icd[0]} first-listed"))
    if kind in HOSPITAL_KINDS:
        if first is None:
            found.append(_v("visit_reason", scenario, f"{kind.value} visit without a reason"))
        else:
            _, fact = first
            state = _state(fact, rules)
            if fact.status is Status.CHRONIC:
                found.append(
                    _v(
                        "visit_reason",
                        scenario,
                        f"{kind.value} visit for a stable chronic problem {fact.code}",
                    )
                )
            elif fact.code.startswith("Z"):
                found.append(_v("visit_reason", scenario, f"{kind.value} visit for {fact.code}"))
            elif not _can_be_reason(fact, state, kind):
                found.append(
                    _v(
                        "visit_reason",
                        scenario,
                        f"{fact.code} ({fact.concept.id if fact.concept else 'long tail'}) "
                        f"is not a reason for a {kind.value} visit",
                    )
                )
        for fact in scenario.problems:
            if fact.status in (*CODED, Status.UNCERTAIN) and fact.code.startswith(SCREENING):
                found.append(
                    _v("visit_reason", scenario, f"screening {fact.code} in a {kind.value} visit")
                )
    elif kind not in PREVENTIVE_KINDS and first is not None:
        _, fact = first
        state = _state(fact, rules)
        if fact.status is not Status.CHRONIC and not _can_be_reason(fact, state, kind):
            found.append(
                _v(
                    "visit_reason",
                    scenario,
                    f"{fact.code} ({fact.concept.id if fact.concept else 'long tail'}) is not "
                    f"a reason for a {kind.value} visit",
                )
            )
        elif (
            fact.status is Status.CHRONIC
            and fact.concept
            and fact.code.startswith("Z")
            and kind.value not in _reason_kinds(fact.concept)
        ):
            found.append(
                _v("visit_reason", scenario, f"{fact.code} status as the reason for a visit")
            )
    if icd and icd[0].startswith(SCREENING):
        reason_code = first[1].code if first else ""
        if kind in HOSPITAL_KINDS or reason_code != icd[0]:
            found.append(
                _v(
                    "visit_reason",
                    scenario,
                    f"screening {icd[0]} first-listed but the visit is for {reason_code or '-'}",
                )
            )
    return found


def _can_be_reason(fact: ProblemFact, state, kind: VisitKind) -> bool:
    if kind is VisitKind.PROCEDURE:  # an indication of a procedure-visit procedure
        from medcode.synth.procedure_visits import shipped_procedure_visits

        return fact.concept is not None and any(
            entry.indication(fact.concept.id) for entry in shipped_procedure_visits().entries
        )
    if kind is VisitKind.CONSULT:  # a consultation is for what an office visit can be for
        kind = VisitKind.OFFICE
    if fact.concept is None:
        return kind in (VisitKind.OFFICE, VisitKind.TELEHEALTH) and not fact.code.startswith("Z")
    if state is not None and kind.value in state.reason_for:
        return True
    return kind.value in _reason_kinds(fact.concept)


def _state(fact: ProblemFact, rules: ClinicalRules):
    control_state = getattr(fact, "control", None)
    if fact.concept is None or not control_state:
        return None
    control = rules.controls.get(fact.concept.id)
    return control.states.get(control_state) if control else None


def _reason_kinds(concept) -> tuple[str, ...]:
    kinds = getattr(concept, "reason_for", None)
    if kinds is not None:
        return kinds
    if all(form.code.startswith("Z") for form in concept.forms):
        return ()
    return (VisitKind.OFFICE.value, VisitKind.TELEHEALTH.value)


# -- 2. printed findings agree with the facts -----------------------------------------------


def check_vitals(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Printed vitals and labs agree with the documented diagnoses (thresholds), with each
    problem's documented control state, and, in a discharge summary, with a patient
    discharged afebrile and stable; the encounter record carries the printed values."""
    rules = _rules(rules)
    found = []
    printed = _printed(scenario)
    kind = scenario.encounter.visit.kind
    discharge = kind is VisitKind.HOSPITAL_DISCHARGE
    codes = _documented(scenario, result)
    for threshold in rules.thresholds:
        if threshold.presentation_only and discharge:
            continue
        value = printed.get(threshold.measure)
        if value is None:
            continue
        for code in codes:
            if threshold.codes.matches(code) and not _in(value, threshold.range):
                low, high = threshold.range
                found.append(
                    _v(
                        "vitals",
                        scenario,
                        f"{code} with {threshold.measure} {_fmt(value)} (expected "
                        f"{_fmt(low)}-{_fmt(high)})",
                    )
                )
                break
    for fact in scenario.problems:
        state = _state(fact, rules)
        if state is None or fact.status not in (*CODED, Status.UNCERTAIN):
            continue
        for measure, bounds in (*state.vitals.items(), *state.labs.items()):
            value = printed.get(measure)
            if discharge and measure in state.vitals and state.acute:
                continue  # the exacerbation has settled by discharge
            if value is not None and not _in(value, bounds):
                found.append(
                    _v(
                        "vitals",
                        scenario,
                        f"{fact.code} documented {state.name} with {measure} {_fmt(value)} "
                        f"(expected {_fmt(bounds[0])}-{_fmt(bounds[1])})",
                    )
                )
    if discharge:
        for measure, bounds in rules.discharge.vitals.items():
            value = printed.get(measure)
            if value is None or _in(value, bounds):
                continue
            unless = rules.discharge.unless.get(measure)
            if unless and any(unless.matches(code) for code in codes):
                continue
            found.append(
                _v(
                    "vitals",
                    scenario,
                    f"discharged stable with {measure} {_fmt(value)} "
                    f"(expected {_fmt(bounds[0])}-{_fmt(bounds[1])})",
                )
            )
    systolic, diastolic, bmi = (printed.get(k) for k in ("bp_systolic", "bp_diastolic", "bmi"))
    from medcode.policy.procedures import shipped_procedure_rules

    claim = shipped_procedure_rules()
    for procedure in scenario.encounter.procedures:
        if procedure.code in claim.blood_pressure_codes and systolic is not None:
            bands = (
                claim.systolic
                if procedure.code in {c for _, c in claim.systolic}
                else claim.diastolic
            )
            value = systolic if bands is claim.systolic else diastolic
            expected = next(c for below, c in bands if value < below)
            if procedure.code != expected:
                found.append(
                    _v(
                        "vitals",
                        scenario,
                        f"{procedure.code} documented with pressure "
                        f"{_fmt(systolic)}/{_fmt(diastolic)}",
                    )
                )
    # the BP quality code is reported at exactly the visits its measure covers (HEDIS CBP:
    # an outpatient visit of a hypertensive patient aged 18-85 whose pressure is printed)
    encounter = scenario.encounter
    reported = any(p.code in claim.blood_pressure_codes for p in encounter.procedures)
    diagnoses = [c.code for c in result.codes if c.system is System.ICD10CM]
    covered = systolic is not None and claim.reports_pressure(
        diagnoses, encounter.patient.age, encounter.setting.value
    )
    if reported != covered:
        found.append(
            _v(
                "vitals",
                scenario,
                "BP quality code reported at a visit its measure does not cover"
                if reported
                else "BP quality code missing at a visit its measure covers",
            )
        )
    record = scenario.encounter.vitals
    if record is None:
        if systolic is not None or bmi is not None:
            found.append(_v("vitals", scenario, "encounter.vitals missing the printed values"))
    else:
        if (systolic, diastolic) != (
            float(record.systolic) if record.systolic is not None else None,
            float(record.diastolic) if record.diastolic is not None else None,
        ):
            found.append(
                _v(
                    "vitals",
                    scenario,
                    f"encounter.vitals pressure {record.systolic}/{record.diastolic} differs "
                    f"from the printed {systolic}/{diastolic}",
                )
            )
        if bmi != record.bmi:
            found.append(
                _v("vitals", scenario, f"encounter.vitals BMI {record.bmi} differs from {bmi}")
            )
    return found


def check_bmi(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """The Z68 code matches the printed BMI, and the obesity class (E66.811-E66.813) or
    weight diagnosis matches it (the thresholds of findings.yaml)."""
    from medcode.policy.tables import shipped_tables

    rules = _rules(rules)
    found = []
    bmi = _printed(scenario).get("bmi")
    bands = shipped_tables().bmi
    for code in _icd_codes(result):
        if not code.startswith("Z68"):
            continue
        if bmi is None:
            found.append(_v("bmi", scenario, f"{code} without a printed BMI"))
        elif bands is not None and scenario.encounter.patient.age >= bands.adult_min_age:
            expected = bands.adult_code(bmi)
            if expected != code:
                found.append(
                    _v("bmi", scenario, f"{code} with printed BMI {_fmt(bmi)} ({expected})")
                )
    if bmi is not None:
        for threshold in rules.thresholds:
            if threshold.measure != "bmi":
                continue
            for code in _documented(scenario, result):
                if threshold.codes.matches(code) and not _in(bmi, threshold.range):
                    found.append(
                        _v(
                            "bmi",
                            scenario,
                            f"{code} with BMI {_fmt(bmi)} (expected "
                            f"{_fmt(threshold.range[0])}-{_fmt(threshold.range[1])})",
                        )
                    )
    return found


def _exam_findings(scenario: Scenario, text: str | None, rules: ClinicalRules) -> list[str]:
    """The exam statements of the note: the scenario's exam list and, with the text, the
    normal statements the text contains (templates print stock phrases of their own; an
    abnormal word in the text may be a diagnosis, "cachectic", not an exam finding)."""
    findings = list(scenario.exam)
    if text:
        lower = text.lower()
        normals = {t.lower() for t in rules.exam.normals()}
        for phrase in normals:
            if phrase in lower and re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", lower):
                findings.append(phrase)
    return findings


def check_exam(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """The exam does not contradict itself (a normal and an abnormal statement of one
    system), the diagnoses (a normal statement of a system a diagnosis makes abnormal) or
    the printed vitals ("regular rate" at 120 bpm)."""
    rules = _rules(rules)
    found = []
    findings = _exam_findings(scenario, text, rules)
    by_system: dict[str, dict[bool, set[str]]] = {}
    for finding in findings:
        for item in rules.exam.classify(finding):
            by_system.setdefault(item.system, {True: set(), False: set()})[item.normal].add(
                item.text
            )
    for system, sides in sorted(by_system.items()):
        normal, abnormal = sides[True], sides[False]
        # a statement listed as both (one phrase covering two systems) is not a conflict
        if normal and abnormal and not (normal & abnormal):
            found.append(
                _v(
                    "exam",
                    scenario,
                    f"{system}: {sorted(normal)[0]!r} with {sorted(abnormal)[0]!r}",
                )
            )
    codes = _documented(scenario, result)
    for codes_spec, systems in rules.exam.diagnoses:
        hit = next((c for c in codes if codes_spec.matches(c)), None)
        if hit is None:
            continue
        for system in sorted(systems):
            normal = by_system.get(system, {}).get(True)
            if normal:
                found.append(
                    _v(
                        "exam",
                        scenario,
                        f"{hit} documented with normal {system}: {sorted(normal)[0]!r}",
                    )
                )
    printed = _printed(scenario)
    present = {f.strip().lower() for f in findings}
    for bound in rules.exam.vitals:
        value = printed.get(bound.measure)
        if bound.finding in present and value is not None and not _in(value, bound.range):
            found.append(
                _v("exam", scenario, f"{bound.finding!r} with {bound.measure} {_fmt(value)}")
            )
    return found


def check_function(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """The functional status and living situation the note states agree with the cognitive
    and functional diagnoses (a patient with moderate dementia is not independent in ADLs)."""
    rules = _rules(rules)
    function = rules.function
    found = []
    codes = [f.code for f in scenario.problems if f.status in (*CODED, Status.UNCERTAIN)]
    codes += _icd_codes(result)
    low, high = function.bounds(codes)
    ranks = {level.id: level.rank for level in function.levels.values()}
    statements = []
    stated, living = getattr(scenario, "function", ""), getattr(scenario, "living", "")
    if stated:
        statements.append(stated)
    if living:
        statements.append(living)
    if text:
        lower = text.lower()
        for level in function.levels.values():
            for phrase in (*level.statements, *level.living):
                if phrase.lower() in lower and phrase not in statements:
                    statements.append(phrase)
    for statement in statements:
        level = next(
            (lv for lv in function.levels.values() if statement in (*lv.statements, *lv.living)),
            None,
        )
        if level is None:
            found.append(_v("function", scenario, f"unknown functional statement {statement!r}"))
            continue
        if not low <= ranks[level.id] <= high:
            found.append(
                _v(
                    "function",
                    scenario,
                    f"{statement!r} ({level.id}) with {', '.join(sorted(set(codes))[:4])}",
                )
            )
    for codes_spec, words in function.living:
        matched = living and any(codes_spec.matches(c) for c in codes)
        if matched and not any(w in living for w in words):
            found.append(_v("function", scenario, f"{living!r} with a living-situation code"))
    return found


# -- 3. medications fit the problems --------------------------------------------------------


def check_medications(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """No drug twice, no two drugs of one class (unless the class is taken in combination),
    no two classes of an exclusive group (ACE inhibitor with ARB), every drug classified,
    and the guideline-typical classes for each documented chronic condition."""
    rules = _rules(rules)
    drugs = rules.drugs
    found = []
    names: dict[str, str] = {}
    classes: dict[str, str] = {}
    for med in scenario.medications:
        matches = drugs.match(med.name)
        if not matches:
            found.append(_v("medications", scenario, f"{med.name!r} has no drug class"))
            continue
        for match in matches:
            multiple = all(drugs.classes[c].multiple for c in match.classes)
            if match.name in names and not multiple:
                found.append(
                    _v(
                        "medications",
                        scenario,
                        f"{match.name} twice: {names[match.name]!r} and {med.name!r}",
                    )
                )
                continue
            names[match.name] = med.name
            for class_id in match.classes:
                duplicate = class_id in classes and classes[class_id] != med.name
                if duplicate and not drugs.classes[class_id].multiple:
                    found.append(
                        _v(
                            "medications",
                            scenario,
                            f"two {drugs.classes[class_id].label}s: "
                            f"{classes[class_id]!r} and {med.name!r}",
                        )
                    )
                classes.setdefault(class_id, med.name)
    for group in drugs.groups:
        present = sorted(group.classes & set(classes))
        if len(present) > 1:
            found.append(
                _v(
                    "medications",
                    scenario,
                    f"{' with '.join(drugs.classes[c].label for c in present)}: "
                    f"{', '.join(repr(classes[c]) for c in present)}",
                )
            )
    age = scenario.encounter.patient.age
    for fact in scenario.problems:
        if fact.concept is None or fact.status is not Status.CHRONIC:
            continue
        for therapy in drugs.therapy:
            if therapy.concept != fact.concept.id or age < therapy.min_age:
                continue
            if therapy.forms and fact.code not in therapy.forms:
                continue
            for options in therapy.requires:
                if not any(option in classes for option in options):
                    found.append(
                        _v(
                            "medications",
                            scenario,
                            f"{fact.code} ({fact.concept.id}) without "
                            f"{' or '.join(drugs.classes[o].label for o in options)}",
                        )
                    )
    return found


# -- 4. ages, dates, visit kinds ------------------------------------------------------------


def check_age(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """The age is the age on the date of service from the date of birth; the encounter
    record carries the date of service; an annual wellness visit is for 65 and over."""
    found = []
    day = _visit_date(scenario)
    age = scenario.encounter.patient.age
    try:
        dob = dt.date.fromisoformat(scenario.patient.dob)
    except ValueError:
        dob = None
    if day is None or dob is None:
        found.append(_v("age", scenario, "date of service or birth missing"))
    else:
        if _age_on(dob, day) != age:
            found.append(
                _v(
                    "age",
                    scenario,
                    f"age {age} but born {dob} and seen {day} ({_age_on(dob, day)})",
                )
            )
        if scenario.encounter.date != day:
            found.append(
                _v("age", scenario, f"encounter.date {scenario.encounter.date} is not {day}")
            )
    if scenario.encounter.visit.kind is VisitKind.ANNUAL_WELLNESS and age < 65:
        found.append(_v("age", scenario, f"annual wellness visit at age {age}"))
    return found


# -- 5. injuries and complications belong to injury visits ----------------------------------


def check_injury(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Injury, poisoning and complication codes only in the visit for that injury (its
    reason) or its follow-up, documented as active (never a chronic problem), with the 7th
    character the visit calls for; a sequela with its residual condition; external causes
    only with an injury."""
    rules = _rules(rules)
    facts = rules.encounters
    found = []
    kind = scenario.encounter.visit.kind
    first = reason(scenario)
    reason_is_injury = first is not None and _is_injury(first[1], facts)
    injuries = 0
    for index, fact in enumerate(scenario.problems):
        if fact.status not in (*CODED, Status.UNCERTAIN):
            continue
        external = facts.external_causes.matches(fact.code)
        if not (_is_injury(fact, facts) or external):
            continue
        injuries += not external
        if fact.status is Status.CHRONIC:
            found.append(_v("injury", scenario, f"{fact.code} documented as a chronic problem"))
        if not reason_is_injury:
            found.append(
                _v(
                    "injury",
                    scenario,
                    f"{fact.code} in a visit for {first[1].code if first else 'nothing'}",
                )
            )
        problem = scenario.encounter.problems[index]
        if fact.episode is not None:
            allowed = facts.episodes.get(kind.value, ())
            if fact.episode.value not in allowed:
                found.append(
                    _v(
                        "injury",
                        scenario,
                        f"{fact.code} {fact.episode.value} encounter in a {kind.value} visit",
                    )
                )
            if fact.episode is Episode.SEQUELA and not problem.residual and not external:
                found.append(_v("injury", scenario, f"{fact.code} sequela without its residual"))
    for fact in scenario.problems:
        coded = fact.status in (*CODED, Status.UNCERTAIN)
        if coded and facts.external_causes.matches(fact.code) and not injuries:
            found.append(_v("injury", scenario, f"external cause {fact.code} with no injury"))
    for code in _icd_codes(result):
        if facts.is_injury(code) and not reason_is_injury:
            found.append(_v("injury", scenario, f"gold code {code} outside an injury visit"))
            break
    return found


def _is_injury(fact: ProblemFact, facts) -> bool:
    if facts.is_injury(fact.code):
        return True
    return bool(fact.concept and fact.concept.domain == "injury" and fact.concept.episodes)


def check_acute_chronic(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """An acute problem is never documented as chronic: not a concept the catalog knows only
    as acute, not a code that is acute by nature or title, not an exacerbation."""
    rules = _rules(rules)
    found = []
    for fact in scenario.problems:
        if fact.status is not Status.CHRONIC:
            continue
        state = _state(fact, rules)
        if fact.concept is not None and not fact.concept.statuses.get(Status.CHRONIC):
            found.append(
                _v("acute_chronic", scenario, f"{fact.code} ({fact.concept.id}) called chronic")
            )
        elif rules.encounters.is_acute_code(fact.code):
            found.append(_v("acute_chronic", scenario, f"acute {fact.code} called chronic"))
        elif state is not None and state.acute:
            found.append(_v("acute_chronic", scenario, f"{fact.code} exacerbation called chronic"))
    if text and re.search(r"\bchronic,? acute\b|\bacute\b[^.\n]{0,60}, chronic\b", text, re.I):
        match = re.search(r"\bchronic,? acute\b|\bacute\b[^.\n]{0,60}, chronic\b", text, re.I)
        found.append(_v("acute_chronic", scenario, f"text says {match.group(0)!r}"))
    return found


def check_exclusive_conditions(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """No two conditions one patient cannot have together (class 1 obesity and cachexia,
    type 1 and type 2 diabetes)."""
    rules = _rules(rules)
    found = []
    present = {
        f.concept.id
        for f in scenario.problems
        if f.concept and f.status in (*CODED, Status.UNCERTAIN)
    }
    for concepts, _source in rules.encounters.exclusive:
        both = sorted(present & concepts)
        if len(both) > 1:
            found.append(_v("conditions", scenario, f"{' and '.join(both)} together"))
    return found


# -- 6. words -------------------------------------------------------------------------------


def check_lay_phrases(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Patient words (the catalog's lay phrases) appear only as quotes: the assessment names
    the condition in clinical terms. Needs the text."""
    if not text:
        return []
    quoted = _quoted_spans(text)
    found = []
    every = {  # the clinical phrases of all the note's facts: a lay phrase inside one is fine
        p.lower()
        for f in scenario.problems
        for s in ("formal", "abbreviated")
        for p in f.phrases.get(s, ())
    }
    covered = [(m.start(), m.end()) for p in every for m in _phrase_regex(p).finditer(text)]
    for fact in scenario.problems:
        if fact.concept is None or fact.status not in (*CODED, Status.UNCERTAIN):
            continue
        clinical = [p.lower() for s in ("formal", "abbreviated") for p in fact.phrases.get(s, ())]
        for phrase in fact.phrases.get("lay", ()):
            if not phrase.strip() or any(phrase.lower() in c for c in clinical):
                continue  # a lay phrase that is also the clinical term
            for match in _phrase_regex(phrase).finditer(text):
                inside = any(a < match.start() and match.end() < b for a, b in quoted)
                inside = inside or any(
                    a <= match.start() < b or a < match.end() <= b for a, b in covered
                )
                if not inside:
                    found.append(
                        _v("lay_phrases", scenario, f"patient words {match.group(0)!r} unquoted")
                    )
                    break
    return found


def check_new_patient(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """A new patient (or an initial wellness visit) only when the note says so, and the note
    says so only then; never in the emergency department or a discharge."""
    rules = _rules(rules)
    visit = scenario.encounter.visit
    found = []
    if visit.new_patient and visit.kind in HOSPITAL_KINDS:
        found.append(_v("new_patient", scenario, f"new patient in a {visit.kind.value} visit"))
    if text:
        lower = text.lower()
        said = [m for m in rules.encounters.new_patient_markers if m.lower() in lower]
        if visit.new_patient and not said:
            found.append(_v("new_patient", scenario, "coded new patient; the note does not say so"))
        if not visit.new_patient and said:
            found.append(
                _v("new_patient", scenario, f"established patient; the note says {said[0]!r}")
            )
    return found


# -- 7. procedures: vaccines ----------------------------------------------------------------


def check_vaccines(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Vaccine products valid on the date of service (no quadrivalent influenza vaccine after
    2024-06-30); a vaccine with its administration and an immunization (Z23) problem; one
    first-vaccine administration code."""
    from medcode.policy.procedures import shipped_procedure_rules
    from medcode.terminology import cpt

    claim = shipped_procedure_rules()
    table = cpt.procedure_table()
    found = []
    day = _visit_date(scenario)
    codes = [p.code for p in scenario.encounter.procedures]
    for code in codes:
        validity = claim.validity.get(code)
        if validity and day and day > validity.valid_until:
            found.append(
                _v(
                    "vaccines",
                    scenario,
                    f"{code} given {day}, after {validity.valid_until}: {validity.replaced_by}",
                )
            )
    administration = [c for c in codes if c in claim.vaccine_administration]
    products = [
        c
        for c in codes
        if table[c].kind == "immunisation" and c not in claim.vaccine_administration
    ]
    documented = any(
        f.code == claim.vaccine_diagnosis and f.status in CODED for f in scenario.problems
    )
    if products and not administration:
        found.append(_v("vaccines", scenario, f"vaccine {products[0]} without administration"))
    if administration and not products and not any(c == "90480" for c in administration):
        found.append(
            _v("vaccines", scenario, f"administration {administration[0]} without a vaccine")
        )
    if (products or administration) and not documented:
        found.append(
            _v("vaccines", scenario, "vaccine given without an immunization problem (Z23)")
        )
    if documented and not (products or administration):
        found.append(
            _v("vaccines", scenario, "immunization (Z23) documented with no vaccine given")
        )
    first_admin = [c for c in administration if c in ("90460", "90471", "90473")]
    if len(first_admin) > 1:
        found.append(
            _v("vaccines", scenario, f"two first-vaccine administrations: {', '.join(first_admin)}")
        )
    return found


SINGLE_NOTE_CHECKS = (
    check_visit_reason,
    check_vitals,
    check_bmi,
    check_exam,
    check_function,
    check_medications,
    check_age,
    check_injury,
    check_acute_chronic,
    check_exclusive_conditions,
    check_lay_phrases,
    check_new_patient,
    check_vaccines,
)


def check_all(
    scenario: Scenario,
    result: CodingResult,
    text: str | None = None,
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Every single-note rule."""
    rules = _rules(rules)
    found: list[Violation] = []
    for check in SINGLE_NOTE_CHECKS:
        found += check(scenario, result, text, rules)
    return found


# -- 8. one patient across notes ------------------------------------------------------------


def check_patient(
    notes: Sequence[tuple[Scenario, CodingResult]], rules: ClinicalRules | None = None
) -> list[Violation]:
    """One patient's notes, in order of service: the same identity and date of birth; one
    clinic and one hospital; a medication list that changes only as the notes document
    (short courses end on their own); a history that does not change (family history
    relatives, a chronic condition never denied or resolved later); a new patient only at the
    first clinic visit."""
    rules = _rules(rules)
    found: list[Violation] = []
    ordered = sorted(notes, key=lambda n: (n[0].visit_date, n[0].encounter.id))
    if not ordered:
        return found
    first = ordered[0][0]
    facilities: dict[str, str] = {}
    relatives: dict[str, str] = {}
    chronic: set[str] = set()
    seen_clinic = False
    previous = None
    for scenario, _result in ordered:
        who = (scenario.patient.name, scenario.patient.dob, scenario.patient.mrn)
        if who != (first.patient.name, first.patient.dob, first.patient.mrn):
            found.append(
                _v("continuity", scenario, f"identity {who} differs from {first.patient.name}")
            )
        if scenario.encounter.patient.sex != first.encounter.patient.sex:
            found.append(_v("continuity", scenario, "sex differs between notes"))
        kind = rules.encounters.facility_kind(scenario.facility)
        key = kind.kind if kind else "unknown"
        if facilities.setdefault(key, scenario.facility) != scenario.facility:
            found.append(
                _v(
                    "continuity",
                    scenario,
                    f"{key} {scenario.facility!r} after {facilities[key]!r}",
                )
            )
        visit = scenario.encounter.visit
        if scenario.encounter.setting is Setting.OUTPATIENT:
            # an annual wellness visit's "new" is the initial AWV (G0438), not a new patient
            initial_awv = visit.kind is VisitKind.ANNUAL_WELLNESS
            if visit.new_patient and seen_clinic and not initial_awv:
                found.append(
                    _v("continuity", scenario, "new patient after an earlier clinic visit")
                )
            # (a consultant is another practice)
            seen_clinic = seen_clinic or visit.kind is not VisitKind.CONSULT
        for fact in scenario.problems:
            if fact.concept is None:
                continue
            cid = fact.concept.id
            family = fact.status is Status.FAMILY_HISTORY and fact.relative
            if family and relatives.setdefault(cid, fact.relative) != fact.relative:
                found.append(
                    _v(
                        "continuity",
                        scenario,
                        f"family history of {cid} in {fact.relative}, before in {relatives[cid]}",
                    )
                )
            if fact.status is Status.CHRONIC:
                chronic.add(cid)
        for fact in scenario.problems:
            if (
                fact.concept is not None
                and fact.concept.id in chronic
                and fact.status
                in (Status.NEGATED, Status.RULED_OUT, Status.RESOLVED, Status.HISTORY)
            ):
                found.append(
                    _v(
                        "continuity",
                        scenario,
                        f"{fact.concept.id} is a chronic condition of this patient but "
                        f"documented {fact.status.value}",
                    )
                )
        # a procedure note lists what is given today, not the long-term list
        if visit.kind is not VisitKind.PROCEDURE:
            if previous is not None:
                found += _medication_changes(previous, scenario)
            previous = scenario
    return found


def _long_term(scenario: Scenario) -> set[str]:
    return {m.name for m in scenario.medications if not getattr(m, "course", False)}


def _medication_changes(before: Scenario, after: Scenario) -> list[Violation]:
    changes = getattr(after, "medication_changes", []) or []
    started = {c.name for c in changes if c.action == "start"}
    stopped = {c.name for c in changes if c.action == "stop"}
    found = []
    old, new = _long_term(before), _long_term(after)
    for name in sorted(new - old - started):
        found.append(_v("continuity", after, f"{name!r} on the list with no documented start"))
    for name in sorted(old - new - stopped):
        found.append(
            _v("continuity", after, f"{name!r} gone from the list with no documented stop")
        )
    return found


def check_corpus(
    notes: Iterable[tuple[Scenario, CodingResult, str | None]],
    rules: ClinicalRules | None = None,
) -> list[Violation]:
    """Every rule over a sample: each note, then each patient's notes together."""
    rules = _rules(rules)
    found: list[Violation] = []
    by_patient: dict[str, list[tuple[Scenario, CodingResult]]] = {}
    for scenario, result, text in notes:
        found += check_all(scenario, result, text, rules)
        by_patient.setdefault(scenario.patient_id, []).append((scenario, result))
    for patient_notes in by_patient.values():
        found += check_patient(patient_notes, rules)
    return found


RULES = (
    "visit_reason",
    "vitals",
    "bmi",
    "exam",
    "function",
    "medications",
    "age",
    "injury",
    "acute_chronic",
    "conditions",
    "lay_phrases",
    "new_patient",
    "vaccines",
    "continuity",
)
