"""Medical decision making (MDM) from its documented elements, by the AMA CPT E/M guidelines
(office visits 2021, every other E/M family from 2023): the level of each element (number
and complexity of problems addressed; amount and/or complexity of data reviewed and
analyzed; risk of complications and/or morbidity or mortality of patient management), then
the MDM level, which is the highest level that two of the three elements meet or exceed.

The elements are typed facts: a problem addressed has a kind (the table's categories), data
are unique tests ordered or reviewed, external notes, an independent historian, independent
interpretations and discussions, and risk is what the management decided. Each element's
level comes with a short reason, so a note can state the line ("MDM moderate (problems ...;
data ...; risk ...)").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from medcode.records import MDM

SOURCE = "AMA CPT Evaluation and Management (E/M) Services Guidelines 2023, Table 1: Levels of MDM"


class ProblemKind(StrEnum):
    """The categories of problems addressed in the AMA MDM table."""

    SELF_LIMITED = "self_limited"
    ACUTE_UNCOMPLICATED = "acute_uncomplicated"
    STABLE_ACUTE = "stable_acute"
    STABLE_CHRONIC = "stable_chronic"
    ACUTE_UNCOMPLICATED_HOSPITAL = "acute_uncomplicated_hospital"
    CHRONIC_EXACERBATION = "chronic_exacerbation"
    UNDIAGNOSED_NEW = "undiagnosed_new"
    ACUTE_SYSTEMIC = "acute_systemic"
    ACUTE_COMPLICATED_INJURY = "acute_complicated_injury"
    CHRONIC_SEVERE_EXACERBATION = "chronic_severe_exacerbation"
    THREAT_TO_LIFE = "threat_to_life"

    @property
    def words(self) -> tuple[str, str]:
        """The table's wording, singular and plural."""
        return _PROBLEM_WORDS[self]


_PROBLEM_WORDS = {
    ProblemKind.SELF_LIMITED: ("self-limited or minor problem", "self-limited or minor problems"),
    ProblemKind.ACUTE_UNCOMPLICATED: (
        "acute, uncomplicated illness or injury",
        "acute, uncomplicated illnesses or injuries",
    ),
    ProblemKind.STABLE_ACUTE: ("stable, acute illness", "stable, acute illnesses"),
    ProblemKind.STABLE_CHRONIC: ("stable chronic illness", "stable chronic illnesses"),
    ProblemKind.ACUTE_UNCOMPLICATED_HOSPITAL: (
        "acute, uncomplicated illness or injury requiring hospital-level care",
        "acute, uncomplicated illnesses or injuries requiring hospital-level care",
    ),
    ProblemKind.CHRONIC_EXACERBATION: (
        "chronic illness with exacerbation, progression, or side effects of treatment",
        "chronic illnesses with exacerbation, progression, or side effects of treatment",
    ),
    ProblemKind.UNDIAGNOSED_NEW: (
        "undiagnosed new problem with uncertain prognosis",
        "undiagnosed new problems with uncertain prognosis",
    ),
    ProblemKind.ACUTE_SYSTEMIC: (
        "acute illness with systemic symptoms",
        "acute illnesses with systemic symptoms",
    ),
    ProblemKind.ACUTE_COMPLICATED_INJURY: (
        "acute complicated injury",
        "acute complicated injuries",
    ),
    ProblemKind.CHRONIC_SEVERE_EXACERBATION: (
        "chronic illness with severe exacerbation, progression, or side effects of treatment",
        "chronic illnesses with severe exacerbation, progression, or side effects of treatment",
    ),
    ProblemKind.THREAT_TO_LIFE: (
        "acute or chronic illness or injury that poses a threat to life or bodily function",
        "acute or chronic illnesses or injuries that pose a threat to life or bodily function",
    ),
}

