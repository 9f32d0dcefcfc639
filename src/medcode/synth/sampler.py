"""Sample encounters from a profile and the condition catalog; code them with the policy
engine (gold codes come from the facts, never from text)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from functools import cache

from medcode.policy import code as policy_code
from medcode.policy.engine import CodingResult
from medcode.policy.facts import excludes1_conflict
from medcode.policy.tables import shipped_tables
from medcode.records import (
    MDM,
    Encounter,
    Medication,
    Patient,
    Problem,
    Procedure,
    Setting,
    Sex,
    Status,
    Visit,
    VisitKind,
)
from medcode.synth.catalog import Catalog, Concept, Form, age_band
from medcode.synth.choice import WeightedChoice
from medcode.synth.profiles import BAND_AGES, Profile
from medcode.synth.scenario import (
    DecisionMaking,
    Identity,
    MedicationFact,
    ProblemFact,
    Result,
    Scenario,
)
from medcode.terminology import icd10cm

CODED = (Status.ACTIVE, Status.CHRONIC)
_LEVELS = ("straightforward", "low", "moderate", "high")
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
    """Billable ICD-10-CM codes a note may carry as a secondary problem: all but external
    causes (V00-Y99), pregnancy and perinatal chapters."""
    return tuple(
        code
        for code in icd10cm.all_codes()
        if icd10cm.is_billable(code) and not ("V00" <= code[:3] <= "Y99") and code[0] not in "OP"
    )


def _phrase_dict(concept: Concept, form: Form) -> dict[str, tuple[str, ...]]:
    return {
        style: tuple(p.format_map(_Attributes(form.attributes)) for p in phrases)
        for style, phrases in concept.phrases.items()
    }


class _Attributes(dict):
    def __missing__(self, key: str) -> str:  # {side} is filled at render time
        return "{" + key + "}"


@dataclass
class _Condition:
    concept: Concept
    form: Form
    side: str | None


class Sampler:
    """Draws scenarios for one profile; build once per worker (it precomputes its tables)."""

    def __init__(self, catalog: Catalog, profile: Profile, identities: IdentityPool) -> None:
        self.catalog = catalog
        self.profile = profile
        self.identities = identities
        self.tables = shipped_tables()
        self.concepts = list(catalog.concepts.values())
        self.by_code = catalog.by_code()
        self.phrases = {
            (concept.id, form.code): _phrase_dict(concept, form)
            for concept in self.concepts
            for form in concept.forms
        }
        self.long_tail = long_tail_codes()
        self.distractor_pools = {}
        for name, status in _DISTRACTOR_STATUS.items():
            pool = [c for c in self.concepts if c.statuses.get(status, 0) > 0]
            self.distractor_pools[name] = WeightedChoice(pool, [c.statuses[status] for c in pool])
        self.acute_pools = {}
        for band in BAND_AGES:
            for sex in ("F", "M"):
                pool = [c for c in self.concepts if self._acute_share(c) > 0]
                weights = [
                    self._acute_share(c)
                    * c.prevalence.get(band, 0)
                    * c.sex.get(sex, 1)
                    * profile.concept_scale.get(c.id, 1)
                    for c in pool
                ]
                self.acute_pools[band, sex] = WeightedChoice(pool, weights)
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

    def conditions(self, rng: random.Random, age: int, sex: str) -> list[_Condition]:
        """The chronic conditions a patient has, by prevalence and co-occurrence."""
        draw = rng.random
        present = {c.id: c for c, p in self.chronic_odds[age_band(age), sex] if draw() < p}
        for concept in list(present.values()):
            for other_id, p in concept.co_occurs.items():
                other = self.catalog.concepts[other_id]
                if other_id not in present and other.sex.get(sex, 1) > 0 and rng.random() < p * 0.5:
                    present[other_id] = other
        chosen = list(present.values())
        rng.shuffle(chosen)
        kept: list[_Condition] = []
        for concept in chosen:
            condition = self._condition(rng, concept)
            # A patient does not carry two conditions the tabular says exclude each other
            # (prediabetes and type 2 diabetes): the later one is dropped.
            if not any(excludes1_conflict(condition.form.code, k.form.code) for k in kept):
                kept.append(condition)
            if len(kept) == self.profile.max_conditions:
                break
        return kept

    def _condition(self, rng: random.Random, concept: Concept) -> _Condition:
        form = self.forms[concept.id].pick(rng)
        side = rng.choice(concept.laterality) if concept.laterality else None
        return _Condition(concept, form, side)

    # -- encounters -----------------------------------------------------------------------

    def scenario(
        self,
        rng: random.Random,
        *,
        encounter_id: str,
        patient_id: str,
        age: int,
        sex: str,
        conditions: list[_Condition],
        identity: Identity,
    ) -> tuple[Scenario, CodingResult]:
        """One coded scenario; retries until the policy engine reports no edit warning."""
        for attempt in range(_MAX_ATTEMPTS):
            scenario = self._draw(
                rng,
                encounter_id,
                patient_id,
                age,
                sex,
                conditions,
                identity,
                simple=attempt >= _MAX_ATTEMPTS - 2,
            )
            result = policy_code(scenario.encounter, self.tables, trace=False)
            if not result.warnings:
                return scenario, result
        raise RuntimeError(
            f"could not sample a clean encounter for {encounter_id}: "
            + "; ".join(w.message for w in result.warnings)
        )

    def _draw(self, rng, encounter_id, patient_id, age, sex, conditions, identity, simple):
        profile = self.profile
        band = age_band(age)
        visit_option = self.visits.pick(rng)
        while visit_option.min_age > age:
            visit_option = self.visits.pick(rng)
        kind, setting = visit_option.kind, visit_option.setting
        preventive = kind in (VisitKind.PREVENTIVE, VisitKind.ANNUAL_WELLNESS)
        facts: list[ProblemFact] = []
        problems: list[Problem] = []
        used: set[str] = set()

        def add(
            concept: Concept, status: Status, form: Form | None = None, side: str | None = None
        ) -> None:
            form = form or self.forms[concept.id].pick(rng)
            if side is None and concept.laterality:
                side = rng.choice(concept.laterality)
            episode = rng.choice(concept.episodes) if concept.episodes else None
            symptoms: tuple[str, ...] = ()
            if status is Status.UNCERTAIN:
                count = min(len(concept.symptoms), rng.choice((1, 2, 2)))
                symptoms = tuple(rng.sample(concept.symptoms, count))
            relative = rng.choice(_RELATIVES) if status is Status.FAMILY_HISTORY else None
            used.add(concept.id)
            facts.append(
                ProblemFact(
                    concept,
                    form.code,
                    status,
                    self.phrases[concept.id, form.code],
                    side,
                    episode,
                    symptoms,
                    relative,
                )
            )
            coded_side = side if status in (*CODED, Status.UNCERTAIN) else None
            problems.append(Problem(form.code, status, symptoms, None, coded_side, episode))

        acute_pool = self.acute_pools[band, sex]
        if not preventive and acute_pool and rng.random() < profile.acute_visit:
            concept = acute_pool.pick(rng)
            uncertain = (
                concept.statuses.get(Status.UNCERTAIN, 0) > 0
                and rng.random() < profile.distractors["uncertain"] * 2
            )
            add(concept, Status.UNCERTAIN if uncertain else Status.ACTIVE)
        if preventive and not simple:
            addressed = conditions
        else:
            most = 1 if simple else rng.choice((1, 1, 2, 2, 3, 4))
            addressed = rng.sample(conditions, min(len(conditions), most))
        for condition in addressed:
            if condition.concept.id not in used:
                add(condition.concept, Status.CHRONIC, condition.form, condition.side)
        if not simple and rng.random() < profile.long_tail:
            self._add_long_tail(rng, facts, problems, age, sex)
        if not simple:
            for name, pool in self.distractor_pools.items():
                if pool and rng.random() < profile.distractors[name]:
                    concept = pool.pick(rng)
                    if concept.id not in used and concept.sex.get(sex, 1) > 0:
                        add(concept, _DISTRACTOR_STATUS[name])
        if not problems:  # a visit always has a reason: fall back to a chronic condition
            fallback = acute_pool.pick(rng) if acute_pool else self.concepts[0]
            add(fallback, Status.ACTIVE)

        coded_concepts = [f.concept for f in facts if f.concept and f.status in CODED]
        medications, encounter_meds, classes = [], [], set()
        for concept in coded_concepts:
            for option in concept.medications:
                if rng.random() < option.probability:
                    path = None
                    if option.drug_class and option.drug_class not in classes:
                        classes.add(option.drug_class)
                        path = f"medications[{len(encounter_meds)}]"
                        encounter_meds.append(Medication(option.drug_class, option.name))
                    if path or all(m.name != option.name for m in medications):
                        medications.append(MedicationFact(option.name, path))
        procedures: list[str] = []
        for concept in coded_concepts:
            for option in concept.procedures:
                if option.code not in procedures and rng.random() < option.probability:
                    procedures.append(option.code)
        if preventive and rng.random() < 0.35:
            procedures += [c for c in ("90686", "90471") if c not in procedures]
        if kind is VisitKind.TELEHEALTH:  # nothing hands-on happens over video
            procedures = []

        labs = self._labs(rng, facts)
        vitals = self._vitals(rng, facts)
        exam = [e for f in facts if f.concept and f.status in CODED for e in f.concept.exam[:1]]
        exam = list(dict.fromkeys(exam + rng.sample(_NORMAL_EXAM, 3)))
        decision = self._decision(rng, kind, setting, facts, labs, procedures, medications)
        minutes = decision.minutes
        mdm = None if preventive else MDM(_median_level(decision))
        visit_date = (_START + dt.timedelta(days=rng.randrange(700))).isoformat()
        encounter = Encounter(
            id=encounter_id,
            setting=setting,
            patient=Patient(age, Sex(sex)),
            visit=Visit(kind, self._new_patient(rng, kind), mdm, minutes),
            problems=tuple(problems),
            medications=tuple(encounter_meds),
            procedures=tuple(Procedure(c) for c in procedures),
        )
        return Scenario(
            encounter=encounter,
            problems=facts,
            medications=medications,
            labs=labs,
            vitals=vitals,
            exam=exam,
            patient=identity,
            provider=self.identities.provider(rng),
            facility=self.identities.facility(rng),
            visit_date=visit_date,
            decision=decision,
            patient_id=patient_id,
        )

    def _new_patient(self, rng: random.Random, kind: VisitKind) -> bool:
        if kind in (VisitKind.EMERGENCY, VisitKind.HOSPITAL_DISCHARGE):
            return False
        return rng.random() < self.profile.new_patient

    def _add_long_tail(self, rng, facts, problems, age, sex) -> None:
        code = self.long_tail[rng.randrange(len(self.long_tail))]
        sex_edits, age_edits = self.tables.edits_for(code)
        if any(e.sex != sex for e in sex_edits) or any(
            (e.min_age or 0) > age or (e.max_age is not None and e.max_age < age) for e in age_edits
        ):
            return
        concept = self.by_code.get(code)
        if concept is not None:
            phrases = self.phrases[concept.id, code]
        else:
            phrases = {"formal": long_tail_phrases(code), "abbreviated": (), "lay": ()}
        status = Status.CHRONIC if rng.random() < 0.5 else Status.ACTIVE
        facts.append(ProblemFact(concept, code, status, phrases))
        problems.append(Problem(code, status))

    def _labs(self, rng, facts) -> list[Result]:
        wanted: dict[str, tuple[float, float]] = {}
        for fact in facts:
            if fact.concept is None or fact.status not in (*CODED, Status.UNCERTAIN):
                continue
            wanted.update(fact.concept.labs)
            for form in fact.concept.forms:
                if form.code == fact.code:
                    wanted.update(form.labs)
        for name in rng.sample(_ROUTINE_LABS, 2):
            wanted.setdefault(name, self.catalog.labs[name].normal)
        return [
            self._result(rng, self.catalog.labs[name], bounds) for name, bounds in wanted.items()
        ]

    def _vitals(self, rng, facts) -> list[Result]:
        wanted = {
            name: measure.normal
            for name, measure in self.catalog.vitals.items()
            if name != "pain_score"
        }
        for fact in facts:
            if fact.concept is not None and fact.status in CODED:
                wanted.update(fact.concept.vitals)
                for form in fact.concept.forms:
                    if form.code == fact.code:
                        wanted.update(form.vitals)
        results = {
            name: self._result(rng, self.catalog.vitals[name], bounds)
            for name, bounds in wanted.items()
        }
        if "bmi" in results and "weight_kg" in results:  # weight consistent with BMI
            height = rng.uniform(1.52, 1.88)
            weight = float(results["bmi"].value) * height * height
            results["weight_kg"] = Result(self.catalog.vitals["weight_kg"], f"{weight:.1f}", "")
        return list(results.values())

    @staticmethod
    def _result(rng, measure, bounds) -> Result:
        if measure.values:
            high = bounds[1] > measure.normal[1]
            value = rng.choice(measure.values[1:] if high else measure.values[:1])
            return Result(measure, value, "H" if high else "")
        number = rng.uniform(*bounds)
        value = f"{number:.{measure.decimals}f}"
        low, high = measure.normal
        flag = "H" if number > high else "L" if number < low else ""
        return Result(measure, value, flag)

    def _decision(self, rng, kind, setting, facts, labs, procedures, medications) -> DecisionMaking:
        coded = [f for f in facts if f.status in (*CODED, Status.UNCERTAIN)]
        chronic = sum(f.status is Status.CHRONIC for f in coded)
        acute = sum(f.status is Status.ACTIVE for f in coded)
        uncertain = sum(f.status is Status.UNCERTAIN for f in coded)
        if setting is not Setting.OUTPATIENT:
            problems = 3 if rng.random() < 0.3 else 2
        elif uncertain or chronic >= 2 or (chronic and acute):
            problems = 3 if chronic >= 3 and rng.random() < 0.15 else 2
        else:
            problems = 1
        data_items = [f"reviewed {r.measure.short}" for r in labs[: rng.randint(0, 4)]]
        if rng.random() < 0.2:
            data_items.append("reviewed outside records")
        data = min(3, max(0, len(data_items) - 1))
        if setting is not Setting.OUTPATIENT and rng.random() < 0.35:
            risk, statement = 3, "decision regarding hospitalization"
        elif medications:
            risk, statement = 2, "prescription drug management"
        else:
            risk, statement = 1, "over-the-counter medication advised"
        minutes = None
        if kind in (VisitKind.OFFICE, VisitKind.TELEHEALTH, VisitKind.HOSPITAL_DISCHARGE) and (
            rng.random() < self.profile.time_documented or kind is VisitKind.HOSPITAL_DISCHARGE
        ):
            minutes = rng.randint(12, 65)
        return DecisionMaking(
            _LEVELS[problems], _LEVELS[data], _LEVELS[risk], tuple(data_items), statement, minutes
        )


def _median_level(decision: DecisionMaking) -> str:
    """MDM is the level that two of the three elements meet or exceed (AMA 2023)."""
    ranks = sorted(
        _LEVELS.index(x)
        for x in (decision.problems_level, decision.data_level, decision.risk_level)
    )
    return _LEVELS[ranks[1]]


@cache
def long_tail_phrases(code: str) -> tuple[str, ...]:
    """Phrases for a code outside the catalog: its tabular description and inclusion terms."""
    description = icd10cm.description(code)
    options = [
        description[0].lower() + description[1:] if description[1:2].islower() else description
    ]
    options += [t for t in icd10cm.inclusion_terms(code) if len(t) > 3][:3]
    return tuple(options)


_RELATIVES = (
    "mother",
    "father",
    "sister",
    "brother",
    "maternal grandmother",
    "paternal grandfather",
    "maternal aunt",
    "paternal uncle",
)
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
        self.facilities = [
            f"{fake.city()} {kind}"
            for kind in (
                "Family Medicine",
                "Medical Center",
                "Community Hospital",
                "Primary Care",
                "Health Clinic",
            )
            for _ in range(6)
        ]

    def patient(self, rng: random.Random, age: int, sex: str, visit_year: int = 2025) -> Identity:
        first, last = rng.choice(self.first[sex]), rng.choice(self.last)
        born = dt.date(visit_year - age, 1, 1) + dt.timedelta(days=rng.randrange(365))
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

    def facility(self, rng: random.Random) -> str:
        return rng.choice(self.facilities)


def patient_age(rng: random.Random, profile: Profile) -> tuple[int, str]:
    band = _choice(rng, profile.age)
    low, high = BAND_AGES[band]
    return rng.randint(low, high), _choice(rng, profile.sex)
