"""One patient across notes, and the clinical consistency the sampler keeps within a note.

:class:`PatientRecord` is what stays the same from one encounter to the next: identity and
date of birth, home clinic and hospital, body size, the long-term medication list (changed
only by documented starts and stops), history, family history and functional status. The
helpers draw what a note prints so that it agrees with the facts: medication lists without
duplicate classes (:class:`MedicationList`), vitals and labs inside the ranges the diagnoses
and their control states call for (:func:`draw_measurements`), an exam that does not
contradict itself or the diagnoses (:func:`choose_exam`). The tables come from
:mod:`medcode.synth.clinical`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import random
import re
from dataclasses import dataclass, field
from functools import cache

from medcode.records import Episode, Status, VisitKind
from medcode.synth.catalog import Catalog, Concept, Form, Measure
from medcode.synth.clinical import ClinicalRules, Drugs
from medcode.synth.scenario import Identity, ProblemFact, Result

CODED = (Status.ACTIVE, Status.CHRONIC)

# A prescription for a limited time (a course), not a long-term medicine.
_COURSE = re.compile(
    r"\bfor \d+ (?:day|week|month)s?\b|single dose|\bonce\b|taper|dose pack|\bIV\b|infusion"
    r"|per (?:protocol|pharmacy)|bolus|repeat in|days? 1|chewed|weekly induction|"
    r"single application|\bthen\b",
    re.IGNORECASE,
)


@cache
def is_course(name: str) -> bool:
    """Whether a medication line is a course (cached: a pure function of the text)."""
    return bool(_COURSE.search(name))


def age_on(dob: dt.date, day: dt.date) -> int:
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def birth_date(rng: random.Random, age: int, day: dt.date) -> dt.date:
    """A date of birth that makes the patient ``age`` on ``day``."""
    try:
        latest = day.replace(year=day.year - age)
    except ValueError:  # 29 February
        latest = day.replace(year=day.year - age, day=28)
    return latest - dt.timedelta(days=rng.randrange(365))


@dataclass
class Condition:
    concept: Concept
    form: Form
    side: str | None


@dataclass
class HistoryItem:
    concept: Concept
    status: Status
    form: Form
    side: str | None
    relative: str | None


@dataclass
class PatientRecord:
    """What one patient keeps across notes (see the module docstring)."""

    id: str
    sex: str
    dob: dt.date
    identity: Identity
    conditions: list[Condition]
    clinic: str
    hospital: str
    height: float
    bmi: float
    medications: list[str]  # the long-term list, in the order started
    history: list[HistoryItem]
    function: str
    living: str
    next_date: dt.date
    provider: str = ""
    seen_clinic: bool = False
    awv_done: bool = False
    pending_injury: Condition | None = None
    visits: int = 0
    level: str = "independent"
    extra: dict = field(default_factory=dict)

    def condition_ids(self) -> set[str]:
        return {c.concept.id for c in self.conditions}


def documented_codes(facts: list[ProblemFact], kind: VisitKind) -> list[str]:
    """The codes the engine will report for the problems: confirmed problems, the symptoms
    of uncertain ones, and in a hospital stay the uncertain diagnoses themselves (II.H)."""
    inpatient = kind in (
        VisitKind.HOSPITAL_DISCHARGE,
        VisitKind.HOSPITAL_ADMISSION,
        VisitKind.HOSPITAL_SUBSEQUENT,
    )
    codes = []
    for fact in facts:
        if fact.status in CODED or (fact.status is Status.UNCERTAIN and inpatient):
            codes.append(fact.code)
        if fact.status is Status.UNCERTAIN:
            codes.extend(fact.symptoms)
    return codes


# -- medications ----------------------------------------------------------------------------


class MedicationList:
    """A medication list that refuses a drug already on it, a second drug of a class taken
    alone, or a class exclusive with one on the list."""

    def __init__(self, drugs: Drugs, names: list[str] | None = None) -> None:
        self.drugs = drugs
        self.names: list[str] = []
        for name in names or ():
            self.names.append(name)

    def _profile(self, names: list[str]) -> tuple[set[str], set[str]]:
        generics, classes = set(), set()
        for line in names:
            for match in self.drugs.match(line):
                generics.add(match.name)
                classes.update(match.classes)
        return generics, classes

    def fits(self, name: str) -> bool:
        new = self.drugs.match(name)
        if not new or name in self.names:
            return False
        generics, classes = self._profile(self.names)
        new_classes = set()
        for match in new:
            multiple = all(self.drugs.classes[c].multiple for c in match.classes)
            if match.name in generics and not multiple:
                return False
            for class_id in match.classes:
                if class_id in classes and not self.drugs.classes[class_id].multiple:
                    return False
            new_classes.update(match.classes)
        for group in self.drugs.groups:
            both = (group.classes & new_classes) | (group.classes & classes)
            if len(both) > 1:
                return False
        return True

    def add(self, name: str) -> bool:
        if self.fits(name):
            self.names.append(name)
            return True
        return False

    def classes(self) -> set[str]:
        return self._profile(self.names)[1]


# -- measurements ---------------------------------------------------------------------------


def _intersect(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    low, high = max(a[0], b[0]), min(a[1], b[1])
    return (low, high) if low <= high else None


def _printable(measure: Measure, bounds: tuple[float, float]) -> bool:
    """Whether a value with the measure's decimals fits in the bounds."""
    step = 10**-measure.decimals
    return math.floor(bounds[1] / step + 1e-9) >= math.ceil(bounds[0] / step - 1e-9)


