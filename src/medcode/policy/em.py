"""Evaluation and management level (AMA E/M guidelines 2023) and the preventive exam code."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from medcode.records import MDM, Encounter, Status, VisitKind
from medcode.terminology import cpt
from medcode.terminology.cpt import EMPatient, EMSetting


@dataclass(frozen=True, slots=True)
class Choice:
    code: str | None
    rule: str
    reason: str
    warning: str | None = None


@cache
def _family(setting: EMSetting, patient: EMPatient) -> tuple[cpt.ProcedureCode, ...]:
    entries = [
        entry
        for entry in cpt.procedure_table().em_codes()
        if entry.em.setting is setting and entry.em.patient is patient
    ]
    return tuple(sorted(entries, key=lambda entry: entry.em.level))


def _by_mdm(family: tuple[cpt.ProcedureCode, ...], mdm: MDM | None) -> cpt.ProcedureCode | None:
    if mdm is None:
        return None
    eligible = [e for e in family if e.em.mdm is not None and e.em.mdm.rank <= mdm.rank]
    return eligible[-1] if eligible else None


def _by_time(
    family: tuple[cpt.ProcedureCode, ...], minutes: int | None
) -> cpt.ProcedureCode | None:
    if minutes is None:
        return None
    eligible = [e for e in family if e.em.time_min is not None and e.em.time_min <= minutes]
    return eligible[-1] if eligible else None


def _leveled(
    setting: EMSetting, patient: EMPatient, encounter: Encounter, rule: str, use_time: bool = True
) -> Choice:
    visit = encounter.visit
    family = _family(setting, patient)
    by_mdm = _by_mdm(family, visit.mdm)
    by_time = _by_time(family, visit.minutes) if use_time else None
    options = [e for e in (by_mdm, by_time) if e is not None]
    if not options:
        basis = "MDM or total time" if use_time else "MDM"
        return Choice(
            None, rule, "", f"{visit.kind.value} visit: no {basis} documented, no E/M level"
        )
    best = max(options, key=lambda entry: entry.em.level)
    basis = "MDM " + visit.mdm.value if best is by_mdm else f"{visit.minutes} minutes"
    return Choice(best.code, rule, f"{setting.value} {patient.value}, {basis}")


def _preventive(encounter: Encounter) -> Choice:
    patient = EMPatient.NEW if encounter.visit.new_patient else EMPatient.ESTABLISHED
    age = encounter.patient.age
    for entry in _family(EMSetting.PREVENTIVE, patient):
        low, high = entry.em.age_range
        if low <= age and (high is None or age <= high):
            return Choice(entry.code, "em.preventive", f"preventive, {patient.value}, age {age}")
    return Choice(None, "em.preventive", "", f"no preventive visit code for age {age}")


_ANNUAL_WELLNESS = {True: "G0438", False: "G0439"}


def choose(encounter: Encounter) -> Choice:
    """The E/M code for the encounter's visit."""
    visit = encounter.visit
    kind = visit.kind
    patient = EMPatient.NEW if visit.new_patient else EMPatient.ESTABLISHED
    if kind in (VisitKind.OFFICE, VisitKind.TELEHEALTH):
        return _leveled(EMSetting.OFFICE, patient, encounter, "em.office")
    if kind is VisitKind.CONSULT:  # CPT 2023: 99242-99245, by MDM or total time
        return _leveled(EMSetting.CONSULT, EMPatient.ANY, encounter, "em.consult")
    if kind is VisitKind.PROCEDURE:
        # a minor procedure's global package includes the decision to perform it and the
        # visit that day (CMS Claims Processing Manual ch. 12 s40.1.C; NCCI manual ch. I)
        return Choice(None, "em.procedure", "minor procedure: E/M in its global package")
    if kind is VisitKind.EMERGENCY:
        return _leveled(EMSetting.EMERGENCY, EMPatient.ANY, encounter, "em.emergency", False)
    if kind is VisitKind.HOSPITAL_ADMISSION:
        return _leveled(EMSetting.HOSPITAL, EMPatient.INITIAL, encounter, "em.hospital")
    if kind is VisitKind.HOSPITAL_SUBSEQUENT:
        return _leveled(EMSetting.HOSPITAL, EMPatient.SUBSEQUENT, encounter, "em.hospital")
    if kind is VisitKind.HOSPITAL_DISCHARGE:
        if visit.minutes is None:
            # 99238 is "30 minutes or less": with no time documented it is the code (only
            # 99239 needs documented time), so no warning.
            return Choice("99238", "em.discharge", "discharge day, time not documented")
        return _leveled(EMSetting.HOSPITAL, EMPatient.DISCHARGE, encounter, "em.discharge")
    if kind is VisitKind.PREVENTIVE:
        return _preventive(encounter)
    code = _ANNUAL_WELLNESS[visit.new_patient]
    return Choice(code, "em.annual_wellness", "first" if visit.new_patient else "subsequent")


# (adult, abnormal findings) -> general examination code (I.C.21.c.13)
EXAM_CODES = {
    (True, False): "Z00.00",
    (True, True): "Z00.01",
    (False, False): "Z00.129",
    (False, True): "Z00.121",
}


def exam_code(encounter: Encounter) -> str | None:
    """The general-examination Z00 code of a preventive or wellness visit (I.C.21.c.13):
    adult 18+ or child; 'with abnormal findings' when a problem is a new (active) finding.
    Z codes (an immunisation, a screening) are reasons for the visit, not findings."""
    if encounter.visit.kind not in (VisitKind.PREVENTIVE, VisitKind.ANNUAL_WELLNESS):
        return None
    abnormal = any(
        problem.status is Status.ACTIVE and not problem.code.strip().upper().startswith("Z")
        for problem in encounter.problems
    )
    return EXAM_CODES[(encounter.patient.age >= 18, abnormal)]
