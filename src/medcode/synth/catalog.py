"""The condition catalog (``data/conditions/*.yaml``): clinical concepts with their documented
codes, phrasings, supporting findings and prevalence, validated on load.

A concept's form is the code a clinician documents (possibly unspecific: the policy engine
completes it from laterality and episode). Phrases may use the form's attributes as
``{placeholders}`` and ``{side}`` when the concept has a laterality.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import CodeError, DataFileError
from medcode.policy import specificity
from medcode.policy.tables import shipped_tables
from medcode.records import Episode, Status, VisitKind
from medcode.terminology import cpt, icd10cm

AGE_BANDS = ("0-17", "18-39", "40-64", "65-79", "80+")
STYLES = ("formal", "abbreviated", "lay")
SIDES = ("right", "left", "bilateral")


def age_band(age: int) -> str:
    """The catalog's age band of an age in years."""
    if age < 18:
        return "0-17"
    if age < 40:
        return "18-39"
    if age < 65:
        return "40-64"
    if age < 80:
        return "65-79"
    return "80+"


@dataclass(frozen=True, slots=True)
class Form:
    code: str
    weight: float
    attributes: dict[str, str]
    labs: dict[str, tuple[float, float]]
    vitals: dict[str, tuple[float, float]]
    # style -> phrases for this form only, replacing the concept's phrases of that style
    # (a lay phrase names what its words support: "trouble holding urine" is R32, not N39.3)
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MedicationOption:
    name: str
    drug_class: str | None
    probability: float


@dataclass(frozen=True, slots=True)
class ProcedureOption:
    code: str
    probability: float


@dataclass(frozen=True)
class Concept:
    id: str
    label: str
    domain: str
    forms: tuple[Form, ...]
    phrases: dict[str, tuple[str, ...]]
    statuses: dict[Status, float]
    laterality: tuple[str, ...]
    episodes: tuple[Episode, ...]
    symptoms: tuple[str, ...]
    medications: tuple[MedicationOption, ...]
    labs: dict[str, tuple[float, float]]
    vitals: dict[str, tuple[float, float]]
    exam: tuple[str, ...]
    procedures: tuple[ProcedureOption, ...]
    prevalence: dict[str, float]
    sex: dict[str, float]
    co_occurs: dict[str, float]
    categories: tuple[str, ...]
    source: str
    path: str = field(compare=False)
    line: int = field(compare=False)
    # visit kinds for which the concept (active or uncertain) can be the reason for the visit
    reason_for: tuple[str, ...] = ()
    # for an injury documented as a sequela: the residual condition (code, phrase)
    residual: tuple[str, str] | None = None

    def form_phrases(self, form: Form) -> dict[str, tuple[str, ...]]:
        """The phrases of one form: the concept's, with the form's own styles replacing them."""
        return {style: form.phrases.get(style, self.phrases[style]) for style in self.phrases}


@dataclass(frozen=True, slots=True)
class Measure:
    """A lab or vital sign: display names, unit, normal range."""

    key: str
    name: str
    short: str
    unit: str
    normal: tuple[float, float]
    decimals: int
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    concepts: dict[str, Concept]
    labs: dict[str, Measure]
    vitals: dict[str, Measure]

    def by_code(self) -> dict[str, Concept]:
        """Concepts by each of their form codes (first concept wins)."""
        found: dict[str, Concept] = {}
        for concept in self.concepts.values():
            for form in concept.forms:
                found.setdefault(form.code, concept)
        return found


