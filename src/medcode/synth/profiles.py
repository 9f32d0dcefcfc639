"""Population profiles (``data/profiles/*.yaml``): who is seen, for what kind of visit, and
how the notes mix coded problems with distractors. Validated on load."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import DataFileError, MedcodeError
from medcode.records import Setting, VisitKind
from medcode.synth.catalog import AGE_BANDS

BAND_AGES = {
    "0-17": (0, 17),
    "18-39": (18, 39),
    "40-64": (40, 64),
    "65-79": (65, 79),
    "80+": (80, 100),
}
DISTRACTORS = ("negated", "ruled_out", "resolved", "family_history", "history", "uncertain")
_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class VisitOption:
    kind: VisitKind
    setting: Setting
    weight: float
    min_age: int


# The E/M families a target mix can name: group -> (CPT E/M setting, patient type).
EM_GROUPS = {
    "office_new": ("office", "new"),
    "office_established": ("office", "established"),
    "emergency": ("emergency", "any"),
    "consult": ("consult", "any"),
    "hospital_initial": ("hospital", "initial"),
    "hospital_subsequent": ("hospital", "subsequent"),
    "hospital_discharge": ("hospital", "discharge"),
}


def em_group(kind: VisitKind, new_patient: bool) -> str | None:
    """The E/M family group of a visit (None for preventive and wellness visits)."""
    if kind in (VisitKind.OFFICE, VisitKind.TELEHEALTH):
        return "office_new" if new_patient else "office_established"
    return {
        VisitKind.EMERGENCY: "emergency",
        VisitKind.CONSULT: "consult",
        VisitKind.HOSPITAL_ADMISSION: "hospital_initial",
        VisitKind.HOSPITAL_SUBSEQUENT: "hospital_subsequent",
        VisitKind.HOSPITAL_DISCHARGE: "hospital_discharge",
    }.get(kind)


@dataclass(frozen=True)
class EMMix:
    """The real-world share of each E/M code per family (what the computed levels should
    land near) and where the figures come from."""

    source: str
    targets: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Workload:
    """How much a visit addresses and documents, per care setting; the E/M level is computed
    from it (never sampled). Probabilities, calibrated so the computed levels land near
    ``em_mix``."""

    also_addressed: float = 0.35  # a coded problem after the first is addressed today
    worsening: float = 0.1  # an addressed chronic problem at goal is documented as worse
    severe: float = 0.1  # an exacerbation is severe (hospitalization decided or considered)
    drug_change: float = 0.7  # a prescription for a problem not at goal is adjusted
    monitoring: float = 0.5  # a continued prescription is documented with its monitoring
    order_tests: float = 0.3  # a follow-up test is ordered for an addressed problem
    external_records: float = 0.1  # notes from an outside source reviewed
    historian: float = 0.05  # history from an independent historian
    interpretation: float = 0.05  # an independent interpretation of a test
    discussion: float = 0.03  # management discussed with an external physician
    sdoh: float = 0.5  # a coded social determinant is documented as limiting treatment
    admission: dict[str, float] = field(  # ED and hospital: admission by problem level
        default_factory=lambda: {"straightforward": 0.0, "low": 0.05, "moderate": 0.25, "high": 0.8}
    )
    explicit_mdm: float = 0.25  # the note states the MDM line
    time_over: float = 0.1  # documented time runs into the next level's band


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    source: str
    age: dict[str, float]
    sex: dict[str, float]
    visits: tuple[VisitOption, ...]
    new_patient: float
    encounters_per_patient: dict[int, float]
    max_conditions: int
    prevalence_scale: float
    concept_scale: dict[str, float]
    distractors: dict[str, float]
    acute_visit: float
    long_tail: float
    time_documented: float
    path: str
    workload: dict[str, Workload] = field(default_factory=dict)  # by setting
    em_mix: EMMix | None = None

    def workload_for(self, setting: Setting) -> Workload:
        """The workload of a care setting (the defaults when the profile gives none)."""
        return self.workload.get(setting.value) or Workload()


def _fail(path: Path, node: object, problem: str) -> DataFileError:
    return DataFileError(path, getattr(node, "line", None), problem)


def _probability(path: Path, node: LineDict, key: str) -> float:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise _fail(path, node, f"{key}: {value!r} must be a probability between 0 and 1")
    return float(value)


def _distribution(path: Path, node: LineDict, key: str, keys: tuple[str, ...]) -> dict[str, float]:
    value = node.get(key)
    if not isinstance(value, dict) or not value:
        raise _fail(path, node, f"{key!r} must map {', '.join(keys)} to probabilities")
    unknown = [k for k in value if str(k) not in keys]
    if unknown:
        raise _fail(
            path,
            node,
            f"{key}: unknown key(s) {', '.join(map(str, unknown))}; use {', '.join(keys)}",
        )
    found = {}
    for name, weight in value.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise _fail(path, node, f"{key}.{name}: {weight!r} must be a number >= 0")
        found[str(name)] = float(weight)
    total = sum(found.values())
    if abs(total - 1) > _TOLERANCE:
        raise _fail(path, node, f"{key}: probabilities sum to {total:g}, not 1")
    return found


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file."""
    path = Path(path)
    node = load_yaml(path)
    if not isinstance(node, LineDict):
        raise _fail(path, node, "a profile must be a mapping")
    for key in ("name", "description", "source"):
        if not isinstance(node.get(key), str) or not node[key].strip():
            raise _fail(path, node, f"missing or empty {key!r}")
    age = _distribution(path, node, "age", AGE_BANDS)
    sex = _distribution(path, node, "sex", ("F", "M"))
    visits = []
    raw_visits = node.get("visits")
    if not isinstance(raw_visits, list) or not raw_visits:
        raise _fail(path, node, "'visits' must be a non-empty list")
    for raw in raw_visits:
        if not isinstance(raw, LineDict):
            raise _fail(path, node, "each visit must be a mapping")
        try:
            kind, setting = VisitKind(raw.get("kind")), Setting(raw.get("setting"))
        except ValueError as exc:
            raise _fail(path, raw, f"visit: {exc}") from None
        min_age = raw.get("min_age", 0)
        if not isinstance(min_age, int) or not 0 <= min_age <= 120:
            raise _fail(path, raw, f"min_age {min_age!r} must be an age between 0 and 120")
        weight = raw.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise _fail(path, raw, f"visit weight {weight!r} must be a number >= 0")
        visits.append(VisitOption(kind, setting, float(weight), min_age))
    total = sum(v.weight for v in visits)
    if abs(total - 1) > _TOLERANCE:
        raise _fail(path, node, f"visits: weights sum to {total:g}, not 1")
    counts = _distribution(
        path, node, "encounters_per_patient", tuple(str(i) for i in range(1, 11))
    )
    distractors_node = node.get("distractors")
    if not isinstance(distractors_node, LineDict):
        raise _fail(path, node, f"'distractors' must map {', '.join(DISTRACTORS)} to probabilities")
    unknown = set(distractors_node) - set(DISTRACTORS)
    if unknown:
        raise _fail(path, distractors_node, f"unknown distractor(s) {', '.join(sorted(unknown))}")
    max_conditions = node.get("max_conditions", 6)
    if not isinstance(max_conditions, int) or not 1 <= max_conditions <= 30:
        raise _fail(path, node, "max_conditions must be a whole number between 1 and 30")
    scale = node.get("prevalence_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 10:
        raise _fail(path, node, "prevalence_scale must be a number in (0, 10]")
    concept_scale = node.get("concept_scale") or {}
    if not isinstance(concept_scale, dict):
        raise _fail(path, node, "concept_scale must map concept ids to multipliers")
    return Profile(
        name=node["name"].strip(),
        description=node["description"].strip(),
        source=node["source"].strip(),
        age=age,
        sex=sex,
        visits=tuple(visits),
        new_patient=_probability(path, node, "new_patient"),
        encounters_per_patient={int(k): v for k, v in counts.items()},
        max_conditions=max_conditions,
        prevalence_scale=float(scale),
        concept_scale={str(k): float(v) for k, v in concept_scale.items()},
        distractors={k: _probability(path, distractors_node, k) for k in DISTRACTORS},
        acute_visit=_probability(path, node, "acute_visit"),
        long_tail=_probability(path, node, "long_tail"),
        time_documented=_probability(path, node, "time_documented"),
        path=str(path),
        workload=_workload(path, node),
        em_mix=_em_mix(path, node),
    )


def _workload(path: Path, node: LineDict) -> dict[str, Workload]:
    raw = node.get("workload")
    if raw is None:
        return {}
    settings = tuple(s.value for s in Setting)
    if not isinstance(raw, LineDict) or not set(raw) <= set(settings):
        raise _fail(
            path, node, f"'workload' must map care settings ({', '.join(settings)}) to fields"
        )
    return {setting: _setting_workload(path, raw, setting) for setting in raw}


def _setting_workload(path: Path, node: LineDict, setting: str) -> Workload:
    raw = node[setting]
    if not isinstance(raw, LineDict):
        raise _fail(path, node, f"workload.{setting} must map workload fields to probabilities")
    names = {f.name for f in fields(Workload)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise _fail(
            path,
            raw,
            f"workload.{setting}: unknown field(s) {', '.join(unknown)}; "
            f"use {', '.join(sorted(names))}",
        )
    values: dict[str, object] = {}
    for name in raw:
        if name == "admission":
            admission = raw[name]
            levels = ("straightforward", "low", "moderate", "high")
            if not isinstance(admission, LineDict) or set(admission) != set(levels):
                raise _fail(
                    path,
                    raw,
                    f"workload.{setting}.admission must map {', '.join(levels)} to probabilities",
                )
            values[name] = {k: _probability(path, admission, k) for k in levels}
        else:
            values[name] = _probability(path, raw, name)
    return Workload(**values)


def _em_mix(path: Path, node: LineDict) -> EMMix | None:
    raw = node.get("em_mix")
    if raw is None:
        return None
    if not isinstance(raw, LineDict):
        raise _fail(path, node, "'em_mix' must map E/M groups to code shares, with a source")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        raise _fail(path, raw, "em_mix: missing or empty 'source'")
    from medcode.terminology import cpt

    table = cpt.procedure_table()
    targets: dict[str, dict[str, float]] = {}
    for group in raw:
        if group == "source":
            continue
        if group not in EM_GROUPS:
            raise _fail(path, raw, f"em_mix: unknown group {group!r}; use {', '.join(EM_GROUPS)}")
        setting, patient = EM_GROUPS[group]
        family = tuple(
            e.code
            for e in table.em_codes()
            if e.em.setting.value == setting and e.em.patient.value == patient
        )
        shares = _distribution(path, raw, group, family)
        targets[group] = shares
    if not targets:
        raise _fail(path, raw, "em_mix: no group given")
    return EMMix(source=" ".join(source.split()), targets=targets)


def profile_path(name_or_path: str) -> Path:
    """A shipped profile by name (``primary_care``) or a user's YAML file by path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise MedcodeError(f"{candidate}: profile file not found")
        return candidate
    shipped = package_data(f"profiles/{name_or_path}.yaml")
    if not shipped.exists():
        names = ", ".join(sorted(p.stem for p in package_data("profiles").glob("*.yaml")))
        raise MedcodeError(f"unknown profile {name_or_path!r}; shipped profiles: {names}")
    return shipped