def draw_measurements(
    rng: random.Random,
    catalog: Catalog,
    rules: ClinicalRules,
    facts: list[ProblemFact],
    kind: VisitKind,
    patient: PatientRecord,
    routine_labs: list[str],
    must_extra: dict[str, tuple[float, float]] | None = None,
) -> tuple[list[Result], list[Result]] | None:
    """Vitals and labs for a note, or None when the documented facts ask for values no
    single measurement can have. Hard ranges: the diagnoses' thresholds, the control states,
    a discharge patient's vitals; the catalog's typical ranges narrow them where they fit."""
    discharge = kind is VisitKind.HOSPITAL_DISCHARGE
    codes = documented_codes(facts, kind)
    must: dict[str, tuple[float, float]] = dict(must_extra or {})

    def narrow(measure: str, bounds: tuple[float, float]) -> bool:
        current = must.get(measure, (-math.inf, math.inf))
        joined = _intersect(current, bounds)
        if joined is None:
            return False
        must[measure] = joined
        return True

    hits = rules.thresholds_hit(codes)
    for index, threshold in enumerate(rules.thresholds):
        if threshold.presentation_only and discharge:
            continue
        if index in hits and not narrow(threshold.measure, threshold.range):
            return None
    states = {}
    for fact in facts:
        if (
            fact.concept is None
            or not fact.control
            or fact.status not in (*CODED, Status.UNCERTAIN)
        ):
            continue
        state = rules.controls[fact.concept.id].states[fact.control]
        states[id(fact)] = state
        for measure, bounds in state.vitals.items():
            if discharge and state.acute:
                continue
            if not narrow(measure, bounds):
                return None
        for measure, bounds in state.labs.items():
            if not narrow(measure, bounds):
                return None
    if discharge:
        for measure, bounds in rules.discharge.vitals.items():
            unless = rules.discharge.unless.get(measure)
            if unless and any(unless.matches(code) for code in codes):
                continue
            if not narrow(measure, bounds):
                return None
    hard = set(must)

    wanted_labs: list[str] = []
    hints: list[tuple[str, tuple[float, float]]] = []
    for fact in facts:
        if fact.concept is None or fact.status not in (*CODED, Status.UNCERTAIN):
            continue
        state = states.get(id(fact))
        form = next((f for f in fact.concept.forms if f.code == fact.code), None)
        sources = []
        if state is not None:
            sources.append(({}, state.labs))
            wanted_labs += list(state.labs)
        if form is not None:
            sources.append((form.vitals, form.labs))
        acute_now = fact.status is Status.ACTIVE or (state is not None and state.acute)
        concept_vitals = {} if (discharge and acute_now) else fact.concept.vitals
        sources.append((concept_vitals, fact.concept.labs))
        for vitals, labs in sources:
            for measure, bounds in vitals.items():
                if state is not None and measure in state.vitals:
                    continue
                hints.append((measure, bounds))
            for measure, bounds in labs.items():
                wanted_labs.append(measure)
                if state is not None and measure in state.labs:
                    continue
                hints.append((measure, bounds))
    for name in routine_labs:
        wanted_labs.append(name)
    for measure, bounds in hints:
        joined = _intersect(must.get(measure, (-math.inf, math.inf)), bounds)
        if joined is not None:
            must[measure] = joined
            hard.discard(measure)

    vitals_wanted = [k for k in catalog.vitals if k != "pain_score" or "pain_score" in must]
    values: dict[str, Result] = {}
    for key in vitals_wanted:
        measure = catalog.vitals[key]
        if key in ("bmi", "weight_kg"):
            continue
        result = _draw(rng, measure, must.get(key), key in hard)
        if result is None:
            return None
        values[key] = result
    bmi_bounds = must.get("bmi", (-math.inf, math.inf))
    bmi = min(max(patient.bmi + rng.uniform(-0.4, 0.4), bmi_bounds[0]), bmi_bounds[1])
    if not _in_bounds(round(bmi, 1), bmi_bounds):
        return None
    bmi = round(bmi, 1)
    values["bmi"] = Result(catalog.vitals["bmi"], f"{bmi:.1f}", _flag(catalog.vitals["bmi"], bmi))
    weight = bmi * patient.height * patient.height
    values["weight_kg"] = Result(catalog.vitals["weight_kg"], f"{weight:.1f}", "")
    if kind is VisitKind.TELEHEALTH:  # no BMI is measured over video (weight is reported)
        del values["bmi"]
    vitals = [values[k] for k in catalog.vitals if k in values]
    labs = []
    for key in dict.fromkeys(wanted_labs):
        measure = catalog.labs[key]
        result = _draw(rng, measure, must.get(key), key in hard)
        if result is None:
            return None
        labs.append(result)
    return vitals, labs


