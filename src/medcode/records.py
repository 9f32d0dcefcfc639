"""Typed records passed between medcode's stages (DESIGN.md, "The pipeline").

An :class:`Encounter` holds the clinical facts; the policy engine turns it into gold
:class:`Code` s; the renderer turns it into text with :class:`Evidence` spans; the result
is a :class:`CodedNote`. Every record converts to and from plain JSON-ready dicts; the
encounter dict shape is the contract of ``medcode policy code ENCOUNTER.json``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from medcode.errors import MedcodeError


class RecordError(MedcodeError):
    """A record dict that does not have the expected shape; names the field path."""

    exit_code = 2

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


class System(StrEnum):
    """Code system of a :class:`Code`."""

    ICD10CM = "ICD-10-CM"
    CPT = "CPT"
    HCPCS = "HCPCS"


class Setting(StrEnum):
    """Care setting; decides e.g. how uncertain diagnoses are coded."""

    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    EMERGENCY = "emergency"


class VisitKind(StrEnum):
    """Kind of visit, which selects the E/M code family."""

    OFFICE = "office"
    PREVENTIVE = "preventive"
    ANNUAL_WELLNESS = "annual_wellness"
    EMERGENCY = "emergency"
    HOSPITAL_ADMISSION = "hospital_admission"
    HOSPITAL_SUBSEQUENT = "hospital_subsequent"
    HOSPITAL_DISCHARGE = "hospital_discharge"
    TELEHEALTH = "telehealth"
    CONSULT = "consult"  # an outpatient consultation at another physician's request
    PROCEDURE = "procedure"  # a minor office procedure written up as its own note


class MDM(StrEnum):
    """Medical decision making level (AMA E/M guidelines, 2023)."""

    STRAIGHTFORWARD = "straightforward"
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """0 for straightforward up to 3 for high."""
        return _MDM_RANK[self]


_MDM_RANK = {level: rank for rank, level in enumerate(MDM)}


class Status(StrEnum):
    """How a problem is documented; decides whether and how it is coded."""

    ACTIVE = "active"
    CHRONIC = "chronic"
    HISTORY = "history"
    RESOLVED = "resolved"
    FAMILY_HISTORY = "family_history"
    NEGATED = "negated"
    RULED_OUT = "ruled_out"
    UNCERTAIN = "uncertain"


class Episode(StrEnum):
    """Episode of care, the 7th character of injury codes (A, D, S)."""

    INITIAL = "initial"
    SUBSEQUENT = "subsequent"
    SEQUELA = "sequela"


class Sex(StrEnum):
    FEMALE = "F"
    MALE = "M"


E = TypeVar("E", bound=StrEnum)


def _enum(kind: type[E], value: Any, where: str) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = " | ".join(member.value for member in kind)
        raise RecordError(where, f"{value!r} is not one of {choices}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(where, f"expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RecordError(where, f"expected a list, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RecordError(where, f"expected a non-empty string, got {value!r}")
    return value.strip()


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RecordError(where, f"unknown field(s) {', '.join(unknown)}")


def _date(value: Any, where: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise RecordError(where, f"expected a date YYYY-MM-DD, got {value!r}") from None


def _drop_empty(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value not in (None, [], (), {}, "")}


@dataclass(frozen=True, slots=True)
class Code:
    """One assigned code, with the rule that produced it and that rule's source."""

    code: str
    system: System
    description: str = ""
    rule: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty(
            {
                "code": self.code,
                "system": self.system.value,
                "description": self.description,
                "rule": self.rule,
                "source": self.source,
            }
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "code") -> Code:
        data = _mapping(data, where)
        _reject_unknown(data, {"code", "system", "description", "rule", "source"}, where)
        return cls(
            code=_text(data.get("code"), f"{where}.code"),
            system=_enum(System, data.get("system"), f"{where}.system"),
            description=data.get("description", ""),
            rule=data.get("rule", ""),
            source=data.get("source", ""),
        )


