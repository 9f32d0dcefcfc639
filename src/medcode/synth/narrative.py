"""The story of a note: history, reasoning, plans, interpreted results and medication changes,
drawn (seeded) from ``data/synth/narrative.yaml`` by problem type.

A problem's type (:data:`TYPES`) follows from its concept's domain, its code, its status and
its MDM kind or course (:func:`problem_type`). :class:`Narrator` holds the validated fragments
and draws from them; every method takes plain values (phrases, finding and drug strings, a
result) and the caller's ``random.Random``, and returns a plain string. The problem phrase is
inserted as given, never changed: the renderer passes it already marked as evidence.

Fragments never name a condition, drug or procedure of their own (the fact lock, enforced by
tests/synth/test_narrative.py); slots are filled only from the scenario's own facts, and a
fragment whose slot cannot be filled is not drawn. Plans add follow-up, monitoring, counselling
and return-precaution language beside the decision's own plan words; they never state a
management that changes the MDM risk.

Nothing is read at import: :func:`shipped_narrative` loads (and validates) the file once.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from medcode.datafiles import LineDict, LineStr, load_yaml, package_data
from medcode.errors import CodeError, DataFileError

TYPES = (
    "infection",
    "injury",
    "injury_followup",
    "acute_symptom",
    "acute_other",
    "chronic_new",
    "chronic_stable",
    "chronic_worse",
    "mental_health_stable",
    "mental_health_worse",
    "neoplasm",
    "screening_or_z",
    "uncertain",
)
SETTINGS = ("office", "ed", "hospital", "discharge")
_SETTING_SET = frozenset(SETTINGS)
COURSES = ("worse", "improving", "stable")
# types whose printed results are read against a prior value (a chronic problem's)
RESULT_TYPES = frozenset(
    {
        "chronic_stable",
        "chronic_worse",
        "mental_health_stable",
        "mental_health_worse",
        "neoplasm",
    }
)
ACTIONS = ("start", "stop", "increase", "decrease")
UNITS = ("hours", "days", "weeks", "months", "years")
# `when:` of a fragment: "tests" (the problem has tests ordered or resulted) and/or settings
# (drawn only in one of them)
CONDITIONS = ("tests", *SETTINGS)

# Placeholders each part may use; a fragment using another one is refused on load.
_HPI_SLOTS = frozenset({"x", "duration", "dur", "course", "drug"})
_SLOTS = {
    "course": frozenset(),
    "hpi": _HPI_SLOTS,
    "hpi_suspected": _HPI_SLOTS,
    "context": frozenset(),
    "reasoning": frozenset({"x", "finding", "normal", "lab", "drug", "course"}),
    "plan": frozenset({"drug"}),
    "negatives": frozenset(),
    "results": frozenset({"name", "value", "prior", "when"}),
    "changes": frozenset({"drug", "x", "reason", "side_effect"}),
}
# Slots always available (drawn by the narrator itself) and those the caller's facts fill.
_DRAWN = frozenset({"x", "duration", "dur", "course", "name", "value", "when", "reason"})
_PARTS = ("duration", "course", "hpi", "hpi_suspected", "context", "negatives", "reasoning", "plan")
_REQUIRED = ("duration", "course", "hpi", "context", "negatives", "reasoning", "plan")
_SHORT_UNITS = {"hours": "h", "days": "d", "weeks": "wk", "months": "mo", "years": "y"}
_CODE_PREFIX = re.compile(r"^[A-Z][0-9A-Z]{0,6}$")
_WORD = re.compile(r"[a-z0-9]+")
# Words of a pertinent negative that say nothing about which symptom it denies.
_NEGATIVE_STOP = frozenset(
    re.findall(
        r"\S+",
        "denies deny denied no not negative without or and any other of at the a in since new "
        "recent recently elsewhere home distally change changes plan intent thoughts pain",
    )
)


def _load(path: Path) -> Any:
    return load_yaml(path, strings=True)


# ---------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True, slots=True)
class Fragment:
    """One sentence template: its text, line in the file, placeholders and conditions."""

    text: str
    line: int
    slots: frozenset[str]
    when: frozenset[str] = frozenset()

    def fits(self, available: frozenset[str] | set[str]) -> bool:
        """Whether every slot and condition of the fragment can be met: each slot and
        "tests" must be available, and one of its settings when it names any."""
        settings = self.when & _SETTING_SET
        return (
            (self.slots - _DRAWN) <= available
            and (self.when - _SETTING_SET) <= available
            and (not settings or bool(settings & available))
        )


@dataclass(frozen=True, slots=True)
class Duration:
    unit: str
    low: int
    high: int


@dataclass(frozen=True)
class Parts:
    """A type's fragments, or an override's (None: not given, the next level decides)."""

    duration: Duration | None = None
    course: tuple[Fragment, ...] | None = None
    hpi: tuple[Fragment, ...] | None = None
    hpi_suspected: tuple[Fragment, ...] | None = None
    context: tuple[Fragment, ...] | None = None
    negatives: tuple[str, ...] | None = None  # pool names
    reasoning: tuple[Fragment, ...] | None = None
    plan: dict[str, tuple[Fragment, ...]] = field(default_factory=dict)
    # parts drawn together with the next level's instead of replacing them ("plan": every
    # setting's list)
    adds: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Override:
    concepts: frozenset[str]
    codes: tuple[str, ...]
    domains: frozenset[str]
    types: frozenset[str] | None
    parts: Parts
    line: int


@dataclass(frozen=True)
class Classify:
    """Code prefixes (no dots), domains and concept ids of each kind of problem."""

    screening_domains: frozenset[str]
    screening_codes: tuple[str, ...]
    neoplasm_domains: frozenset[str]
    neoplasm_codes: tuple[str, ...]
    injury_domains: frozenset[str]
    injury_codes: tuple[str, ...]
    mental_domains: frozenset[str]
    mental_codes: tuple[str, ...]
    infection_domains: frozenset[str]
    infection_concepts: frozenset[str]
    infection_codes: tuple[str, ...]
    symptom_domains: frozenset[str]
    symptom_codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MeasureRule:
    """How a measure's prior value is derived: which way is worse, the step, the limits."""

    bad: str  # "up", "down" or "both" (away from the normal range)
    step: tuple[float, float]
    limits: tuple[float, float]