def _in_bounds(value: float, bounds: tuple[float, float]) -> bool:
    return bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9


def _flag(measure: Measure, value: float) -> str:
    low, high = measure.normal
    return "H" if value > high else "L" if value < low else ""


def _draw(
    rng: random.Random, measure: Measure, bounds: tuple[float, float] | None, hard: bool
) -> Result | None:
    low, high = measure.normal
    if measure.values:  # categorical (urinalysis): abnormal when the range reaches above normal
        abnormal = bounds is not None and bounds[1] > high
        value = rng.choice(measure.values[1:] if abnormal else measure.values[:1])
        return Result(measure, value, "H" if abnormal else "")
    if bounds is None:
        bounds = (low, high)
    elif hard:  # a wide diagnostic range: keep to its part near the normal range
        width = high - low
        bounds = _intersect(bounds, (low - width, high + width)) or bounds
    if not _printable(measure, bounds):
        return None
    for _ in range(20):
        number = round(rng.uniform(*bounds), measure.decimals)
        if _in_bounds(number, bounds):
            break
    else:
        step = 10**-measure.decimals
        number = round(math.ceil(bounds[0] / step - 1e-9) * step, measure.decimals)
    text = f"{number:.{measure.decimals}f}"
    return Result(measure, text, _flag(measure, number))


# -- exam -----------------------------------------------------------------------------------


