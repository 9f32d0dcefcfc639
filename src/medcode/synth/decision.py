"""E/M decision making from the scenario's own facts, never sampled.

The sampler decides how much a visit addresses (the profile's ``workload``: which coded
problems are assessed today, whether a prescription is adjusted, which tests are ordered);
this module reads the result as the AMA MDM elements: the kind of each problem addressed
(from its status, code and its own printed values against treatment goals), the unique tests
the note prints as reviewed or ordered (one panel is one test), the historian, external
notes, interpretations and discussions, and the risk of the management the plan documents.
:func:`medcode.policy.mdm.assess` turns them into the level the E/M code follows. Documented
time falls in the band of that level (sometimes the next one, a visit billed by time).

The tables (unique tests, goals, systemic and critical values, problem codes, drug classes)
are data: ``data/synth/mdm.yaml``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import DataFileError
from medcode.policy import mdm as M
from medcode.records import MDM, Episode, Setting, Status, VisitKind
from medcode.synth.profiles import Profile, em_group
from medcode.synth.scenario import (
    DecisionMaking,
    MedicationChange,
    MedicationFact,
    ProblemFact,
    Result,
)
from medcode.terminology import cpt, icd10cm

_CODED = (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN)
_NO_MDM = (VisitKind.PREVENTIVE, VisitKind.ANNUAL_WELLNESS)
# visits whose E/M beside a minor procedure is billed only for the problems it does not treat
SEPARATE_EM = (VisitKind.OFFICE, VisitKind.TELEHEALTH, VisitKind.CONSULT)
# visits billed without an E/M level: preventive and wellness visits, and a minor procedure
# (its global package holds the decision to perform it)
_NO_EM = (*_NO_MDM, VisitKind.PROCEDURE)
_ICD_PREFIX = re.compile(r"^[A-Z](\d{0,2}|\d{2}\.?[0-9A-Z]{0,4})$")


@dataclass(frozen=True, slots=True)
class Bound:
    """A threshold on a measure: breached above ``above`` or below ``below``;
    ``above_at_60`` replaces ``above`` from age 60."""

    above: float | None = None
    below: float | None = None
    above_at_60: float | None = None

    def breached(self, value: float, age: int) -> bool:
        above = self.above_at_60 if self.above_at_60 is not None and age >= 60 else self.above
        return (above is not None and value > above) or (
            self.below is not None and value < self.below
        )


@dataclass(frozen=True)
class Rules:
    """``data/synth/mdm.yaml``, validated."""

    measure_test: dict[str, str]
    cpt_test: dict[str, str]
    merge: dict[str, tuple[str, ...]]
    analyte_cpt: dict[str, tuple[str, str]]  # CPT -> (test name, measure) of one analyte
    timed_services: frozenset[str]  # their visits document no E/M time
    goals: dict[str, Bound]
    systemic: dict[str, Bound]
    critical: dict[str, Bound]
    codes: dict[str, tuple[str, ...]]
    otc: tuple[str, ...]
    not_drugs: tuple[str, ...]
    intensive: dict[str, str]
    parenteral_controlled: tuple[str, ...]
    bleeding_risk: tuple[str, ...]
    minor_surgery: tuple[str, str] = ("10004", "69990")  # CPT range, both ends included
    not_minor: tuple[str, ...] = ()  # code prefixes in the range that are not minor surgery
    _hits: dict[tuple[str, str], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def is_minor(self, code: str) -> bool:
        """Whether a CPT code is minor surgery (mdm.yaml ``procedures``): its decision is
        in its global package."""
        low, high = self.minor_surgery
        return code.isdigit() and low <= code <= high and not code.startswith(self.not_minor)

    def matches(self, group: str, code: str) -> bool:
        """Whether the code starts with one of the group's prefixes (cached)."""
        hit = self._hits.get((group, code))
        if hit is None:
            compact = code.replace(".", "").upper()
            hit = any(compact.startswith(p.replace(".", "")) for p in self.codes[group])
            self._hits[group, code] = hit
        return hit


_BOUND_KEYS = {"above", "below", "above_at_60"}
_CODE_GROUPS = (
    "self_limited",
    "undiagnosed",
    "complicated_injury",
    "threat",
    "threat_in_ed",
    "exacerbation_codes",
    "exacerbation_coded",
    "not_problems",
)


