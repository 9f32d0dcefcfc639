"""Render a scenario to note text through Jinja2 templates, recording evidence spans.

Every fact behind a gold code is written through :func:`Marks.mark`, which wraps it in
private-use characters naming the fact's path; after rendering the markers are stripped and
their character offsets become evidence spans. Templates see the context built by
:func:`build_context` (documented in docs/templates.md) and cannot invent facts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import cache
from types import SimpleNamespace
from typing import ClassVar

from medcode.datafiles import load_yaml, package_data
from medcode.errors import DataFileError
from medcode.records import Episode, Status, VisitKind
from medcode.synth.choice import WeightedChoice
from medcode.synth.decision import LISTED_PLANS
from medcode.synth.scenario import ProblemFact, Scenario

OPEN, SEP, CLOSE = "\ue000", "\ue001", "\ue002"
_MARK = re.compile(f"{OPEN}([^{SEP}]*){SEP}([^{CLOSE}]*){CLOSE}")

NOTE_TYPES = (
    "office_progress",
    "new_patient_hp",
    "preventive",
    "ed",
    "discharge",
    "telehealth",
    "consult",
    "procedure",
)


def note_type(kind: VisitKind, new_patient: bool) -> str:
    """The note type written for a visit."""
    if kind in (VisitKind.OFFICE, VisitKind.HOSPITAL_SUBSEQUENT):
        return "new_patient_hp" if new_patient else "office_progress"
    return {
        VisitKind.TELEHEALTH: "telehealth",
        VisitKind.PREVENTIVE: "preventive",
        VisitKind.ANNUAL_WELLNESS: "preventive",
        VisitKind.EMERGENCY: "ed",
        VisitKind.HOSPITAL_DISCHARGE: "discharge",
        VisitKind.HOSPITAL_ADMISSION: "new_patient_hp",
        VisitKind.CONSULT: "consult",
        VisitKind.PROCEDURE: "procedure",
    }[kind]


def mark(path: str, text: str) -> str:
    """Wrap ``text`` as the mention of the fact at ``path``."""
    return f"{OPEN}{path}{SEP}{text}{CLOSE}"


# Vitals the policy reads (Z68 from the BMI, CPT II from the pressure): their printed values
# are the evidence of those codes.
_VITAL_PATHS = {"bmi": "vitals.bmi", "bp_systolic": "vitals.bp", "bp_diastolic": "vitals.bp"}


def _mark_vital(key: str, text: str) -> str:
    path = _VITAL_PATHS.get(key)
    return mark(path, text) if path else text


def strip_marks(rendered: str) -> tuple[str, dict[str, list[tuple[int, int]]]]:
    """Remove the markers; return the text and each path's spans (start, end)."""
    spans: dict[str, list[tuple[int, int]]] = {}
    pieces: list[str] = []
    length = 0
    last = 0
    for match in _MARK.finditer(rendered):
        before = rendered[last : match.start()]
        pieces.append(before)
        length += len(before)
        inner = match.group(2)
        spans.setdefault(match.group(1), []).append((length, length + len(inner)))
        pieces.append(inner)
        length += len(inner)
        last = match.end()
    pieces.append(rendered[last:])
    return "".join(pieces), spans


@dataclass(frozen=True)
class Cues:
    negated: tuple[str, ...]
    uncertain: tuple[str, ...]
    ruled_out: tuple[str, ...]
    resolved: tuple[str, ...]
    history: tuple[str, ...]
    family_history: tuple[str, ...]
    chronic: tuple[str, ...]
    active: tuple[str, ...]
    laterality: dict[str, tuple[str, ...]]
    episodes: dict[str, tuple[str, ...]]
    exacerbation: tuple[str, ...] = ()  # a chronic problem documented as worse (not at goal)
    relatives: dict[str, str] = field(default_factory=dict)  # relative -> sex (F or M)


# what a denied or excluded finding's phrase must not hold, and the negation templates that
# are the patient's words (a symptom's, not a diagnosis's)
_DENIED_NOT = re.compile(r",|\bwith(?:out)?\b|\bunclear\b|\bunknown\b", re.IGNORECASE)
_PATIENT_DENIES = re.compile(r"\bdenies\b|\bcomplaints\b|^without\b")


