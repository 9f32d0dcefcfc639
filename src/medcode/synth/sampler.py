"""Sample encounters from a profile and the condition catalog; code them with the policy
engine (gold codes come from the facts, never from text)."""

from __future__ import annotations

import datetime as dt
import random
import re
from functools import cache

from medcode.policy import code as policy_code
from medcode.policy.engine import CodingResult
from medcode.policy.facts import excludes1_conflict, icd
from medcode.policy.tables import shipped_tables
from medcode.records import (
    MDM,
    Encounter,
    Episode,
    Medication,
    Patient,
    Problem,
    Procedure,
    Setting,
    Sex,
    Status,
    Visit,
    VisitKind,
    Vitals,
)
from medcode.synth.catalog import Catalog, Concept, Form, age_band
from medcode.synth.choice import WeightedChoice
from medcode.synth.clinical import shipped_rules
from medcode.synth.decision import decide
from medcode.synth.index_synonyms import shipped_index_synonyms
from medcode.synth.patient import (
    Condition,
    HistoryItem,
    MedicationList,
    PatientRecord,
    age_on,
    birth_date,
    choose_exam,
    draw_measurements,
    episode_for,
    function_level,
    function_words,
    is_course,
)
from medcode.synth.profiles import BAND_AGES, Profile
from medcode.synth.scenario import (
    Identity,
    MedicationChange,
    MedicationFact,
    ProblemFact,
    Scenario,
)
from medcode.terminology import cpt, icd10cm

CODED = (Status.ACTIVE, Status.CHRONIC)
_SCREENING = ("Z11", "Z12", "Z13")  # encounter-for-screening codes
# Services billed by therapists and home-health agencies, never on a physician's note claim.
_THERAPISTS = ("97", "G0151", "G0152", "G0156", "G0299", "G0300")
_DISTRACTOR_STATUS = {
    "negated": Status.NEGATED,
    "ruled_out": Status.RULED_OUT,
    "resolved": Status.RESOLVED,
    "family_history": Status.FAMILY_HISTORY,
    "history": Status.HISTORY,
}
_START = dt.date(2024, 1, 1)
_MAX_ATTEMPTS = 8


def _choice(rng: random.Random, weights: dict) -> object:
    items = list(weights)
    return rng.choices(items, weights=[weights[i] for i in items])[0]


@cache
def long_tail_codes() -> tuple[str, ...]:
    """Billable ICD-10-CM codes a note may carry as a secondary problem: all but the ones
    that need their own situation (data/synth/encounters.yaml long_tail_exclude: external
    causes, injuries and complications, Z codes, pregnancy and perinatal chapters)."""
    exclude = shipped_rules().encounters.long_tail_exclude
    return tuple(
        code
        for code in icd10cm.all_codes()
        if icd10cm.is_billable(code)
        and not exclude.matches(code)
        # a manifestation ("in diseases classified elsewhere") or any code whose tabular
        # says "code first" (lead-induced gout: the lead poisoning) needs a condition a
        # long-tail draw does not document
        and "classified elsewhere" not in icd10cm.description(code)
        and not icd(code).code_first
        and index_phrases(code)  # phrased as clinicians write it, read back to this code
        and "ulceration" not in icd10cm.description(code)  # needs its L97 ulcer code too
        # "use additional code (B95-B97) to identify the infectious agent": a long-tail draw
        # documents no organism (staphylococcal arthritis without its B95 code)
        and not any(
            re.search(r"\bB9[5-7]", note.text) for note in icd10cm.use_additional_code(code)
        )
    )


def _phrase_dict(concept: Concept, form: Form) -> dict[str, tuple[str, ...]]:
    """The form's phrases by style, without those that speak a code title's qualifiers
    ("unspecified", "NOS", "encounter for": data/synth/realism.yaml) where the style has
    others: clinicians do not write them."""
    from medcode.synth.realism import load_rules

    leaked = load_rules().leaked
    found = {}
    for style, phrases in concept.form_phrases(form).items():
        texts = tuple(
            text for p in phrases if (text := p.format_map(_Attributes(form.attributes)).strip())
        )
        clean = tuple(t for t in texts if not leaked(t.replace("{side}", "right")))
        found[style] = clean or texts
    return found


def _with_synonyms(
    phrases: dict[str, tuple[str, ...]], synonyms: tuple[str, ...]
) -> dict[str, tuple[str, ...]]:
    """The form's phrases with the coder-reviewed index synonyms of its code as further
    formal phrases (data/synth/index_synonyms.csv)."""
    written = {p.lower() for options in phrases.values() for p in options}
    extra = tuple(s for s in synonyms if s.lower() not in written)
    if not extra:
        return phrases
    return {**phrases, "formal": phrases.get("formal", ()) + extra}


class _Attributes(dict):
    def __missing__(self, key: str) -> str:  # {side} is filled at render time
        return "{" + key + "}"