@dataclass(frozen=True, slots=True)
class Problem:
    """A documented condition: the clinician's code (possibly unspecific) and its status.

    ``symptoms`` under a confirmed diagnosis are its presentation (integral, not coded);
    under an uncertain one they are what outpatient coding reports; under a ruled-out one
    they are what brought the patient in, coded when no other definitive diagnosis explains
    them (II.A, IV.D). ``residual`` is, for an injury documented as a sequela (``episode:
    sequela``), the ICD-10-CM code of the residual condition (a scar, a contracture), which
    is coded first (I.C.19.a).
    """

    code: str
    status: Status = Status.ACTIVE
    symptoms: tuple[str, ...] = ()
    organism: str | None = None
    laterality: str | None = None
    episode: Episode | None = None
    linked_to: str | None = None
    residual: str | None = None

    _FIELDS = frozenset(
        {
            "code",
            "status",
            "symptoms",
            "organism",
            "laterality",
            "episode",
            "linked_to",
            "residual",
        }
    )

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty(
            {
                "code": self.code,
                "status": self.status.value,
                "symptoms": list(self.symptoms),
                "organism": self.organism,
                "laterality": self.laterality,
                "episode": self.episode.value if self.episode else None,
                "linked_to": self.linked_to,
                "residual": self.residual,
            }
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "problem") -> Problem:
        data = _mapping(data, where)
        _reject_unknown(data, set(cls._FIELDS), where)
        symptoms = _list(data.get("symptoms"), f"{where}.symptoms")
        episode = data.get("episode")
        return cls(
            code=_text(data.get("code"), f"{where}.code"),
            status=_enum(Status, data.get("status", "active"), f"{where}.status"),
            symptoms=tuple(
                _text(value, f"{where}.symptoms[{i}]") for i, value in enumerate(symptoms)
            ),
            organism=_text(data.get("organism"), f"{where}.organism", required=False),
            laterality=_text(data.get("laterality"), f"{where}.laterality", required=False),
            episode=_enum(Episode, episode, f"{where}.episode") if episode else None,
            linked_to=_text(data.get("linked_to"), f"{where}.linked_to", required=False),
            residual=_text(data.get("residual"), f"{where}.residual", required=False),
        )


@dataclass(frozen=True, slots=True)
class Procedure:
    """A procedure, test, immunisation or device documented as done or supplied."""

    code: str
    units: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code} | ({"units": self.units} if self.units != 1 else {})

    @classmethod
    def from_dict(cls, data: Any, where: str = "procedure") -> Procedure:
        data = _mapping(data, where)
        _reject_unknown(data, {"code", "units"}, where)
        units = data.get("units", 1)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise RecordError(f"{where}.units", f"expected a positive integer, got {units!r}")
        return cls(code=_text(data.get("code"), f"{where}.code"), units=units)


@dataclass(frozen=True, slots=True)
class Medication:
    """A medication by therapeutic class (drives long-term drug therapy Z79 codes)."""

    drug_class: str
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty({"class": self.drug_class, "name": self.name})

    @classmethod
    def from_dict(cls, data: Any, where: str = "medication") -> Medication:
        data = _mapping(data, where)
        _reject_unknown(data, {"class", "name"}, where)
        return cls(
            drug_class=_text(data.get("class"), f"{where}.class"),
            name=_text(data.get("name"), f"{where}.name", required=False),
        )


@dataclass(frozen=True, slots=True)
class Patient:
    age: int
    sex: Sex

    def to_dict(self) -> dict[str, Any]:
        return {"age": self.age, "sex": self.sex.value}

    @classmethod
    def from_dict(cls, data: Any, where: str = "patient") -> Patient:
        data = _mapping(data, where)
        _reject_unknown(data, {"age", "sex"}, where)
        age = data.get("age")
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 125:
            raise RecordError(f"{where}.age", f"expected an integer 0-125, got {age!r}")
        return cls(age=age, sex=_enum(Sex, data.get("sex"), f"{where}.sex"))