@dataclass(frozen=True)
class Rates:
    reasoning: dict[str, float]
    negatives: dict[str, float]
    context: float
    improving: float


@dataclass(frozen=True)
class ProblemFacts:
    """What the scenario holds about one problem, as the narrator's inputs (see
    :func:`facts_for`)."""

    findings: tuple[str, ...] = ()  # printed abnormal exam findings of the problem
    normal_findings: tuple[str, ...] = ()  # its printed normal (reassuring) findings
    labs: tuple[str, ...] = ()  # printed results of the problem, as shown: "A1c 8.4%"
    results: tuple[Any, ...] = ()  # the same results as scenario Result objects
    drugs: tuple[str, ...] = ()  # the problem's drugs on the list, names only
    present: tuple[str, ...] = ()  # what the note states as present (for negatives)


# ---------------------------------------------------------------------------------------------
# the narrator


class Narrator:
    """The validated fragments of one narrative file and the seeded draws over them."""

    def __init__(
        self,
        path: str,
        types: dict[str, Parts],
        overrides: tuple[Override, ...],
        pools: dict[str, tuple[Fragment, ...]],
        expand: dict[str, tuple[str, ...]],
        rates: Rates,
        classify: Classify,
        measures: dict[str, MeasureRule],
        results: dict[str, tuple[Fragment, ...]],
        when: tuple[str, ...],
        changes: dict[str, tuple[Fragment, ...]],
        reasons: tuple[str, ...],
        side_effects: tuple[str, ...],
    ) -> None:
        self.path = path
        self.types = types
        self.overrides = overrides
        self.pools = pools
        self.expand = expand
        self.rates = rates
        self.classify = classify
        self.measures = measures
        self.results = results
        self.when = when
        self.changes = changes
        self.reasons = reasons
        self.side_effects = side_effects
        self._chains: dict[tuple[str, str, str, str], tuple[Parts, ...]] = {}
        self._term_cache: dict[str, frozenset[str]] = {}
        self._expand_marks = tuple(
            (re.compile(rf"(?<![a-z/]){re.escape(short)}(?![a-z/])"), " ".join(words))
            for short, words in expand.items()
        )

    # -- types -------------------------------------------------------------------------------

    def problem_type(self, fact: Any, kind: Any = None, course: str = "") -> str:
        """The narrative type of a coded problem (a :class:`ProblemFact`), from its status,
        code, concept domain, episode and MDM kind (``medcode.policy.mdm.ProblemKind``, when
        known) or course ("worse" from the decision's ``courses``); "" for a problem that is
        not current (history, family history, resolved, negated, ruled out) or an external
        cause (V00-Y99: how an injury happened, not a problem)."""
        from medcode.records import Episode, Status

        status = Status(getattr(fact, "status", "active"))
        if status is Status.UNCERTAIN:
            return "uncertain"
        if status not in (Status.ACTIVE, Status.CHRONIC):
            return ""
        rules = self.classify
        concept = getattr(fact, "concept", None)
        domain = getattr(concept, "domain", "") or ""
        concept_id = getattr(concept, "id", "") or ""
        code = _compact(getattr(fact, "code", "") or "")
        if code.startswith(("V", "W", "X", "Y")):
            return ""

        def of(domains: frozenset[str], codes: tuple[str, ...]) -> bool:
            return domain in domains if concept is not None else code.startswith(codes)

        kind_value = str(getattr(kind, "value", kind) or "")
        worse = course == "worse" or kind_value in (
            "chronic_exacerbation",
            "chronic_severe_exacerbation",
        )
        if code.startswith("Z") or of(rules.screening_domains, rules.screening_codes):
            return "screening_or_z"
        if of(rules.neoplasm_domains, rules.neoplasm_codes):
            return "neoplasm"
        if of(rules.injury_domains, rules.injury_codes):
            episode = getattr(fact, "episode", None)
            later = episode in (Episode.SUBSEQUENT, Episode.SEQUELA)
            return "injury_followup" if later or status is Status.CHRONIC else "injury"
        if of(rules.mental_domains, rules.mental_codes):
            worse = worse or (status is Status.ACTIVE and not kind_value.startswith("stable"))
            return "mental_health_worse" if worse else "mental_health_stable"
        if status is Status.CHRONIC:
            return "chronic_worse" if worse else "chronic_stable"
        infection = (
            domain in rules.infection_domains or concept_id in rules.infection_concepts
            if concept is not None
            else code.startswith(rules.infection_codes)
        )
        if infection:
            return "infection"
        if worse or (not kind_value and (_exacerbation_code(code) or _chronic_title(code))):
            return "chronic_worse"
        acute_kinds = ("threat_to_life", "acute_systemic", "acute_complicated_injury")
        if concept is not None and kind_value not in acute_kinds:
            weights = getattr(concept, "statuses", {}) or {}
            if weights.get(Status.CHRONIC, 0) >= max(weights.get(Status.ACTIVE, 0), 1e-9):
                return "chronic_new"  # a condition mostly seen as chronic, diagnosed today
        if kind_value == "undiagnosed_new" or of(rules.symptom_domains, rules.symptom_codes):
            return "acute_symptom"
        return "acute_other"

    # -- the draws ---------------------------------------------------------------------------

    def hpi(
        self,
        rng: random.Random,
        phrase: str,
        type: str,
        *,
        concept: str = "",
        domain: str = "",
        code: str = "",
        drugs: Sequence[str] = (),
        present: Iterable[str] = (),
        age: int | None = None,
        suspected: bool | None = None,
        setting: str = "office",
    ) -> str:
        """History of the problem: an onset/duration/course sentence about ``phrase``, at
        times a context sentence and a pertinent negative that denies nothing in ``present``
        (every phrase, symptom and finding the note states as present). For ``uncertain``
        pass the symptoms as ``phrase`` with ``suspected=False``, or, with no symptoms, the
        suspected diagnosis with ``suspected=True`` (its sentences carry an uncertainty cue):
        the choice is required, a diagnosis must never read as established. ``age`` caps a duration
        in years or months at half the age."""
        _check_setting(setting)
        if type == "uncertain" and suspected is None:
            raise ValueError(
                "uncertain: pass suspected=False with the symptoms as the phrase, or "
                "suspected=True with the suspected diagnosis"
            )
        chain = self._chain(type, concept, domain, code)
        part = "hpi_suspected" if suspected and type == "uncertain" else "hpi"
        drug = _drug_name(rng.choice(list(drugs))) if drugs else ""
        available = frozenset({setting, "drug"} if drug else {setting})
        fragment = _pick(rng, self._part(chain, part), available)
        values = self._values(rng, chain, phrase, age)
        sentences = [_fill(fragment, drug=drug, **values)]
        if rng.random() < self.rates.context:
            sentences.append(_pick(rng, self._part(chain, "context"), available).text)
        if rng.random() < self.rates.negatives[type]:
            negative = self._negative(rng, chain, [phrase, *present])
            if negative:
                sentences.append(negative)
        return " ".join(sentences)

    def reasoning(
        self,
        rng: random.Random,
        phrase: str,
        type: str,
        *,
        findings: Sequence[str] = (),
        labs: Sequence[Any] = (),
        drugs: Sequence[str] = (),
        normal_findings: Sequence[str] = (),
        setting: str = "office",
        concept: str = "",
        domain: str = "",
        code: str = "",
        always: bool = False,
    ) -> str:
        """The clinician's reasoning about ``phrase``, or "" (drawn at the type's reasoning
        rate unless ``always``). Slots are filled only from the arguments: ``findings`` (the
        problem's printed abnormal exam findings), ``normal_findings`` (its printed reassuring
        ones), ``labs`` (its printed results, strings or
        Result-like objects), ``drugs`` (its drugs on the list); a fragment whose slot has no
        value is not drawn, nor one written for another ``setting``. For ``uncertain`` pass
        the suspected diagnosis as ``phrase`` (every fragment puts a cue before it)."""
        _check_setting(setting)
        if not always and rng.random() >= self.rates.reasoning[type]:
            return ""
        chain = self._chain(type, concept, domain, code)
        values = {
            "finding": list(findings),
            "normal": list(normal_findings),
            "lab": [lab if isinstance(lab, str) else shown(lab) for lab in labs],
            "drug": [_drug_name(d) for d in drugs],
        }
        available = frozenset({setting, *(k for k, v in values.items() if v)})
        fragment = _pick(rng, self._part(chain, "reasoning"), available)
        chosen = {k: rng.choice(v) for k, v in values.items() if v and k in fragment.slots}
        course = rng.choice(self._part(chain, "course")).text
        return _fill(fragment, x=phrase, course=course, **chosen)

    def plan(
        self,
        rng: random.Random,
        type: str,
        *,
        setting: str = "office",
        drugs: Sequence[str] = (),
        tests: bool = False,
        concept: str = "",
        domain: str = "",
        code: str = "",
    ) -> str:
        """A plan sentence that fits the problem type and setting (office, ed, hospital,
        discharge: see :func:`setting_for`): follow-up, monitoring, counselling or return
        precautions, printed beside the decision's plan words. ``drugs``: the problem's
        current drugs (a fragment may counsel on one); ``tests``: whether the problem has
        tests ordered or resulted (a fragment may promise to call with results)."""
        _check_setting(setting)
        chain = self._chain(type, concept, domain, code)
        options = self._plan(chain, setting)
        drug = _drug_name(rng.choice(list(drugs))) if drugs else ""
        available = {setting, "drug"} if drug else {setting}
        if tests:
            available.add("tests")
        fragment = _pick(rng, options, frozenset(available))
        return _fill(fragment, drug=drug)

    def result_line(self, rng: random.Random, result: Any, course: str) -> str:
        """An interpreted result ("A1c up from 7.2% to 8.1%") of a printed value, with a prior
        value derived from it and the course: "worse", "improving" or "stable". ``result``: a
        scenario Result (``.measure`` with key, short, unit, normal, decimals; ``.value``) or
        an object with ``key``/``short``/``value``/``unit``. "" when the value is not a
        number or the course is "" (see :meth:`result_course`); "stable" wording when the
        course cannot be shown (a value inside the normal range of a measure that is bad both
        ways, or no rule for the measure)."""
        if course == "":
            return ""
        if course not in COURSES:
            raise ValueError(f"unknown course {course!r}; one of {', '.join(COURSES)}")
        key, name, value, unit, normal, decimals = _measure_of(result)
        number = _number(value)
        if number is None:
            return ""
        rule = self.measures.get(key)
        when = rng.choice(self.when)
        shown_value = _with_unit(value, unit)
        direction = _bad_direction(rule, number, normal) if rule else None
        if course != "stable" and direction is not None:
            low, high = rule.step
            delta = rng.uniform(low, high)
            # worse: the prior value was better, i.e. on the good side of today's value
            sign = -direction if course == "worse" else direction
            prior = _clamp(number + sign * delta, rule.limits)
            prior_text = _format(prior, decimals)
            moved = _number(prior_text)
            if (
                moved is not None
                and (number - moved) * direction * (1 if course == "worse" else -1) > 0
            ):
                rose = number > moved
                options = self.results["rise" if rose else "fall"] + self.results[course]
                fragment = rng.choice(options)
                return _fill(
                    fragment,
                    name=name,
                    value=shown_value,
                    prior=_with_unit(prior_text, unit),
                    when=when,
                )
        options = self.results["stable"]
        if rule is None:
            options = tuple(f for f in options if "prior" not in f.slots) or options
        fragment = rng.choice(options)
        prior_text = value
        if rule is not None and "prior" in fragment.slots:
            wobble = rng.uniform(0, rule.step[0] / 2) * rng.choice((-1, 1))
            prior_text = _format(_clamp(number + wobble, rule.limits), decimals)
        return _fill(
            fragment, name=name, value=shown_value, prior=_with_unit(prior_text, unit), when=when
        )

    def result_course(self, rng: random.Random, type: str, result: Any = None) -> str:
        """The course a problem's printed ``result`` is described with, "" for a type whose
        results have no prior to be read against (:data:`RESULT_TYPES`: an acute problem's
        result is new today). A worse problem's result is "worse" when it lies outside its
        normal range on the bad side, else "stable" (the value that drove the decision moved;
        the others did not); a stable problem's is "improving" at the improving rate, else
        "stable". :meth:`result_line` prints nothing for ""."""
        if type not in RESULT_TYPES:
            return ""
        worse = type in ("chronic_worse", "mental_health_worse")
        if worse and result is not None:
            key, _, value, _, normal, _ = _measure_of(result)
            number, rule = _number(value), self.measures.get(key)
            if number is None or rule is None or normal is None:
                return "stable"
            direction = _bad_direction(rule, number, normal)
            off = (direction == 1 and number > normal[1]) or (
                direction == -1 and number < normal[0]
            )
            return "worse" if off else "stable"
        if worse:
            return "worse"
        return "improving" if rng.random() < self.rates.improving else "stable"

    def change_line(self, rng: random.Random, action: str, drug: str, phrase: str = "") -> str:
        """A documented medication change: ``action`` start, stop (with a generic reason),
        increase or decrease (where the decision adjusts a dose) of ``drug``, for the problem
        ``phrase`` when given."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        name = drug if action == "start" or _MARK_CHAR in drug else _drug_name(drug)
        available = frozenset({"x", "drug", "side_effect"} if phrase else {"drug", "side_effect"})
        options = [f for f in self.changes[action] if f.slots <= available | _DRAWN]
        if not phrase:
            options = [f for f in options if "x" not in f.slots]
        fragment = rng.choice(options)
        return _fill(
            fragment,
            drug=name,
            x=phrase,
            reason=rng.choice(self.reasons),
            side_effect=rng.choice(self.side_effects),
        )

    # -- helpers -----------------------------------------------------------------------------

    def fragments(self) -> list[tuple[str, Fragment]]:
        """Every fragment with where it sits ("types.infection.hpi", "overrides[3].plan.ed",
        "negatives.cardiac", ...): for audits and the fact-lock test."""
        found: list[tuple[str, Fragment]] = []

        def add(where: str, parts: Parts) -> None:
            for name in ("course", "hpi", "hpi_suspected", "context", "reasoning"):
                for fragment in getattr(parts, name) or ():
                    found.append((f"{where}.{name}", fragment))
            for setting, options in parts.plan.items():
                found.extend((f"{where}.plan.{setting}", f) for f in options)

        for name, parts in self.types.items():
            add(f"types.{name}", parts)
        for index, override in enumerate(self.overrides):
            add(f"overrides[{index}]", override.parts)
        for name, pool in self.pools.items():
            found += [(f"negatives.{name}", f) for f in pool]
        for name, options in self.results.items():
            found += [(f"results.{name}", f) for f in options]
        for name, options in self.changes.items():
            found += [(f"medication_changes.{name}", f) for f in options]
        words = [
            ("results.when", self.when),
            ("medication_changes.reasons", self.reasons),
            ("medication_changes.side_effects", self.side_effects),
        ]
        for where, texts in words:
            found += [(where, Fragment(t, getattr(t, "line", 0), frozenset())) for t in texts]
        return found

    def chain(
        self, type: str, concept: str = "", domain: str = "", code: str = ""
    ) -> tuple[Parts, ...]:
        """The parts that apply to a problem, most specific first (concept overrides, code
        overrides by prefix length, domain overrides, the type)."""
        return self._chain(type, concept, domain, code)

    def _chain(self, type: str, concept: str, domain: str, code: str) -> tuple[Parts, ...]:
        if type not in self.types:
            raise ValueError(f"unknown narrative type {type!r}; one of {', '.join(TYPES)}")
        key = (type, concept, domain, _compact(code))
        found = self._chains.get(key)
        if found is None:
            compact = key[3]
            fits = [o for o in self.overrides if o.types is None or type in o.types]
            by_concept = [o.parts for o in fits if concept and concept in o.concepts]
            by_code = sorted(
                (
                    (max(len(p) for p in o.codes if compact.startswith(p)), i, o.parts)
                    for i, o in enumerate(fits)
                    if compact and any(compact.startswith(p) for p in o.codes)
                ),
                key=lambda item: (-item[0], item[1]),
            )
            by_domain = [o.parts for o in fits if domain and domain in o.domains]
            found = (*by_concept, *(p for _, _, p in by_code), *by_domain, self.types[type])
            self._chains[key] = found
        return found

    @staticmethod
    def _part(chain: tuple[Parts, ...], name: str) -> Any:
        """The most specific level's list of a part, joined by the next levels' while a
        level adds to them rather than replacing them."""
        found: list[Any] = []
        for parts in chain:
            value = getattr(parts, name)
            if value is None:
                continue
            if isinstance(value, Duration):
                return value
            found += [v for v in value if v not in found]
            if name not in parts.adds:
                break
        if not found:
            raise ValueError(f"no {name!r} fragments")
        return tuple(found)

    @staticmethod
    def _plan(chain: tuple[Parts, ...], setting: str) -> tuple[Fragment, ...]:
        for wanted in (setting, "office"):
            found: list[Fragment] = []
            texts: set[str] = set()
            for parts in chain:
                if wanted not in parts.plan:
                    continue
                for fragment in parts.plan[wanted]:
                    if fragment.text not in texts:
                        texts.add(fragment.text)
                        found.append(fragment)
                if "plan" not in parts.adds:
                    break
            if found:
                return tuple(found)
        raise ValueError("no plan fragments")

    def _values(
        self, rng: random.Random, chain: tuple[Parts, ...], phrase: str, age: int | None
    ) -> dict[str, str]:
        span: Duration = self._part(chain, "duration")
        high = span.high
        if age is not None and span.unit in ("years", "months"):
            limit = max(1, age // 2) * (12 if span.unit == "months" else 1)
            high = max(span.low, min(high, limit))
        count, unit = rng.randint(span.low, high), span.unit
        if unit == "months" and count >= 24:  # "2 years", not "26 months"
            count, unit = count // 12, "years"
        word = unit if count != 1 else unit[:-1]
        return {
            "x": phrase,
            "duration": f"{count} {word}",
            "dur": f"{count}{_SHORT_UNITS[unit]}",
            "course": rng.choice(self._part(chain, "course")).text,
        }

    def _negative(self, rng: random.Random, chain: tuple[Parts, ...], present: list[str]) -> str:
        said = set()
        for text in present:
            said |= self._terms(text)
        options = [
            f
            for pool in self._part(chain, "negatives")
            for f in self.pools[pool]
            if not (self._terms(f.text) & said)
        ]
        return rng.choice(options).text if options else ""

    def _terms(self, text: str) -> frozenset[str]:
        """Symptom words of a text (shorthand expanded), singular, without filler words;
        cached per text."""
        terms = self._term_cache.get(text)
        if terms is None:
            lower = text.lower()
            extra = [words for mark, words in self._expand_marks if mark.search(lower)]
            tokens = _WORD.findall(" ".join([lower, *extra]))
            terms = frozenset(
                _singular(t) for t in tokens if t not in _NEGATIVE_STOP and len(t) > 2
            )
            self._term_cache[text] = terms
        return terms


# ---------------------------------------------------------------------------------------------
# module API


def problem_type(fact: Any, kind: Any = None, course: str = "") -> str:
    """The narrative type of a problem, by the shipped rules (:meth:`Narrator.problem_type`)."""
    return shipped_narrative().problem_type(fact, kind, course)


def subject(fact: Any) -> dict[str, str]:
    """The keyword arguments that select a problem's overrides: concept, domain, code."""
    concept = getattr(fact, "concept", None)
    return {
        "concept": getattr(concept, "id", "") or "",
        "domain": getattr(concept, "domain", "") or "",
        "code": getattr(fact, "code", "") or "",
    }