@cache
def shipped_cues() -> Cues:
    data = load_yaml(package_data("synth/cues.yaml"))
    return Cues(
        **{
            key: tuple(data[key])
            for key in (
                "negated",
                "uncertain",
                "ruled_out",
                "resolved",
                "history",
                "family_history",
                "chronic",
                "active",
            )
        },
        laterality={k: tuple(v) for k, v in data["laterality"].items()},
        episodes={k: tuple(v) for k, v in data["episodes"].items()},
        exacerbation=tuple(data.get("exacerbation", ())),
        relatives=_relatives(data),
    )


def _relatives(data: dict) -> dict[str, str]:
    found = data.get("relatives")
    if not isinstance(found, dict) or not found or set(found.values()) - {"F", "M"}:
        raise DataFileError(
            package_data("synth/cues.yaml"),
            getattr(found, "line", None) or data.line,
            "relatives: a mapping of relative to sex (F or M)",
        )
    return {str(relative): str(sex) for relative, sex in found.items()}


_SEX_WORDS = {"F": ("female", "she", "her", "woman"), "M": ("male", "he", "his", "man")}
_KIND_HEADERS = {
    VisitKind.OFFICE: ("office visit", "follow-up visit", "clinic visit"),
    VisitKind.TELEHEALTH: (
        "telehealth visit (video)",
        "virtual visit, audio and video",
        "telemedicine follow-up",
    ),
    VisitKind.PREVENTIVE: (
        "annual physical examination",
        "preventive health visit",
        "routine adult health maintenance exam",
    ),
    VisitKind.ANNUAL_WELLNESS: ("Medicare annual wellness visit", "annual wellness visit", "AWV"),
    VisitKind.EMERGENCY: ("emergency department visit", "ED evaluation"),
    VisitKind.HOSPITAL_DISCHARGE: ("discharge summary", "hospital discharge"),
    VisitKind.HOSPITAL_ADMISSION: ("admission history and physical",),
    VisitKind.HOSPITAL_SUBSEQUENT: ("hospital progress note",),
    VisitKind.CONSULT: ("consultation", "outpatient consultation", "consult note"),
    VisitKind.PROCEDURE: ("procedure note", "office procedure note", "procedure"),
}
_NEW_HEADERS = {
    VisitKind.OFFICE: ("new patient office visit", "new patient evaluation", "initial visit"),
    VisitKind.TELEHEALTH: ("new patient telehealth visit (video)", "new patient virtual visit"),
    VisitKind.PREVENTIVE: ("new patient preventive visit", "preventive visit, new patient"),
    VisitKind.ANNUAL_WELLNESS: (
        "initial Medicare annual wellness visit",
        "initial annual wellness visit",
    ),
}
_PLANS = (
    "continue current regimen",
    "recheck in 3 months",
    "labs ordered",
    "reviewed with patient",
    "titrate medication as tolerated",
    "patient education provided",
    "follow up as scheduled",
    "monitor symptoms, return precautions given",
    "refer as needed",
)


