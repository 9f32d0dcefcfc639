"""The story around the coded facts of hospital and ED notes, from
``data/synth/hospital_course.yaml``: a discharge summary's day-by-day hospital course (length of
stay, consults, response to treatment, disposition, instructions, follow-up), an ED note's
course and disposition, an H&P's past surgical and social history, and the copied-forward
problem list some families print.

Everything here is text around the scenario's own facts: problems are named only by the
phrases the note already marks (or by pronouns), drugs only from the medication list, results
only as printed; consults are named by specialty. Draws come from a generator derived from the
note's (:func:`medcode.synth.phrasings.derived_rng`), so the facts and codes do not depend on
them. Nothing is read at import: :func:`shipped_course` loads (and validates) the file once.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import DataFileError
from medcode.records import Status
from medcode.synth.specialties import GENERALIST, shipped_specialties

_PRONOUNS = frozenset({"pronoun", "Pronoun", "possessive", "Possessive", "obj"})
_CURRENT = (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN)
# the placeholders each list may use (besides the pronouns)
_SLOTS: dict[str, frozenset[str]] = {
    "hospital.admit": frozenset({"x"}),
    "hospital.admit_lab": frozenset({"lab"}),
    "hospital.admit_drug": frozenset({"drug"}),
    "hospital.principal": frozenset({"x"}),
    "hospital.drug_day": frozenset({"drug"}),
    "hospital.exam_day": frozenset({"finding"}),
    "hospital.secondary": frozenset({"x"}),
    "hospital.consult": frozenset({"specialty", "Specialty", "day"}),
    "hospital.day_labels": frozenset({"day"}),
    "hospital.group_labels": frozenset({"day", "last"}),
    "hospital.discharge_labels": frozenset({"day"}),
    "instructions.followup_specialty": frozenset({"specialty", "Specialty"}),
    "instructions.reconcile_kept": frozenset({"kept"}),
    "instructions.reconcile_started": frozenset({"started"}),
    "instructions.reconcile_stopped": frozenset({"stopped"}),
    "ed.result": frozenset({"lab"}),
    "ed.drug": frozenset({"drug"}),
    "surgical.forms": frozenset({"name", "year"}),
    "social.tobacco": frozenset({"x"}),
    "social.occupation_forms": frozenset({"job", "Job"}),
    "social.marital_forms": frozenset({"status", "Status"}),
    "social.living_forms": frozenset({"living"}),
}
_NO_PRONOUNS = ("hospital.day_labels", "hospital.group_labels", "hospital.discharge_labels")


@dataclass(frozen=True, slots=True)
class Operation:
    name: str
    sex: str | None
    min_age: int
    max_age: int
    avoid: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class CourseData:
    path: str
    stay: tuple[tuple[int, ...], tuple[float, ...]]
    narrated: int
    texts: dict[str, tuple[str, ...]]  # "hospital.admit" -> fragments
    specialties: dict[str, str]
    consult_rate: float
    snf_share: float
    diets: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    not_given: tuple[str, ...]
    surgery_rates: tuple[tuple[int, float], ...]
    operations: tuple[Operation, ...]
    codes: dict[str, tuple[str, ...]]  # social.tobacco_codes, ...
    occupations: dict[str, tuple[str, ...]]
    marital: dict[str, tuple[str, ...]]
    list_families: frozenset[str]
    list_rate: float
    years_back: tuple[int, int]
    not_labs: frozenset[str] = frozenset()
    not_ambulatory: tuple[str, ...] = ()

    def text(self, key: str) -> tuple[str, ...]:
        return self.texts[key]

    def fragments(self) -> list[tuple[str, str, int]]:
        """Every fragment with its list and line (the fact-lock tests read these)."""
        found = [(k, t, getattr(t, "line", 0)) for k, v in self.texts.items() for t in v]
        found += [("surgical.operations", o.name, 0) for o in self.operations]
        for key, values in (*self.occupations.items(), *self.marital.items()):
            found += [(f"social.{key}", v, getattr(v, "line", 0)) for v in values]
        return found


def _slots(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: object, problem: str, parent: object = None) -> DataFileError:
        line = getattr(node, "line", None) or getattr(parent, "line", None)
        return DataFileError(self.path, line or None, problem)

    def mapping(self, node: object, where: str, parent: object = None) -> LineDict:
        if not isinstance(node, dict) or not node:
            raise self.fail(node, f"{where}: expected a non-empty mapping", parent)
        return node  # type: ignore[return-value]

    def source(self, node: LineDict, where: str) -> str:
        value = node.get("source")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"{where}: missing or empty 'source'")
        return value

    def rate(self, node: LineDict, key: str, where: str) -> float:
        value = node.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise self.fail(node, f"{where}.{key}: expected a number between 0 and 1")
        return float(value)

    def texts(self, node: object, where: str, parent: object, slots: frozenset[str]) -> tuple:
        if not isinstance(node, list) or not node:
            raise self.fail(node, f"{where}: expected a non-empty list of strings", parent)
        seen = set()
        for item in node:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(item, f"{where}: {item!r} is not a string", parent)
            if item in seen:
                raise self.fail(item, f"{where}: duplicate {item!r}", parent)
            seen.add(item)
            try:
                unknown = _slots(item) - slots
            except ValueError as exc:
                problem = f"{where}: bad placeholder in {item!r} ({exc})"
                raise self.fail(item, problem, parent) from None
            if unknown:
                raise self.fail(
                    item,
                    f"{where}: unknown placeholder(s) {', '.join(sorted(unknown))} in {item!r}",
                    parent,
                )
        return tuple(node)


def load_course(path: str | Path | None = None) -> CourseData:
    """Load and validate the file; every error names the file, the line and the problem."""
    path = Path(path or package_data("synth/hospital_course.yaml"))
    data = load_yaml(path, strings=True)
    reader = _Reader(path)
    data = reader.mapping(data, "file")
    expected = (
        "length_of_stay",
        "hospital",
        "consults",
        "disposition",
        "instructions",
        "ed",
        "surgical",
        "social",
        "problem_list",
    )
    for key in data:
        if key not in expected:
            raise reader.fail(data, f"unknown section {key!r}; one of {', '.join(expected)}")
    sections = {}
    for key in expected:
        if key not in data:
            raise reader.fail(data, f"missing section {key!r}")
        sections[key] = reader.mapping(data[key], key, data)
    for key in ("length_of_stay", "consults", "disposition", "surgical", "social", "problem_list"):
        reader.source(sections[key], key)

    texts: dict[str, tuple[str, ...]] = {}

    def collect(node: LineDict, prefix: str, skip: tuple[str, ...] = ()) -> None:
        for name, value in node.items():
            where = f"{prefix}.{name}"
            if name in skip or name == "source":
                continue
            if isinstance(value, dict):
                collect(reader.mapping(value, where, node), where)
                continue
            key = where if where in _SLOTS else prefix if prefix in _SLOTS else where
            allowed = _SLOTS.get(key, frozenset())
            if key not in _NO_PRONOUNS:
                allowed = allowed | _PRONOUNS
            texts[where] = reader.texts(value, where, node, allowed)

    stay = sections["length_of_stay"]
    days = reader.mapping(stay.get("days"), "length_of_stay.days", stay)
    nights, weights = [], []
    for night, weight in days.items():
        if not isinstance(night, int) or night < 1:
            raise reader.fail(days, f"length_of_stay.days: {night!r} is not a whole number >= 1")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            raise reader.fail(days, f"length_of_stay.days.{night}: weight must be above 0")
        nights.append(night)
        weights.append(float(weight))
    narrated = stay.get("narrated")
    if not isinstance(narrated, int) or narrated < 3:
        raise reader.fail(stay, "length_of_stay.narrated: expected a whole number >= 3")

    hospital = sections["hospital"]
    not_labs = hospital.get("not_labs")
    if not isinstance(not_labs, list) or not all(isinstance(k, str) for k in not_labs):
        raise reader.fail(hospital, "hospital.not_labs: expected a list of measure keys")
    collect(hospital, "hospital", skip=("not_labs",))
    consults = sections["consults"]
    if "specialties" in consults:
        raise reader.fail(
            consults, "consults.specialties: the specialties live in synth/specialties.yaml"
        )
    dispo = sections["disposition"]
    collect(dispo, "disposition", skip=("snf_share",))
    instructions = sections["instructions"]
    diet = reader.mapping(instructions.get("diet"), "instructions.diet", instructions)
    collect(instructions, "instructions", skip=("diet",))
    texts["instructions.diet.default"] = reader.texts(
        diet.get("default"), "instructions.diet.default", diet, _PRONOUNS
    )
    diets = []
    for index, item in enumerate(diet.get("by_code") or ()):
        where = f"instructions.diet.by_code[{index}]"
        item = reader.mapping(item, where, diet)
        codes = item.get("codes")
        if not isinstance(codes, list) or not codes:
            raise reader.fail(item, f"{where}: expected a list of code prefixes under 'codes'")
        diets.append(
            (
                tuple(str(c).replace(".", "").upper() for c in codes),
                reader.texts(item.get("text"), f"{where}.text", item, _PRONOUNS),
            )
        )
        texts[f"{where}.text"] = diets[-1][1]
    ed = sections["ed"]
    not_given = ed.get("not_given")
    if not isinstance(not_given, list) or not all(isinstance(w, str) for w in not_given):
        raise reader.fail(ed, "ed.not_given: expected a list of words")
    not_walking = ed.get("not_ambulatory")
    if not isinstance(not_walking, list) or not all(isinstance(w, str) for w in not_walking):
        raise reader.fail(ed, "ed.not_ambulatory: expected a list of words")
    collect(ed, "ed", skip=("not_given", "not_ambulatory"))

    surgical = sections["surgical"]
    rates = reader.mapping(surgical.get("rate"), "surgical.rate", surgical)
    surgery_rates = []
    for age in rates:
        if not isinstance(age, int):
            raise reader.fail(rates, f"surgical.rate: {age!r} is not an age")
        surgery_rates.append((age, reader.rate(rates, age, "surgical.rate")))
    operations = []
    raw_ops = surgical.get("operations")
    if not isinstance(raw_ops, list) or not raw_ops:
        raise reader.fail(surgical, "surgical.operations: expected a non-empty list")
    allowed_keys = {"name", "sex", "min_age", "max_age", "avoid", "reason"}
    for index, item in enumerate(raw_ops):
        where = f"surgical.operations[{index}]"
        item = reader.mapping(item, where, surgical)
        unknown = set(item) - allowed_keys
        if unknown:
            raise reader.fail(item, f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("name", "reason"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise reader.fail(item, f"{where}: missing {key!r} (a short reason is required)")
        sex = item.get("sex")
        if sex not in (None, "F", "M"):
            raise reader.fail(item, f"{where}: sex must be F or M")
        operations.append(
            Operation(
                str(item["name"]),
                sex,
                int(item.get("min_age", 18)),
                int(item.get("max_age", 120)),
                tuple(str(c).replace(".", "").upper() for c in item.get("avoid") or ()),
                str(item["reason"]),
            )
        )
    texts["surgical.forms"] = reader.texts(
        surgical.get("forms"), "surgical.forms", surgical, _SLOTS["surgical.forms"]
    )

    social = sections["social"]
    codes = {}
    for key in ("tobacco_codes", "alcohol_codes", "drug_codes"):
        value = social.get(key)
        if not isinstance(value, list) or not value:
            raise reader.fail(social, f"social.{key}: expected a list of code prefixes")
        codes[key] = tuple(str(c).replace(".", "").upper() for c in value)
    tobacco = reader.mapping(social.get("tobacco"), "social.tobacco", social)
    for status in ("current", "former", "denies", "never"):
        texts[f"social.tobacco.{status}"] = reader.texts(
            tobacco.get(status), f"social.tobacco.{status}", tobacco, _SLOTS["social.tobacco"]
        )
    for key in ("alcohol", "drugs"):
        texts[f"social.{key}"] = reader.texts(social.get(key), f"social.{key}", social, _PRONOUNS)
    for key in ("occupation_forms", "marital_forms", "living_forms"):
        texts[f"social.{key}"] = reader.texts(
            social.get(key), f"social.{key}", social, _SLOTS[f"social.{key}"]
        )
    groups = {}
    kinds = (
        ("occupations", ("working", "retired", "young")),
        ("marital", ("spouse", "alone", "other")),
    )
    for key, names in kinds:
        node = reader.mapping(social.get(key), f"social.{key}", social)
        groups[key] = {
            name: reader.texts(node.get(name), f"social.{key}.{name}", node, frozenset())
            for name in names
        }

    plist = sections["problem_list"]
    years = plist.get("years_back")
    if not (isinstance(years, list) and len(years) == 2 and 1 <= years[0] <= years[1]):
        raise reader.fail(plist, "problem_list.years_back: expected [low, high], 1 <= low <= high")
    texts["problem_list.headings"] = reader.texts(
        plist.get("headings"), "problem_list.headings", plist, frozenset()
    )
    required = (
        "hospital.admit",
        "hospital.progress",
        "hospital.last_day",
        "disposition.home",
        "ed.reassess",
        "ed.precautions",
    )
    for key in required:
        if key not in texts:
            raise reader.fail(data, f"missing list {key!r}")
    return CourseData(
        path=str(path),
        stay=(tuple(nights), tuple(weights)),
        narrated=narrated,
        texts=texts,
        # the specialty of each catalog domain (synth/specialties.yaml); a generalist's
        # domain is the admitting team's own, not a consult
        specialties={d: n for d, n in shipped_specialties().items() if n != GENERALIST},
        consult_rate=reader.rate(consults, "rate", "consults"),
        snf_share=reader.rate(dispo, "snf_share", "disposition"),
        diets=tuple(diets),
        not_given=tuple(str(w).lower() for w in not_given),
        surgery_rates=tuple(sorted(surgery_rates)),
        operations=tuple(operations),
        codes=codes,
        occupations=groups["occupations"],
        marital=groups["marital"],
        list_families=frozenset(str(f) for f in plist.get("families") or ()),
        list_rate=reader.rate(plist, "rate", "problem_list"),
        years_back=(int(years[0]), int(years[1])),
        not_labs=frozenset(str(k) for k in not_labs),
        not_ambulatory=tuple(str(w).lower() for w in not_walking),
    )


@cache
def shipped_course() -> CourseData:
    return load_course()


def _compact(code: str) -> str:
    return code.replace(".", "").upper()


def _matches(code: str, prefixes: tuple[str, ...]) -> bool:
    return _compact(code).startswith(prefixes)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:]


class _Teller:
    """Draws the course texts of one note."""

    def __init__(self, data: CourseData, rng: random.Random, pronouns: dict[str, str]) -> None:
        self.data = data
        self.rng = rng
        self.pronouns = pronouns
        self.used: set[str] = set()

    def say(self, key: str, **values: str) -> str:
        """One fragment of ``key`` whose slots the values fill (pronouns always), not one the
        note already used when another fits; "" when none fits."""
        have = {k for k, v in values.items() if v} | _PRONOUNS
        options = [t for t in self.data.text(key) if _slots(t) <= have]
        fresh = [t for t in options if t not in self.used] or options
        if not fresh:
            return ""
        chosen = self.rng.choice(fresh)
        self.used.add(chosen)
        filled = chosen.format_map({**self.pronouns, **values})
        return _sentence(filled) if chosen[:1] == "{" and chosen[1:2].islower() else filled


def course_context(
    scenario: Any,
    rng: random.Random,
    *,
    note_type: str,
    family: str,
    problems: list[Any],
    resolved: list[str],
    vitals_line: str,
    pronoun: str,
    possessive: str,
) -> SimpleNamespace:
    """The ``course`` variable of a template (docs/templates.md): ``rng`` is the note's own
    derived generator. ``problems`` are the context's problem objects (the current problems,
    in the scenario's order), ``resolved`` the context's resolved mentions."""
    from medcode.synth import narrative
    from medcode.synth.clinical import shipped_rules

    data = shipped_course()
    pronouns = {
        "pronoun": pronoun,
        "Pronoun": pronoun.capitalize(),
        "possessive": possessive,
        "Possessive": possessive.capitalize(),
        "obj": {"she": "her", "he": "him"}.get(pronoun, "them"),
    }
    teller = _Teller(data, rng, pronouns)
    current = [i for i, f in enumerate(scenario.problems) if f.status in _CURRENT]
    pairs = list(zip(current, problems, strict=False))  # (scenario index, context problem)
    level = shipped_rules().function.level_of(scenario.function or "")
    level_id = level.id if level else "independent"
    living = (scenario.living or "").lower()
    age = scenario.encounter.patient.age
    decision = scenario.decision
    admitted = "hospital" in (decision.risk_statement or "").lower()

    def facts(index: int) -> Any:
        return narrative.facts_for(scenario, index)

    principal = pairs[0] if pairs else None
    principal_facts = facts(principal[0]) if principal else None
    from medcode.synth.decision import shipped_rules as mdm_rules

    tests = mdm_rules().measure_test
    lab_keys = {
        r.measure.key
        for r in scenario.labs
        if r.measure.key in tests and r.measure.key not in data.not_labs
    }
    results = principal_facts.results if principal_facts else ()
    own = [r for r in results if r.measure.key in lab_keys]
    labs = [narrative.shown(r) for r in own]
    if not labs:
        printed = [r for r in scenario.labs if r.measure.key in lab_keys]
        flagged = [r for r in printed if r.flag] or printed
        labs = [narrative.shown(r) for r in flagged]
    drugs = list(principal_facts.drugs) if principal_facts else []

    out: dict[str, Any] = {
        "los": 0,
        "admit_date": "",
        "days": [],
        "disposition": "",
        "diet": "",
        "activity": "",
        "instructions": [],
        "followup": [],
        "pending": "",
        "returning": "",
        "education": "",
        "when_to_call": "",
        "condition": [],
        "reconcile": [],
        "ed": [],
        "precautions": "",
        "surgical": [],
        "social": [],
        "problem_list": [],
        "problem_list_heading": "",
    }
    if note_type == "discharge":
        out.update(
            _discharge(
                data,
                teller,
                scenario,
                pairs,
                labs=labs,
                drugs=drugs,
                vitals_line=vitals_line,
                level_id=level_id,
                living=living,
            )
        )
    elif note_type == "ed":
        out.update(_ed(data, teller, scenario, principal, admitted, labs, level_id))
    if note_type == "new_patient_hp":
        out["surgical"] = _surgical(data, teller, scenario, age)
        out["social"] = _social(data, teller, scenario, pairs, age, living)
    if family in data.list_families and rng.random() < data.list_rate:
        heading, items = _problem_list(data, teller, scenario, pairs, resolved)
        if items:
            out["problem_list"], out["problem_list_heading"] = items, heading
    return SimpleNamespace(**out)


def _phrase(problem: Any) -> str:
    """How the course may name a context problem: its marked phrase, or "" for a suspected
    diagnosis (never named without its uncertainty cue) or a Z-code situation."""
    if problem.is_uncertain or problem.status not in ("active", "chronic"):
        return ""
    return problem.phrase


def _discharge(
    data: CourseData,
    teller: _Teller,
    scenario: Any,
    pairs: list[tuple[int, Any]],
    *,
    labs: list[str],
    drugs: list[str],
    vitals_line: str,
    level_id: str,
    living: str,
) -> dict[str, Any]:
    exam = list(scenario.exam)
    from datetime import date, timedelta

    from medcode.synth import narrative

    rng = teller.rng
    nights = rng.choices(data.stay[0], weights=data.stay[1])[0]
    try:
        admit_date = (date.fromisoformat(scenario.visit_date) - timedelta(days=nights)).isoformat()
    except ValueError:
        admit_date = ""
    principal = pairs[0][1] if pairs else None
    principal_code = scenario.problems[pairs[0][0]].code if pairs else ""
    x = _phrase(principal) if principal and not principal_code.startswith("Z") else ""

    # secondary problems the stay addressed, with the sentences their type allows
    secondary = []
    decision = scenario.decision
    for index, problem in pairs[1:]:
        phrase = _phrase(problem)
        fact = scenario.problems[index]
        if not phrase or not problem.addressed or fact.code.startswith("Z"):
            continue
        kind = decision.kinds[index] if index < len(decision.kinds) else ""
        course = decision.courses[index] if index < len(decision.courses) else ""
        kind_type = narrative.problem_type(fact, kind or None, course)
        group = kind_type if kind_type in ("chronic_stable", "chronic_worse") else "other"
        secondary.append(teller.say(f"hospital.secondary.{group}", x=phrase))

    # a consult named by specialty, from the principal problem's domain only: a secondary
    # problem's specialty reads as consulted for the admission ("psychiatry consulted" for
    # epigastric pain, audit round 8)
    specialty = ""
    if rng.random() < data.consult_rate and pairs:
        concept = scenario.problems[pairs[0][0]].concept
        domain = getattr(concept, "domain", "") if concept is not None else ""
        specialty = data.specialties.get(domain, "")

    # disposition from the documented function and living situation
    mobility = False
    if "long-term care" in living:
        place = "long_term_care"
    elif "assisted living" in living:
        place = "assisted_living"
    elif level_id == "dependent":
        place, mobility = "caregivers", True
    elif level_id == "adl_help":
        place = "snf" if rng.random() < data.snf_share else "home_services"
        mobility = True
    elif level_id == "iadl_help":
        place = "home_help"
    else:
        place = "home"

    # the day paragraphs
    last = nights + 1
    middle = list(range(2, last))
    keep = max(0, data.narrated - 3)
    blocks: list[tuple[int, int]] = [(d, d) for d in middle[:keep]]
    if middle[keep:]:
        blocks.append((middle[keep], middle[-1]))
    consult_block = 0 if blocks else -1
    paragraphs: list[tuple[str, list[str]]] = []

    first = [teller.say("hospital.admit", x=x) if x else teller.say("hospital.admit_plain")]
    if labs:
        first.append(teller.say("hospital.admit_lab", lab=rng.choice(labs)))
    drug = rng.choice(drugs) if drugs else ""
    first.append(
        teller.say("hospital.admit_drug", drug=drug) if drug else teller.say("hospital.admit_none")
    )
    if exam:
        first.append(teller.say("hospital.exam_day", finding=exam[0]))
    first.append(teller.say("hospital.first_night"))
    while len(blocks) <= 1 and len(first) < 9:
        first.insert(-1, teller.say("hospital.progress"))
    paragraphs.append(("", first))
    pending_secondary = list(secondary)
    for number, (start, end) in enumerate(blocks):
        sentences = [teller.say("hospital.progress")]
        if end > start or rng.random() < 0.6:
            sentences.append(teller.say("hospital.progress"))
        if number == consult_block and specialty:
            sentences.append(
                teller.say(
                    "hospital.consult",
                    specialty=specialty,
                    Specialty=specialty[:1].upper() + specialty[1:],
                    day=str(start),
                )
            )
        if number % 2 == 0 or end > start:
            key = "hospital.principal" if x else "hospital.principal_plain"
            sentences.append(teller.say(key, x=x))
        if number == 0 and drug:
            sentences.append(teller.say("hospital.drug_day", drug=drug))
        if exam and rng.random() < 0.7:
            sentences.append(teller.say("hospital.exam_day", finding=rng.choice(exam)))
        if number > 0 and rng.random() < 0.5:
            sentences.append(teller.say("hospital.teaching"))
        if rng.random() < 0.7:
            sentences.append(teller.say("hospital.plan_day"))
        # short stays tell each day more fully
        wanted = 11 if len(blocks) <= 2 else 9
        while len([t for t in sentences if t]) < wanted:
            sentences.insert(1, teller.say("hospital.progress"))
        share = max(1, -(-len(secondary) // max(1, len(blocks))))
        sentences += pending_secondary[:share]
        pending_secondary = pending_secondary[share:]
        if number == len(blocks) - 1:
            if mobility:
                sentences.append(teller.say("hospital.mobility"))
            if place != "home":
                sentences.append(teller.say("hospital.planning"))
        paragraphs.append(("", sentences))
    final = [teller.say("hospital.last_day"), teller.say("hospital.last_day_more")]
    if not blocks:
        if specialty:
            final.append(
                teller.say(
                    "hospital.consult",
                    specialty=specialty,
                    Specialty=specialty[:1].upper() + specialty[1:],
                    day="1",
                )
            )
        final += pending_secondary
        if mobility:
            final.append(teller.say("hospital.mobility"))
    paragraphs.append(("", final))
    # one style of day headings per note
    style = rng.randrange(len(data.text("hospital.day_labels")))

    def label(start: int, end: int) -> str:
        if end < 0:
            options = data.text("hospital.discharge_labels")
            return options[min(style, len(options) - 1)].format(day=start)
        if start == end:
            return data.text("hospital.day_labels")[style].format(day=start)
        options = data.text("hospital.group_labels")
        return options[min(style, len(options) - 1)].format(day=start, last=end)

    spans = [(1, 1), *blocks, (last, -1)]
    days = [
        SimpleNamespace(label=label(*span), text=" ".join(s for s in sentences if s))
        for span, (_, sentences) in zip(spans, paragraphs, strict=True)
    ]

    codes = [f.code for f in scenario.problems if f.status in _CURRENT]
    diet_options = [
        texts for prefixes, texts in data.diets if any(_matches(c, prefixes) for c in codes)
    ]
    diet_key = None
    if diet_options:
        diet = rng.choice(rng.choice(diet_options))
    else:
        diet_key = "instructions.diet.default"
        diet = teller.say(diet_key)
    independent = level_id in ("independent", "iadl_help")
    activity = teller.say(f"instructions.activity.{'independent' if independent else 'assisted'}")
    followup = [teller.say("instructions.followup_pcp")]
    if specialty:
        followup.append(
            teller.say(
                "instructions.followup_specialty",
                specialty=specialty,
                Specialty=specialty[:1].upper() + specialty[1:],
            )
        )
    general = [teller.say("instructions.general")]
    if rng.random() < 0.5:
        general.append(teller.say("instructions.general"))
    return {
        "los": nights,
        "admit_date": admit_date,
        "days": days,
        "disposition": teller.say(f"disposition.{place}"),
        "diet": diet,
        "activity": activity,
        "instructions": general,
        "followup": followup,
        "pending": teller.say("instructions.pending"),
        "returning": teller.say("instructions.returning"),
        "education": teller.say("instructions.education"),
        "condition": [teller.say("instructions.condition") for _ in range(4)],
        "reconcile": _reconcile(teller, scenario),
        "when_to_call": teller.say("instructions.when_to_call"),
    }


def _reconcile(teller: _Teller, scenario: Any) -> list[str]:
    """The discharge medication reconciliation: the list's drugs kept, started, stopped (by
    name, from the scenario's list and its documented changes)."""
    from medcode.synth.narrative import _drug_name

    started = [_drug_name(c.name) for c in scenario.medication_changes if c.action == "start"]
    stopped = [_drug_name(c.name) for c in scenario.medication_changes if c.action == "stop"]
    changed = set(started) | set(stopped)
    names = dict.fromkeys(_drug_name(m.name) for m in scenario.medications)
    kept = [n for n in names if n not in changed]
    lines = []
    for key, names in (("kept", kept), ("started", started), ("stopped", stopped)):
        if names:
            lines.append(teller.say(f"instructions.reconcile_{key}", **{key: ", ".join(names)}))
    return lines


