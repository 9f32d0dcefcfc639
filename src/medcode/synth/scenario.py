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
    # control state (data/synth/control.yaml): "controlled", "uncontrolled", "exacerbation"
    control: str | None = None


@dataclass(frozen=True, slots=True)
class MedicationFact:
    name: str
    path: str | None  # "medications[i]" when the policy engine sees it (it has a Z79 class)
    course: bool = False  # a short course for an acute problem, not a long-term medicine


@dataclass(frozen=True, slots=True)
class MedicationChange:
    """A change to the long-term medication list documented in this note."""

    action: str  # "start" or "stop"
    name: str
    problem: int | None = None  # scenario.problems index of the indication


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
    """The E/M evidence a note states: problems, data and risk (AMA 2023 MDM elements), built
    by :mod:`medcode.synth.decision` from the scenario's facts; ``level`` is what
    :func:`medcode.policy.mdm.mdm_level` computes from them (None: no MDM, preventive)."""

    problems_level: str
    data_level: str
    risk_level: str
    data_items: tuple[str, ...]  # data the note states: "reviewed CBC", "ordered lipid panel"
    risk_statement: str  # the table's words for the management that set the risk
    minutes: int | None
    level: str | None = None
    line: str = ""  # "MDM: moderate (problems ...; data ...; risk ...)"
    explicit: bool = False  # whether the note prints ``line``
    management: str = ""  # the plan sentence with the management behind the risk
    plans: tuple[str, ...] = ()  # per scenario.problems index: the plan ("" = any)
    courses: tuple[str, ...] = ()  # per scenario.problems index: "worse" for an exacerbation
    kinds: tuple[str, ...] = ()  # per scenario.problems index: the AMA problem kind ("" = none)


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
    medication_changes: list[MedicationChange] = field(default_factory=list)
    function: str = ""  # functional status statement (data/synth/findings.yaml levels)
    living: str = ""  # living situation statement
    referring: str = ""  # a consultation: the physician who requested it (the patient's own)