class _Writer:
    """Builds the context pieces for one note with a phrase style chosen per note."""

    def __init__(self, scenario: Scenario, rng: random.Random, styles: dict[str, float]) -> None:
        self.scenario = scenario
        self.rng = rng
        self.cues = shipped_cues()
        # The assessment names a condition in clinical terms; the patient's own words (the
        # catalog's lay phrases) appear only as quotes in the history (said()).
        names = [n for n in styles if n != "lay"] or ["formal"]
        self.styles = WeightedChoice(names, [styles.get(n, 1) for n in names])
        self.lay_share = styles.get("lay", 0.0)

    def said(self, fact: ProblemFact) -> str:
        """The patient's words for the problem, quoted, or "" (then the history uses the
        clinical phrase)."""
        options = fact.phrases.get("lay") or ()
        if not options or fact.status not in (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN):
            return ""
        if self.rng.random() >= min(0.9, 2 * self.lay_share):
            return ""
        return f'"{self.phrase(fact, "lay")}"'

    def phrase(self, fact: ProblemFact, style: str | None = None) -> str:
        rng = self.rng
        style = style or self.styles.pick(rng)
        denied = fact.status in (Status.NEGATED, Status.RULED_OUT)
        if denied and style == "lay":  # "denies sick to my stomach": the clinician's words
            style = "formal"
        options = fact.phrases.get(style) or fact.phrases.get("formal") or ()
        if denied:
            # a denied or excluded finding is named plainly: no inverted title ("pulmonary
            # embolism, acute"), no clause ("closed head injury with concussion"), no
            # qualifier of a documented one ("hematuria of unclear etiology"; audit round 8)
            plain = [o for o in options if not _DENIED_NOT.search(o)]
            options = plain or options
        if fact.status is Status.CHRONIC:  # a chronic problem is not called acute
            calm = [o for o in options if not re.search(r"\bacute\b", o, re.IGNORECASE)]
            options = calm or options
        elif fact.status in (Status.HISTORY, Status.RESOLVED, Status.FAMILY_HISTORY):
            # a past condition is not called current ("current cigarette smoker (history)")
            past = [o for o in options if not re.search(r"\bcurrent\b", o, re.IGNORECASE)]
            options = past or options
        text = rng.choice(options) if options else fact.code
        if fact.side:
            words = self.cues.laterality.get(fact.side, (fact.side,))
            side = rng.choice(words)
            if "{side}" in text:
                text = text.replace("{side}", side)
            elif style == "lay":
                text = f"{text} ({fact.side} side)"
            else:
                text = f"{side} {text}"
        elif "{side}" in text:
            text = " ".join(text.replace("{side}", "").split())
        if style == "lay":  # the patient's words: no clinical qualifiers
            return text
        concept = fact.concept
        if fact.episode is Episode.SEQUELA and concept is not None and concept.residual:
            text = f"{concept.residual[1]} from prior {text}"
        if fact.episode and fact.status in (Status.ACTIVE, Status.CHRONIC):
            text = f"{text}, {rng.choice(self.cues.episodes[fact.episode.value])}"
        return text

    def cue(self, kind: str, text: str, diagnosis: bool = False, **extra: str) -> str:
        """``text`` in one of the ``kind`` cue templates (cues.yaml); a negated diagnosis
        (not a symptom) is not "denied" by the patient: "no evidence of PE", not "no
        complaints of PE"."""
        options = getattr(self.cues, kind)
        if diagnosis and kind == "negated":
            options = [o for o in options if not _PATIENT_DENIES.search(o)] or options
        choice = self.rng.choice(options)
        lower = text.lower()
        if kind == "chronic" and "chronic" in choice and ("chronic" in lower or "acute" in lower):
            choice = "{x}"
        return choice.format(x=text, **extra)

    def state_cue(self, fact: ProblemFact, text: str) -> str | None:
        """The words of the problem's documented control state ("well controlled", "not at
        goal"), or None when it has none (data/synth/control.yaml)."""
        if fact.concept is None or not fact.control:
            return None
        from medcode.synth.clinical import shipped_rules

        control = shipped_rules().controls.get(fact.concept.id)
        state = control.states.get(fact.control) if control else None
        if state is None:
            return None
        return self.rng.choice(state.cues).format(x=text)

    def symptom_phrase(self, code: str) -> str:
        from medcode.synth.sampler import long_tail_phrases

        return long_tail_phrases(code)[0]