def load_rules(path: Path | None = None) -> Rules:
    """Load and validate the MDM element tables; every error names the file and line."""
    from medcode.synth.catalog import load_measures

    path = path or package_data("synth/mdm.yaml")
    labs, vitals = load_measures()
    measures = set(labs) | set(vitals)
    table = cpt.procedure_table()
    data = load_yaml(path)

    def fail(node: object, problem: str) -> DataFileError:
        return DataFileError(path, getattr(node, "line", None), problem)

    def section(key: str) -> LineDict:
        node = data.get(key) if isinstance(data, LineDict) else None
        if not isinstance(node, LineDict):
            raise fail(data, f"missing section {key!r}")
        if not isinstance(node.get("source"), str) or not node["source"].strip():
            raise fail(node, f"{key}: missing or empty 'source'")
        return node

    def strings(node: LineDict, key: str) -> tuple[str, ...]:
        value = node.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(node, f"{key!r} must be a list of strings")
        return tuple(value)

    tests = section("tests")
    measure_test: dict[str, str] = {}
    cpt_test: dict[str, str] = {}
    names = set()
    for panel in tests.get("panels") or []:
        if not isinstance(panel, LineDict) or not isinstance(panel.get("name"), str):
            raise fail(tests, "each panel needs a name, measures and optional cpt codes")
        name = panel["name"]
        names.add(name)
        for measure in strings(panel, "measures"):
            if measure not in measures:
                raise fail(panel, f"{name}: unknown measure {measure!r}")
            if measure in measure_test:
                raise fail(panel, f"{name}: measure {measure!r} already in {measure_test[measure]}")
            measure_test[measure] = name
        for code in panel.get("cpt") or []:
            if str(code) not in table:
                raise fail(panel, f"{name}: CPT/HCPCS code {code!r} not in the code table")
            cpt_test[str(code)] = name
    merge = {}
    for raw in tests.get("merge") or []:
        parts = raw.get("parts") if isinstance(raw, LineDict) else None
        if not isinstance(parts, list) or not set(parts) <= names or len(parts) < 2:
            raise fail(raw, "each merge needs a name and two or more panel names as parts")
        merge[str(raw["name"])] = tuple(parts)
        for code in raw.get("cpt") or []:
            if str(code) not in table:
                raise fail(raw, f"{raw['name']}: CPT/HCPCS code {code!r} not in the code table")
            cpt_test[str(code)] = str(raw["name"])

    analyte_cpt: dict[str, tuple[str, str]] = {}
    for raw in tests.get("analytes") or []:
        if not isinstance(raw, LineDict) or raw.get("measure") not in measures:
            raise fail(
                raw if isinstance(raw, LineDict) else tests,
                "each analyte needs a name, a known measure and cpt codes",
            )
        for code in strings(raw, "cpt"):
            if str(code) not in table:
                raise fail(raw, f"{raw['name']}: CPT/HCPCS code {code!r} not in the code table")
            analyte_cpt[str(code)] = (str(raw["name"]), str(raw["measure"]))
            cpt_test[str(code)] = str(raw["name"])

    def bounds(key: str) -> dict[str, Bound]:
        node = section(key)
        found = {}
        for measure, raw in node.items():
            if measure == "source":
                continue
            if measure not in measures:
                raise fail(node, f"{key}: unknown measure {measure!r}")
            if not isinstance(raw, LineDict) or not raw or not set(raw) <= _BOUND_KEYS:
                raise fail(node, f"{key}.{measure}: give above, below and/or above_at_60")
            for value in raw.values():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise fail(raw, f"{key}.{measure}: {value!r} is not a number")
            found[measure] = Bound(**{k: float(v) for k, v in raw.items()})
        return found

    problems = section("problems")
    codes = {}
    for group in _CODE_GROUPS:
        prefixes = strings(problems, group)
        for prefix in prefixes:
            if not _ICD_PREFIX.match(prefix):
                raise fail(problems, f"{group}: {prefix!r} is not an ICD-10-CM code prefix")
        codes[group] = prefixes
    drugs = section("drugs")
    intensive = drugs.get("intensive_monitoring")
    if not isinstance(intensive, LineDict) or not all(
        isinstance(v, str) for v in intensive.values()
    ):
        raise fail(drugs, "intensive_monitoring must map drug names to monitoring tests")
    surgery = section("procedures")
    bounds_ = strings(surgery, "minor_surgery")
    if len(bounds_) != 2 or not all(b.isdigit() and len(b) == 5 for b in bounds_):
        raise fail(surgery, "minor_surgery: give the first and last CPT code of the range")
    time = section("time")
    timed = strings(time, "separately_reported")
    unknown = [code for code in timed if code not in table]
    if unknown:
        raise fail(time, f"separately_reported: {unknown[0]!r} not in the code table")
    return Rules(
        timed_services=frozenset(timed),
        measure_test=measure_test,
        cpt_test=cpt_test,
        merge=merge,
        analyte_cpt=analyte_cpt,
        goals=bounds("goals"),
        systemic=bounds("systemic"),
        critical=bounds("critical"),
        codes=codes,
        otc=tuple(s.lower() for s in strings(drugs, "otc")),
        not_drugs=tuple(s.lower() for s in strings(drugs, "not_drugs")),
        intensive={str(k).lower(): v for k, v in intensive.items()},
        parenteral_controlled=tuple(s.lower() for s in strings(drugs, "parenteral_controlled")),
        bleeding_risk=tuple(s.lower() for s in strings(drugs, "bleeding_risk")),
        minor_surgery=(bounds_[0], bounds_[1]),
        not_minor=strings(surgery, "not_minor"),
    )


@cache
def shipped_rules() -> Rules:
    return load_rules()