def choose_exam(
    rng: random.Random,
    rules: ClinicalRules,
    facts: list[ProblemFact],
    fillers: tuple[str, ...],
    vitals: list[Result],
    kind: VisitKind,
    count: int = 3,
) -> list[str]:
    """Exam findings: each documented problem's characteristic finding, then normal
    statements of other systems, never two statements of a system that contradict, never a
    normal statement a diagnosis rules out, never a finding the printed vitals contradict."""
    exam = rules.exam
    codes = documented_codes(facts, kind)
    barred = {
        system
        for spec, systems in exam.diagnoses
        if any(spec.matches(code) for code in codes)
        for system in systems
    }
    printed = {}
    for result in vitals:
        with contextlib.suppress(ValueError):
            printed[result.measure.key] = float(result.value)
    bounds = {b.finding: b for b in exam.vitals}
    chosen: list[str] = []
    state: dict[str, bool] = {}  # system -> normal?

    def accept(finding: str) -> bool:
        classes = exam.classify(finding)
        for item in classes:
            if item.normal and item.system in barred:
                return False
            if item.system in state and state[item.system] != item.normal:
                return False
        bound = bounds.get(finding.strip().lower())
        if bound is not None:
            value = printed.get(bound.measure)
            if value is not None and not (bound.range[0] <= value <= bound.range[1]):
                return False
        for item in classes:
            state[item.system] = item.normal
        chosen.append(finding)
        return True

    own = [f.concept.exam[0] for f in facts if f.concept and f.status in CODED and f.concept.exam]
    own = list(dict.fromkeys(own))
    abnormal_first = sorted(own, key=lambda e: all(i.normal for i in exam.classify(e)))
    for finding in abnormal_first:
        accept(finding)
    pool = [f for f in fillers if f not in chosen]
    rng.shuffle(pool)
    added = 0
    for finding in pool:
        if added == count:
            break
        if accept(finding):
            added += 1
    return chosen


def general_statements(rules: ClinicalRules, exam: list[str], codes: list[str]) -> dict[str, bool]:
    """Which of the templates' own general statements the note may print: 'distress' (no
    acute distress, well appearing), 'oriented' (alert and oriented), 'breathing' (no
    increased work of breathing)."""
    table = rules.exam
    barred = {
        system
        for spec, systems in table.diagnoses
        if any(spec.matches(code) for code in codes)
        for system in systems
    }
    abnormal = {i.system for e in exam for i in table.classify(e) if not i.normal}
    blocked = barred | abnormal
    return {
        "distress": "general" not in blocked,
        "oriented": "orientation" not in blocked,
        "breathing": "work_of_breathing" not in blocked,
    }


# -- functional status ----------------------------------------------------------------------


def function_level(
    rng: random.Random, rules: ClinicalRules, codes: list[str], age: int, current: str | None
) -> str | None:
    """The functional level for the documented codes (None when they contradict each
    other): the current one when it fits, else the lowest the codes allow."""
    function = rules.function
    low, high = function.bounds(codes)
    if low > high:
        return None
    ranks = {level.id: level.rank for level in function.levels.values()}
    if current is not None and low <= ranks[current] <= high:
        return current
    ordered = sorted(function.levels.values(), key=lambda lv: lv.rank)
    rank = low
    if rank == 0 and high >= 1 and age >= 85 and rng.random() < 0.25:
        rank = 1
    return ordered[rank].id


def function_words(
    rng: random.Random, rules: ClinicalRules, level: str, codes: list[str]
) -> tuple[str, str]:
    """A functional-status statement and a living situation for the level."""
    entry = rules.function.levels[level]
    living = list(entry.living)
    for spec, words in rules.function.living:
        if any(spec.matches(code) for code in codes):
            living = [s for s in living if any(w in s for w in words)] or living
    return rng.choice(entry.statements), rng.choice(living)


def episode_for(
    kind: VisitKind, rules: ClinicalRules, options: tuple[Episode, ...]
) -> list[Episode]:
    allowed = rules.encounters.episodes.get(kind.value, ())
    return [e for e in options if e.value in allowed]