def setting_for(kind: Any, admitted: bool = False) -> str:
    """The plan setting of a visit kind (``medcode.records.VisitKind``): office (office,
    telehealth, preventive), ed, hospital (admission, hospital progress; an ED visit that
    admits) or discharge."""
    value = str(getattr(kind, "value", kind))
    if value == "emergency":
        return "hospital" if admitted else "ed"
    if value in ("hospital_admission", "hospital_subsequent"):
        return "hospital"
    if value == "hospital_discharge":
        return "discharge"
    return "office"


def shown(result: Any) -> str:
    """A result as a note shows it: "A1c 8.4%", "LDL 131 mg/dL"."""
    _, name, value, unit, _, _ = _measure_of(result)
    return f"{name} {_with_unit(value, unit)}"


def facts_for(scenario: Any, index: int, present: tuple[str, ...] | None = None) -> ProblemFacts:
    """The narrator's inputs for ``scenario.problems[index]`` from a :class:`Scenario`: the
    problem's printed exam findings, printed results and listed drugs (its concept's, minus
    those started or stopped today), and everything the note states as present (``present``: the
    scenario's :func:`present_terms`, when the caller has them already)."""
    fact = scenario.problems[index]
    concept = fact.concept
    findings: tuple[str, ...] = ()
    normal: tuple[str, ...] = ()
    results: list[Any] = []
    drugs: tuple[str, ...] = ()
    if concept is not None:
        own = set(concept.exam)
        printed = [e for e in scenario.exam if e in own]
        findings = tuple(e for e in printed if not is_normal_finding(e))
        normal = tuple(e for e in printed if is_normal_finding(e))
        keys = list(concept.labs) + list(concept.vitals)
        for form in concept.forms:
            if form.code == fact.code:
                keys += list(form.labs) + list(form.vitals)
        printed = {r.measure.key: r for r in (*scenario.labs, *scenario.vitals)}
        results = [printed[k] for k in dict.fromkeys(keys) if k in printed]
        names = {m.name for m in concept.medications}
        # a drug started today is no drug the problem is "on" ("not at goal despite
        # atorvastatin" beside "new prescription: atorvastatin"); one stopped, no longer
        changed = {c.name for c in scenario.medication_changes}
        drugs = tuple(
            _drug_name(m.name)
            for m in scenario.medications
            if m.name in names and m.name not in changed
        )
    return ProblemFacts(
        findings=findings,
        normal_findings=normal,
        labs=tuple(shown(r) for r in results),
        results=tuple(results),
        drugs=tuple(dict.fromkeys(drugs)),
        present=present_terms(scenario) if present is None else present,
    )