class Sampler:
    """Draws scenarios for one profile; build once per worker (it precomputes its tables)."""

    def __init__(self, catalog: Catalog, profile: Profile, identities: IdentityPool) -> None:
        self.catalog = catalog
        self.profile = profile
        self.identities = identities
        self.tables = shipped_tables()
        self.concepts = list(catalog.concepts.values())
        self.by_code = catalog.by_code()
        synonyms = shipped_index_synonyms()
        self.phrases = {
            (concept.id, form.code): _with_synonyms(
                _phrase_dict(concept, form), synonyms.get(form.code, ())
            )
            for concept in self.concepts
            for form in concept.forms
        }
        self.long_tail = long_tail_codes()
        self.distractor_pools = {}
        for name, status in _DISTRACTOR_STATUS.items():
            pool = [c for c in self.concepts if c.statuses.get(status, 0) > 0]
            self.distractor_pools[name] = WeightedChoice(pool, [c.statuses[status] for c in pool])
        self.rules = shipped_rules()
        self.exclusive = [group for group, _ in self.rules.encounters.exclusive]
        self._exclusive_pairs = {
            (a, b) for group in self.exclusive for a in group for b in group if a != b
        }
        # Acute reasons by visit kind: concepts the kind can be for (catalog reason_for);
        # a condition that worsens (heart failure, COPD) is a visit reason only as the
        # exacerbation of a patient's own condition.
        flaring = {
            concept
            for concept, control in self.rules.controls.items()
            if any(state.acute for state in control.states.values())
        }
        self.acute_pools = {}
        for kind in {_REASON_KIND.get(v.kind, v.kind).value for v in profile.visits}:
            pool = [
                c
                for c in self.concepts
                if self._acute_share(c) > 0 and kind in c.reason_for and c.id not in flaring
            ]
            for band in BAND_AGES:
                for sex in ("F", "M"):
                    weights = [
                        self._acute_share(c)
                        * c.prevalence.get(band, 0)
                        * c.sex.get(sex, 1)
                        * profile.concept_scale.get(c.id, 1)
                        for c in pool
                    ]
                    self.acute_pools[band, sex, kind] = WeightedChoice(pool, weights)
        # what a preventive or wellness visit offers (screenings, immunizations)
        self.preventive_pools = {
            kind: [
                c
                for c in self.concepts
                if kind in c.reason_for and all(f.code.startswith("Z") for f in c.forms)
            ]
            for kind in (VisitKind.PREVENTIVE.value, VisitKind.ANNUAL_WELLNESS.value)
        }
        self.form_by_code = {c.id: {f.code: f for f in c.forms} for c in self.concepts}
        # long-term medicines of each drug class (for a guideline-typical class a list lacks)
        # and the policy class (Z79) of each medicine name
        self.class_drugs: dict[str, list[str]] = {}
        self.policy_class: dict[str, str] = {}
        for concept in self.concepts:
            for option in concept.medications:
                if option.drug_class:
                    self.policy_class.setdefault(option.name, option.drug_class)
                if is_course(option.name):
                    continue
                for class_id in self.rules.drugs.classes_of(option.name):
                    names = self.class_drugs.setdefault(class_id, [])
                    if option.name not in names:
                        names.append(option.name)
        self.visits = WeightedChoice(list(profile.visits), [v.weight for v in profile.visits])
        self.forms = {
            c.id: WeightedChoice(list(c.forms), [f.weight for f in c.forms]) for c in self.concepts
        }
        self.chronic_odds = {
            (band, sex): [
                (c, p)
                for c in self.concepts
                if c.statuses.get(Status.CHRONIC)
                and (
                    p := c.prevalence.get(band, 0)
                    * c.sex.get(sex, 1)
                    * profile.prevalence_scale
                    * profile.concept_scale.get(c.id, 1)
                )
                > 0
            ]
            for band in BAND_AGES
            for sex in ("F", "M")
        }

    @staticmethod
    def _acute_share(concept: Concept) -> float:
        total = sum(concept.statuses.values())
        return (
            concept.statuses.get(Status.ACTIVE, 0) + concept.statuses.get(Status.UNCERTAIN, 0)
        ) / total

    # -- patients -------------------------------------------------------------------------

    def conditions(self, rng: random.Random, age: int, sex: str) -> list[Condition]:
        """The chronic conditions a patient has, by prevalence and co-occurrence; never two
        the tabular or the clinic says exclude each other."""
        draw = rng.random
        present = {c.id: c for c, p in self.chronic_odds[age_band(age), sex] if draw() < p}
        for concept in list(present.values()):
            for other_id, p in concept.co_occurs.items():
                other = self.catalog.concepts[other_id]
                if (
                    other_id not in present
                    and other.sex.get(sex, 1) > 0
                    and other.statuses.get(Status.CHRONIC)
                    and rng.random() < p * 0.5
                ):
                    present[other_id] = other
        chosen = list(present.values())
        rng.shuffle(chosen)
        kept: list[Condition] = []
        for concept in chosen:
            condition = self._condition(rng, concept, chronic=True)
            # A patient does not carry two conditions the tabular says exclude each other
            # (prediabetes and type 2 diabetes), nor two the clinic knows cannot coexist
            # (class 1 obesity and cachexia): the later one is dropped.
            if any(excludes1_conflict(condition.form.code, k.form.code) for k in kept):
                continue
            if any(self._exclusive(concept.id, k.concept.id) for k in kept):
                continue
            codes = [k.form.code for k in kept] + [condition.form.code]
            low, high = self.rules.function.bounds(codes)
            if low > high:
                continue
            kept.append(condition)
            if len(kept) == self.profile.max_conditions:
                break
        return kept

    def _condition(self, rng: random.Random, concept: Concept, chronic: bool = False) -> Condition:
        form = self.forms[concept.id].pick(rng)
        if chronic and self.rules.encounters.is_acute_code(form.code):
            # a long-standing condition is documented with a form that is not acute
            calm = [f for f in concept.forms if f.weight and not self._acute_code(f.code)]
            if calm:
                form = rng.choices(calm, weights=[f.weight for f in calm])[0]
        side = rng.choice(concept.laterality) if concept.laterality else None
        return Condition(concept, form, side)

    def _acute_code(self, code: str) -> bool:
        return self.rules.encounters.is_acute_code(code)

    def _exclusive(self, a: str, b: str) -> bool:
        return (a, b) in self._exclusive_pairs

    def patient(self, rng: random.Random, patient_id: str, age: int, sex: str) -> PatientRecord:
        """A patient as of the first visit: identity and date of birth, conditions, home
        clinic and hospital, body size, long-term medicines, history and function."""
        first = _START + dt.timedelta(days=rng.randrange(560))
        identity = self.identities.patient(rng, age, sex, first)
        conditions = self.conditions(rng, age, sex)
        codes = [c.form.code for c in conditions]
        height = rng.uniform(1.50, 1.72) if sex == "F" else rng.uniform(1.62, 1.90)
        medications = MedicationList(self.rules.drugs)
        for condition in conditions:
            for option in condition.concept.medications:
                if not is_course(option.name) and rng.random() < option.probability:
                    medications.add(option.name)
        level = function_level(rng, self.rules, codes, age, None) or "independent"
        statement, living = function_words(rng, self.rules, level, codes)
        record = PatientRecord(
            id=patient_id,
            sex=sex,
            dob=dt.date.fromisoformat(identity.dob),
            identity=identity,
            conditions=conditions,
            clinic=self.identities.facility(rng, "clinic"),
            hospital=self.identities.facility(rng, "hospital"),
            height=height,
            bmi=self._bmi(rng, conditions),
            medications=medications.names,
            history=self._history(rng, sex, age, conditions),
            function=statement,
            living=living,
            next_date=first,
            provider=self.identities.provider(rng),
            level=level,
        )
        # therapy by the age the patient reaches within the year of visits, so a wellness
        # visit (which starts nothing) after a birthday that crosses a guideline age (atrial
        # fibrillation anticoagulated from 75) finds it already on the list
        self._therapy(medications, conditions, age + 1, rng, [])
        record.medications = medications.names
        return record

    def _bmi(self, rng: random.Random, conditions: list[Condition]) -> float:
        """A body mass index inside the ranges the conditions set (class 2 obesity: 35-39.9),
        near their typical values where those agree."""
        codes = [c.form.code for c in conditions]
        bounds = (19.0, 29.5)
        hard = None
        hits = self.rules.thresholds_hit(codes)
        for index, threshold in enumerate(self.rules.thresholds):
            if threshold.measure == "bmi" and index in hits:
                hard = _narrow(hard or threshold.range, threshold.range)
        if hard is not None:
            bounds = hard
        for condition in conditions:
            for ranges in (condition.form.vitals, condition.concept.vitals):
                hint = ranges.get("bmi")
                if hint is not None and _narrow(bounds, hint):
                    bounds = _narrow(bounds, hint)
        low, high = bounds
        high = min(high, low + 14)
        return round(rng.uniform(low + 0.4, max(low + 0.4, high - 0.4)), 1)

    def _history(
        self, rng: random.Random, sex: str, age: int, conditions: list[Condition]
    ) -> list[HistoryItem]:
        """Past history, family history and resolved problems: drawn once per patient, so
        that every note tells the same history. The patient's own past conditions are ones
        seen at their age (prevalence in their band at least a tenth of the concept's
        highest: no remote prostate cancer at 18)."""
        band = age_band(age)
        own = {c.concept.id for c in conditions}
        items: list[HistoryItem] = []
        seen: set[str] = set()
        for name in ("history", "family_history", "resolved"):
            pool = self.distractor_pools[name]
            if not pool:
                continue
            for chance in (self.profile.distractors[name], self.profile.distractors[name] / 3):
                if rng.random() >= chance:
                    continue
                concept = pool.pick(rng)
                status = _DISTRACTOR_STATUS[name]
                if concept.id in seen or concept.sex.get(sex, 1) <= 0:
                    continue
                if status is not Status.FAMILY_HISTORY and (
                    concept.id in own or not _plausible_at(concept, band)
                ):
                    continue
                seen.add(concept.id)
                condition = self._condition(rng, concept)
                relative = _relative(rng, concept) if status is Status.FAMILY_HISTORY else None
                items.append(HistoryItem(concept, status, condition.form, condition.side, relative))
        return items

    # -- medicines ------------------------------------------------------------------------

    def _therapy(
        self,
        medications: MedicationList,
        conditions: list[Condition],
        age: int,
        rng: random.Random,
        started: list[tuple[str, str]],
        forms: dict[str, str] | None = None,
    ) -> None:
        """Start the guideline-typical classes a condition's medication list lacks
        (data/synth/drugs.yaml therapy); ``started`` collects (concept id, medicine)."""
        drugs = self.rules.drugs
        for condition in conditions:
            code = (forms or {}).get(condition.concept.id, condition.form.code)
            for therapy in drugs.therapy:
                if therapy.concept != condition.concept.id or age < therapy.min_age:
                    continue
                if therapy.forms and code not in therapy.forms:
                    continue
                for options in therapy.requires:
                    if set(options) & medications.classes():
                        continue
                    candidates = [
                        o.name for o in condition.concept.medications if not is_course(o.name)
                    ]
                    for class_id in options:
                        candidates += self.class_drugs.get(class_id, [])
                    for name in candidates:
                        if set(options) & drugs.classes_of(name) and medications.add(name):
                            started.append((condition.concept.id, name))
                            break

    # -- encounters -----------------------------------------------------------------------

    def scenario(
        self, rng: random.Random, *, encounter_id: str, patient: PatientRecord
    ) -> tuple[Scenario, CodingResult]:
        """One coded scenario for the patient's next visit; retries until the policy engine
        reports no edit warning and the facts allow every printed value."""
        day = patient.next_date
        problem = "no coherent encounter"
        for attempt in range(_MAX_ATTEMPTS):
            drawn = self._draw(rng, encounter_id, patient, day, simple=attempt >= _MAX_ATTEMPTS - 2)
            if drawn is None:
                continue
            scenario, commit = drawn
            result = policy_code(scenario.encounter, self.tables, trace=False)
            if not result.warnings:
                commit()
                patient.next_date = day + dt.timedelta(days=rng.randint(14, 120))
                return scenario, result
            problem = "; ".join(w.message for w in result.warnings)
        raise RuntimeError(f"could not sample a clean encounter for {encounter_id}: {problem}")

    def _visit_option(self, rng: random.Random, age: int, patient: PatientRecord):
        options = [v for v in self.profile.visits if v.min_age <= age]
        option = self.visits.pick(rng)
        while option not in options:
            option = self.visits.pick(rng)
        return option

    def _draw(self, rng, encounter_id, patient: PatientRecord, day: dt.date, simple: bool):
        profile, rules = self.profile, self.rules
        age = age_on(patient.dob, day)
        sex = patient.sex
        band = age_band(age)
        option = self._visit_option(rng, age, patient)
        kind, setting = option.kind, option.setting
        preventive = kind in (VisitKind.PREVENTIVE, VisitKind.ANNUAL_WELLNESS)
        # a consultation and a procedure visit are for what an office visit can be for
        reason_kind = _REASON_KIND.get(kind, kind)
        procedure_visit = kind is VisitKind.PROCEDURE
        simple = simple or procedure_visit  # the procedure's indication, nothing else
        hospital = kind in (VisitKind.EMERGENCY, VisitKind.HOSPITAL_DISCHARGE)
        new_patient = self._new_patient(rng, kind, patient)
        facts: list[ProblemFact] = []
        problems: list[Problem] = []
        used: set[str] = set()
        have = patient.condition_ids()
        pending = patient.pending_injury
        follow_up = None

        def add(
            concept: Concept,
            status: Status,
            form: Form | None = None,
            side: str | None = None,
            episode: Episode | None = None,
            control: str | None = None,
            relative: str | None = None,
        ) -> ProblemFact:
            form = form or self.forms[concept.id].pick(rng)
            if side is None and concept.laterality:
                side = rng.choice(concept.laterality)
            coded = status in (*CODED, Status.UNCERTAIN)
            if episode is None and concept.episodes and coded:
                allowed = episode_for(kind, rules, concept.episodes) or list(concept.episodes)
                weights = [_EPISODE_WEIGHTS[e] for e in allowed]
                episode = rng.choices(allowed, weights=weights)[0]
            if not coded:
                episode = None
            symptoms: tuple[str, ...] = ()
            if status is Status.UNCERTAIN:
                count = min(len(concept.symptoms), rng.choice((1, 2, 2)))
                symptoms = tuple(rng.sample(concept.symptoms, count))
            if status is Status.FAMILY_HISTORY:
                side = None  # a relative's condition is coded without its side (Z80.41)
                if relative is None:
                    relative = _relative(rng, concept)
            residual = (
                concept.residual[0] if episode is Episode.SEQUELA and concept.residual else None
            )
            used.add(concept.id)
            fact = ProblemFact(
                concept,
                form.code,
                status,
                self.phrases[concept.id, form.code],
                side,
                episode,
                symptoms,
                relative,
                control,
            )
            facts.append(fact)
            problems.append(
                Problem(
                    form.code,
                    status,
                    symptoms,
                    laterality=side if coded else None,
                    episode=episode,
                    residual=residual,
                )
            )
            return fact

        # the reason for the visit: an injury follow-up, an exacerbation of one of the
        # patient's conditions, or an acute problem the visit kind can be for
        reason = None
        performed = None
        if procedure_visit:
            drawn = self._procedure_reason(rng, band, sex, patient, add, have)
            if drawn is None:
                return None
            reason, performed = drawn
        elif not preventive:
            if kind is VisitKind.OFFICE and pending is not None and rng.random() < 0.7:
                follow_up = pending
                reason = add(
                    pending.concept, Status.ACTIVE, pending.form, pending.side, Episode.SUBSEQUENT
                )
            elif hospital or rng.random() < profile.acute_visit:
                flares = self._flares(patient, reason_kind)
                if flares and rng.random() < (0.35 if hospital else 0.2):
                    condition, state, form = rng.choice(flares)
                    reason = add(
                        condition.concept, Status.ACTIVE, form, condition.side, control=state
                    )
                else:
                    concept = self._acute_concept(rng, band, sex, reason_kind, have | used)
                    if concept is not None:
                        uncertain = (
                            concept.statuses.get(Status.UNCERTAIN, 0) > 0
                            and rng.random() < profile.distractors["uncertain"] * 2
                        )
                        reason = add(concept, Status.UNCERTAIN if uncertain else Status.ACTIVE)
                        if not uncertain:
                            self._companions(rng, reason, add, used, sex)
            if hospital and reason is None:
                return None
        conditions = patient.conditions
        if preventive and not simple:
            addressed = list(conditions)
        elif procedure_visit:
            addressed = []
        else:
            most = 1 if simple else rng.choice((1, 1, 2, 2, 3, 4))
            addressed = rng.sample(conditions, min(len(conditions), most))
        # the first problem is the reason for a follow-up: a condition, not a status Z code
        addressed.sort(key=lambda c: c.form.code.startswith("Z"))
        if (
            not preventive
            and reason is None
            and addressed
            and reason_kind.value not in addressed[0].concept.reason_for
            and addressed[0].form.code.startswith("Z")
        ):
            concept = self._acute_concept(rng, band, sex, reason_kind, have | used)
            if concept is None:
                return None
            reason = add(concept, Status.ACTIVE)
        for condition in addressed:
            if condition.concept.id in used or any(
                self._exclusive(condition.concept.id, u) for u in used
            ):
                continue
            state, form = self._chronic_state(rng, condition)
            add(condition.concept, Status.CHRONIC, form, condition.side, control=state)
        if preventive and not simple:
            for concept in self.preventive_pools[kind.value]:
                chance = min(0.6, concept.prevalence.get(band, 0) * concept.sex.get(sex, 1))
                clash = any(self._exclusive(concept.id, other) for other in have | used)
                if concept.id not in used and not clash and rng.random() < chance:
                    add(concept, Status.ACTIVE)
        if not facts and not preventive:  # a visit always has a reason
            concept = self._acute_concept(rng, band, sex, reason_kind, have | used)
            if concept is None:
                return None
            add(concept, Status.ACTIVE)
        if not simple and rng.random() < profile.long_tail:
            self._add_long_tail(rng, facts, problems, age, sex)
        if not simple:
            for item in patient.history:
                if item.concept.id not in used and rng.random() < 0.75:
                    add(item.concept, item.status, item.form, item.side, relative=item.relative)
            for name in ("negated", "ruled_out"):
                pool = self.distractor_pools[name]
                if pool and rng.random() < profile.distractors[name]:
                    concept = pool.pick(rng)
                    # never denies a symptom the note reports (of a suspected diagnosis)
                    reported = {code for f in facts for code in f.symptoms}
                    if (
                        concept.id not in used
                        and concept.id not in have
                        and concept.sex.get(sex, 1) > 0
                        and not any(form.code in reported for form in concept.forms)
                    ):
                        add(concept, _DISTRACTOR_STATUS[name])
        self._drop_integral(facts, problems)
        if kind is VisitKind.CONSULT and not self._consult_first(facts, problems):
            return None

        # medicines: the patient's long-term list, short courses for today's acute
        # problems, and the starts and stops today's problems call for
        current = MedicationList(self.rules.drugs, list(patient.medications))
        courses: list[str] = []
        changes: list[MedicationChange] = []
        new_conditions: list[Condition] = []
        forms_now: dict[str, str] = {}
        for index, fact in enumerate(facts):
            concept = fact.concept
            if concept is None or fact.status not in CODED:
                continue
            forms_now[concept.id] = fact.code
            state = self._state(fact)
            chronic_kind = bool(concept.statuses.get(Status.CHRONIC)) and not concept.episodes
            if (
                fact.status is Status.ACTIVE
                and chronic_kind
                and state is None
                and concept.id not in have
            ):
                form = next(f for f in concept.forms if f.code == fact.code)
                if self._acute_code(form.code):  # followed later as its chronic form
                    form = self._condition(rng, concept, chronic=True).form
                new_conditions.append(Condition(concept, form, fact.side))
                # a preventive or procedure visit starts no long-term medicine
                if not preventive and not procedure_visit and rng.random() < 0.7:
                    for option in concept.medications:
                        if not is_course(option.name) and current.add(option.name):
                            changes.append(MedicationChange("start", option.name, index))
                            break
            elif fact.status is Status.ACTIVE:
                for option in concept.medications:
                    if rng.random() >= option.probability:
                        continue
                    if chronic_kind and not is_course(option.name):
                        continue  # the long-term medicines are on the list already
                    if setting is Setting.OUTPATIENT and _INFUSION.search(option.name):
                        continue
                    if current.add(option.name):
                        if is_course(option.name) or not self.policy_class.get(option.name):
                            courses.append(option.name)
                        else:  # a long-term drug started today (aspirin after a stroke): Z79
                            changes.append(MedicationChange("start", option.name, index))
            elif state is not None and state.name == "uncontrolled" and rng.random() < 0.5:
                for option in concept.medications:
                    if not is_course(option.name) and current.add(option.name):
                        changes.append(MedicationChange("start", option.name, index))
                        break
        addressed_ids = {
            f.concept.id: i for i, f in enumerate(facts) if f.concept and f.status in CODED
        }
        started: list[tuple[str, str]] = []
        noted = [c for c in (*patient.conditions, *new_conditions) if c.concept.id in addressed_ids]
        if not preventive and not procedure_visit:  # (that would be a problem visit)
            self._therapy(current, noted, age + 1, rng, started, forms_now)  # as above
        for concept_id, name in started:
            changes.append(MedicationChange("start", name, addressed_ids[concept_id]))
        if (
            not hospital
            and not preventive
            and kind not in (VisitKind.TELEHEALTH, VisitKind.CONSULT)
            and rng.random() < 0.05
        ):
            self._stop_one(rng, current, courses, facts, addressed_ids, age, changes, forms_now)
        if kind is VisitKind.CONSULT:
            # a consultant changes only the drugs of the referral's domain (audit round 8:
            # a psychiatry consultant adjusting amlodipine)
            def domain(index: int | None) -> str:
                concept = facts[index].concept if index is not None else None
                return getattr(concept, "domain", "")

            referral = domain(0)
            for change in list(changes):
                if change.problem is not None and domain(change.problem) != referral:
                    changes.remove(change)  # a start the consultant leaves to the PCP
                    if change.action == "start" and change.name in current.names:
                        current.names.remove(change.name)
        long_term = [n for n in current.names if n not in courses]
        medications, encounter_meds, classes = [], [], set()
        # a procedure note lists what is given today, not the long-term list (no Z79)
        for name in courses if procedure_visit else long_term + courses:
            path = None
            drug_class = self.policy_class.get(name)
            if name not in courses and drug_class and drug_class not in classes:
                classes.add(drug_class)
                path = f"medications[{len(encounter_meds)}]"
                encounter_meds.append(Medication(drug_class, name))
            medications.append(MedicationFact(name, path, name in courses))

        procedures = self._procedures(rng, facts, age, day, kind, others=not procedure_visit)
        if performed is not None:
            procedures.insert(0, performed)
        measured = draw_measurements(
            rng,
            self.catalog,
            rules,
            facts,
            kind,
            patient,
            rng.sample(_ROUTINE_LABS, 2),
        )
        if measured is None:
            return None
        vitals, labs = measured
        procedures = self._pressure_codes(
            procedures,
            vitals,
            [f.code for f in facts if f.status in CODED],
            age,
            setting.value,
        )
        exam = choose_exam(rng, rules, facts, _NORMAL_EXAM, vitals, kind)
        note_codes = [f.code for f in facts if f.status in (*CODED, Status.UNCERTAIN)]
        level = function_level(
            rng, rules, note_codes + [c.form.code for c in conditions], age, patient.level
        )
        if level is None:
            return None
        if level == patient.level:
            statement, living = patient.function, patient.living
        else:
            statement, living = function_words(rng, rules, level, note_codes)
        decision = decide(  # E/M level computed from what the note documents (decision.py)
            rng,
            self.profile,
            kind=kind,
            setting=setting,
            new_patient=new_patient,
            age=age,
            facts=facts,
            labs=labs,
            vitals=vitals,
            medications=medications,
            procedures=procedures,
            changes=changes,
        )
        minutes = decision.minutes
        mdm = MDM(decision.level) if decision.level else None
        printed = {r.measure.key: r.value for r in vitals}
        encounter = Encounter(
            id=encounter_id,
            setting=setting,
            patient=Patient(age, Sex(sex)),
            visit=Visit(kind, new_patient, mdm, minutes),
            problems=tuple(problems),
            medications=tuple(encounter_meds),
            procedures=tuple(Procedure(c) for c in procedures),
            date=day,
            vitals=Vitals(  # the printed values (Z68 from the BMI, CPT II from the pressure)
                int(printed["bp_systolic"]),
                int(printed["bp_diastolic"]),
                float(printed["bmi"]) if "bmi" in printed else None,
            ),
        )
        hospital_setting = setting is not Setting.OUTPATIENT
        scenario = Scenario(
            encounter=encounter,
            problems=facts,
            medications=medications,
            labs=labs,
            vitals=vitals,
            exam=exam,
            patient=patient.identity,
            # a consultant or a hospital physician, else the patient's own doctor
            provider=self.identities.provider(rng)
            if hospital_setting or kind is VisitKind.CONSULT
            else patient.provider,
            facility=patient.hospital if hospital_setting else patient.clinic,
            visit_date=day.isoformat(),
            decision=decision,
            patient_id=patient.id,
            medication_changes=changes,
            function=statement,
            living=living,
            referring=patient.provider if kind is VisitKind.CONSULT else "",
        )
        injury = (
            reason is not None
            and reason.status is Status.ACTIVE
            and reason.episode is Episode.INITIAL
            and reason.concept is not None
            and reason.concept.domain == "injury"
            and reason.concept.reason_for
        )

        def commit() -> None:
            patient.medications = long_term
            patient.conditions = [*patient.conditions, *new_conditions]
            if injury:
                patient.pending_injury = Condition(
                    reason.concept,
                    next(f for f in reason.concept.forms if f.code == reason.code),
                    reason.side,
                )
            elif follow_up is not None:
                patient.pending_injury = None
            if setting is Setting.OUTPATIENT and kind is not VisitKind.CONSULT:
                patient.seen_clinic = True  # (a consultant is another practice)
            if kind is VisitKind.ANNUAL_WELLNESS:
                patient.awv_done = True
            patient.level, patient.function, patient.living = level, statement, living
            patient.visits += 1

        return scenario, commit

    def _state(self, fact: ProblemFact):
        if fact.concept is None or not fact.control:
            return None
        return self.rules.controls[fact.concept.id].states[fact.control]

    def _flares(self, patient: PatientRecord, kind: VisitKind) -> list:
        """The patient's conditions that can worsen into the reason for this visit: (the
        condition, the state, the form documented in that state)."""
        found = []
        for condition in patient.conditions:
            control = self.rules.controls.get(condition.concept.id)
            if control is None:
                continue
            for state in control.states.values():
                form_code = state.form_for(condition.form.code)
                if kind.value in state.reason_for and form_code is not None:
                    form = self.form_by_code[condition.concept.id].get(form_code)
                    if form is not None:
                        found.append((condition, state.name, form))
        return found

    def _chronic_state(self, rng: random.Random, condition: Condition):
        """A documented chronic condition's control state (controlled or not at goal) and
        the form it is documented with in that state."""
        control = self.rules.controls.get(condition.concept.id)
        if control is None:
            return None, condition.form
        options = []
        for state in control.states.values():
            if state.acute:
                continue
            code = state.form_for(condition.form.code)
            form = self.form_by_code[condition.concept.id].get(code) if code else None
            if form is not None:
                options.append((state, form))
        if not options:
            return None, condition.form
        state, form = rng.choices(options, weights=[s.weight for s, _ in options])[0]
        return state.name, form

    def _consult_first(self, facts: list[ProblemFact], problems: list[Problem]) -> bool:
        """A consultation is for a problem of a specialty (data/synth/specialties.yaml): the
        first such problem becomes the reason, listed first; False when there is none."""
        from medcode.synth.specialties import GENERALIST, shipped_specialties

        specialties = shipped_specialties()
        for index, fact in enumerate(facts):
            concept = fact.concept
            if (
                concept is not None
                and fact.status in (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN)
                and not fact.code.startswith("Z")
                and specialties.get(concept.domain, GENERALIST) != GENERALIST
            ):
                facts.insert(0, facts.pop(index))
                problems.insert(0, problems.pop(index))
                return True
        return False

    def _procedure_reason(self, rng, band, sex, patient: PatientRecord, add, have: set[str]):
        """A procedure visit's indication and procedure (data/synth/procedure_visits.yaml):
        one of the patient's own conditions a procedure treats, or a new problem drawn by the
        procedure's weight and the concept's prevalence. (fact, CPT code) or None."""
        from medcode.synth.procedure_visits import shipped_procedure_visits

        table = shipped_procedure_visits()
        own = [
            (condition, entry)
            for condition in patient.conditions
            if condition.side in (None, "right", "left")
            for entry in table.entries
            if entry.indication(condition.concept.id)
        ]
        if own and rng.random() < 0.5:
            condition, entry = rng.choice(own)
            fact = add(condition.concept, Status.CHRONIC, condition.form, condition.side)
            return fact, entry.code
        pairs, weights = [], []
        for entry in table.entries:
            for indication in entry.indications:
                concept = self.catalog.concepts[indication.concept]
                weight = (
                    entry.weight
                    / len(entry.indications)
                    * concept.prevalence.get(band, 0)
                    * concept.sex.get(sex, 1)
                )
                clash = concept.id in have or any(self._exclusive(concept.id, e) for e in have)
                if weight > 0 and not clash:
                    pairs.append((entry, concept))
                    weights.append(weight)
        if not pairs:
            return None
        entry, concept = rng.choices(pairs, weights=weights)[0]
        sides = [s for s in concept.laterality if s in ("right", "left")]
        fact = add(concept, Status.ACTIVE, side=rng.choice(sides) if sides else None)
        if concept.domain == "injury":  # its external cause, a tetanus booster
            self._companions(rng, fact, add, {concept.id}, sex)
        return fact, entry.code

    def _acute_concept(self, rng, band, sex, kind, exclude: set[str]) -> Concept | None:
        pool = self.acute_pools.get((band, sex, kind.value))
        if not pool:
            return None
        for _ in range(12):
            concept = pool.pick(rng)
            if concept.id in exclude or any(self._exclusive(concept.id, e) for e in exclude):
                continue
            return concept
        return None

    def _companions(self, rng, reason: ProblemFact, add, used: set[str], sex: str) -> None:
        """What comes with an acute problem: an injury's external cause and other injuries
        of the same event, a wound's tetanus booster."""
        concept = reason.concept
        for other_id, chance in concept.co_occurs.items():
            other = self.catalog.concepts[other_id]
            if other_id in used or other.sex.get(sex, 1) <= 0 or rng.random() >= chance:
                continue
            external = all(
                self.rules.encounters.external_causes.matches(f.code) for f in other.forms
            )
            immunization = other.id.startswith("immunization_")
            injury = concept.domain == "injury" and other.domain == "injury" and other.episodes
            if reason.episode is not None and (external or injury):
                if reason.episode not in other.episodes:
                    continue
                add(other, Status.ACTIVE, episode=reason.episode)
            elif immunization and reason.episode in (None, Episode.INITIAL):
                add(other, Status.ACTIVE)

    def _stop_one(self, rng, current, courses, facts, addressed_ids, age, changes, forms_now):
        """Now and then a long-term medicine for an addressed problem is stopped (side
        effects), unless the guideline-typical therapy needs it."""
        owners = {}
        for fact in facts:
            if fact.concept is not None and fact.status is Status.CHRONIC:
                for option in fact.concept.medications:
                    owners.setdefault(option.name, fact.concept.id)
        candidates = [n for n in current.names if n not in courses and n in owners]
        rng.shuffle(candidates)
        for name in candidates:
            remaining = MedicationList(self.rules.drugs, [n for n in current.names if n != name])
            missing: list[tuple[str, str]] = []
            trial = MedicationList(self.rules.drugs, list(remaining.names))
            noted = [
                Condition(f.concept, next(x for x in f.concept.forms if x.code == f.code), f.side)
                for f in facts
                if f.concept is not None and f.status is Status.CHRONIC
            ]
            self._therapy(trial, noted, age, rng, missing, forms_now)
            if missing:
                continue
            current.names.remove(name)
            changes.append(MedicationChange("stop", name, addressed_ids.get(owners[name])))
            return

    def _procedures(
        self, rng, facts, age: int, day: dt.date, kind: VisitKind, others: bool = True
    ) -> list[str]:
        """Procedures of today's problems; a vaccine with its one product (valid on the date
        of service) and its administration code. ``others=False``: the vaccines only (a
        procedure visit does the one procedure it is for)."""
        if kind is VisitKind.TELEHEALTH:  # nothing hands-on happens over video
            return []
        from medcode.policy.procedures import shipped_procedure_rules
        from medcode.synth.decision import SEPARATE_EM
        from medcode.synth.decision import shipped_rules as mdm_rules

        claim = shipped_procedure_rules()
        mdm = mdm_rules()
        orders_only = self.rules.encounters.office_orders_only
        table = cpt.procedure_table()
        procedures: list[str] = []
        vaccines: list[tuple[Concept, str]] = []
        hospital = kind in (VisitKind.EMERGENCY, VisitKind.HOSPITAL_DISCHARGE)
        for fact in facts:
            concept = fact.concept
            if concept is None or fact.status not in CODED:
                continue
            if hospital and fact.status is Status.CHRONIC:
                continue  # the emergency visit or the stay works up today's problem
            if concept.id.startswith("immunization_"):
                products = [
                    o
                    for o in concept.procedures
                    if table[o.code].kind == "immunisation"
                    and o.code not in claim.vaccine_administration
                ]
                product = None
                if products:
                    weights = [o.probability for o in products]
                    product = rng.choices(products, weights=weights)[0].code
                    validity = claim.validity.get(product)
                    if validity is not None and day > validity.valid_until:
                        product = validity.replaced_by
                vaccines.append((concept, product))
                continue
            if not others:
                continue
            if concept.forms and all(f.code.startswith(_SCREENING) for f in concept.forms):
                # a screening is coded when it is done: exactly one of its tests, performed
                # today (I.C.21.c.5), never two tests of one screening (96127 and G0444)
                options = [o for o in concept.procedures if o.code not in procedures]
                if options:
                    weights = [o.probability for o in options]
                    procedures.append(rng.choices(options, weights=weights)[0].code)
                continue
            for option in concept.procedures:
                entry = table[option.code]
                if entry.kind == "immunisation" or option.code.startswith(_THERAPISTS):
                    continue  # therapists' and home-health services are not the physician's
                if not hospital and option.code in orders_only:
                    continue  # ordered in the plan, done and billed by an imaging center
                if kind in SEPARATE_EM and mdm.is_minor(option.code):
                    # the visit's E/M is billed for another problem than the procedure's,
                    # which the note must have (else it is a procedure visit)
                    others_ = [
                        f
                        for f in facts
                        if f.status in CODED
                        and not mdm.matches("not_problems", f.code)
                        and not (
                            f.concept and any(o.code == option.code for o in f.concept.procedures)
                        )
                    ]
                    if not others_:
                        continue
                if option.code not in procedures and rng.random() < option.probability:
                    procedures.append(option.code)
        first = True
        for concept, product in vaccines:
            if product is not None and product not in procedures:
                procedures.append(product)
            medicare = age >= 65
            if concept.id == "immunization_covid":
                administration = "90480"
            elif medicare and concept.id == "immunization_influenza":
                administration = "G0008"
            elif medicare and concept.id == "immunization_pneumococcal":
                administration = "G0009"
            elif age < 19:
                administration = "90460" if first else "90461"
                first = False
            else:
                administration = "90471" if first else "90472"
                first = False
            if administration not in procedures or administration in ("90472", "90461"):
                procedures.append(administration)
        return procedures

    def _drop_integral(self, facts: list[ProblemFact], problems: list[Problem]) -> None:
        """A symptom integral to another of today's diagnoses (low back pain beside lumbar
        stenosis) is not listed as a problem of its own: coders read such a list both ways
        (data/policy/integral_symptoms.yaml). The reason for the visit stays; when it is the
        symptom, the diagnosis it belongs to goes instead."""
        from medcode.policy.facts import matches_any
        from medcode.policy.tables import compact

        coded = [i for i, f in enumerate(facts) if f.status in CODED]
        drop: set[int] = set()
        for i in coded:
            for entry in self.tables.integral_hosts(compact(facts[i].code)):
                hosts = [j for j in coded if j != i and matches_any(facts[j].code, entry.diagnosis)]
                if hosts:
                    drop.update(hosts if i == 0 else [i])
        for i in sorted(drop, reverse=True):
            del facts[i], problems[i]

    @staticmethod
    def _pressure_codes(
        procedures: list[str], vitals, coded: list[str], age: int, setting: str
    ) -> list[str]:
        """The CPT II blood-pressure code of the printed pressure (3074F for a systolic below
        130, 3077F at 140 and above), reported at every visit the quality measure covers
        (data/policy/procedures.yaml blood_pressure: hypertension, ages, settings) and
        never otherwise."""
        from medcode.policy.procedures import shipped_procedure_rules

        claim = shipped_procedure_rules()
        printed = {r.measure.key: r.value for r in vitals}
        procedures = [p for p in procedures if p not in claim.blood_pressure_codes]
        if "bp_systolic" not in printed or not claim.reports_pressure(coded, age, setting):
            return procedures
        systolic = int(printed["bp_systolic"])
        code = next(c for below, c in claim.systolic if systolic < below)
        procedures = [*procedures, code]
        fixed = []
        for procedure in procedures:
            if procedure in claim.blood_pressure_codes:
                procedure = code
            if procedure not in fixed:
                fixed.append(procedure)
        return fixed

    def _new_patient(self, rng: random.Random, kind: VisitKind, patient: PatientRecord) -> bool:
        """New (no visit in the past three years) only at the first clinic visit; an
        annual wellness visit is 'new' (initial, G0438) only once."""
        if kind in (
            VisitKind.EMERGENCY,
            VisitKind.HOSPITAL_DISCHARGE,
            VisitKind.CONSULT,  # new or established does not apply to a consultation
            VisitKind.PROCEDURE,  # no E/M
        ):
            return False
        if kind is VisitKind.ANNUAL_WELLNESS:
            return not patient.awv_done and rng.random() < 0.35
        if patient.seen_clinic:
            return False
        return rng.random() < self.profile.new_patient

    def _add_long_tail(self, rng, facts, problems, age, sex) -> None:
        code = self.long_tail[rng.randrange(len(self.long_tail))]
        if code in self.by_code:  # catalog codes come with their concept's statuses
            return
        sex_edits, age_edits = self.tables.edits_for(code)
        if any(e.sex != sex for e in sex_edits) or any(
            (e.min_age or 0) > age or (e.max_age is not None and e.max_age < age) for e in age_edits
        ):
            return
        phrases = {"formal": long_tail_phrases(code), "abbreviated": (), "lay": ()}
        acute = self.rules.encounters.is_acute_code(code)
        # a condition not acute by nature is chronic ("ALPS, symptomatic today" read as a
        # new acute problem was an audit disagreement)
        status = Status.ACTIVE if acute else Status.CHRONIC
        facts.append(ProblemFact(None, code, status, phrases))
        problems.append(Problem(code, status))