def drug_name(medication: str) -> str:
    """'metformin 1000 mg twice daily' -> 'metformin': the words before the dose."""
    words = []
    for word in medication.split():
        if any(ch.isdigit() for ch in word) or word.lower() in _STOP_WORDS:
            break
        words.append(word)
    return " ".join(words) or medication


_STOP_WORDS = {"per", "as", "at", "daily", "twice", "with", "weekly", "nightly", "to", "via"}


def drug_class(rules: Rules, medication: str) -> str:
    """'none' (a device), 'intensive', 'parenteral_controlled', 'otc' or 'rx'."""
    name = medication.lower()
    if name.startswith(rules.not_drugs):
        return "none"
    if name.startswith(tuple(rules.intensive)):
        return "intensive"
    if name.startswith(rules.parenteral_controlled):
        return "parenteral_controlled"
    if name.startswith(rules.otc):
        return "otc"
    return "rx"


@dataclass
class _Problem:
    index: int
    fact: ProblemFact
    kind: M.ProblemKind
    reason: str
    worse: bool
    medications: list[str]
    plan: list[str]


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


class _Builder:
    """One visit's elements; methods share the scenario facts and the rng."""

    def __init__(self, rng, profile, kind, setting, new_patient, age, facts, labs, vitals):
        self.rng = rng
        self.workload = profile.workload_for(setting)
        self.profile = profile
        self.kind = kind
        self.setting = setting
        self.new_patient = new_patient
        self.age = age
        self.facts = facts
        self.rules = shipped_rules()
        self.table = cpt.procedure_table()
        self.acute_setting = setting in (Setting.EMERGENCY, Setting.INPATIENT)
        self.values = {r.measure.key: r for r in (*labs, *vitals)}
        self.labs = labs

    # -- problems ---------------------------------------------------------------------

    def own_measures(self, fact: ProblemFact) -> list[Result]:
        concept = fact.concept
        if concept is None:
            return []
        keys = list(concept.labs) + list(concept.vitals)
        for form in concept.forms:
            if form.code == fact.code:
                keys += list(form.labs) + list(form.vitals)
        return [self.values[k] for k in dict.fromkeys(keys) if k in self.values]

    def breached(self, fact: ProblemFact, table: dict[str, Bound]) -> Result | None:
        for result in self.own_measures(fact):
            bound = table.get(result.measure.key)
            number = _number(result.value)
            if bound is not None and number is not None and bound.breached(number, self.age):
                return result
        return None

    @staticmethod
    def shown(result: Result) -> str:
        unit = result.measure.unit
        gap = " " if unit[:1].isalpha() else ""
        return f"{result.measure.short} {result.value}{gap}{unit}"

    def classify(self, fact: ProblemFact, first: bool) -> tuple[M.ProblemKind, str, bool]:
        """The problem's kind, the words the plan gives it, and whether it is worse."""
        K, rules, rng = M.ProblemKind, self.rules, self.rng
        code = fact.code
        critical = self.breached(fact, rules.critical)
        ed_threat = self.setting is Setting.EMERGENCY and rules.matches("threat_in_ed", code)
        if fact.status is Status.UNCERTAIN:
            if self.acute_setting and (critical or ed_threat or rules.matches("threat", code)):
                return K.THREAT_TO_LIFE, _critical_words(critical, self), False
            return K.UNDIAGNOSED_NEW, "etiology not yet established, workup under way", False
        if fact.status is Status.ACTIVE:
            if critical or ed_threat or rules.matches("threat", code):
                return K.THREAT_TO_LIFE, _critical_words(critical, self), False
            control = getattr(fact, "control", None)
            if (
                rules.matches("exacerbation_codes", code)
                or _chronic_by_title(code)
                or control in ("uncontrolled", "exacerbation")
            ):
                # a chronic illness's flare, new today; a chronic illness by its own title
                # ("chronic idiopathic constipation") seen today is no new acute problem
                return K.CHRONIC_EXACERBATION, "exacerbation, treated today", False
            if fact.episode is Episode.SUBSEQUENT:
                return K.STABLE_ACUTE, "healing as expected", False
            if fact.episode is Episode.SEQUELA:
                return K.STABLE_CHRONIC, "residual effects, stable", False
            if rules.matches("complicated_injury", code):
                return K.ACUTE_COMPLICATED_INJURY, "injury needing definitive care", False
            systemic = self.breached(fact, rules.systemic)
            if systemic:
                return K.ACUTE_SYSTEMIC, f"with systemic symptoms ({self.shown(systemic)})", False
            if rules.matches("undiagnosed", code):
                return K.UNDIAGNOSED_NEW, "cause not yet established, evaluation planned", False
            if rules.matches("self_limited", code):
                return K.SELF_LIMITED, rng.choice(_SELF_LIMITED_WORDS), False
            if self.setting is Setting.INPATIENT:
                return K.ACUTE_UNCOMPLICATED_HOSPITAL, "improving with inpatient care", False
            return K.ACUTE_UNCOMPLICATED, rng.choice(_UNCOMPLICATED_WORDS), False
        # chronic
        workload = self.workload
        worse, words, shown = False, "", ""
        control = getattr(fact, "control", None)  # the documented control state (coherence)
        if control == "controlled":
            return K.STABLE_CHRONIC, rng.choice(_STABLE_WORDS), False
        if rules.matches("exacerbation_codes", code) or control == "uncontrolled":
            worse, words = True, "not at goal"
        elif not rules.matches("exacerbation_coded", code):
            off_goal = self.breached(fact, rules.goals)
            if off_goal:
                shown = self.shown(off_goal)
                worse, words = True, f"{shown}, above goal"
            elif self.acute_setting and first:
                worse, words = True, "worse, the reason for this visit"
            elif rng.random() < workload.worsening:
                worse, words = True, rng.choice(_WORSE_WORDS)
        if not worse:
            return K.STABLE_CHRONIC, rng.choice(_STABLE_WORDS), False
        serious = fact.concept is not None and bool(
            {"hcc", "advanced_illness"} & set(fact.concept.categories)
        )
        wellness = self.kind in _NO_MDM  # a wellness visit does not find a severe flare
        if critical or (serious and not wellness and rng.random() < workload.severe):
            shown = self.shown(critical) if critical else shown
            detail = f" ({shown})" if shown else ""
            return K.CHRONIC_SEVERE_EXACERBATION, f"significantly worse{detail}", True
        return K.CHRONIC_EXACERBATION, words, True

    def problems(
        self,
        medications: list[MedicationFact],
        changed: frozenset[int] = frozenset(),
        treated: frozenset[int] = frozenset(),
    ) -> tuple[list[_Problem], list[int]]:
        """The problems addressed today, and the indices of coded problems only listed. A
        problem whose drug is started or stopped today (``changed``) is addressed: a plan
        never says "will address at a dedicated visit" beside a change. Besides problems a
        minor procedure treats today (``treated``), the first other one is addressed: it is
        what the separately billed E/M is for."""
        rules, rng = self.rules, self.rng
        addressed: list[_Problem] = []
        listed: list[int] = []
        taken: set[str] = set()
        first = True
        separate = bool(treated)  # an untreated problem is still to be addressed
        referral = ""  # a consultant addresses the referral's domain (audit round 8)
        for index, fact in enumerate(self.facts):
            if fact.status not in _CODED or rules.matches("not_problems", fact.code):
                continue
            domain = getattr(fact.concept, "domain", "") if fact.concept else ""
            if first and self.kind is VisitKind.CONSULT:
                referral = domain
            if separate and index not in treated:
                separate, first = False, True
            if not (
                first
                or fact.status is Status.UNCERTAIN
                or index in changed
                or (
                    (self.kind is not VisitKind.CONSULT or domain == referral)
                    and rng.random() < self.workload.also_addressed
                )
            ):
                listed.append(index)
                continue
            kind, reason, worse = self.classify(fact, first)
            first = False
            names = {o.name for o in fact.concept.medications} if fact.concept else set()
            own = [m.name for m in medications if m.name in names and m.name not in taken]
            taken.update(own)
            addressed.append(_Problem(index, fact, kind, reason, worse, own, [reason]))
        return addressed, listed

    # -- data -------------------------------------------------------------------------

    def tests_for(self, fact: ProblemFact) -> list[str]:
        """Unique tests that follow a problem: its own lab results' tests, its procedures'."""
        found = []
        for result in self.own_measures(fact):
            test = self.rules.measure_test.get(result.measure.key)
            if test:
                found.append(test)
        if fact.concept is not None:
            for option in fact.concept.procedures:
                entry = self.table.get(option.code)
                if entry is None:
                    continue
                if entry.kind is cpt.Kind.LAB:
                    found.append(self.rules.cpt_test.get(option.code) or _lower(entry.description))
                elif entry.kind is cpt.Kind.IMAGING or option.code.startswith(("930", "932")):
                    found.append(_lower(entry.description))
        return list(dict.fromkeys(found))


