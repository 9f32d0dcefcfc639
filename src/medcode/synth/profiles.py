"""Population profiles (``data/profiles/*.yaml``): who is seen, for what kind of visit, and
how the notes mix coded problems with distractors. Validated on load."""

from __future__ import annotations

from dataclasses import dataclass
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
    )


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