def _narrow(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float] | None:
    low, high = max(a[0], b[0]), min(a[1], b[1])
    return (low, high) if low <= high else None


# an injury seen in the office: mostly new, sometimes the follow-up of one treated elsewhere
# visit kinds whose reason is drawn as an office visit's: a consultation is for what a
# patient sees a doctor for; a procedure visit's indication comes from procedure_visits.yaml
_REASON_KIND = {VisitKind.CONSULT: VisitKind.OFFICE, VisitKind.PROCEDURE: VisitKind.OFFICE}
_EPISODE_WEIGHTS = {Episode.INITIAL: 0.7, Episode.SUBSEQUENT: 0.25, Episode.SEQUELA: 0.05}
_INFUSION = re.compile(r"\bIV\b|infusion|per pharmacy|bolus", re.IGNORECASE)


def _plausible_at(concept: Concept, band: str) -> bool:
    """Whether a condition is seen in the age band: its prevalence there is at least a
    tenth of its highest (a concept without prevalence figures is seen at any age)."""
    if not concept.prevalence:
        return True
    return concept.prevalence.get(band, 0.0) >= 0.1 * max(concept.prevalence.values())


_PHRASE_LIMIT = 4
_PAST = re.compile(r"\b(healed|old|history|late|sequela|resolved|previous|former|remote)\b")
# one adjective before the main term ("gonococcal peritonitis"), not a site noun
_ADJECTIVE = re.compile(r"[a-z-]+(al|ic|ous|ar|ary|ive|oid|ed|ile|ine|ent|ant|ial|atic)")
_CONNECTOR_END = re.compile(r"\b(with|without|in|of|due to|by|from|and|or)$")