def _key(name: str) -> str:
    """A test name as :class:`medcode.policy.mdm.DiagnosticTest` keys it."""
    return " ".join(name.lower().split())


def _lower(text: str) -> str:
    return text[0].lower() + text[1:] if text[1:2].islower() else text


@cache
def _chronic_by_title(code: str) -> bool:
    """Whether the code's title names a chronic condition (not an acute-on-chronic one)."""
    title = icd10cm.description(code).lower()
    return bool(re.search(r"\bchronic\b", title)) and "acute" not in title


def _critical_words(result: Result | None, builder: _Builder) -> str:
    if result is None:
        return "potentially serious, needs urgent evaluation"
    return f"potentially serious ({builder.shown(result)})"


_STABLE_WORDS = (
    "stable",
    "at goal",
    "doing well",
    "no change since last visit",
    "at goal on treatment",
)
_WORSE_WORDS = ("worse since last visit", "symptoms progressing", "not at goal")
_SELF_LIMITED_WORDS = ("self-limited", "minor, expected to resolve")
_UNCOMPLICATED_WORDS = ("uncomplicated", "no red flags", "mild, uncomplicated")
_HISTORIANS = ("daughter", "son", "spouse", "caregiver")
_SOURCES = (
    "the outside hospital discharge summary",
    "the cardiology consult note",
    "records from the prior primary care office",
    "the urgent care note",
    "the specialist's recent clinic note",
)


