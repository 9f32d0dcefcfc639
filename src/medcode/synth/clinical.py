"""Clinical facts the coherence rules and the sampler share, loaded from ``data/synth``:
drug classes (``drugs.yaml``), control states (``control.yaml``), diagnostic thresholds, exam
systems and functional levels (``findings.yaml``), and encounter facts (``encounters.yaml``).
Validated on load; every error names the file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import CodeError
from medcode.records import VisitKind
from medcode.synth.catalog import _Reader as CatalogReader
from medcode.terminology import cpt, icd10cm

VISIT_KINDS = tuple(kind.value for kind in VisitKind)
Range = tuple[float, float]


# -- code prefixes and ranges ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Codes:
    """ICD-10-CM categories, codes or ranges (``S00-T88``), matched by prefix."""

    specs: tuple[tuple[str, str], ...]
    _hits: dict[str, bool] = field(default_factory=dict, init=False, repr=False, compare=False)

    def matches(self, code: str) -> bool:
        """Whether the code falls under one of the specs (cached per code)."""
        hit = self._hits.get(code)
        if hit is None:
            hit = self._hits[code] = self._match(code)
        return hit

    def _match(self, code: str) -> bool:
        key = code.replace(".", "").upper()
        for first, last in self.specs:
            if first == last:
                if key.startswith(first):
                    return True
            elif first <= key[: len(first)] and key[: len(last)] <= last:
                return True
        return False


# -- drugs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DrugClass:
    id: str
    label: str
    route: str | None  # None: the class holds the drug whatever the route
    multiple: bool
    source: str


@dataclass(frozen=True, slots=True)
class ExclusiveGroup:
    classes: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True)
class Therapy:
    """A condition's guideline-typical drug classes: one class of each ``requires`` set."""

    concept: str
    requires: tuple[tuple[str, ...], ...]
    forms: frozenset[str]  # empty: every form
    min_age: int
    source: str


