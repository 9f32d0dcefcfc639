"""The policy's data tables (``data/policy/*.yaml``), loaded into typed records and validated.

Codes in the tables are ICD-10-CM codes or categories (matching themselves and every code
below them) or ranges ``FIRST-LAST`` of categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import CodeError, DataFileError
from medcode.terminology import icd10cm


@dataclass(frozen=True, slots=True)
class CodeSpec:
    """One code, category or range of categories, in compact form (no dots)."""

    first: str
    last: str
    text: str

    @property
    def specificity(self) -> int:
        """Longer codes are more specific; a range is less specific than any single code,
        and a narrower range more specific than a wider one."""
        if self.first == self.last:
            return len(self.first)
        return -(int(self.last[:3], 36) - int(self.first[:3], 36))

    def matches(self, compact: str) -> bool:
        if self.first == self.last:
            return compact.startswith(self.first)
        return self.first <= compact[: len(self.first)] and compact[: len(self.last)] <= self.last


def compact(code: str) -> str:
    return code.replace(".", "")


def parse_spec(path: Path, line: int, text: object) -> CodeSpec:
    raw = str(text).strip()
    parts = raw.split("-") if "-" in raw else [raw, raw]
    if len(parts) != 2:
        raise DataFileError(path, line, f"invalid code or range {raw!r}")
    try:
        first, last = (icd10cm.require(part) for part in parts)
    except CodeError as exc:
        raise DataFileError(path, line, f"invalid code {exc.code!r}: {exc.problem}") from None
    return CodeSpec(compact(first), compact(last), raw)


def billable(path: Path, line: int, text: object) -> str:
    try:
        code = icd10cm.require(str(text))
    except CodeError as exc:
        raise DataFileError(path, line, f"invalid code {exc.code!r}: {exc.problem}") from None
    if not icd10cm.is_billable(code):
        raise DataFileError(path, line, f"code {code} is not billable")
    return code


def _items(path: Path, data: object, key: str | None = None) -> list[LineDict]:
    node = data.get(key) if key and isinstance(data, dict) else data
    if not isinstance(node, list) or not all(isinstance(item, LineDict) for item in node):
        where = f"'{key}'" if key else "the file"
        raise DataFileError(
            path, getattr(data, "line", None), f"{where} must be a list of mappings"
        )
    return node


def _text(path: Path, item: LineDict, key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataFileError(path, item.line, f"missing or empty {key!r}")
    return value.strip()


def _specs(path: Path, item: LineDict, key: str) -> tuple[CodeSpec, ...]:
    value = item.get(key)
    values = value if isinstance(value, list) else [value]
    if value is None or not values:
        raise DataFileError(path, item.line, f"missing {key!r}")
    return tuple(parse_spec(path, item.line, v) for v in values)


@dataclass(frozen=True, slots=True)
class Combination:
    id: str
    rule: str
    base: tuple[CodeSpec, ...]
    with_: tuple[CodeSpec, ...]
    suffix: str
    keep_partner: bool
    label: str
    source: str
    base_categories: frozenset[str] = frozenset()
    with_categories: frozenset[str] = frozenset()
    replaces: tuple[CodeSpec, ...] = ()  # documented bases the combination replaces


def spec_categories(specs: tuple[CodeSpec, ...]) -> frozenset[str]:
    """The 3-character categories the specs can match (a quick pre-filter)."""
    categories = set()
    for spec in specs:
        if spec.first == spec.last:
            categories.add(spec.first[:3])
        else:
            categories |= {c for c in _all_categories() if spec.first[:3] <= c <= spec.last[:3]}
    return frozenset(categories)


@cache
def _all_categories() -> tuple[str, ...]:
    return tuple(c for c in icd10cm.all_codes() if len(c) == 3)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    documented: CodeSpec
    code: str
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class MedicationEntry:
    drug_class: str
    code: str
    not_with: tuple[CodeSpec, ...]
    label: str
    source: str
    # the code is assigned only when one of these is coded too (an SGLT2 inhibitor is an
    # oral hypoglycemic for a patient with diabetes, not for heart failure alone)
    only_with: tuple[CodeSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class IntegralEntry:
    diagnosis: tuple[CodeSpec, ...]
    symptoms: tuple[CodeSpec, ...]
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class Manifestation:
    """An etiology's manifestation coded after it; with ``underlying``, the reverse: the
    condition a manifestation's title documents, coded before it (D63.1 -> N18.9 first)."""

    etiology: CodeSpec
    manifestation: str
    family: CodeSpec
    label: str
    source: str
    underlying: bool = False