# One problem of these kinds sets the level on its own.
_HIGH_KINDS = frozenset({ProblemKind.CHRONIC_SEVERE_EXACERBATION, ProblemKind.THREAT_TO_LIFE})
_MODERATE_KINDS = frozenset(
    {
        ProblemKind.CHRONIC_EXACERBATION,
        ProblemKind.UNDIAGNOSED_NEW,
        ProblemKind.ACUTE_SYSTEMIC,
        ProblemKind.ACUTE_COMPLICATED_INJURY,
    }
)
_LOW_KINDS = frozenset(
    {
        ProblemKind.STABLE_CHRONIC,
        ProblemKind.ACUTE_UNCOMPLICATED,
        ProblemKind.STABLE_ACUTE,
        ProblemKind.ACUTE_UNCOMPLICATED_HOSPITAL,
    }
)


class RiskKind(StrEnum):
    """Management options in the risk column of the AMA MDM table (its examples)."""

    MINIMAL = "minimal"
    OTC_DRUGS = "otc_drugs"
    MINOR_SURGERY = "minor_surgery"
    THERAPY = "therapy"
    IV_FLUIDS = "iv_fluids"
    PRESCRIPTION_DRUG_MANAGEMENT = "prescription_drug_management"
    MINOR_SURGERY_WITH_RISK = "minor_surgery_with_risk"
    ELECTIVE_MAJOR_SURGERY = "elective_major_surgery"
    SOCIAL_DETERMINANTS = "social_determinants"
    INTENSIVE_MONITORING = "intensive_monitoring"
    ELECTIVE_MAJOR_SURGERY_WITH_RISK = "elective_major_surgery_with_risk"
    EMERGENCY_MAJOR_SURGERY = "emergency_major_surgery"
    HOSPITALIZATION = "hospitalization"
    DNR_OR_DEESCALATION = "dnr_or_deescalation"
    PARENTERAL_CONTROLLED = "parenteral_controlled"

    @property
    def level(self) -> MDM:
        return _RISK_LEVELS[self]

    @property
    def words(self) -> str:
        """The table's wording of the example."""
        return _RISK_WORDS[self]


_RISK_LEVELS = {
    RiskKind.MINIMAL: MDM.STRAIGHTFORWARD,
    RiskKind.OTC_DRUGS: MDM.LOW,
    RiskKind.MINOR_SURGERY: MDM.LOW,
    RiskKind.THERAPY: MDM.LOW,
    RiskKind.IV_FLUIDS: MDM.LOW,
    RiskKind.PRESCRIPTION_DRUG_MANAGEMENT: MDM.MODERATE,
    RiskKind.MINOR_SURGERY_WITH_RISK: MDM.MODERATE,
    RiskKind.ELECTIVE_MAJOR_SURGERY: MDM.MODERATE,
    RiskKind.SOCIAL_DETERMINANTS: MDM.MODERATE,
    RiskKind.INTENSIVE_MONITORING: MDM.HIGH,
    RiskKind.ELECTIVE_MAJOR_SURGERY_WITH_RISK: MDM.HIGH,
    RiskKind.EMERGENCY_MAJOR_SURGERY: MDM.HIGH,
    RiskKind.HOSPITALIZATION: MDM.HIGH,
    RiskKind.DNR_OR_DEESCALATION: MDM.HIGH,
    RiskKind.PARENTERAL_CONTROLLED: MDM.HIGH,
}
_RISK_WORDS = {
    RiskKind.MINIMAL: "minimal risk of morbidity from additional testing or treatment",
    RiskKind.OTC_DRUGS: "over-the-counter drugs",
    RiskKind.MINOR_SURGERY: "minor surgery without identified risk factors",
    RiskKind.THERAPY: "physical or occupational therapy",
    RiskKind.IV_FLUIDS: "IV fluids without additives",
    RiskKind.PRESCRIPTION_DRUG_MANAGEMENT: "prescription drug management",
    RiskKind.MINOR_SURGERY_WITH_RISK: (
        "decision regarding minor surgery with identified risk factors"
    ),
    RiskKind.ELECTIVE_MAJOR_SURGERY: (
        "decision regarding elective major surgery without identified risk factors"
    ),
    RiskKind.SOCIAL_DETERMINANTS: (
        "diagnosis or treatment significantly limited by social determinants of health"
    ),
    RiskKind.INTENSIVE_MONITORING: "drug therapy requiring intensive monitoring for toxicity",
    RiskKind.ELECTIVE_MAJOR_SURGERY_WITH_RISK: (
        "decision regarding elective major surgery with identified risk factors"
    ),
    RiskKind.EMERGENCY_MAJOR_SURGERY: "decision regarding emergency major surgery",
    RiskKind.HOSPITALIZATION: "decision regarding hospitalization",
    RiskKind.DNR_OR_DEESCALATION: (
        "decision not to resuscitate or to de-escalate care because of poor prognosis"
    ),
    RiskKind.PARENTERAL_CONTROLLED: "parenteral controlled substances",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """A problem addressed at the encounter. A problem only listed (managed elsewhere, not
    assessed today) is not one: leave it out."""

    kind: ProblemKind
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DiagnosticTest:
    """A test ordered and/or whose result was reviewed. A unique test is one CPT code: the
    results of one panel are one test (give each result the panel's name as ``panel``), and
    a test ordered and reviewed at the same encounter counts once. A test whose
    interpretation the same physician reports separately (an ECG billed with its
    interpretation) does not count."""

    name: str
    ordered: bool = False
    reviewed: bool = False
    panel: str | None = None
    separately_reported: bool = False

    @property
    def key(self) -> str:
        return " ".join((self.panel or self.name).lower().split())


@dataclass(frozen=True, slots=True)
class Data:
    """The data reviewed and analyzed: tests, external notes (one per unique source), the
    independent historian, independent interpretations of tests (not separately reported)
    and discussions of management or test interpretation with an external physician, other
    qualified health care professional or appropriate source."""

    tests: tuple[DiagnosticTest, ...] = ()
    external_notes: tuple[str, ...] = ()
    historian: str | None = None
    interpretations: tuple[str, ...] = ()
    discussions: tuple[str, ...] = ()

    def unique_tests(self) -> tuple[str, ...]:
        """The unique tests that count, in first-mention order (display names)."""
        names: dict[str, str] = {}
        for test in self.tests:
            if test.separately_reported or not (test.ordered or test.reviewed):
                continue
            names.setdefault(test.key, test.panel or test.name)
        return tuple(names.values())

    def unique_sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(" ".join(s.split()) for s in self.external_notes if s.strip()))