@cache
def index_phrases(code: str) -> tuple[str, ...]:
    """How a clinician writes ``code``: the Alphabetic Index's phrases for it
    (data/terminology/index_terms.csv.gz) that a coder reads back to this code alone (the
    index gives the phrase no other code), that are natural (not the index's path form), and
    that carry no code-title qualifier ("unspecified", "NOS": data/synth/realism.yaml);
    shorter and shallower first, at most four."""
    from medcode.synth.realism import load_rules
    from medcode.terminology.index_terms import codes_for, records_for

    leaked = load_rules().leaked
    records = records_for(code)
    terms = {r.term for r in records}
    # the index's nonessential modifiers ("Infection, urinary (tract)") are optional words
    # whose place the table does not know ("tract urinary infection"): phrases use only the
    # path's own words, except a main term whose modifier says what it is, which is no
    # diagnosis alone ("Dentition (syndrome)": "dentition syndrome", not "dentition")
    bare = {r.term for r in records if r.level == 0 and f"{r.term} syndrome" in terms}
    found = []
    for record in records:
        term = record.term
        steps = record.path.split(" > ")
        if (
            record.source != "index"
            or term in bare
            or (
                not set(_WORDS.findall(term)) <= set(_WORDS.findall(record.path.lower()))
                and term.removesuffix(" syndrome") not in bare
            )
            # the main term itself, or one plain word before a one-word main term
            # ("klebsiella pneumonia"): deeper nestings do not always read naturally
            or not (
                record.level == 0
                or (
                    record.level == 1
                    and len(steps) == 2
                    and " " not in steps[0].split(",")[0].strip()
                    and _ADJECTIVE.fullmatch(steps[1].lower())
                )
            )
            or "," in term
            or len(term) <= 4  # abbreviations lose their case in the table ("fuo")
            or _PAST.search(term)  # "healed appendicitis" reads as resolved (audit round 7)
            or len(term.split()) > 8
            or _CONNECTOR_END.search(term)
            or codes_for(term) != (record.code,)
            or leaked(term)
        ):
            continue
        found.append((record.level, len(term), term))
    return tuple(term for _, _, term in sorted(found)[:_PHRASE_LIMIT])