class _Reader:
    """Validation helpers bound to one file: every error names the file and line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, node: object, problem: str) -> DataFileError:
        return DataFileError(self.path, getattr(node, "line", None), problem)

    def mapping(self, node: object, what: str) -> LineDict:
        if not isinstance(node, LineDict):
            raise self.fail(node, f"{what} must be a mapping")
        return node

    def text(self, node: LineDict, key: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"missing or empty {key!r}")
        return value.strip()

    def texts(self, node: LineDict, key: str, required: bool = False) -> tuple[str, ...]:
        value = node.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(node, f"{key!r} must be a list of strings")
        if required and not value:
            raise self.fail(node, f"{key!r} must not be empty")
        return tuple(v.strip() for v in value)

    def number(self, node: LineDict, key: str, value: object, low: float, high: float) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.fail(node, f"{key}: {value!r} is not a number in [{low}, {high}]")
        return float(value)

    def ranges(
        self, node: LineDict, key: str, known: dict[str, Measure]
    ) -> dict[str, tuple[float, float]]:
        value = node.get(key) or {}
        if not isinstance(value, dict):
            raise self.fail(node, f"{key!r} must map names to [low, high]")
        found = {}
        for name, pair in value.items():
            if name not in known:
                raise self.fail(
                    node, f"{key}: unknown measure {name!r}; one of {', '.join(sorted(known))}"
                )
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(v, int | float) for v in pair)
                or pair[0] > pair[1]
            ):
                raise self.fail(node, f"{key}.{name}: expected [low, high], got {pair!r}")
            found[name] = (float(pair[0]), float(pair[1]))
        return found

    def icd(self, node: object, raw: object, what: str, billable: bool = False) -> str:
        try:
            code = icd10cm.require(str(raw))
        except CodeError as exc:
            raise self.fail(node, f"{what}: invalid code {raw!r}: {exc.problem}") from None
        if billable and not icd10cm.is_billable(code):
            raise self.fail(node, f"{what}: {code} is not billable")
        return code


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _concept(reader: _Reader, node: object, domain: str, labs, vitals) -> Concept:
    node = reader.mapping(node, "each concept")
    concept_id = reader.text(node, "id")
    if not concept_id.replace("_", "").isalnum() or not concept_id.islower():
        raise reader.fail(node, f"concept id {concept_id!r} must be lower_snake_case")
    what = f"concept {concept_id}"
    laterality = reader.texts(node, "laterality")
    for side in laterality:
        if side not in SIDES:
            raise reader.fail(node, f"{what}: laterality {side!r} not one of {', '.join(SIDES)}")
    try:
        episodes = tuple(Episode(e) for e in reader.texts(node, "episodes"))
    except ValueError as exc:
        raise reader.fail(node, f"{what}: {exc}") from None

    forms = []
    raw_forms = node.get("forms")
    if not isinstance(raw_forms, list) or not raw_forms:
        raise reader.fail(node, f"{what}: 'forms' must be a non-empty list")
    for raw in raw_forms:
        raw = reader.mapping(raw, f"{what}: each form")
        code = reader.icd(raw, raw.get("code"), f"{what} form")
        attributes = raw.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise reader.fail(raw, f"{what}: attributes must be a mapping")
        for side in laterality or (None,):
            for episode in episodes or (None,):
                try:
                    specificity.resolve(code, laterality=side, episode=episode)
                except CodeError as exc:
                    raise reader.fail(
                        raw, f"{what}: {code} cannot be coded: {exc.problem}"
                    ) from None
        form_phrases = {}
        if raw.get("phrases") is not None:
            phrases_node = reader.mapping(raw.get("phrases"), f"{what} form {code}: phrases")
            unknown = set(phrases_node) - set(STYLES)
            if unknown:
                raise reader.fail(
                    phrases_node,
                    f"{what} form {code}: unknown phrase style(s) {', '.join(unknown)}",
                )
            form_phrases = {style: reader.texts(phrases_node, style) for style in phrases_node}
            for options in form_phrases.values():
                for phrase in options:
                    for name in _placeholders(phrase):
                        if name not in attributes and not (name == "side" and laterality):
                            raise reader.fail(
                                phrases_node,
                                f"{what} form {code}: phrase {phrase!r} uses {{{name}}}, which "
                                "the form has no attribute for",
                            )
        forms.append(
            Form(
                code=code,
                # weight 0: documented only when the encounter calls for it (a control state)
                weight=reader.number(raw, "weight", raw.get("weight", 1), 0, 1e6),
                attributes={str(k): str(v) for k, v in attributes.items()},
                labs=reader.ranges(raw, "labs", labs),
                vitals=reader.ranges(raw, "vitals", vitals),
                phrases=form_phrases,
            )
        )
    if not any(form.weight for form in forms):
        raise reader.fail(node, f"{what}: at least one form needs a positive weight")

    phrases_node = reader.mapping(node.get("phrases"), f"{what}: phrases")
    phrases = {}
    for style in STYLES:
        phrases[style] = reader.texts(phrases_node, style, required=style != "lay")
    unknown = set(phrases_node) - set(STYLES)
    if unknown:
        raise reader.fail(
            phrases_node, f"{what}: unknown phrase style(s) {', '.join(sorted(unknown))}"
        )
    for style, options in phrases.items():
        for phrase in options:
            for name in _placeholders(phrase):
                missing = [
                    f.code for f in forms if name not in f.attributes and style not in f.phrases
                ]
                if name == "side" and laterality:
                    continue
                if missing:
                    raise reader.fail(
                        phrases_node,
                        f"{what}: phrase {phrase!r} uses {{{name}}} but form(s) "
                        f"{', '.join(missing)} have no attribute {name!r}",
                    )

    statuses_node = reader.mapping(node.get("statuses"), f"{what}: statuses")
    statuses = {}
    for key, weight in statuses_node.items():
        try:
            status = Status(key)
        except ValueError:
            raise reader.fail(statuses_node, f"{what}: unknown status {key!r}") from None
        statuses[status] = reader.number(statuses_node, f"statuses.{key}", weight, 0, 1e6)
    if not any(statuses.values()):
        raise reader.fail(statuses_node, f"{what}: at least one status needs a positive weight")

    symptoms = tuple(
        reader.icd(node, s, f"{what} symptom", billable=True)
        for s in reader.texts(node, "symptoms")
    )
    if statuses.get(Status.UNCERTAIN) and not symptoms:
        raise reader.fail(node, f"{what}: status uncertain needs presenting 'symptoms'")

    classes = shipped_tables().medications
    medications = []
    for raw in node.get("medications") or []:
        raw = reader.mapping(raw, f"{what}: each medication")
        drug_class = raw.get("class")
        if drug_class is not None and drug_class not in classes:
            raise reader.fail(
                raw, f"{what}: medication class {drug_class!r} not in data/policy/medications.yaml"
            )
        medications.append(
            MedicationOption(
                reader.text(raw, "name"),
                drug_class,
                reader.number(raw, "probability", raw.get("probability", 0.5), 0, 1),
            )
        )

    table = cpt.procedure_table()
    procedures = []
    for raw in node.get("procedures") or []:
        raw = reader.mapping(raw, f"{what}: each procedure")
        code = str(raw.get("code", "")).strip()
        try:
            table.require(code)
        except CodeError as exc:
            raise reader.fail(raw, f"{what}: procedure {exc}") from None
        procedures.append(
            ProcedureOption(
                cpt.normalize(code),
                reader.number(raw, "probability", raw.get("probability", 0.3), 0, 1),
            )
        )

    prevalence_node = reader.mapping(node.get("prevalence"), f"{what}: prevalence")
    prevalence = {}
    for band, value in prevalence_node.items():
        if band not in AGE_BANDS:
            raise reader.fail(
                prevalence_node, f"{what}: age band {band!r} not one of {', '.join(AGE_BANDS)}"
            )
        prevalence[band] = reader.number(prevalence_node, f"prevalence.{band}", value, 0, 1)
    sex_node = node.get("sex") or {"F": 1.0, "M": 1.0}
    sex = {}
    for key, value in sex_node.items():
        if key not in ("F", "M"):
            raise reader.fail(node, f"{what}: sex key {key!r} must be F or M")
        sex[key] = reader.number(node, f"sex.{key}", value, 0, 10)

    co_node = node.get("co_occurs") or {}
    if not isinstance(co_node, dict):
        raise reader.fail(node, f"{what}: co_occurs must map concept ids to probabilities")
    co_occurs = {str(k): reader.number(node, f"co_occurs.{k}", v, 0, 1) for k, v in co_node.items()}

    return Concept(
        id=concept_id,
        label=reader.text(node, "label"),
        domain=domain,
        forms=tuple(forms),
        phrases=phrases,
        statuses=statuses,
        laterality=laterality,
        episodes=episodes,
        symptoms=symptoms,
        medications=tuple(medications),
        labs=reader.ranges(node, "labs", labs),
        vitals=reader.ranges(node, "vitals", vitals),
        exam=reader.texts(node, "exam"),
        procedures=tuple(procedures),
        prevalence=prevalence,
        sex=sex,
        co_occurs=co_occurs,
        categories=reader.texts(node, "categories"),
        source=reader.text(node, "source"),
        path=str(reader.path),
        line=node.line,
        reason_for=_reason_for(reader, node, what, forms),
        residual=_residual(reader, node, what, episodes),
    )


VISIT_KINDS = tuple(kind.value for kind in VisitKind)


def _reason_for(reader: _Reader, node: LineDict, what: str, forms: list[Form]) -> tuple[str, ...]:
    """Visit kinds the concept can be the reason for; by default an office or video visit,
    and none for a Z-code concept (a status or circumstance is not why a patient comes)."""
    if "reason_for" not in node:
        if all(form.code.startswith("Z") for form in forms):
            return ()
        return (VisitKind.OFFICE.value, VisitKind.TELEHEALTH.value)
    kinds = reader.texts(node, "reason_for")
    for kind in kinds:
        if kind not in VISIT_KINDS:
            raise reader.fail(
                node, f"{what}: reason_for {kind!r} not one of {', '.join(VISIT_KINDS)}"
            )
    return kinds


def _residual(
    reader: _Reader, node: LineDict, what: str, episodes: tuple[Episode, ...]
) -> tuple[str, str] | None:
    raw = node.get("residual")
    if raw is None:
        if Episode.SEQUELA in episodes:
            raise reader.fail(node, f"{what}: episode sequela needs a 'residual' condition")
        return None
    raw = reader.mapping(raw, f"{what}: residual")
    code = reader.icd(raw, raw.get("code"), f"{what} residual", billable=True)
    return code, reader.text(raw, "phrase")


def load_measures(path: Path | None = None) -> tuple[dict[str, Measure], dict[str, Measure]]:
    """Labs and vital signs (``data/synth/labs.yaml``)."""
    path = path or package_data("synth/labs.yaml")
    reader = _Reader(path)
    data = reader.mapping(load_yaml(path), "the file")
    found = []
    for group in ("labs", "vitals"):
        items = {}
        for key, raw in reader.mapping(data.get(group), group).items():
            raw = reader.mapping(raw, f"{group}.{key}")
            low, high = raw.get("normal", [0, 0])
            items[key] = Measure(
                key,
                reader.text(raw, "name"),
                reader.text(raw, "short"),
                str(raw.get("unit", "")),
                (float(low), float(high)),
                int(raw.get("decimals", 0)),
                tuple(raw.get("values", ())),
            )
        found.append(items)
    return found[0], found[1]


def load_catalog(paths: list[Path] | None = None, check_references: bool = True) -> Catalog:
    """Load and validate the condition catalog (default: every shipped domain file).

    ``check_references=False`` skips the check that ``co_occurs`` names known concepts (for
    validating one domain file on its own)."""
    from medcode.records import System
    from medcode.terminology.categories import category_names

    labs, vitals = load_measures()
    if paths is None:
        paths = sorted(package_data("conditions").glob("*.yaml"))
    concepts: dict[str, Concept] = {}
    for path in paths:
        reader = _Reader(Path(path))
        data = reader.mapping(load_yaml(path), "the file")
        domain = reader.text(data, "domain")
        if domain != Path(path).stem:
            raise reader.fail(
                data, f"domain {domain!r} must equal the file name {Path(path).stem!r}"
            )
        raw_concepts = data.get("concepts")
        if not isinstance(raw_concepts, list) or not raw_concepts:
            raise reader.fail(data, "'concepts' must be a non-empty list")
        for raw in raw_concepts:
            concept = _concept(reader, raw, domain, labs, vitals)
            if concept.id in concepts:
                other = concepts[concept.id]
                raise reader.fail(
                    raw, f"concept id {concept.id!r} already defined at {other.path}:{other.line}"
                )
            concepts[concept.id] = concept
    for concept in concepts.values():
        reader = _Reader(Path(concept.path))
        for other in concept.co_occurs:
            if check_references and other not in concepts:
                raise DataFileError(
                    concept.path,
                    concept.line,
                    f"concept {concept.id}: co_occurs names unknown concept {other!r}",
                )
        if concept.categories:
            found = set()
            for form in concept.forms:
                for side in concept.laterality or (None,):
                    for episode in concept.episodes or (None,):
                        for code in specificity.resolve(
                            form.code, laterality=side, episode=episode
                        ).codes:
                            found |= set(category_names(code, System.ICD10CM))
            missing = set(concept.categories) - found
            if missing:
                raise DataFileError(
                    concept.path,
                    concept.line,
                    f"concept {concept.id}: categories {', '.join(sorted(missing))} do not match "
                    f"its codes (they give {', '.join(sorted(found)) or 'none'})",
                )
    return Catalog(concepts, labs, vitals)


@cache
def shipped_catalog() -> Catalog:
    """The shipped catalog, loaded once."""
    return load_catalog()