def build_context(
    scenario: Scenario,
    rng: random.Random,
    styles: dict[str, float],
    note_type_name: str,
    family: str,
) -> dict[str, object]:
    """The variables a template sees (docs/templates.md)."""
    from medcode.synth.phrasings import Say, derived_rng

    writer = _Writer(scenario, rng, styles)
    encounter = scenario.encounter
    visit = encounter.visit
    sex, pronoun, possessive, noun = _SEX_WORDS[encounter.patient.sex.value]
    # the stock sentences' variants and the procedures' names (data/synth/phrasings.yaml),
    # from a generator of their own: the note's facts do not depend on them
    say = Say(
        derived_rng(rng, "phrasings"),
        {
            "pronoun": pronoun,
            "Pronoun": pronoun.capitalize(),
            "possessive": possessive,
            "Possessive": possessive.capitalize(),
            "noun": noun,
            "title": f"{'Ms.' if sex == 'female' else 'Mr.'} {scenario.patient.last_name}",
        },
    )
    headers = _KIND_HEADERS[visit.kind]
    if visit.new_patient:  # a new patient's (or initial wellness) visit says so
        headers = _NEW_HEADERS.get(visit.kind, headers)
    header = mark("visit", rng.choice(headers))
    story = _Storyteller(scenario, rng)
    # each medication change in the narrator's words ("Started lisinopril 20 mg daily today",
    # "metformin stopped, pill burden"), from a generator of its own
    changes: dict[int | None, list[tuple[str, str]]] = {}
    changed = derived_rng(rng, "changes")
    for change in scenario.medication_changes:
        line = story.narrator.change_line(changed, change.action, change.name)
        said = (change.name.split() or [""])[0]
        changes.setdefault(change.problem, []).append((said, _lower_first(line.rstrip("."))))

    problems, history, family_history, resolved, negatives, ruled_out = [], [], [], [], [], []
    for index, fact in enumerate(scenario.problems):
        path = f"problems[{index}]"
        phrase = writer.phrase(fact)
        status = fact.status
        said = writer.said(fact)
        if status in (Status.ACTIVE, Status.CHRONIC):
            marked = mark(path, phrase)
            # A Z-code situation (screening, vaccination, status) takes no clinical-course cue.
            if fact.code.startswith("Z"):
                text = marked
            else:
                text = writer.state_cue(fact, marked) or writer.cue(
                    _course_cue(scenario, index, status), marked
                )
            plan = _plan(scenario, index)
            addressed = not plan or plan not in LISTED_PLANS
            told = story.tell(index, fact, marked) if addressed else _Told()
            problems.append(
                SimpleNamespace(
                    text=text,
                    phrase=marked,
                    # whether the visit addressed it (not "followed by specialist, not addressed")
                    addressed=addressed,
                    story=told.hpi,
                    reasoning=told.reasoning,
                    hpi=mark(path, said) if said else marked,
                    said=mark(path, said) if said else "",
                    status=status.value,
                    is_new=status is Status.ACTIVE,
                    is_uncertain=False,
                    symptoms_text="",
                    plan=told.around(
                        _with_changes(_plan(scenario, index) or rng.choice(_PLANS), changes, index)
                    ),
                )
            )
        elif status is Status.UNCERTAIN:
            symptoms = ", ".join(
                mark(f"{path}.symptoms[{j}]", writer.symptom_phrase(code))
                for j, code in enumerate(fact.symptoms)
            )
            marked = mark(path, phrase)
            text = writer.cue("uncertain", marked)
            told = story.tell(index, fact, marked, symptoms=symptoms)
            problems.append(
                SimpleNamespace(
                    text=f"{text} ({symptoms})" if symptoms else text,
                    phrase=marked,
                    hpi=symptoms or marked,
                    said="",
                    addressed=True,
                    story=told.hpi,
                    reasoning=told.reasoning,
                    status=status.value,
                    is_new=True,
                    is_uncertain=True,
                    symptoms_text=symptoms,
                    plan=told.around(
                        _with_changes(_plan(scenario, index) or rng.choice(_PLANS), changes, index)
                    ),
                )
            )
        elif status is Status.HISTORY:
            history.append(writer.cue("history", mark(path, phrase)))
        elif status is Status.FAMILY_HISTORY:
            family_history.append(
                writer.cue("family_history", mark(path, phrase), relative=fact.relative or "mother")
            )
        elif status is Status.RESOLVED:
            resolved.append(writer.cue("resolved", phrase))
        elif status is Status.NEGATED:
            symptom = fact.concept is None or fact.concept.domain == "symptoms"
            negatives.append(writer.cue("negated", phrase, diagnosis=not symptom))
        else:
            ruled_out.append(writer.cue("ruled_out", phrase))

    medications = [mark(m.path, m.name) if m.path else m.name for m in scenario.medications]
    procedures = []
    from medcode.terminology import cpt

    table = cpt.procedure_table()
    hospital = encounter.setting.value != "outpatient"
    for index, procedure in enumerate(encounter.procedures):
        description = table[procedure.code].description
        if description[1:2].islower():
            description = description[0].lower() + description[1:]
        if procedure.code == "93000" and visit.kind is VisitKind.HOSPITAL_DISCHARGE:
            # read by another physician during the stay: not on the discharge-day claim
            description = "12-lead ECG, read by cardiology"
        elif hospital and procedure.code == "93000":  # billed as the interpretation, 93010
            description = "12-lead ECG, personally interpreted"
        else:  # the description or one of the names clinicians write for the code
            description = say.procedure(procedure.code, description)
        procedures.append(mark(f"procedures[{index}]", description))

    decision = scenario.decision
    minutes = decision.minutes
    time_statement = (
        mark("visit", f"total time on the date of the encounter {minutes} minutes")
        if minutes
        else ""
    )
    # The plan's management sentence; a minority of notes also state the MDM line.
    mdm_statement = mark(
        "visit",
        f"{decision.line}. {decision.management}" if decision.explicit else decision.management,
    )
    vitals = {r.measure.key: r for r in scenario.vitals}
    vitals_line = ", ".join(
        _mark_vital(r.measure.key, f"{r.measure.short} {r.value}{_unit(r)}")
        for r in scenario.vitals
    )
    bp = ""
    if "bp_systolic" in vitals and "bp_diastolic" in vitals:
        bp = mark("vitals.bp", f"{vitals['bp_systolic'].value}/{vitals['bp_diastolic'].value}")
    reason = problems[0].text if problems else header
    from medcode.synth.course import course_context

    # the hospital/ED course, surgical and social history and a carried-forward problem list
    # (data/synth/hospital_course.yaml), from a generator of their own: text around the facts
    course = course_context(
        scenario,
        derived_rng(rng, "course"),
        note_type=note_type_name,
        family=family,
        problems=problems,
        resolved=resolved,
        vitals_line=vitals_line,
        pronoun=pronoun,
        possessive=possessive,
    )
    consult = None
    if visit.kind is VisitKind.CONSULT:
        consult = _consult(scenario, derived_rng(rng, "consult"))
    operation = None
    if visit.kind is VisitKind.PROCEDURE and procedures:
        operation = _operation(scenario, derived_rng(rng, "operation"), procedures)
    return _namespaces(
        {
            "note": {"type": note_type_name, "family": family},
            "say": say,
            "patient": {
                "name": scenario.patient.name,
                "first_name": scenario.patient.first_name,
                "last_name": scenario.patient.last_name,
                "age": encounter.patient.age,
                "sex": sex,
                "sex_short": encounter.patient.sex.value,
                "pronoun": pronoun,
                "possessive": possessive,
                "noun": noun,
                "dob": scenario.patient.dob,
                "mrn": scenario.patient.mrn,
                "address": scenario.patient.address,
                "phone": scenario.patient.phone,
            },
            "provider": scenario.provider,
            "facility": scenario.facility,
            "date": scenario.visit_date,
            "visit": {
                "kind": visit.kind.value,
                "new_patient": visit.new_patient,
                "header": header,
                "setting": encounter.setting.value,
                "minutes": minutes,
                "time_statement": time_statement,
            },
            "reason": reason,
            # a consultation: the specialty, who asked and why (None for other visits)
            "consult": consult,
            # a procedure note's sections (None for other visits): the procedure, its
            # indication and site, anesthesia, technique, findings, injectate, aftercare
            "operation": operation,
            # the history of present illness: onset, course and pertinent negatives of the
            # problems the visit addresses (data/synth/narrative.yaml), "" when none
            "story": " ".join(p.story for p in problems if p.story),
            # a preventive visit's new abnormal findings (an active problem other than a Z
            # code): what makes the exam code Z00.01 rather than Z00.00 (policy.em.exam_code)
            "new_findings": any(
                p.status is Status.ACTIVE and not p.code.upper().startswith("Z")
                for p in encounter.problems
            ),
            "problems": problems,
            "history": history,
            "family_history": family_history,
            "resolved": resolved,
            "negatives": negatives,
            "ruled_out": ruled_out,
            "medications": medications,
            "procedures": procedures,
            "labs": [
                SimpleNamespace(
                    name=r.measure.name,
                    short=r.measure.short,
                    value=r.value,
                    unit=r.measure.unit,
                    flag=r.flag,
                )
                for r in scenario.labs
            ],
            "vitals": {
                "bp": bp,
                "line": vitals_line,
                **{key: _mark_vital(key, f"{r.value}{_unit(r)}") for key, r in vitals.items()},
            },
            "exam": list(scenario.exam),
            # the templates' own general statements, only where the facts allow them
            "general": _general(scenario),
            "function": scenario.function or "independent in ADLs and IADLs",
            "living": scenario.living or "lives independently",
            "course": course,
            "mdm": {
                "statement": mdm_statement,
                "problems": decision.problems_level,
                "data": list(decision.data_items),
                "risk": decision.risk_statement,
                "level": decision.level or "",
                "explicit": decision.explicit,
            },
        }
    )