@cache
def long_tail_phrases(code: str) -> tuple[str, ...]:
    """Phrases for a code outside the catalog: the index's (:func:`index_phrases`), else its
    tabular description and inclusion terms."""
    phrases = index_phrases(code)
    if phrases:
        return phrases
    description = _UNSAID.sub("", icd10cm.description(code)).strip(" ,")
    options = [
        description[0].lower() + description[1:] if description[1:2].islower() else description
    ]
    terms = [t for t in icd10cm.inclusion_terms(code) if len(t) > 3 and not _UNSAID.search(t)]
    options += terms[:3]
    return tuple(options)


_WORDS = re.compile(r"[a-z0-9']+")

# a code title's qualifiers that no clinician writes ("chest pain, unspecified")
_UNSAID = re.compile(r",? unspecified\b| NOS\b", re.IGNORECASE)


def _relative(rng: random.Random, concept: Concept) -> str:
    """A relative for a family history of ``concept``, of a sex the condition occurs in
    (data/synth/cues.yaml relatives: no ovarian cancer in a brother)."""
    from medcode.synth.render import shipped_cues

    relatives = shipped_cues().relatives
    fitting = [r for r, sex in relatives.items() if concept.sex.get(sex, 1) > 0]
    return rng.choice(fitting or list(relatives))


