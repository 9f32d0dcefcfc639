"""Render a scenario to note text through Jinja2 templates, recording evidence spans.

Every fact behind a gold code is written through :func:`Marks.mark`, which wraps it in
private-use characters naming the fact's path; after rendering the markers are stripped and
their character offsets become evidence spans. Templates see the context built by
:func:`build_context` (documented in docs/templates.md) and cannot invent facts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import cache
from types import SimpleNamespace

from medcode.datafiles import load_yaml, package_data
from medcode.records import Status, VisitKind
from medcode.synth.choice import WeightedChoice
from medcode.synth.scenario import ProblemFact, Scenario

OPEN, SEP, CLOSE = "\ue000", "\ue001", "\ue002"
_MARK = re.compile(f"{OPEN}([^{SEP}]*){SEP}([^{CLOSE}]*){CLOSE}")

NOTE_TYPES = ("office_progress", "new_patient_hp", "preventive", "ed", "discharge", "telehealth")


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
    )


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
        names = list(styles)
        self.styles = WeightedChoice(names, [styles[n] for n in names])

    def phrase(self, fact: ProblemFact) -> str:
        rng = self.rng
        style = self.styles.pick(rng)
        options = fact.phrases.get(style) or fact.phrases.get("formal") or ()
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
        if fact.episode and fact.status in (Status.ACTIVE, Status.CHRONIC):
            text = f"{text}, {rng.choice(self.cues.episodes[fact.episode.value])}"
        return text

    def cue(self, kind: str, text: str, **extra: str) -> str:
        choice = self.rng.choice(getattr(self.cues, kind))
        if kind == "chronic" and choice.startswith("chronic") and "chronic" in text.lower():
            choice = "{x}"
        return choice.format(x=text, **extra)

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
    writer = _Writer(scenario, rng, styles)
    encounter = scenario.encounter
    visit = encounter.visit
    sex, pronoun, possessive, noun = _SEX_WORDS[encounter.patient.sex.value]
    headers = _KIND_HEADERS[visit.kind]
    if visit.kind is VisitKind.OFFICE and visit.new_patient:
        headers = ("new patient office visit", "new patient evaluation", "initial visit")
    header = mark("visit", rng.choice(headers))

    problems, history, family_history, resolved, negatives, ruled_out = [], [], [], [], [], []
    for index, fact in enumerate(scenario.problems):
        path = f"problems[{index}]"
        phrase = writer.phrase(fact)
        status = fact.status
        if status in (Status.ACTIVE, Status.CHRONIC):
            marked = mark(path, phrase)
            # A Z-code situation (screening, vaccination, status) takes no clinical-course cue.
            if fact.code.startswith("Z"):
                text = marked
            else:
                text = writer.cue("active" if status is Status.ACTIVE else "chronic", marked)
            problems.append(
                SimpleNamespace(
                    text=text,
                    phrase=marked,
                    status=status.value,
                    is_new=status is Status.ACTIVE,
                    is_uncertain=False,
                    symptoms_text="",
                    plan=rng.choice(_PLANS),
                )
            )
        elif status is Status.UNCERTAIN:
            symptoms = ", ".join(
                mark(f"{path}.symptoms[{j}]", writer.symptom_phrase(code))
                for j, code in enumerate(fact.symptoms)
            )
            marked = mark(path, phrase)
            text = writer.cue("uncertain", marked)
            problems.append(
                SimpleNamespace(
                    text=f"{text} ({symptoms})" if symptoms else text,
                    phrase=marked,
                    status=status.value,
                    is_new=True,
                    is_uncertain=True,
                    symptoms_text=symptoms,
                    plan=rng.choice(_PLANS),
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
            negatives.append(writer.cue("negated", phrase))
        else:
            ruled_out.append(writer.cue("ruled_out", phrase))

    medications = [mark(m.path, m.name) if m.path else m.name for m in scenario.medications]
    procedures = []
    from medcode.terminology import cpt

    table = cpt.procedure_table()
    for index, procedure in enumerate(encounter.procedures):
        description = table[procedure.code].description
        if description[1:2].islower():
            description = description[0].lower() + description[1:]
        procedures.append(mark(f"procedures[{index}]", description))

    decision = scenario.decision
    minutes = decision.minutes
    time_statement = (
        mark("visit", f"total time on the date of the encounter {minutes} minutes")
        if minutes
        else ""
    )
    mdm_statement = mark(
        "visit",
        f"MDM {visit.mdm.value}: problems {_WORDS['problems'][decision.problems_level]}, data "
        f"{_WORDS['data'][decision.data_level]}, risk {_WORDS['risk'][decision.risk_level]} "
        f"({decision.risk_statement})"
        if visit.mdm
        else f"{decision.risk_statement}",
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
    return _namespaces(
        {
            "note": {"type": note_type_name, "family": family},
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
            "mdm": {
                "statement": mdm_statement,
                "problems": decision.problems_level,
                "data": list(decision.data_items),
                "risk": decision.risk_statement,
                "level": visit.mdm.value if visit.mdm else "",
            },
        }
    )


def _namespaces(context: dict[str, object]) -> dict[str, object]:
    """Nested dicts as attribute objects: Jinja reads ``patient.age`` from an object with a
    plain attribute look-up, where a dict costs a failed getattr first (a 2x slower render)."""

    def convert(value: object) -> object:
        if isinstance(value, dict):
            return SimpleNamespace(**{k: convert(v) for k, v in value.items()})
        return value

    return {key: convert(value) for key, value in context.items()}


# AMA 2023 names of the levels of each MDM element.
_WORDS = {
    "problems": {
        "straightforward": "minimal",
        "low": "low",
        "moderate": "moderate",
        "high": "high",
    },
    "data": {
        "straightforward": "minimal",
        "low": "limited",
        "moderate": "moderate",
        "high": "extensive",
    },
    "risk": {"straightforward": "minimal", "low": "low", "moderate": "moderate", "high": "high"},
}


def _unit(result) -> str:
    unit = result.measure.unit
    return f" {unit}" if unit and unit[0].isalpha() else unit