def _consult(scenario: Scenario, rng: random.Random) -> dict[str, str]:
    """Who requested the consultation, the consultant's specialty (from the reason's
    domain, data/synth/specialties.yaml) and the report back: a consultation is requested by
    another physician, rendered, and reported back (AMA CPT consultation codes)."""
    from medcode.synth.specialties import shipped_specialties

    reason = next((f for f in scenario.problems if f.concept is not None), None)
    domain = reason.concept.domain if reason is not None else "symptoms"
    specialty = shipped_specialties().get(domain, "internal medicine")
    requesting = scenario.referring or "the primary care physician"
    return {
        "specialty": specialty,
        "Specialty": specialty[:1].upper() + specialty[1:],
        "requesting": requesting,
        "request": rng.choice(
            (
                f"Consultation requested by {requesting} (primary care)",
                f"Referred by {requesting}, primary care, for consultation",
                f"Seen at the request of {requesting}",
            )
        ),
        "report": rng.choice(
            (
                f"Thank you for this consultation. My recommendations were sent to {requesting}.",
                f"A copy of this consultation is sent to {requesting}.",
                f"Recommendations communicated to the referring physician, {requesting}.",
            )
        ),
    }


def _operation(scenario: Scenario, rng: random.Random, procedures: list[str]) -> dict | None:
    """A procedure note's sections (data/synth/procedure_visits.yaml) for the encounter's
    first procedure and its indication, with the printed procedure name."""
    from medcode.synth.procedure_visits import shipped_procedure_visits

    encounter = scenario.encounter
    entry = shipped_procedure_visits().by_code(encounter.procedures[0].code)
    if entry is None:
        return None
    fact = next(
        (f for f in scenario.problems if f.concept and entry.indication(f.concept.id)), None
    )
    if fact is None:
        return None
    form = next((f for f in fact.concept.forms if f.code == fact.code), None)
    written = entry.write(rng, fact.concept.id, fact.side, form.attributes if form else {})
    return {"name": procedures[0], **vars(written)}