_ROUTINE_LABS = ("hemoglobin", "wbc", "sodium", "potassium", "creatinine", "glucose", "platelets")
_NORMAL_EXAM = (
    "lungs clear to auscultation bilaterally",
    "regular rate and rhythm, no murmurs",
    "abdomen soft, non-tender, non-distended",
    "no peripheral edema",
    "alert and oriented x3",
    "no focal neurologic deficits",
    "skin warm and dry",
    "normal gait",
    "pupils equal, round and reactive",
    "oropharynx clear",
    "no lymphadenopathy",
)


class IdentityPool:
    """Synthetic, seeded identities (Faker): patients, providers, facilities."""

    def __init__(self, seed: int, size: int = 400) -> None:
        from faker import Faker

        fake = Faker("en_US")
        fake.seed_instance(seed)
        self.first = {
            "F": [fake.first_name_female() for _ in range(size)],
            "M": [fake.first_name_male() for _ in range(size)],
        }
        self.last = [fake.last_name() for _ in range(size)]
        self.addresses = [fake.address().replace("\n", ", ") for _ in range(size)]
        self.phones = [fake.numerify("(###) ###-####") for _ in range(size)]
        self.providers = [f"{fake.first_name()} {fake.last_name()}" for _ in range(40)]
        # facility names by kind (data/synth/encounters.yaml): clinics for office and video
        # visits, hospitals for emergency visits and hospital stays
        self.facilities: dict[str, list[str]] = {}
        for kind in shipped_rules().encounters.facilities:
            for name in kind.names:
                self.facilities.setdefault(kind.kind, []).extend(
                    f"{fake.city()} {name}" for _ in range(6)
                )

    def patient(self, rng: random.Random, age: int, sex: str, on: dt.date) -> Identity:
        """An identity whose date of birth makes the patient ``age`` on the date ``on``."""
        first, last = rng.choice(self.first[sex]), rng.choice(self.last)
        born = birth_date(rng, age, on)
        return Identity(
            name=f"{first} {last}",
            first_name=first,
            last_name=last,
            dob=born.isoformat(),
            mrn=f"{rng.randrange(10**7, 10**8)}",
            address=rng.choice(self.addresses),
            phone=rng.choice(self.phones),
        )

    def provider(self, rng: random.Random) -> str:
        return rng.choice(self.providers)

    def facility(self, rng: random.Random, kind: str) -> str:
        return rng.choice(self.facilities[kind])


def patient_age(rng: random.Random, profile: Profile) -> tuple[int, str]:
    band = _choice(rng, profile.age)
    low, high = BAND_AGES[band]
    return rng.randint(low, high), _choice(rng, profile.sex)
