"""Typed records for a sampled encounter before it is rendered: the encounter facts the
policy engine codes, plus what only the text needs (phrases, findings, identities)."""

from __future__ import annotations

from dataclasses import dataclass, field

from medcode.records import Encounter, Episode, Status
from medcode.synth.catalog import Concept, Measure


@dataclass(frozen=True, slots=True)
class ProblemFact:
    """What the renderer needs about ``encounter.problems[i]``."""

    concept: Concept | None  # None for a long-tail code phrased from the tabular
    code: str
    status: Status
    phrases: dict[str, tuple[str, ...]]  # style -> phrases, attributes filled in
    side: str | None = None
    episode: Episode | None = None
    symptoms: tuple[str, ...] = ()
    relative: str | None = None


@dataclass(frozen=True, slots=True)
class MedicationFact:
    name: str
    path: str | None  # "medications[i]" when the policy engine sees it (it has a Z79 class)


@dataclass(frozen=True, slots=True)
class Result:
    measure: Measure
    value: str
    flag: str  # "", "H" or "L"


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    first_name: str
    last_name: str
    dob: str
    mrn: str
    address: str
    phone: str


@dataclass(frozen=True, slots=True)
class DecisionMaking:
    """The E/M evidence a note states: problems, data and risk (AMA 2023 MDM elements)."""

    problems_level: str
    data_level: str
    risk_level: str
    data_items: tuple[str, ...]
    risk_statement: str
    minutes: int | None


@dataclass
class Scenario:
    encounter: Encounter
    problems: list[ProblemFact]
    medications: list[MedicationFact]
    labs: list[Result]
    vitals: list[Result]
    exam: list[str]
    patient: Identity
    provider: str
    facility: str
    visit_date: str
    decision: DecisionMaking
    patient_id: str
    extra: dict[str, object] = field(default_factory=dict)