@dataclass(frozen=True)
class _Told:
    """What the narrative adds to one problem: its HPI sentences, the clinician's reasoning,
    an interpreted result and a follow-up plan (all "" when the visit did not address it)."""

    hpi: str = ""
    reasoning: str = ""
    result: str = ""
    followup: str = ""

    def around(self, plan: str) -> str:
        """The decision's plan words (the E/M evidence, unchanged) with the reasoning before
        them and the interpreted result and follow-up after them."""
        parts = [plan, self.result, _lower_first(self.followup.rstrip("."))]
        text = "; ".join(p for p in parts if p)
        if self.reasoning:
            reasoning = self.reasoning.rstrip(".") + "."
            text = f"{reasoning} {text[:1].upper()}{text[1:]}" if text else reasoning
        return text


class _Storyteller:
    """Tells the problems of one scenario through :mod:`medcode.synth.narrative`."""

    # HPI paragraphs: in the office the reason for the visit and up to two more problems; in
    # the ED and the hospital the presenting problem only (the rest is the hospital course)
    MAX_STORIES: ClassVar[dict[str, int]] = {"office": 3}

    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        from medcode.synth import narrative

        self.narrative = narrative
        self.narrator = narrative.shipped_narrative()
        self.scenario = scenario
        self.rng = rng
        decision = scenario.decision
        admitted = "hospital" in (decision.risk_statement or "").lower()
        self.setting = narrative.setting_for(scenario.encounter.visit.kind, admitted)
        self.stories = 0
        self._present: tuple[str, ...] | None = None  # the scenario's present terms, once

    def tell(self, index: int, fact: ProblemFact, phrase: str, symptoms: str = "") -> _Told:
        decision, rng, narrator = self.scenario.decision, self.rng, self.narrator
        kind = decision.kinds[index] if index < len(decision.kinds) else ""
        course = decision.courses[index] if index < len(decision.courses) else ""
        kind = kind or None
        kind_type = self.narrative.problem_type(fact, kind, course)
        if not kind_type:
            return _Told()
        if self._present is None:
            self._present = self.narrative.present_terms(self.scenario)
        facts = self.narrative.facts_for(self.scenario, index, self._present)
        where = self.narrative.subject(fact)
        age = self.scenario.encounter.patient.age
        hpi = ""
        if self.stories < self.MAX_STORIES.get(self.setting, 1):
            self.stories += 1
            if kind_type == "uncertain":
                said, suspected = (symptoms, False) if symptoms else (phrase, True)
            else:
                said, suspected = phrase, None
            hpi = narrator.hpi(
                rng,
                said,
                kind_type,
                drugs=facts.drugs,
                present=facts.present,
                age=age,
                suspected=suspected,
                setting=self.setting,
                **where,
            )
        reasoning = narrator.reasoning(
            rng,
            phrase,
            kind_type,
            findings=facts.findings,
            normal_findings=facts.normal_findings,
            labs=facts.results,
            drugs=facts.drugs,
            setting=self.setting,
            **where,
        )
        result = ""
        if facts.results:
            printed = facts.results[0]
            result = narrator.result_line(
                rng, printed, narrator.result_course(rng, kind_type, printed)
            )
        followup = narrator.plan(
            rng,
            kind_type,
            setting=self.setting,
            drugs=facts.drugs,
            tests=bool(facts.results),
            **where,
        )
        return _Told(hpi, reasoning, result, followup)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _namespaces(context: dict[str, object]) -> dict[str, object]:
    """Nested dicts as attribute objects: Jinja reads ``patient.age`` from an object with a
    plain attribute look-up, where a dict costs a failed getattr first (a 2x slower render)."""

    def convert(value: object) -> object:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: convert(v) for k, v in value.items()})
        return value

    return {key: convert(value) for key, value in context.items()}