@dataclass(frozen=True, slots=True)
class Risk:
    """A management decision the note documents."""

    kind: RiskKind
    reason: str = ""


@dataclass(frozen=True)
class Elements:
    """Everything the MDM level is computed from."""

    problems: tuple[Problem, ...] = ()
    data: Data = field(default_factory=Data)
    risk: tuple[Risk, ...] = ()


@dataclass(frozen=True, slots=True)
class ElementLevel:
    level: MDM
    reason: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """The level of each element and of the MDM, with the reasons."""

    problems: ElementLevel
    data: ElementLevel
    risk: ElementLevel
    level: MDM

    def line(self) -> str:
        """'MDM: moderate (problems moderate: ...; data limited: ...; risk moderate: ...)'."""
        return (
            f"MDM: {self.level.value} (problems {PROBLEM_LEVEL_WORDS[self.problems.level]}: "
            f"{self.problems.reason}; data {DATA_LEVEL_WORDS[self.data.level]}: "
            f"{self.data.reason}; risk {RISK_LEVEL_WORDS[self.risk.level]}: {self.risk.reason})"
        )


# The table's names for each element's levels.
PROBLEM_LEVEL_WORDS = {
    MDM.STRAIGHTFORWARD: "minimal",
    MDM.LOW: "low",
    MDM.MODERATE: "moderate",
    MDM.HIGH: "high",
}
DATA_LEVEL_WORDS = {
    MDM.STRAIGHTFORWARD: "minimal or none",
    MDM.LOW: "limited",
    MDM.MODERATE: "moderate",
    MDM.HIGH: "extensive",
}
RISK_LEVEL_WORDS = PROBLEM_LEVEL_WORDS


def _count(kinds: Counter, kind: ProblemKind) -> str:
    number = kinds[kind]
    singular, plural = kind.words
    return f"{number} {singular if number == 1 else plural}"