_REASSURING = re.compile(
    r"^(no|not|without|negative)\b|\b(nontender|non-tender|intact|normal|clear|unremarkable|"
    r"regular rate|symmetric|well-healed|well healed|equal and reactive)\b",
    re.IGNORECASE,
)


def is_normal_finding(finding: str) -> bool:
    """Whether an exam finding is reassuring (normal) rather than abnormal: by the exam table
    of data/synth/clinical rules where it knows the finding, else by its words ("no ...",
    "... intact", "nontender")."""
    from medcode.synth.clinical import shipped_rules

    classes = shipped_rules().exam.classify(finding)
    if classes:
        return all(item.normal for item in classes)
    return bool(_REASSURING.search(finding))


def present_terms(scenario: Any) -> tuple[str, ...]:
    """What a note states as present, for the choice of pertinent negatives: each current
    problem's label, phrases and symptoms, every exam finding, and "fever" when the printed
    temperature is 100.4 F or more."""
    from medcode.records import Status
    from medcode.terminology import icd10cm

    current = (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN)
    terms: list[str] = list(scenario.exam)
    for fact in scenario.problems:
        if fact.status not in current:
            continue
        for options in fact.phrases.values():
            terms += [o for o in options if "{" not in o]
        codes = list(fact.symptoms)
        if fact.concept is not None:
            terms.append(fact.concept.label)
            codes += list(fact.concept.symptoms)
        for code in dict.fromkeys(codes):
            try:
                terms.append(icd10cm.description(code))
            except (CodeError, KeyError, ValueError):  # no title: the code adds no words
                continue
    for result in scenario.vitals:
        number = _number(result.value)
        if result.measure.key == "temperature" and number is not None and number >= 100.4:
            terms.append("fever")
    return tuple(dict.fromkeys(terms))