def _general(scenario: Scenario) -> dict[str, bool]:
    """Whether the note may say 'no acute distress' (distress), 'alert and oriented'
    (oriented) and 'no increased work of breathing' (breathing)."""
    from medcode.synth.clinical import shipped_rules
    from medcode.synth.patient import general_statements

    codes = [
        c
        for f in scenario.problems
        if f.status in (Status.ACTIVE, Status.CHRONIC, Status.UNCERTAIN)
        for c in (f.code, *f.symptoms)
    ]
    return general_statements(shipped_rules(), list(scenario.exam), codes)


def _with_changes(plan: str, changes: dict[int | None, list[tuple[str, str]]], index: int) -> str:
    """The plan with the medication changes documented for the problem (a drug the plan
    names already is not repeated)."""
    added = [line for drug, line in changes.get(index, ()) if drug.lower() not in plan.lower()]
    return "; ".join([plan, *added]) if added else plan


def _plan(scenario: Scenario, index: int) -> str:
    """The plan the decision wrote for a problem ("" when it wrote none)."""
    plans = scenario.decision.plans
    return plans[index] if index < len(plans) else ""


def _course_cue(scenario: Scenario, index: int, status: Status) -> str:
    """The cue list for a problem's clinical course: a chronic problem the decision found
    worse (not at goal) never reads "stable"."""
    if status is Status.ACTIVE:
        return "active"
    courses = scenario.decision.courses
    worse = index < len(courses) and courses[index] == "worse"
    return "exacerbation" if worse and shipped_cues().exacerbation else "chronic"


def _unit(result) -> str:
    unit = result.measure.unit
    return f" {unit}" if unit and unit[0].isalpha() else unit