def problems_level(problems: tuple[Problem, ...]) -> ElementLevel:
    """Number and complexity of problems addressed."""
    kinds = Counter(p.kind for p in problems)

    def driven(selected) -> str:
        return ", ".join(_count(kinds, k) for k in ProblemKind if k in selected and kinds[k])

    if any(kinds[k] for k in _HIGH_KINDS):
        return ElementLevel(MDM.HIGH, driven(_HIGH_KINDS))
    if any(kinds[k] for k in _MODERATE_KINDS):
        return ElementLevel(MDM.MODERATE, driven(_MODERATE_KINDS))
    if kinds[ProblemKind.STABLE_CHRONIC] >= 2:
        return ElementLevel(MDM.MODERATE, _count(kinds, ProblemKind.STABLE_CHRONIC))
    if any(kinds[k] for k in _LOW_KINDS):
        return ElementLevel(MDM.LOW, driven(_LOW_KINDS))
    if kinds[ProblemKind.SELF_LIMITED] >= 2:
        return ElementLevel(MDM.LOW, _count(kinds, ProblemKind.SELF_LIMITED))
    if kinds[ProblemKind.SELF_LIMITED]:
        return ElementLevel(MDM.STRAIGHTFORWARD, _count(kinds, ProblemKind.SELF_LIMITED))
    return ElementLevel(MDM.STRAIGHTFORWARD, "no problem addressed")


def data_level(data: Data) -> ElementLevel:
    """Amount and/or complexity of data to be reviewed and analyzed.

    Category 1 is tests and documents (each unique test ordered or reviewed, each unique
    source of external notes) and, from the moderate level up, the independent historian;
    category 2 the independent interpretation of a test; category 3 the discussion with an
    external physician or appropriate source. Limited: 2 items of category 1, or an
    independent historian. Moderate: 1 of the 3 categories (3 items in category 1).
    Extensive: 2 of the 3 categories."""
    tests = data.unique_tests()
    sources = data.unique_sources()
    historian = 1 if data.historian else 0
    documents = len(tests) + len(sources)
    parts = []
    if tests:
        parts.append(f"{len(tests)} unique test{'s' * (len(tests) != 1)} ({', '.join(tests)})")
    if sources:
        parts.append(f"external notes from {len(sources)} source{'s' * (len(sources) != 1)}")
    if historian:
        parts.append(f"independent historian ({data.historian})")
    if data.interpretations:
        parts.append(f"independent interpretation of {', '.join(data.interpretations)}")
    if data.discussions:
        parts.append(f"discussion with {', '.join(data.discussions)}")
    reason = "; ".join(parts) if parts else "none"
    categories = sum(
        (documents + historian >= 3, bool(data.interpretations), bool(data.discussions))
    )
    if categories >= 2:
        return ElementLevel(MDM.HIGH, reason)
    if categories == 1:
        return ElementLevel(MDM.MODERATE, reason)
    if documents >= 2 or historian:
        return ElementLevel(MDM.LOW, reason)
    return ElementLevel(MDM.STRAIGHTFORWARD, reason)


def risk_level(risk: tuple[Risk, ...]) -> ElementLevel:
    """Risk of complications and/or morbidity or mortality of patient management: the
    highest-risk decision documented."""
    if not risk:
        return ElementLevel(MDM.STRAIGHTFORWARD, RiskKind.MINIMAL.words)
    top = max(risk, key=lambda r: r.kind.level.rank)
    return ElementLevel(top.kind.level, top.kind.words)


def assess(elements: Elements) -> Assessment:
    """Each element's level and the MDM level: the highest level met or exceeded by two of
    the three elements."""
    problems = problems_level(elements.problems)
    data = data_level(elements.data)
    risk = risk_level(elements.risk)
    ranks = sorted((problems.level.rank, data.level.rank, risk.level.rank))
    return Assessment(problems, data, risk, list(MDM)[ranks[1]])


def mdm_level(elements: Elements) -> MDM:
    """The MDM level of the documented elements (AMA 2023 table, two of three)."""
    return assess(elements).level