@cache
def shipped_narrative() -> Narrator:
    """The shipped fragments (``data/synth/narrative.yaml``), loaded and validated once."""
    return load_narrative()


def load_narrative(path: str | Path | None = None) -> Narrator:
    """Load and validate a narrative file; every error names the file, the line and the
    problem (unknown type or placeholder, empty list, bad duration range, ...)."""
    return _Reader(Path(path) if path else package_data("synth/narrative.yaml")).read()


# ---------------------------------------------------------------------------------------------
# loading


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: object, problem: str, parent: object = None) -> DataFileError:
        line = getattr(node, "line", None) or getattr(parent, "line", None)
        return DataFileError(self.path, line, problem)

    def mapping(self, node: object, what: str, parent: object = None) -> LineDict:
        if not isinstance(node, LineDict):
            raise self.fail(node, f"{what} must be a mapping", parent)
        return node

    def keys(self, node: LineDict, what: str, allowed: Iterable[str]) -> None:
        allowed = set(allowed)
        for key in node:
            if key not in allowed:
                raise self.fail(
                    key, f"{what}: unknown key {key!r}; one of {', '.join(sorted(allowed))}", node
                )

    def strings(self, node: object, what: str, parent: object = None) -> tuple[LineStr, ...]:
        if not isinstance(node, list):
            raise self.fail(node, f"{what} must be a list", parent)
        if not node:
            raise self.fail(node, f"{what} is an empty list", parent)
        for item in node:
            if not isinstance(item, str) or not item.strip():
                raise self.fail(item, f"{what}: every item must be a non-empty string", parent)
        return tuple(node)

    def fragments(self, node: object, what: str, slots: frozenset[str], parent: object) -> tuple:
        if not isinstance(node, list):
            raise self.fail(node, f"{what} must be a list", parent)
        if not node:
            raise self.fail(node, f"{what} is an empty list", parent)
        found = []
        for item in node:
            when: frozenset[str] = frozenset()
            if isinstance(item, LineDict):
                self.keys(item, what, ("text", "when"))
                raw_when = item.get("when", [])
                raw_when = [raw_when] if isinstance(raw_when, str) else raw_when
                if not isinstance(raw_when, list) or not set(raw_when) <= set(CONDITIONS):
                    raise self.fail(
                        item, f"{what}: 'when' must name one of {', '.join(CONDITIONS)}", parent
                    )
                when = frozenset(raw_when)
                line = item.line
                item = item.get("text")
            else:
                line = getattr(item, "line", 0)
            if not isinstance(item, str) or not item.strip():
                raise self.fail(item, f"{what}: every item must be a non-empty string", parent)
            try:
                names = {n for _, n, _, _ in string.Formatter().parse(item) if n is not None}
            except ValueError as exc:
                raise DataFileError(self.path, line, f"{what}: {item!r}: {exc}") from None
            unknown = names - slots
            if unknown:
                raise DataFileError(
                    self.path,
                    line,
                    f"{what}: unknown placeholder(s) {', '.join(sorted(unknown))} in {item!r}; "
                    f"allowed: {', '.join(sorted(slots)) or 'none'}",
                )
            found.append(Fragment(str(item).strip(), line, frozenset(names), when))
        return tuple(found)

    def rate(self, node: LineDict, key: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise self.fail(node, f"rates: {key}: {value!r} is not a number in [0, 1]")
        return float(value)

    def pair(self, node: LineDict, what: str, value: object) -> tuple[float, float]:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or value[0] > value[1]
        ):
            raise self.fail(node, f"{what}: expected [low, high] with low <= high, got {value!r}")
        return float(value[0]), float(value[1])

    # -- sections ----------------------------------------------------------------------------

    def read(self) -> Narrator:
        data = self.mapping(_load(self.path), "the file")
        sections = (
            "source",
            "rates",
            "classify",
            "negatives",
            "types",
            "overrides",
            "results",
            "medication_changes",
        )
        self.keys(data, "the file", sections)
        for key in sections[1:]:
            if key != "overrides" and key not in data:
                raise self.fail(data, f"missing section {key!r}")
        pools, expand = self.negatives(self.mapping(data["negatives"], "negatives", data))
        types = self.types(self.mapping(data["types"], "types", data), pools)
        overrides = self.overrides(data.get("overrides") or [], data, pools)
        rates = self.rates(self.mapping(data["rates"], "rates", data))
        classify = self.classify(self.mapping(data["classify"], "classify", data))
        measures, results, when = self.results(self.mapping(data["results"], "results", data))
        changes, reasons, side_effects = self.changes(
            self.mapping(data["medication_changes"], "medication_changes", data)
        )
        return Narrator(
            str(self.path),
            types,
            overrides,
            pools,
            expand,
            rates,
            classify,
            measures,
            results,
            when,
            changes,
            reasons,
            side_effects,
        )

    def negatives(self, node: LineDict) -> tuple[dict, dict]:
        self.keys(node, "negatives", ("expand", "pools"))
        raw = self.mapping(node.get("pools"), "negatives.pools", node)
        pools = {
            str(name): self.fragments(items, f"negatives.pools.{name}", _SLOTS["negatives"], raw)
            for name, items in raw.items()
        }
        expand_node = node.get("expand") or LineDict()
        expand_node = self.mapping(expand_node, "negatives.expand", node)
        expand = {
            str(short).lower(): tuple(
                s.lower() for s in self.strings(words, f"negatives.expand.{short}", expand_node)
            )
            for short, words in expand_node.items()
        }
        return pools, expand

    def parts(self, node: LineDict, where: str, pools: dict, required: bool) -> Parts:
        values: dict[str, Any] = {}
        allowed = _PARTS if required else (*_PARTS, "add")
        for key in node:
            if key not in allowed:
                raise self.fail(
                    key, f"{where}: unknown part {key!r}; one of {', '.join(allowed)}", node
                )
        adds: frozenset[str] = frozenset()
        if "add" in node:
            names = self.strings(node["add"], f"{where}.add", node)
            for name in names:
                if name not in node or name == "duration":
                    raise self.fail(
                        name, f"{where}.add: {name!r} is not a list this override gives", node
                    )
            adds = frozenset(str(n) for n in names)
        for name in ("course", "hpi", "hpi_suspected", "context", "reasoning"):
            if name in node:
                values[name] = self.fragments(node[name], f"{where}.{name}", _SLOTS[name], node)
        if "duration" in node:
            raw = self.mapping(node["duration"], f"{where}.duration", node)
            self.keys(raw, f"{where}.duration", ("unit", "range"))
            unit = raw.get("unit")
            if unit not in UNITS:
                raise self.fail(
                    raw, f"{where}.duration: unit {unit!r} is not one of {', '.join(UNITS)}"
                )
            span = raw.get("range")
            if (
                not isinstance(span, list)
                or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
                or not 1 <= span[0] <= span[1]
            ):
                raise self.fail(
                    raw,
                    f"{where}.duration: bad duration range {span!r}: expected [low, high], "
                    "whole numbers with 1 <= low <= high",
                )
            values["duration"] = Duration(str(unit), span[0], span[1])
        if "negatives" in node:
            names = self.strings(node["negatives"], f"{where}.negatives", node)
            for name in names:
                if name not in pools:
                    raise self.fail(
                        name,
                        f"{where}.negatives: unknown pool {name!r}; one of {', '.join(pools)}",
                        node,
                    )
            values["negatives"] = tuple(str(n) for n in names)
        plan: dict[str, tuple[Fragment, ...]] = {}
        if "plan" in node:
            raw = self.mapping(node["plan"], f"{where}.plan", node)
            self.keys(raw, f"{where}.plan", SETTINGS)
            for setting, items in raw.items():
                plan[str(setting)] = self.fragments(
                    items, f"{where}.plan.{setting}", _SLOTS["plan"], raw
                )
        if required:
            for name in _REQUIRED:
                if name == "plan":
                    if "office" not in plan:
                        raise self.fail(node, f"{where}: the plan needs an 'office' list")
                elif name not in values:
                    raise self.fail(node, f"{where}: missing part {name!r}")
        return Parts(plan=plan, adds=adds, **values)

    def types(self, node: LineDict, pools: dict) -> dict[str, Parts]:
        found = {}
        for name, raw in node.items():
            if name not in TYPES:
                raise self.fail(
                    name, f"types: unknown type {name!r}; one of {', '.join(TYPES)}", node
                )
            raw = self.mapping(raw, f"types.{name}", node)
            found[str(name)] = self.parts(raw, f"types.{name}", pools, required=True)
        missing = [t for t in TYPES if t not in found]
        if missing:
            raise self.fail(node, f"types: missing type(s) {', '.join(missing)}")
        if found["uncertain"].hpi_suspected is None:
            raise self.fail(node["uncertain"], "types.uncertain: missing part 'hpi_suspected'")
        return found

    def overrides(self, node: object, parent: LineDict, pools: dict) -> tuple[Override, ...]:
        from medcode.synth.catalog import shipped_catalog

        if not isinstance(node, list):
            raise self.fail(node, "overrides must be a list", parent)
        catalog = shipped_catalog()
        domains = {c.domain for c in catalog.concepts.values()}
        found = []
        for index, raw in enumerate(node):
            where = f"overrides[{index}]"
            raw = self.mapping(raw, where, parent)
            selectors = {k: raw[k] for k in ("concepts", "codes", "domains") if k in raw}
            if not selectors:
                raise self.fail(raw, f"{where}: give concepts, codes or domains")
            concepts = self.strings(raw.get("concepts", ["-"]), f"{where}.concepts", raw)
            for concept in concepts if "concepts" in raw else ():
                if concept not in catalog.concepts:
                    raise self.fail(concept, f"{where}: unknown concept {concept!r}", raw)
            codes = self.strings(raw.get("codes", ["-"]), f"{where}.codes", raw)
            for code in codes if "codes" in raw else ():
                if not _CODE_PREFIX.match(_compact(code)):
                    raise self.fail(code, f"{where}: {code!r} is not an ICD-10-CM prefix", raw)
            named = self.strings(raw.get("domains", ["-"]), f"{where}.domains", raw)
            for domain in named if "domains" in raw else ():
                if domain not in domains:
                    raise self.fail(
                        domain,
                        f"{where}: unknown domain {domain!r}; one of {', '.join(sorted(domains))}",
                        raw,
                    )
            types = None
            if "types" in raw:
                types = self.strings(raw["types"], f"{where}.types", raw)
                for name in types:
                    if name not in TYPES:
                        raise self.fail(
                            name,
                            f"{where}: unknown type {name!r}; one of {', '.join(TYPES)}",
                            raw,
                        )
            body = LineDict({k: v for k, v in raw.items() if k not in (*selectors, "types")})
            body.line = raw.line
            if not body:
                raise self.fail(raw, f"{where}: no parts to override")
            parts = self.parts(body, where, pools, required=False)
            found.append(
                Override(
                    concepts=frozenset(concepts) if "concepts" in raw else frozenset(),
                    codes=tuple(_compact(c) for c in codes) if "codes" in raw else (),
                    domains=frozenset(named) if "domains" in raw else frozenset(),
                    types=frozenset(types) if types is not None else None,
                    parts=parts,
                    line=raw.line,
                )
            )
        return tuple(found)

    def rates(self, node: LineDict) -> Rates:
        self.keys(node, "rates", ("source", "reasoning", "negatives", "context", "improving"))
        if not isinstance(node.get("source"), str) or not node["source"].strip():
            raise self.fail(node, "rates: missing or empty 'source' (where the rates come from)")
        per_type = {}
        for key in ("reasoning", "negatives"):
            raw = self.mapping(node.get(key), f"rates.{key}", node)
            for name in raw:
                if name not in TYPES:
                    raise self.fail(name, f"rates.{key}: unknown type {name!r}", raw)
            missing = [t for t in TYPES if t not in raw]
            if missing:
                raise self.fail(raw, f"rates.{key}: missing type(s) {', '.join(missing)}")
            per_type[key] = {str(t): self.rate(raw, f"{key}.{t}", raw[t]) for t in TYPES}
        return Rates(
            reasoning=per_type["reasoning"],
            negatives=per_type["negatives"],
            context=self.rate(node, "context", node.get("context")),
            improving=self.rate(node, "improving", node.get("improving")),
        )

    def classify(self, node: LineDict) -> Classify:
        names = [f.name for f in Classify.__dataclass_fields__.values()]
        self.keys(node, "classify", ("source", *names))
        values: dict[str, Any] = {}
        for name in names:
            items = self.strings(node.get(name), f"classify.{name}", node)
            if name.endswith("_codes"):
                for code in items:
                    if not _CODE_PREFIX.match(_compact(code)):
                        raise self.fail(code, f"classify.{name}: {code!r} is not a code prefix")
                values[name] = tuple(_compact(c) for c in items)
            else:
                values[name] = frozenset(str(i) for i in items)
        return Classify(**values)

    def results(self, node: LineDict) -> tuple[dict, dict, tuple]:
        from medcode.synth.catalog import load_measures

        lists = ("rise", "fall", "worse", "improving", "stable")
        self.keys(node, "results", ("source", "measures", "when", *lists))
        labs, vitals = load_measures()
        known = set(labs) | set(vitals)
        measures = {}
        raw = self.mapping(node.get("measures"), "results.measures", node)
        for key, rule in raw.items():
            if key not in known:
                raise self.fail(key, f"results.measures: unknown measure {key!r}", raw)
            rule = self.mapping(rule, f"results.measures.{key}", raw)
            self.keys(rule, f"results.measures.{key}", ("bad", "step", "limits"))
            if rule.get("bad") not in ("up", "down", "both"):
                raise self.fail(rule, f"results.measures.{key}: bad must be up, down or both")
            step = self.pair(rule, f"results.measures.{key}.step", rule.get("step"))
            if step[0] <= 0:
                raise self.fail(rule, f"results.measures.{key}.step must be above 0")
            limits = self.pair(rule, f"results.measures.{key}.limits", rule.get("limits"))
            measures[str(key)] = MeasureRule(str(rule["bad"]), step, limits)
        results = {
            name: self.fragments(node.get(name), f"results.{name}", _SLOTS["results"], node)
            for name in lists
        }
        when = tuple(str(w) for w in self.strings(node.get("when"), "results.when", node))
        return measures, results, when

    def changes(self, node: LineDict) -> tuple[dict, tuple, tuple]:
        self.keys(node, "medication_changes", (*ACTIONS, "reasons", "side_effects"))
        changes = {
            action: self.fragments(
                node.get(action), f"medication_changes.{action}", _SLOTS["changes"], node
            )
            for action in ACTIONS
        }
        for action, options in changes.items():
            if not any("x" not in f.slots for f in options):
                raise self.fail(
                    node, f"medication_changes.{action}: needs a fragment without {{x}}"
                )
        reasons = self.strings(node.get("reasons"), "medication_changes.reasons", node)
        effects = self.strings(node.get("side_effects"), "medication_changes.side_effects", node)
        return changes, reasons, effects