@dataclass(frozen=True, slots=True)
class DrugMatch:
    name: str  # the drug name matched
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Drugs:
    classes: dict[str, DrugClass]
    members: dict[str, tuple[str, ...]]  # drug name (lower case) -> class ids
    groups: tuple[ExclusiveGroup, ...]
    routes: dict[str, tuple[str, ...]]
    therapy: tuple[Therapy, ...]
    _pattern: re.Pattern = field(repr=False)
    _matched: dict[str, tuple[DrugMatch, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def route(self, line: str) -> str:
        lower = line.lower()
        for route, marks in self.routes.items():
            for mark in marks:
                if mark == "%":
                    if "%" in lower:
                        return route
                elif re.search(rf"\b{re.escape(mark.lower())}\b", lower):
                    return route
        return "systemic"

    def match(self, line: str) -> list[DrugMatch]:
        """The drugs a medication line names, with their classes for the line's route."""
        found = self._matched.get(line)
        if found is None:
            found = self._matched[line] = tuple(self._match(line))
        return list(found)

    def _match(self, line: str) -> list[DrugMatch]:
        route = self.route(line)
        found = []
        for match in self._pattern.finditer(line.lower()):
            name = match.group(0)
            classes = self.members[name]
            routed = tuple(c for c in classes if self.classes[c].route in (None, route))
            if not routed:  # a drug with no class of this route: its systemic class
                routed = tuple(c for c in classes if self.classes[c].route in (None, "systemic"))
            found.append(DrugMatch(name, routed or classes))
        return found

    def classes_of(self, line: str) -> set[str]:
        return {c for m in self.match(line) for c in m.classes}


# -- control states -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ControlState:
    name: str
    weight: float
    cues: tuple[str, ...]
    vitals: dict[str, Range]
    labs: dict[str, Range]
    forms: dict[str, str]  # documented form -> form in this state; empty: any form, unchanged
    reason_for: tuple[str, ...]

    @property
    def acute(self) -> bool:
        return self.name == "exacerbation"

    def form_for(self, code: str) -> str | None:
        """The form documented in this state for ``code`` (None: not possible)."""
        if not self.forms:
            return code
        return self.forms.get(code)


@dataclass(frozen=True, slots=True)
class Control:
    concept: str
    states: dict[str, ControlState]
    source: str


# -- findings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    codes: Codes
    measure: str
    range: Range
    presentation_only: bool
    source: str


@dataclass(frozen=True, slots=True)
class Discharge:
    vitals: dict[str, Range]
    unless: dict[str, Codes]
    source: str


@dataclass(frozen=True, slots=True)
class ExamFinding:
    text: str
    system: str
    normal: bool


@dataclass(frozen=True, slots=True)
class FindingVital:
    finding: str
    measure: str
    range: Range


@dataclass(frozen=True)
class Exam:
    findings: dict[str, tuple[ExamFinding, ...]]  # lower-case text -> its classifications
    vitals: tuple[FindingVital, ...]
    diagnoses: tuple[tuple[Codes, frozenset[str]], ...]  # codes -> systems not normal
    source: str
    _classified: dict[str, tuple[ExamFinding, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def classify(self, text: str) -> tuple[ExamFinding, ...]:
        """The systems a finding speaks for: the table's own statement, or the longest one
        the finding starts with ("no focal neurologic deficits at present"); cached."""
        found = self._classified.get(text)
        if found is None:
            found = self._classified[text] = self._classify(text)
        return found

    def _classify(self, text: str) -> tuple[ExamFinding, ...]:
        key = text.strip().lower()
        if key in self.findings:
            return self.findings[key]
        starts = [p for p in self.findings if key.startswith(p) and not key[len(p)].isalnum()]
        return self.findings[max(starts, key=len)] if starts else ()

    def normals(self) -> list[str]:
        return sorted({f.text for group in self.findings.values() for f in group if f.normal})


@dataclass(frozen=True, slots=True)
class FunctionLevel:
    id: str
    rank: int
    statements: tuple[str, ...]
    living: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FunctionRule:
    codes: Codes
    level: str
    source: str


@dataclass(frozen=True)
class Function:
    levels: dict[str, FunctionLevel]
    floors: tuple[FunctionRule, ...]
    caps: tuple[FunctionRule, ...]
    living: tuple[tuple[Codes, tuple[str, ...]], ...]  # codes -> words the statement needs
    source: str
    _code_bounds: dict[str, tuple[int, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def level_of(self, statement: str) -> FunctionLevel | None:
        for level in self.levels.values():
            if statement in level.statements:
                return level
        return None

    def bounds(self, codes: list[str]) -> tuple[int, int]:
        """The lowest and highest level rank the documented codes allow: the highest floor
        and the lowest cap (or living situation) of any code."""
        low, high = 0, len(self.levels) - 1
        for code in codes:
            floor, cap = self._bounds_of(code)
            low, high = max(low, floor), min(high, cap)
        return low, high

    def _bounds_of(self, code: str) -> tuple[int, int]:
        """One code's floor and cap (cached per code)."""
        found = self._code_bounds.get(code)
        if found is not None:
            return found
        low = max(
            (self.levels[r.level].rank for r in self.floors if r.codes.matches(code)), default=0
        )
        high = min(
            (self.levels[r.level].rank for r in self.caps if r.codes.matches(code)),
            default=len(self.levels) - 1,
        )
        for spec, words in self.living:  # a living situation the level must allow
            if spec.matches(code):
                allowed = [
                    lv.rank
                    for lv in self.levels.values()
                    if any(w in s for s in lv.living for w in words)
                ]
                high = min(high, max(allowed, default=-1))
        self._code_bounds[code] = (low, high)
        return low, high


# -- encounters -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FacilityKind:
    kind: str
    settings: tuple[str, ...]
    names: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class EncounterFacts:
    facilities: tuple[FacilityKind, ...]
    injury: Codes
    complications: Codes
    external_causes: Codes
    episodes: dict[str, tuple[str, ...]]
    injury_source: str
    acute_only: Codes
    acute_title_exempt: Codes
    long_tail_exclude: Codes
    exclusive: tuple[tuple[frozenset[str], str], ...]
    new_patient_markers: tuple[str, ...]
    office_orders_only: frozenset[str] = frozenset()  # imaging an office orders, not does

    def facility_kind(self, name: str) -> FacilityKind | None:
        return next((k for k in self.facilities if any(name.endswith(n) for n in k.names)), None)

    def is_injury(self, code: str) -> bool:
        return self.injury.matches(code) or self.complications.matches(code)

    def is_acute_code(self, code: str) -> bool:
        if self.acute_only.matches(code):
            return True
        if self.acute_title_exempt.matches(code):
            return False
        title = icd10cm.description(code).lower()
        return bool(re.search(r"\bacute\b", title)) and "chronic" not in title


@dataclass(frozen=True)
class ClinicalRules:
    drugs: Drugs
    controls: dict[str, Control]
    thresholds: tuple[Threshold, ...]
    discharge: Discharge
    exam: Exam
    function: Function
    encounters: EncounterFacts
    _thresholds_of: dict[str, frozenset[int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def thresholds_hit(self, codes: list[str]) -> frozenset[int]:
        """The indices of the thresholds whose codes one of ``codes`` matches."""
        hit: frozenset[int] = frozenset()
        for code in codes:
            found = self._thresholds_of.get(code)
            if found is None:
                found = frozenset(i for i, t in enumerate(self.thresholds) if t.codes.matches(code))
                self._thresholds_of[code] = found
            hit |= found
        return hit


# -- loading --------------------------------------------------------------------------------


class _Reader(CatalogReader):
    """The catalog's reader (file and line in every error) with the helpers these tables
    need: a mapping reported at its parent's line, whitespace-normalised text."""

    def mapping(self, node: object, what: str, parent: object = None) -> LineDict:
        if not isinstance(node, LineDict):
            raise self.fail(node if node is not None else parent, f"{what} must be a mapping")
        return node

    def child(self, parent: LineDict, key: str) -> LineDict:
        """``parent[key]``, a mapping; a missing one is reported at the parent's line."""
        return self.mapping(parent.get(key), f"{key!r}", parent)

    def items(self, node: object, what: str) -> list[LineDict]:
        if not isinstance(node, list) or not all(isinstance(i, LineDict) for i in node):
            raise self.fail(node, f"{what} must be a list of mappings")
        return node

    def text(self, node: LineDict, key: str) -> str:
        value = node.get(key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"missing or empty {key!r}")
        return " ".join(value.split())

    def texts(self, node: LineDict, key: str, required: bool = True) -> tuple[str, ...]:
        value = node.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(node, f"{key!r} must be a list of strings")
        if required and not value:
            raise self.fail(node, f"{key!r} must not be empty")
        return tuple(v.strip() for v in value)

    def range(self, node: LineDict, what: str, value: object) -> Range:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            or value[0] > value[1]
        ):
            raise self.fail(node, f"{what}: expected [low, high], got {value!r}")
        return float(value[0]), float(value[1])

    def ranges(self, node: LineDict, key: str, known: set[str]) -> dict[str, Range]:
        value = node.get(key) or {}
        if not isinstance(value, dict):
            raise self.fail(node, f"{key!r} must map measures to [low, high]")
        for name in value:
            if name not in known:
                raise self.fail(node, f"{key}: unknown measure {name!r}")
        return {name: self.range(node, f"{key}.{name}", pair) for name, pair in value.items()}

    def codes(self, node: LineDict, value: object, what: str) -> Codes:
        if not isinstance(value, list) or not value:
            raise self.fail(node, f"{what} must be a non-empty list of codes or ranges")
        specs = []
        for raw in value:
            text = str(raw).strip()
            parts = text.split("-") if "-" in text else [text, text]
            if len(parts) != 2:
                raise self.fail(node, f"{what}: invalid code or range {text!r}")
            try:
                first, last = (icd10cm.require(part) for part in parts)
            except CodeError as exc:
                raise self.fail(node, f"{what}: invalid code {exc.code!r}: {exc.problem}") from None
            specs.append((first.replace(".", ""), last.replace(".", "")))
        return Codes(tuple(specs))

    def probability_weight(self, node: LineDict, key: str, default: float) -> float:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise self.fail(node, f"{key}: {value!r} must be a number >= 0")
        return float(value)


def _measures() -> set[str]:
    from medcode.synth.catalog import load_measures

    labs, vitals = load_measures()
    return set(labs) | set(vitals)


def load_drugs(path: Path | None = None) -> Drugs:
    path = path or package_data("synth/drugs.yaml")
    reader = _Reader(path)
    data = reader.mapping(load_yaml(path), "the file")
    classes: dict[str, DrugClass] = {}
    members: dict[str, list[str]] = {}
    for item in reader.items(data.get("classes"), "'classes'"):
        class_id = reader.text(item, "id")
        if class_id in classes:
            raise reader.fail(item, f"class {class_id!r} listed twice")
        route = item.get("route")
        if route not in (None, "systemic", "topical", "inhaled"):
            raise reader.fail(
                item, f"class {class_id}: route {route!r} not systemic/topical/inhaled"
            )
        classes[class_id] = DrugClass(
            class_id,
            reader.text(item, "label"),
            route,
            bool(item.get("multiple", False)),
            reader.text(item, "source"),
        )
        for name in reader.texts(item, "drugs"):
            members.setdefault(name.lower(), []).append(class_id)
    groups = []
    for item in reader.items(data.get("exclusive_groups"), "'exclusive_groups'"):
        named = reader.texts(item, "classes")
        unknown = [c for c in named if c not in classes]
        if unknown or len(named) < 2:
            raise reader.fail(
                item, f"exclusive group: unknown or too few classes {unknown or named}"
            )
        groups.append(ExclusiveGroup(frozenset(named), reader.text(item, "source")))
    routes_node = reader.child(data, "routes")
    routes = {str(k): reader.texts(routes_node, k) for k in routes_node}
    therapy = []
    for item in reader.items(data.get("therapy", []), "'therapy'"):
        requires = item.get("requires")
        if not isinstance(requires, list) or not requires:
            raise reader.fail(item, "therapy: 'requires' must list class sets")
        sets = []
        for options in requires:
            if not isinstance(options, list) or not options:
                raise reader.fail(item, "therapy: each required set must be a list of classes")
            unknown = [c for c in options if c not in classes]
            if unknown:
                raise reader.fail(item, f"therapy: unknown class(es) {', '.join(unknown)}")
            sets.append(tuple(options))
        min_age = item.get("min_age", 0)
        if not isinstance(min_age, int):
            raise reader.fail(item, "therapy: min_age must be a whole number")
        therapy.append(
            Therapy(
                reader.text(item, "concept"),
                tuple(sets),
                frozenset(reader.texts(item, "forms", required=False)),
                min_age,
                reader.text(item, "source"),
            )
        )
    names = sorted(members, key=len, reverse=True)
    pattern = re.compile(
        "|".join(rf"(?<![\w-]){re.escape(n)}(?![\w/-])" for n in names), re.IGNORECASE
    )
    return Drugs(
        classes,
        {name: tuple(ids) for name, ids in members.items()},
        tuple(groups),
        routes,
        tuple(therapy),
        pattern,
    )


def load_controls(path: Path | None = None) -> dict[str, Control]:
    path = path or package_data("synth/control.yaml")
    reader = _Reader(path)
    data = reader.mapping(load_yaml(path), "the file")
    known = _measures()
    controls = {}
    for item in reader.items(data.get("controls"), "'controls'"):
        concept = reader.text(item, "concept")
        if concept in controls:
            raise reader.fail(item, f"concept {concept!r} listed twice")
        states_node = reader.child(item, "states")
        states = {}
        for name, raw in states_node.items():
            raw = reader.mapping(raw, f"{concept}: state {name}")
            if name not in ("controlled", "uncontrolled", "exacerbation"):
                raise reader.fail(
                    raw, f"{concept}: state {name!r} not controlled/uncontrolled/exacerbation"
                )
            forms = raw.get("forms") or {}
            if not isinstance(forms, dict):
                raise reader.fail(raw, f"{concept}.{name}: forms must map codes to codes")
            for a, b in forms.items():
                for code in (a, b):
                    try:
                        icd10cm.require(str(code))
                    except CodeError as exc:
                        raise reader.fail(raw, f"{concept}.{name}: {exc}") from None
            reason_for = reader.texts(raw, "reason_for", required=False)
            for kind in reason_for:
                if kind not in VISIT_KINDS:
                    raise reader.fail(raw, f"{concept}.{name}: reason_for {kind!r} unknown")
            states[name] = ControlState(
                name,
                reader.probability_weight(raw, "weight", 1),
                reader.texts(raw, "cues"),
                reader.ranges(raw, "vitals", known),
                reader.ranges(raw, "labs", known),
                {icd10cm.normalize(str(a)): icd10cm.normalize(str(b)) for a, b in forms.items()},
                reason_for,
            )
            for cue in states[name].cues:
                if "{x}" not in cue:
                    raise reader.fail(raw, f"{concept}.{name}: cue {cue!r} has no {{x}}")
        controls[concept] = Control(concept, states, reader.text(item, "source"))
    return controls


def load_findings(
    path: Path | None = None,
) -> tuple[tuple[Threshold, ...], Discharge, Exam, Function]:
    path = path or package_data("synth/findings.yaml")
    reader = _Reader(path)
    data = reader.mapping(load_yaml(path), "the file")
    known = _measures()
    thresholds = []
    for item in reader.items(data.get("thresholds"), "'thresholds'"):
        measure = reader.text(item, "measure")
        if measure not in known:
            raise reader.fail(item, f"unknown measure {measure!r}")
        when = item.get("when")
        if when not in (None, "presentation"):
            raise reader.fail(item, f"when: {when!r} must be 'presentation' or absent")
        thresholds.append(
            Threshold(
                reader.codes(item, item.get("codes"), "codes"),
                measure,
                reader.range(item, "range", item.get("range")),
                when == "presentation",
                reader.text(item, "source"),
            )
        )
    node = reader.child(data, "discharge")
    unless_node = node.get("unless") or {}
    discharge = Discharge(
        reader.ranges(node, "vitals", known),
        {k: reader.codes(node, v, f"unless.{k}") for k, v in unless_node.items()},
        reader.text(node, "source"),
    )
    exam_node = reader.child(data, "exam")
    findings: dict[str, list[ExamFinding]] = {}
    for system, raw in reader.mapping(exam_node.get("systems"), "exam.systems").items():
        raw = reader.mapping(raw, f"exam system {system}")
        for normal in (True, False):
            for text in reader.texts(raw, "normal" if normal else "abnormal", required=normal):
                findings.setdefault(text.lower(), []).append(ExamFinding(text, system, normal))
    vitals = []
    for item in reader.items(exam_node.get("vitals", []), "exam.vitals"):
        measure = reader.text(item, "measure")
        if measure not in known:
            raise reader.fail(item, f"unknown measure {measure!r}")
        vitals.append(
            FindingVital(
                reader.text(item, "finding").lower(),
                measure,
                reader.range(item, "range", item.get("range")),
            )
        )
    systems = {f.system for group in findings.values() for f in group}
    diagnoses = []
    for item in reader.items(exam_node.get("diagnoses", []), "exam.diagnoses"):
        named = reader.texts(item, "systems")
        unknown = [x for x in named if x not in systems]
        if unknown:
            raise reader.fail(item, f"unknown exam system(s) {', '.join(unknown)}")
        reader.text(item, "source")
        diagnoses.append((reader.codes(item, item.get("codes"), "codes"), frozenset(named)))
    exam = Exam(
        {k: tuple(v) for k, v in findings.items()},
        tuple(vitals),
        tuple(diagnoses),
        reader.text(exam_node, "source"),
    )
    function_node = reader.child(data, "function")
    levels = {}
    for rank, item in enumerate(reader.items(function_node.get("levels"), "function.levels")):
        level_id = reader.text(item, "id")
        levels[level_id] = FunctionLevel(
            level_id, rank, reader.texts(item, "statements"), reader.texts(item, "living")
        )

    def rules(key: str) -> tuple[FunctionRule, ...]:
        found = []
        for item in reader.items(function_node.get(key, []), f"function.{key}"):
            level = reader.text(item, "level")
            if level not in levels:
                raise reader.fail(item, f"unknown level {level!r}; one of {', '.join(levels)}")
            found.append(
                FunctionRule(
                    reader.codes(item, item.get("codes"), "codes"),
                    level,
                    reader.text(item, "source"),
                )
            )
        return tuple(found)

    living = tuple(
        (reader.codes(item, item.get("codes"), "codes"), reader.texts(item, "statement_words"))
        for item in reader.items(function_node.get("living", []), "function.living")
    )
    function = Function(
        levels, rules("conditions"), rules("caps"), living, reader.text(function_node, "source")
    )
    return tuple(thresholds), discharge, exam, function


def load_encounter_facts(path: Path | None = None) -> EncounterFacts:
    path = path or package_data("synth/encounters.yaml")
    reader = _Reader(path)
    data = reader.mapping(load_yaml(path), "the file")
    facilities = []
    for item in reader.items(data.get("facilities"), "'facilities'"):
        settings = reader.texts(item, "settings")
        facilities.append(
            FacilityKind(
                reader.text(item, "kind"),
                settings,
                reader.texts(item, "names"),
                reader.text(item, "source"),
            )
        )
    injury = reader.child(data, "injury")
    reader.codes(injury, injury.get("ranges"), "injury.ranges")
    episodes_node = reader.child(injury, "episodes")
    episodes = {}
    for kind in episodes_node:
        if kind not in VISIT_KINDS:
            raise reader.fail(episodes_node, f"injury.episodes: unknown visit kind {kind!r}")
        episodes[kind] = reader.texts(episodes_node, kind)
    acute = reader.child(data, "acute_only")
    exclude = reader.child(data, "long_tail_exclude")
    exclusive = []
    for item in reader.items(data.get("exclusive_conditions"), "'exclusive_conditions'"):
        exclusive.append((frozenset(reader.texts(item, "concepts")), reader.text(item, "source")))
    new = reader.child(data, "new_patient")
    orders_only = reader.child(data, "office_orders_only")
    reader.text(orders_only, "source")
    table = cpt.procedure_table()
    for code in reader.texts(orders_only, "codes"):
        if code not in table:
            raise reader.fail(orders_only, f"office_orders_only: {code!r} not in the code table")
    reader.text(injury, "source"), reader.text(acute, "source"), reader.text(exclude, "source")
    reader.text(new, "source")
    return EncounterFacts(
        tuple(facilities),
        reader.codes(injury, injury.get("ranges"), "injury.ranges"),
        reader.codes(injury, injury.get("complications"), "injury.complications"),
        reader.codes(injury, injury.get("external_causes"), "injury.external_causes"),
        episodes,
        reader.text(injury, "source"),
        reader.codes(acute, acute.get("ranges"), "acute_only.ranges"),
        reader.codes(acute, acute.get("title_exempt"), "acute_only.title_exempt"),
        reader.codes(exclude, exclude.get("ranges"), "long_tail_exclude.ranges"),
        tuple(exclusive),
        reader.texts(new, "markers"),
        frozenset(reader.texts(orders_only, "codes")),
    )


def load_rules() -> ClinicalRules:
    thresholds, discharge, exam, function = load_findings()
    return ClinicalRules(
        load_drugs(), load_controls(), thresholds, discharge, exam, function, load_encounter_facts()
    )


@cache
def shipped_rules() -> ClinicalRules:
    """The shipped clinical rules, loaded once."""
    return load_rules()