@dataclass(frozen=True, slots=True)
class Vitals:
    """The measured values a note prints that coding reads: blood pressure (mmHg, for the
    CPT II quality codes) and body mass index (kg/m2, for Z68 with an associated diagnosis)."""

    systolic: int | None = None
    diastolic: int | None = None
    bmi: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty(
            {"systolic": self.systolic, "diastolic": self.diastolic, "bmi": self.bmi}
        )

    @classmethod
    def from_dict(cls, data: Any, where: str = "vitals") -> Vitals:
        data = _mapping(data, where)
        _reject_unknown(data, {"systolic", "diastolic", "bmi"}, where)
        values: dict[str, Any] = {}
        for key, low, high in (("systolic", 40, 300), ("diastolic", 20, 200)):
            value = data.get(key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high
            ):
                raise RecordError(
                    f"{where}.{key}", f"expected an integer {low}-{high}, got {value!r}"
                )
            values[key] = value
        bmi = data.get("bmi")
        if bmi is not None and (
            not isinstance(bmi, int | float) or isinstance(bmi, bool) or not 5 <= bmi <= 150
        ):
            raise RecordError(f"{where}.bmi", f"expected a number 5-150, got {bmi!r}")
        if (values["systolic"] is None) != (values["diastolic"] is None):
            raise RecordError(where, "systolic and diastolic come together")
        return cls(values["systolic"], values["diastolic"], float(bmi) if bmi is not None else None)


@dataclass(frozen=True, slots=True)
class Visit:
    """The E/M elements: visit kind, new or established, and MDM level or total minutes."""

    kind: VisitKind
    new_patient: bool = False
    mdm: MDM | None = None
    minutes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty(
            {
                "kind": self.kind.value,
                "new_patient": self.new_patient,
                "mdm": self.mdm.value if self.mdm else None,
                "minutes": self.minutes,
            }
        ) | {"new_patient": self.new_patient}

    @classmethod
    def from_dict(cls, data: Any, where: str = "visit") -> Visit:
        data = _mapping(data, where)
        _reject_unknown(data, {"kind", "new_patient", "mdm", "minutes"}, where)
        new_patient = data.get("new_patient", False)
        if not isinstance(new_patient, bool):
            raise RecordError(
                f"{where}.new_patient", f"expected true or false, got {new_patient!r}"
            )
        minutes = data.get("minutes")
        if minutes is not None and (
            not isinstance(minutes, int) or isinstance(minutes, bool) or minutes < 0
        ):
            raise RecordError(f"{where}.minutes", f"expected minutes >= 0, got {minutes!r}")
        mdm = data.get("mdm")
        return cls(
            kind=_enum(VisitKind, data.get("kind"), f"{where}.kind"),
            new_patient=new_patient,
            mdm=_enum(MDM, mdm, f"{where}.mdm") if mdm is not None else None,
            minutes=minutes,
        )