# ---------------------------------------------------------------------------------------------
# small helpers

_MARK_CHAR = "\ue000"  # the renderer's evidence marker: a marked string is never shortened
_STOP_WORDS = {"per", "as", "at", "daily", "twice", "with", "weekly", "nightly", "to", "via"}


def _drug_name(medication: str) -> str:
    """'metformin 1000 mg twice daily' -> 'metformin' (as medcode.synth.decision.drug_name)."""
    if _MARK_CHAR in medication:
        return medication
    words = []
    for word in medication.split():
        if any(ch.isdigit() for ch in word) or word.lower() in _STOP_WORDS:
            break
        words.append(word)
    return " ".join(words) or medication


def _check_setting(setting: str) -> None:
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; one of {', '.join(SETTINGS)}")


def _pick(rng: random.Random, options: Sequence[Fragment], available: frozenset[str]) -> Fragment:
    fitting = [f for f in options if f.fits(available)]
    if not fitting:
        raise ValueError("no fragment fits the facts given (each list needs one without slots)")
    return rng.choice(fitting)


def _fill(fragment: Fragment, **values: str) -> str:
    return fragment.text.format_map({k: values.get(k, "") for k in fragment.slots})


def _compact(code: str) -> str:
    return code.replace(".", "").upper()


@cache
def _exacerbation_code(code: str) -> bool:
    """Whether an active problem's code is a chronic illness's exacerbation (MDM tables)."""
    from medcode.synth.decision import shipped_rules

    return shipped_rules().matches("exacerbation_codes", code)