def _ed(
    data: CourseData,
    teller: _Teller,
    scenario: Any,
    principal: tuple[int, Any] | None,
    admitted: bool,
    labs: list[str],
    level_id: str,
) -> dict[str, Any]:
    from medcode.synth import narrative

    rng = teller.rng
    lines = [teller.say("ed.reassess_admit" if admitted else "ed.reassess")]
    if labs:
        lines.append(teller.say("ed.result", lab=rng.choice(labs)))
    if principal is not None:
        # a short course started today for the presenting problem, by mouth: "after {drug}"
        names = set(narrative.facts_for(scenario, principal[0]).drugs)
        given = [
            narrative._drug_name(m.name)
            for m in scenario.medications
            if m.course
            and narrative._drug_name(m.name) in names
            and not any(word in f" {m.name.lower()}" for word in data.not_given)
        ]
        if given and not admitted:
            lines.append(teller.say("ed.drug", drug=rng.choice(given)))
    lines.append(teller.say("ed.vitals"))
    if admitted:
        lines.append(teller.say("ed.admit"))
        precautions = ""
    else:
        lines.append(teller.say("ed.improved"))
        exam = " ".join(scenario.exam).lower()
        steady = not any(word in exam for word in data.not_ambulatory)
        if level_id in ("independent", "iadl_help") and steady:
            lines.append(teller.say("ed.ambulatory"))
        precautions = teller.say("ed.precautions")
    return {"ed": [line for line in lines if line], "precautions": precautions}