def decide(
    rng: random.Random,
    profile: Profile,
    *,
    kind: VisitKind,
    setting: Setting,
    new_patient: bool,
    age: int,
    facts: list[ProblemFact],
    labs: list[Result],
    vitals: list[Result],
    medications: list[MedicationFact],
    procedures: list[str],
    changes: Sequence[MedicationChange] = (),
) -> DecisionMaking:
    """The MDM elements the note documents, their levels, the plans that state them and the
    documented time; ``level`` is None for preventive and wellness visits."""
    builder = _Builder(rng, profile, kind, setting, new_patient, age, facts, labs, vitals)
    rules, workload, table = builder.rules, builder.workload, builder.table
    acute = builder.acute_setting
    # problems a minor procedure treats today: their E/M work is in its package
    minor = {code for code in procedures if rules.is_minor(code)}
    treated = frozenset(
        index
        for index, fact in enumerate(facts)
        if kind in SEPARATE_EM
        and fact.concept is not None
        and any(option.code in minor for option in fact.concept.procedures)
    )
    addressed, listed = builder.problems(
        medications, frozenset(c.problem for c in changes if c.problem is not None), treated
    )
    billed = [p for p in addressed if p.index not in treated]  # the E/M's problems
    courses = {m.name for m in medications if m.course}
    changed = {c.name for c in changes}  # started or stopped today: not "continued"

    # data: printed results (reviewed; in the ED and hospital ordered and reviewed too),
    # tests done in the office today (ordered), tests the plan orders
    tests: list[M.DiagnosticTest] = []
    printed = [r for r in labs if r.measure.key in rules.measure_test]
    # a single analyte done today owns its printed result (82947: "glucose", not a BMP)
    analyte = {
        rules.analyte_cpt[code][1]: rules.analyte_cpt[code][0]
        for code in procedures
        if code in rules.analyte_cpt
    }
    panels = {rules.measure_test[r.measure.key] for r in printed if r.measure.key not in analyte}
    rename = {
        part: merged
        for merged, parts in rules.merge.items()
        if set(parts) <= panels
        for part in parts
    }
    for result in printed:
        panel = analyte.get(result.measure.key) or rules.measure_test[result.measure.key]
        tests.append(
            M.DiagnosticTest(
                result.measure.name, ordered=acute, reviewed=True, panel=rename.get(panel, panel)
            )
        )
    reported: set[str] = set()
    done_today: list[str] = []
    for code in procedures:
        entry = table.get(code)
        if entry is None:
            continue
        if entry.kind is cpt.Kind.LAB:
            name = rules.cpt_test.get(code) or _lower(entry.description)
            tests.append(M.DiagnosticTest(rename.get(name, name), ordered=True))
            done_today.append(rename.get(name, name))
        elif entry.kind is cpt.Kind.IMAGING or code.startswith(("93", "94", "95")):
            name = rules.cpt_test.get(code) or _lower(entry.description)
            reported.add(name.lower())
            tests.append(M.DiagnosticTest(name, ordered=True, separately_reported=True))
    for merged, parts in rules.merge.items():  # a CMP done today: its BMP results are its own
        if merged in done_today:
            tests = [
                M.DiagnosticTest(t.name, t.ordered, t.reviewed, merged, t.separately_reported)
                if t.panel in parts
                else t
                for t in tests
            ]
    if reported:  # a study whose interpretation is billed gives no data credit
        tests = [
            M.DiagnosticTest(t.name, t.ordered, t.reviewed, t.panel, True)
            if t.key in reported
            else t
            for t in tests
        ]

    # management, problem by problem
    risks: list[M.Risk] = []
    drug_actions: list[str] = []
    intensive_actions: list[str] = []
    otc_drugs: list[str] = []
    parenteral: list[str] = []
    for problem in addressed:
        K = M.ProblemKind
        plan = problem.plan
        credited = [risks, drug_actions, intensive_actions, otc_drugs, parenteral]
        before = [len(items) for items in credited]
        classes = {m: drug_class(rules, m) for m in problem.medications}
        rx = [
            m
            for m, c in classes.items()
            if c in ("rx", "parenteral_controlled") and m not in changed
        ]
        otc = [m for m, c in classes.items() if c == "otc"]
        for medication, group in classes.items():
            if group == "intensive":
                test = next(
                    v for k, v in rules.intensive.items() if medication.lower().startswith(k)
                )
                drug = drug_name(medication)
                plan.append(f"continue {drug} with {test} monitoring for toxicity")
                intensive_actions.append(f"{drug} ({test} ordered)")
                tests.append(M.DiagnosticTest(test, ordered=True))
                risks.append(M.Risk(M.RiskKind.INTENSIVE_MONITORING, drug))
            elif group == "parenteral_controlled" and acute:
                parenteral.append(drug_name(medication))
        if rx and kind in _NO_MDM:
            # a preventive visit manages no problem (that would be a separate, billable
            # problem-oriented visit): its drugs are continued, a new problem is scheduled
            if (
                problem.fact.status is Status.ACTIVE
                or problem.kind is K.UNDIAGNOSED_NEW
                or problem.worse
            ):
                plan.append("to be evaluated at a problem-focused follow-up visit")
            else:
                plan.append(f"continue {_join([drug_name(m) for m in rx])}")
        elif rx:
            drugs = [drug_name(m) for m in rx]
            action = ""
            if problem.fact.status is Status.ACTIVE or problem.kind is K.UNDIAGNOSED_NEW:
                # only a short course is started today; a drug already on the patient's list
                # (albuterol for an asthmatic's bronchitis) is continued
                new = [drug_name(m) for m in rx if m in courses]
                kept = [d for d in drugs if d not in new]
                action = " and ".join(
                    part
                    for part in (
                        f"start {_join(new)}" if new else "",
                        f"continue {_join(kept)}" if kept else "",
                    )
                    if part
                )
            elif problem.worse:
                if rng.random() < workload.drug_change:
                    action = f"adjust {drugs[0]} dose" + (
                        f", continue {_join(drugs[1:])}" if drugs[1:] else ""
                    )
                else:
                    action = f"continue {_join(drugs)}; adherence reviewed, reassess soon"
            elif rng.random() < workload.monitoring:
                action = f"continue {_join(drugs)}; tolerating well, no side effects"
            else:
                plan.append(rng.choice(("no medication changes", "continue current regimen")))
            if action:
                plan.append(action)
                drug_actions.append(action)
                risks.append(M.Risk(M.RiskKind.PRESCRIPTION_DRUG_MANAGEMENT, action))
        elif otc:
            drugs = [drug_name(m) for m in otc]
            scheduled = any(("daily" in m or "twice" in m) and "as needed" not in m for m in otc)
            # a scheduled OTC drug (daily aspirin) is continued, not "as needed"
            plan.append(f"continue {_join(drugs)}" if scheduled else f"{_join(drugs)} as needed")
            otc_drugs += drugs
            risks.append(M.Risk(M.RiskKind.OTC_DRUGS, _join(drugs)))
        elif problem.fact.status is Status.ACTIVE and not classes:
            concept = problem.fact.concept
            aches = concept is not None and bool(
                {"pain_score", "temperature"} & set(concept.vitals)
            )
            if aches and rng.random() < 0.6:  # pain or fever: an analgesic/antipyretic advised
                plan.append("over-the-counter acetaminophen as needed")
                otc_drugs.append("acetaminophen")
                risks.append(M.Risk(M.RiskKind.OTC_DRUGS, "acetaminophen"))
            elif concept is None:
                plan.append(rng.choice(("evaluated today, follow-up as needed", "plan discussed")))
            else:
                plan.append("supportive care, return precautions")
        elif problem.fact.status is Status.CHRONIC and not classes:
            plan.append(rng.choice(("lifestyle measures reviewed", "continue to monitor")))
        # tests the plan orders: a workup for a new problem, a recheck for a known one
        order_p = 1.0 if problem.kind is K.UNDIAGNOSED_NEW else workload.order_tests
        # a preventive visit orders no test for a problem: that work-up is a separately
        # billable problem-oriented service (audit round 8: SPECT ordered at a physical)
        if (
            not acute
            and kind not in _NO_MDM
            and problem.index not in treated  # the procedure is its management today
            and rng.random() < order_p
        ):
            # a test done and billed today (an office ECG) is not ordered again
            done = {_key(name) for name in (*reported, *done_today)}
            choices = [c for c in builder.tests_for(problem.fact) if _key(c) not in done]
            if choices:
                test = rng.choice(choices)
                plan.append(f"{test} ordered")
                tests.append(M.DiagnosticTest(test, ordered=True))
        if problem.kind is K.ACUTE_COMPLICATED_INJURY:
            plan.append("immobilized, orthopedic follow-up arranged")
        if problem.index in treated:  # its management is in the procedure's package
            for items, size in zip(credited, before, strict=True):
                del items[size:]

    # independent historian, external notes, interpretation, discussion
    data_items = []
    frail = any(f.concept is not None and "frailty" in f.concept.categories for f in facts)
    historian = None
    if age < 12 and rng.random() < 0.8:
        historian = rng.choice(("mother", "father", "parent"))
    elif rng.random() < workload.historian * (3 if frail or age >= 85 else 1):
        historian = "EMS" if acute and rng.random() < 0.5 else rng.choice(_HISTORIANS)
    external = ()
    if rng.random() < workload.external_records * (2 if new_patient else 1):
        external = (rng.choice(_SOURCES),)
    interpretations = ()
    # an ECG billed as a procedure (93000, 93010 in the ED) is the physician's reported
    # interpretation: it earns no independent-interpretation credit as well (AMA 2023)
    ecg_billed = any(t.separately_reported and "electrocardiogram" in t.key for t in tests)
    if rng.random() < workload.interpretation and not (acute and ecg_billed):
        study = "ECG" if acute else "outside imaging"
        if acute and not any("electrocardiogram" in t.key for t in tests):
            tests.append(M.DiagnosticTest("ECG", ordered=True))
        interpretations = (study,)
    level_of_problems = M.problems_level(tuple(M.Problem(p.kind) for p in billed)).level
    admitted = False
    if kind is VisitKind.HOSPITAL_ADMISSION:
        admitted = True
    elif acute and kind is VisitKind.EMERGENCY:
        admitted = rng.random() < workload.admission[level_of_problems.value]
    discussions = ()
    if admitted and kind is VisitKind.EMERGENCY and rng.random() < 0.85:
        discussions = ("the admitting hospitalist",)
    elif rng.random() < workload.discussion:
        discussions = ("the consulting specialist",)

    # the other management decisions
    office_hospitalization = ""
    if not acute and any(p.kind is M.ProblemKind.CHRONIC_SEVERE_EXACERBATION for p in addressed):
        office_hospitalization = rng.choice(
            (
                "hospital admission considered; managed at home with close follow-up",
                "sent to the emergency department for admission",
            )
        )
    if admitted or office_hospitalization:
        risks.insert(0, M.Risk(M.RiskKind.HOSPITALIZATION, office_hospitalization or "admit"))
    if parenteral:
        risks.append(M.Risk(M.RiskKind.PARENTERAL_CONTROLLED, _join(parenteral)))
    sdoh = [f for f in facts if f.status in _CODED and f.code.startswith(("Z55", "Z56", "Z59"))]
    limited_by = bool(sdoh) and rng.random() < workload.sdoh
    if limited_by:
        risks.append(M.Risk(M.RiskKind.SOCIAL_DETERMINANTS, "social needs"))
    has_risk_factor = any(
        f.status in _CODED and f.code[:3] in ("E08", "E09", "E10", "E11", "E13") for f in facts
    ) or any(m.name.lower().startswith(rules.bleeding_risk) for m in medications)
    for code in procedures:
        entry = table.get(code)
        if entry is None:
            continue
        if rules.is_minor(code):
            if kind in SEPARATE_EM:
                continue  # the decision to operate is in the procedure's package
            risk = M.RiskKind.MINOR_SURGERY
            if has_risk_factor:
                risk = M.RiskKind.MINOR_SURGERY_WITH_RISK
            risks.append(M.Risk(risk, _lower(entry.description)))
        elif code.startswith("97"):
            risks.append(M.Risk(M.RiskKind.THERAPY, _lower(entry.description)))
        elif code == "96360":
            risks.append(M.Risk(M.RiskKind.IV_FLUIDS, "IV hydration"))
        elif code in ("96365", "96372", "96374") and acute:
            risks.append(M.Risk(M.RiskKind.PRESCRIPTION_DRUG_MANAGEMENT, "parenteral medication"))

    # the long-term list's documented starts and stops (the note prints them in the plan):
    # prescription drug management (a preventive visit changes nothing, see the sampler)
    for change in changes:
        action = f"{change.action} {drug_name(change.name)}"
        if kind not in _NO_MDM and action not in drug_actions:
            drug_actions.append(action)
            risks.append(M.Risk(M.RiskKind.PRESCRIPTION_DRUG_MANAGEMENT, action))

    elements = M.Elements(
        problems=tuple(M.Problem(p.kind, p.reason) for p in billed),
        data=M.Data(
            tests=tuple(tests),
            external_notes=external,
            historian=historian,
            interpretations=interpretations,
            discussions=discussions,
        ),
        risk=tuple(risks),
    )
    assessment = M.assess(elements)

    # what the note says about data (orders already stand in the plans)
    results = list(
        dict.fromkeys(t.panel or t.name for t in tests if t.reviewed and not t.separately_reported)
    )
    if acute:
        ordered = results + [n for n in dict.fromkeys(done_today) if n not in results]
        if ordered:
            data_items.append(f"ordered and reviewed {_join(ordered)}")
    else:
        in_clinic = [n for n in results if n in done_today]
        reviewed = [n for n in results if n not in done_today]
        sent = [n for n in dict.fromkeys(done_today) if n not in results]
        if reviewed:
            data_items.append(f"reviewed {_join(reviewed)}")
        if in_clinic:
            data_items.append(f"{_join(in_clinic)} done in clinic today and reviewed")
        if sent:
            data_items.append(f"{_join(sent)} run in the clinic lab today")
    if interpretations:
        finding = (
            "sinus rhythm without acute ischemic changes"
            if acute
            else "findings agree with the working diagnosis"
        )
        data_items.append(f"independent interpretation of the {interpretations[0]}: {finding}")
    if historian:
        data_items.append(f"history obtained from {historian} (independent historian)")
    if external:
        data_items.append(f"reviewed {external[0]}")
    if discussions:
        data_items.append(f"discussed management with {discussions[0]}")

    # the management sentence and the per-problem plans
    management = []
    if admitted:
        management.append("decision regarding hospitalization: admit to the hospital")
    elif office_hospitalization:
        management.append(f"decision regarding hospitalization: {office_hospitalization}")
    if intensive_actions:
        management.append(
            "drug therapy requiring intensive monitoring for toxicity: " + _join(intensive_actions)
        )
    if drug_actions:
        management.append("prescription drug management: " + "; ".join(drug_actions))
    if parenteral:
        management.append(f"parenteral controlled substance given: {_join(parenteral)}")
    if limited_by:
        management.append("treatment options limited by the social needs documented above")
    if otc_drugs and not drug_actions:
        management.append(f"over-the-counter {_join(list(dict.fromkeys(otc_drugs)))} advised")
    if not management:
        management.append(
            rng.choice(("no prescription changes today", "supportive care and monitoring"))
        )
    if kind in _NO_MDM:  # a preventive note states the medications, not an MDM element
        management = drug_actions or ["no prescription changes today"]
    statement = "; ".join(management)
    statement = statement[0].upper() + statement[1:]

    plans = [""] * len(facts)
    courses = [""] * len(facts)
    kinds = [""] * len(facts)
    for problem in addressed:
        plans[problem.index] = "; ".join(x for x in problem.plan if x)
        kinds[problem.index] = problem.kind.value
        if problem.worse and problem.fact.status is Status.CHRONIC:
            courses[problem.index] = "worse"
    for index in listed:
        plans[index] = rng.choice(LISTED_PLANS)
    for index, fact in enumerate(facts):  # Z codes and external causes: not MDM problems
        if fact.status in _CODED and not plans[index]:
            plans[index] = rng.choice(_OTHER_PLANS)

    has_mdm = kind not in _NO_EM
    level = assessment.level if has_mdm else None
    explicit = has_mdm and kind is not VisitKind.HOSPITAL_DISCHARGE
    explicit = explicit and rng.random() < workload.explicit_mdm
    risk_statement = (
        M.RiskKind.HOSPITALIZATION.words
        if admitted or office_hospitalization
        else assessment.risk.reason
    )
    return DecisionMaking(
        problems_level=assessment.problems.level.value,
        data_level=assessment.data.level.value,
        risk_level=assessment.risk.level.value,
        data_items=tuple(data_items),
        risk_statement=risk_statement,
        # a separately reported service's time is not E/M time: the level goes by MDM
        minutes=None
        if rules.timed_services & set(procedures) or treated
        else _minutes(rng, profile, kind, new_patient, level),
        level=level.value if level else None,
        line=assessment.line() if has_mdm else "",
        explicit=explicit,
        management=statement,
        plans=tuple(plans),
        courses=tuple(courses),
        kinds=tuple(kinds),
    )