@cache
def _chronic_title(code: str) -> bool:
    """Whether the code's title names a chronic condition (not acute-on-chronic): an active
    one is seen today for its worsening (as medcode.synth.decision classifies it)."""
    from medcode.terminology import icd10cm

    try:
        title = icd10cm.description(code).lower()
    except (CodeError, KeyError, ValueError):
        return False
    return bool(re.search(r"\bchronic\b", title)) and "acute" not in title


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _number(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _measure_of(result: Any) -> tuple[str, str, str, str, tuple | None, int | None]:
    """(key, short name, value, unit, normal range, decimals) of a Result-like object."""
    measure = getattr(result, "measure", None)
    source = measure if measure is not None else result
    key = getattr(source, "key", "") or ""
    name = getattr(source, "short", "") or getattr(source, "name", "") or key
    unit = getattr(source, "unit", "") or ""
    normal = getattr(source, "normal", None)
    decimals = getattr(source, "decimals", None)
    value = str(getattr(result, "value", ""))
    if not key or normal is None:
        labs, vitals = _measures()
        known = {**labs, **vitals}
        match = known.get(key) or next(
            (m for m in known.values() if name in (m.short, m.name)), None
        )
        if match is not None:
            key, normal = match.key, match.normal
            decimals = match.decimals if decimals is None else decimals
    if decimals is None:
        decimals = len(value.split(".", 1)[1]) if "." in value else 0
    return key, name, value, unit, normal, decimals


@cache
def _measures() -> tuple[dict, dict]:
    from medcode.synth.catalog import load_measures

    return load_measures()


def _with_unit(value: str, unit: str) -> str:
    if not unit:
        return value
    return f"{value} {unit}" if unit[0].isalpha() else f"{value}{unit}"


def _format(number: float, decimals: int) -> str:
    return f"{number:.{decimals}f}"


def _clamp(number: float, limits: tuple[float, float]) -> float:
    return min(max(number, limits[0]), limits[1])


def _bad_direction(rule: MeasureRule, number: float, normal: tuple | None) -> int | None:
    """+1 when higher is worse, -1 when lower is worse, None when it cannot be told (a value
    inside the normal range of a measure that is bad both ways)."""
    if rule.bad == "up":
        return 1
    if rule.bad == "down":
        return -1
    if normal is None:
        return None
    if number > normal[1]:
        return 1
    if number < normal[0]:
        return -1
    return None