@dataclass(frozen=True, slots=True)
class Encounter:
    """The clinical facts of one encounter: what the policy engine codes and the renderer writes.

    ``date`` (date of service) and ``vitals`` are optional: rules that need them (vaccine
    products valid for the date, Z68 from the BMI, CPT II blood-pressure codes) do nothing
    without them."""

    id: str
    setting: Setting
    patient: Patient
    visit: Visit
    problems: tuple[Problem, ...] = ()
    medications: tuple[Medication, ...] = ()
    procedures: tuple[Procedure, ...] = ()
    date: dt.date | None = None
    vitals: Vitals | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "setting": self.setting.value,
            "patient": self.patient.to_dict(),
            "visit": self.visit.to_dict(),
            "problems": [problem.to_dict() for problem in self.problems],
            "medications": [medication.to_dict() for medication in self.medications],
            "procedures": [procedure.to_dict() for procedure in self.procedures],
        }
        if self.date is not None:
            data["date"] = self.date.isoformat()
        if self.vitals is not None and self.vitals.to_dict():
            data["vitals"] = self.vitals.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "encounter") -> Encounter:
        data = _mapping(data, where)
        _reject_unknown(
            data,
            {
                "id",
                "setting",
                "patient",
                "visit",
                "problems",
                "medications",
                "procedures",
                "date",
                "vitals",
            },
            where,
        )
        for required in ("id", "setting", "patient", "visit"):
            if required not in data:
                raise RecordError(f"{where}.{required}", "missing")

        def items(key: str, kind: Any) -> tuple[Any, ...]:
            values = _list(data.get(key), f"{where}.{key}")
            return tuple(kind.from_dict(v, f"{where}.{key}[{i}]") for i, v in enumerate(values))

        return cls(
            id=_text(data["id"], f"{where}.id"),
            setting=_enum(Setting, data["setting"], f"{where}.setting"),
            patient=Patient.from_dict(data["patient"], f"{where}.patient"),
            visit=Visit.from_dict(data["visit"], f"{where}.visit"),
            problems=items("problems", Problem),
            medications=items("medications", Medication),
            procedures=items("procedures", Procedure),
            date=_date(data.get("date"), f"{where}.date"),
            vitals=Vitals.from_dict(data["vitals"], f"{where}.vitals")
            if data.get("vitals") is not None
            else None,
        )


@dataclass(frozen=True, slots=True)
class Evidence:
    """Where in a note's text (character offsets, end exclusive) a fact behind a code is stated."""

    code: str
    start: int
    end: int
    fact: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _drop_empty(
            {"code": self.code, "start": self.start, "end": self.end, "fact": self.fact}
        ) | {"start": self.start}

    @classmethod
    def from_dict(cls, data: Any, where: str = "evidence") -> Evidence:
        data = _mapping(data, where)
        _reject_unknown(data, {"code", "start", "end", "fact"}, where)
        start, end = data.get("start"), data.get("end")
        if not (isinstance(start, int) and isinstance(end, int) and 0 <= start <= end):
            raise RecordError(where, f"expected 0 <= start <= end, got {start!r}..{end!r}")
        return cls(
            code=_text(data.get("code"), f"{where}.code"),
            start=start,
            end=end,
            fact=data.get("fact", ""),
        )


@dataclass(frozen=True, slots=True)
class CodedNote:
    """A note with its gold codes (first-listed first), evidence spans and metadata.

    ``metadata`` holds e.g. ``note_type``, ``template_family``, ``split``, ``patient_id``.
    """

    id: str
    text: str
    codes: tuple[Code, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "codes": [code.to_dict() for code in self.codes],
            "evidence": [span.to_dict() for span in self.evidence],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "note") -> CodedNote:
        data = _mapping(data, where)
        _reject_unknown(data, {"id", "text", "codes", "evidence", "metadata"}, where)
        text = data.get("text")
        if not isinstance(text, str):
            raise RecordError(f"{where}.text", f"expected a string, got {type(text).__name__}")
        note = cls(
            id=_text(data.get("id"), f"{where}.id"),
            text=text,
            codes=tuple(
                Code.from_dict(v, f"{where}.codes[{i}]")
                for i, v in enumerate(_list(data.get("codes"), f"{where}.codes"))
            ),
            evidence=tuple(
                Evidence.from_dict(v, f"{where}.evidence[{i}]")
                for i, v in enumerate(_list(data.get("evidence"), f"{where}.evidence"))
            ),
            metadata=dict(_mapping(data.get("metadata") or {}, f"{where}.metadata")),
        )
        for i, span in enumerate(note.evidence):
            if span.end > len(text):
                raise RecordError(
                    f"{where}.evidence[{i}]", f"end {span.end} is past the text ({len(text)} chars)"
                )
        return note