_SETTING_OF = {
    VisitKind.HOSPITAL_ADMISSION: Setting.INPATIENT,
    VisitKind.HOSPITAL_SUBSEQUENT: Setting.INPATIENT,
}
_OTHER_PLANS = ("reviewed with patient", "patient education provided", "noted")
LISTED_PLANS = (
    "followed by specialist, not addressed today",
    "unchanged, not reassessed today",
    "managed elsewhere; no changes today",
    "noted; will address at a dedicated visit",
)


def _join(items: list[str]) -> str:
    items = list(dict.fromkeys(items))
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _minutes(rng, profile, kind, new_patient, level: MDM | None) -> int | None:
    """Total time on the date of the encounter, when documented: within the band of the MDM
    level's code, sometimes in the next band (a visit billed by time)."""
    if kind is VisitKind.HOSPITAL_DISCHARGE:
        return rng.randint(31, 55) if rng.random() < 0.55 else rng.randint(15, 30)
    if kind not in (VisitKind.OFFICE, VisitKind.TELEHEALTH, VisitKind.CONSULT) and kind not in (
        VisitKind.HOSPITAL_ADMISSION,
        VisitKind.HOSPITAL_SUBSEQUENT,
    ):
        return None
    if level is None or rng.random() >= profile.time_documented:
        return None
    bands = _bands(em_group(kind, new_patient))
    if not bands:
        return None
    index = max(i for i, (mdm, _, _) in enumerate(bands) if mdm.rank <= level.rank)
    time_over = profile.workload_for(_SETTING_OF.get(kind, Setting.OUTPATIENT)).time_over
    if index + 1 < len(bands) and rng.random() < time_over:
        index += 1
    _, low, high = bands[index]
    return rng.randint(low, high)


@cache
def _bands(group: str | None) -> tuple[tuple[MDM, int, int], ...]:
    """(MDM level, first minute, last minute) of each timed code of an E/M family."""
    from medcode.synth.profiles import EM_GROUPS

    if group is None:
        return ()
    setting, patient = EM_GROUPS[group]
    entries = sorted(
        (
            e.em
            for e in cpt.procedure_table().em_codes()
            if e.em.setting.value == setting
            and e.em.patient.value == patient
            and e.em.mdm is not None
            and e.em.time_min is not None
        ),
        key=lambda em: em.level,
    )
    bands = []
    for i, em in enumerate(entries):
        last = entries[i + 1].time_min - 1 if i + 1 < len(entries) else em.time_min + 14
        bands.append((em.mdm, em.time_min, last))
    return tuple(bands)