def _surgical(data: CourseData, teller: _Teller, scenario: Any, age: int) -> list[str]:
    rng = teller.rng
    rate = 0.0
    for start, value in data.surgery_rates:
        if age >= start:
            rate = value
    if rng.random() >= rate:
        return []
    sex = scenario.encounter.patient.sex.value
    codes = [f.code for f in scenario.problems]
    options = [
        op
        for op in data.operations
        if (op.sex is None or op.sex == sex)
        and op.min_age <= age <= op.max_age
        and not any(_matches(c, op.avoid) for c in codes)
    ]
    if not options:
        return []
    count = 1 if rng.random() < 0.7 or len(options) < 2 else 2
    chosen = rng.sample(options, count)
    year = int(scenario.visit_date[:4]) if scenario.visit_date[:4].isdigit() else 2025
    found = []
    for op in chosen:
        years_ago = rng.randint(1, max(1, age - op.min_age)) if age > op.min_age else 1
        found.append((year - years_ago, op.name))
    form = rng.choice(data.text("surgical.forms"))
    return [form.format(name=name, year=str(when)) for when, name in sorted(found)]


def _social(
    data: CourseData,
    teller: _Teller,
    scenario: Any,
    pairs: list[tuple[int, Any]],
    age: int,
    living: str,
) -> list[str]:
    rng = teller.rng
    codes = data.codes
    lines = []
    marked = {index: problem for index, problem in pairs}
    tobacco = [
        (i, f) for i, f in enumerate(scenario.problems) if _matches(f.code, codes["tobacco_codes"])
    ]
    current = [
        marked[i].phrase
        for i, f in tobacco
        if f.status in (Status.ACTIVE, Status.CHRONIC) and i in marked
    ]
    if current:
        lines.append(teller.say("social.tobacco.current", x=current[0]))
    elif tobacco and all(f.status is Status.HISTORY for _, f in tobacco):
        lines.append(teller.say("social.tobacco.former"))
    elif tobacco and all(f.status is Status.NEGATED for _, f in tobacco):
        lines.append(teller.say("social.tobacco.denies"))
    elif not tobacco and rng.random() < 0.8:
        lines.append(teller.say("social.tobacco.never"))
    every = [f.code for f in scenario.problems]
    if not any(_matches(c, codes["alcohol_codes"]) for c in every):
        lines.append(teller.say("social.alcohol"))
    if not any(_matches(c, codes["drug_codes"]) for c in every) and rng.random() < 0.6:
        lines.append(teller.say("social.drugs"))
    group = "young" if age < 23 else "retired" if age >= 67 else "working"
    job = rng.choice(data.occupations[group])
    forms = data.text("social.occupation_forms")
    if group == "retired":  # "retired teacher", never "works as a retired teacher"
        forms = tuple(f for f in forms if "works" not in f.lower()) or forms
    lines.append(rng.choice(forms).format(job=job, Job=_sentence(job)))
    if age < 22:
        status = "single"
    elif "spouse" in living:
        status = rng.choice(data.marital["spouse"])
    elif "alone" in living:
        status = rng.choice(data.marital["alone"])
    else:
        status = rng.choice(data.marital["other"])
    lines.append(teller.say("social.marital_forms", status=status, Status=_sentence(status)))
    if scenario.living:
        lines.append(teller.say("social.living_forms", living=scenario.living))
    return [line for line in lines if line]


def _problem_list(
    data: CourseData,
    teller: _Teller,
    scenario: Any,
    pairs: list[tuple[int, Any]],
    resolved: list[str],
) -> tuple[str, list[str]]:
    """A problem list carried forward from earlier visits: the chronic problems (today's new
    ones are not on it yet) and old resolved problems with their year (not coded)."""
    rng = teller.rng
    items = [
        p.phrase
        for i, p in pairs
        if p.status == "chronic" and not scenario.problems[i].code.startswith("Z")
    ]
    year = int(scenario.visit_date[:4]) if scenario.visit_date[:4].isdigit() else 2025
    low, high = data.years_back
    for text in resolved:
        items.append(f"{text} ({year - rng.randint(low, high)})")
    if not resolved and len(items) < 2:
        return "", []
    return rng.choice(data.text("problem_list.headings")), items