@dataclass(frozen=True, slots=True)
class SexEdit:
    spec: CodeSpec
    sex: str
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class AgeEdit:
    spec: CodeSpec
    min_age: int | None
    max_age: int | None
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class OrganismCombination:
    """An infection with its documented organism (``organism``, B95-B97) or with a confirmed
    condition documented beside it (``condition``) -> the index's combination ``code``."""

    infection: tuple[CodeSpec, ...]
    organism: tuple[CodeSpec, ...]
    code: str
    source: str
    condition: tuple[CodeSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class Subsumed:
    """``code`` is not coded when a code of ``by`` is (the index folds it in)."""

    code: CodeSpec
    by: tuple[CodeSpec, ...]
    label: str
    source: str


@dataclass(frozen=True, slots=True)
class BmiRule:
    """Z68 only with an associated diagnosis (``associated``); adult codes from age
    ``adult_min_age``; ``adult_bands`` are (low, high, code) from the tabular titles."""

    associated: tuple[CodeSpec, ...]
    adult_min_age: int
    adult_bands: tuple[tuple[float, float, str], ...]
    source: str

    def adult_code(self, bmi: float) -> str:
        """The adult Z68 code whose tabular range holds ``bmi`` (rounded to one decimal)."""
        value = round(bmi, 1)
        return next(code for low, high, code in self.adult_bands if low <= value <= high)


@dataclass
class PolicyTables:
    combinations: tuple[Combination, ...]
    personal_history: tuple[HistoryEntry, ...]
    family_history: tuple[HistoryEntry, ...]
    medications: dict[str, MedicationEntry]
    integral: tuple[IntegralEntry, ...]
    manifestations: tuple[Manifestation, ...]
    sex_edits: tuple[SexEdit, ...]
    age_edits: tuple[AgeEdit, ...]
    organisms: tuple[OrganismCombination, ...] = ()
    bmi: BmiRule | None = None
    subsumed: tuple[Subsumed, ...] = ()
    _memo: dict[tuple[str, str], object] = field(default_factory=dict, repr=False, compare=False)

    def _memoized(self, kind: str, code: str, compute):
        key = (kind, code)
        if key not in self._memo:
            self._memo[key] = compute(compact(code))
        return self._memo[key]

    def _by_category(self, kind: str, make_items) -> dict[str, list]:
        """``items`` ((specs, value) pairs) indexed by the 3-character categories the specs
        can match, so a look-up only tests the few specs of the code's own category."""
        key = ("index", kind)
        if key not in self._memo:
            index: dict[str, list] = {}
            for specs, value in make_items():
                for category in spec_categories(specs):
                    index.setdefault(category, []).append((specs, value))
            self._memo[key] = index
        return self._memo[key]

    def edits_for(self, code: str) -> tuple[tuple[SexEdit, ...], tuple[AgeEdit, ...]]:
        """The sex and age edits that apply to ``code``."""
        sex_index = self._by_category("sex", lambda: [((e.spec,), e) for e in self.sex_edits])
        age_index = self._by_category("age", lambda: [((e.spec,), e) for e in self.age_edits])

        def compute(key: str):
            return (
                tuple(e for (spec,), e in sex_index.get(key[:3], ()) if spec.matches(key)),
                tuple(e for (spec,), e in age_index.get(key[:3], ()) if spec.matches(key)),
            )

        return self._memoized("edits", code, compute)

    def integral_hosts(self, code: str) -> tuple[IntegralEntry, ...]:
        """The integral-symptom entries listing ``code`` as a symptom."""
        index = self._by_category("integral", lambda: [(e.symptoms, e) for e in self.integral])
        return self._memoized(
            "integral",
            code,
            lambda key: tuple(
                e for specs, e in index.get(key[:3], ()) if any(s.matches(key) for s in specs)
            ),
        )

    def history_entry(self, code: str, family: bool) -> HistoryEntry | None:
        """The most specific personal- or family-history entry for ``code``."""
        entries = self.family_history if family else self.personal_history

        def best(key: str) -> HistoryEntry | None:
            found = [e for e in entries if e.documented.matches(key)]
            return max(found, key=lambda e: e.documented.specificity) if found else None

        return self._memoized("family" if family else "personal", code, best)

    def emittable_codes(self) -> set[str]:
        """Every ICD-10-CM code these tables can make the engine emit."""
        codes = {entry.code for entry in (*self.personal_history, *self.family_history)}
        codes |= {entry.code for entry in self.medications.values()}
        codes |= {entry.manifestation for entry in self.manifestations}
        codes |= {entry.code for entry in self.organisms}
        if self.bmi is not None:
            codes |= {code for _, _, code in self.bmi.adult_bands}
        for combination in self.combinations:
            for base in combination.base:
                codes.add(icd10cm.normalize(base.first[:3] + combination.suffix.lstrip(".")))
        return codes


def load_combinations(path: Path) -> tuple[Combination, ...]:
    found = []
    for item in _items(path, load_yaml(path)):
        partner = _text(path, item, "partner")
        if partner not in ("keep", "drop"):
            raise DataFileError(path, item.line, f"partner {partner!r} must be keep or drop")
        combination = Combination(
            id=_text(path, item, "id"),
            rule=_text(path, item, "rule"),
            base=(base := _specs(path, item, "base")),
            with_=(with_ := _specs(path, item, "with")),
            suffix=_text(path, item, "suffix"),
            keep_partner=partner == "keep",
            label=_text(path, item, "label"),
            source=_text(path, item, "source"),
            base_categories=spec_categories(base),
            with_categories=spec_categories(with_),
            replaces=tuple(parse_spec(path, item.line, v) for v in item.get("replaces") or ()),
        )
        for base in combination.base:
            if base.first != base.last:
                raise DataFileError(path, item.line, f"base {base.text}: use codes, not ranges")
            billable(path, item.line, base.first[:3] + combination.suffix.lstrip("."))
        found.append(combination)
    return tuple(found)


def _history(path: Path, data: object, key: str) -> tuple[HistoryEntry, ...]:
    entries = []
    seen: dict[str, int] = {}
    for item in _items(path, data, key):
        spec = parse_spec(path, item.line, item.get("documented"))
        if spec.text in seen:
            raise DataFileError(
                path, item.line, f"{spec.text} already listed on line {seen[spec.text]}"
            )
        seen[spec.text] = item.line
        entries.append(
            HistoryEntry(
                spec,
                billable(path, item.line, item.get("code")),
                _text(path, item, "label"),
                _text(path, item, "source"),
            )
        )
    return tuple(entries)


def load_medications(path: Path) -> dict[str, MedicationEntry]:
    found: dict[str, MedicationEntry] = {}
    for item in _items(path, load_yaml(path)):
        drug_class = _text(path, item, "class")
        if drug_class in found:
            raise DataFileError(path, item.line, f"class {drug_class!r} listed twice")
        not_with = item.get("not_with") or []
        only_with = item.get("only_with") or []
        found[drug_class] = MedicationEntry(
            drug_class,
            billable(path, item.line, item.get("code")),
            tuple(parse_spec(path, item.line, v) for v in not_with),
            _text(path, item, "label"),
            _text(path, item, "source"),
            tuple(parse_spec(path, item.line, v) for v in only_with),
        )
    return found


def load_integral(path: Path) -> tuple[IntegralEntry, ...]:
    return tuple(
        IntegralEntry(
            _specs(path, item, "diagnosis"),
            _specs(path, item, "symptoms"),
            _text(path, item, "label"),
            _text(path, item, "source"),
        )
        for item in _items(path, load_yaml(path))
    )


def load_manifestations(path: Path) -> tuple[Manifestation, ...]:
    return tuple(
        Manifestation(
            parse_spec(path, item.line, item.get("etiology")),
            billable(path, item.line, item.get("manifestation")),
            parse_spec(path, item.line, item.get("family")),
            _text(path, item, "label"),
            _text(path, item, "source"),
            bool(item.get("underlying", False)),
        )
        for item in _items(path, load_yaml(path))
    )


def _age(path: Path, item: LineDict, key: str) -> int | None:
    value = item.get(key)
    if value is not None and (not isinstance(value, int) or value < 0):
        raise DataFileError(path, item.line, f"{key} must be a whole number of years or null")
    return value


def load_edits(path: Path) -> tuple[tuple[SexEdit, ...], tuple[AgeEdit, ...]]:
    data = load_yaml(path)
    sex = []
    for item in _items(path, data, "sex"):
        value = _text(path, item, "sex")
        if value not in ("F", "M"):
            raise DataFileError(path, item.line, f"sex {value!r} must be F or M")
        sex.append(
            SexEdit(
                parse_spec(path, item.line, item.get("range")),
                value,
                _text(path, item, "label"),
                _text(path, item, "source"),
            )
        )
    age = [
        AgeEdit(
            parse_spec(path, item.line, item.get("range")),
            _age(path, item, "min"),
            _age(path, item, "max"),
            _text(path, item, "label"),
            _text(path, item, "source"),
        )
        for item in _items(path, data, "age")
    ]
    return tuple(sex), tuple(age)


def organism_combination(
    tables: PolicyTables, infection: str, organism: str
) -> OrganismCombination | None:
    """The index's organism-specific combination for an infection and its organism."""
    a, b = compact(infection), compact(organism)
    return next(
        (
            entry
            for entry in tables.organisms
            if entry.organism
            and any(s.matches(a) for s in entry.infection)
            and any(s.matches(b) for s in entry.organism)
        ),
        None,
    )


def load_organisms(path: Path) -> tuple[OrganismCombination, ...]:
    found = []
    for item in _items(path, load_yaml(path)):
        if ("organism" in item) == ("condition" in item):
            raise DataFileError(path, item.line, "give exactly one of 'organism' or 'condition'")
        organisms = _specs(path, item, "organism") if "organism" in item else ()
        for spec in organisms:
            if not "B95" <= spec.first[:3] <= "B97":
                raise DataFileError(path, item.line, f"organism {spec.text} is not in B95-B97")
        found.append(
            OrganismCombination(
                _specs(path, item, "infection"),
                organisms,
                billable(path, item.line, item.get("code")),
                _text(path, item, "source"),
                _specs(path, item, "condition") if "condition" in item else (),
            )
        )
    return tuple(found)


def load_subsumed(path: Path) -> tuple[Subsumed, ...]:
    return tuple(
        Subsumed(
            parse_spec(path, item.line, item.get("code")),
            _specs(path, item, "by"),
            _text(path, item, "label"),
            _text(path, item, "source"),
        )
        for item in _items(path, load_yaml(path))
    )


def _z68_adult_bands() -> tuple[tuple[float, float, str], ...]:
    """(low, high, code) of the adult BMI codes, read from their tabular titles
    ("Body mass index [BMI] 35.0-35.9, adult", "... 19.9 or less, adult", "... 70 or greater,
    adult")."""
    import re

    bands = []
    for code in icd10cm.all_codes():
        if not code.startswith("Z68.") or not icd10cm.is_billable(code):
            continue
        title = icd10cm.description(code)
        if not title.endswith("adult"):
            continue
        if m := re.search(r"(\d+(?:\.\d)?)-(\d+(?:\.\d)?), adult", title):
            bands.append((float(m[1]), float(m[2]) + 0.09, code))
        elif m := re.search(r"(\d+(?:\.\d)?) or less, adult", title):
            bands.append((0.0, float(m[1]) + 0.09, code))
        elif m := re.search(r"(\d+(?:\.\d)?) or greater, adult", title):
            bands.append((float(m[1]), 1000.0, code))
    return tuple(sorted(bands))


def load_bmi(path: Path) -> BmiRule:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise DataFileError(path, None, "expected a mapping")
    age = data.get("adult_min_age")
    if not isinstance(age, int):
        raise DataFileError(path, data.line, "adult_min_age must be a whole number")
    associated = tuple(
        parse_spec(path, item.line, item.get("range")) for item in _items(path, data, "associated")
    )
    bands = _z68_adult_bands()
    if not bands:
        raise DataFileError(path, data.line, "no adult Z68 codes found in the tabular")
    return BmiRule(associated, age, bands, _text(path, data, "source"))


def load_tables(directory: str | Path | None = None) -> PolicyTables:
    """Load and validate every policy table (default: the shipped ``data/policy``)."""
    folder = Path(directory) if directory else package_data("policy")
    history = load_yaml(folder / "history.yaml")
    history_path = folder / "history.yaml"
    sex, age = load_edits(folder / "edits.yaml")
    return PolicyTables(
        combinations=load_combinations(folder / "combinations.yaml"),
        personal_history=_history(history_path, history, "personal"),
        family_history=_history(history_path, history, "family"),
        medications=load_medications(folder / "medications.yaml"),
        integral=load_integral(folder / "integral_symptoms.yaml"),
        manifestations=load_manifestations(folder / "manifestations.yaml"),
        sex_edits=sex,
        age_edits=age,
        organisms=load_organisms(folder / "organisms.yaml"),
        bmi=load_bmi(folder / "bmi.yaml"),
        subsumed=load_subsumed(folder / "subsumed.yaml"),
    )


@cache
def shipped_tables() -> PolicyTables:
    """The shipped tables, loaded once."""
    return load_tables()
