"""Code categories defined as data (``data/categories/*.yaml``): Advanced Illness, Frailty,
chronic conditions; each entry cites the public criterion it comes from.

An ICD-10-CM entry matches itself and every code below it in the tabular; a CPT/HCPCS
entry matches that code only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import CodeError, DataFileError
from medcode.records import System
from medcode.terminology import cpt, hcc, icd10cm

GROUPS = ("diagnosis", "device", "encounter", "symptom")


@dataclass(frozen=True, slots=True)
class CategoryEntry:
    code: str
    system: System
    group: str
    label: str
    source: str
    line: int


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    label: str
    description: str
    source: str
    entries: tuple[CategoryEntry, ...]
    path: str
    icd_index: dict[str, CategoryEntry] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for entry in self.entries:
            if entry.system is System.ICD10CM:
                self.icd_index.setdefault(entry.code.replace(".", ""), entry)

    def match(self, code: str, system: System) -> CategoryEntry | None:
        """The entry that ``code`` falls under, or None."""
        if system is System.ICD10CM:
            compact = icd10cm.normalize(code).replace(".", "")
            index = self.icd_index
            for length in range(3, len(compact) + 1):
                entry = index.get(compact[:length])
                if entry is not None:
                    return entry
            return None
        compact = cpt.normalize(code)
        return next((e for e in self.entries if e.system is system and e.code == compact), None)


def _required_text(path: Path, node: LineDict, key: str) -> str:
    value = node.get(key)
    if not isinstance(value, str) or not value.strip():
        raise DataFileError(path, node.line, f"missing or empty {key!r}")
    return value.strip()


def _entry(path: Path, group: str, node: object, table: cpt.ProcedureTable) -> CategoryEntry:
    if not isinstance(node, LineDict):
        raise DataFileError(path, None, f"group {group}: each entry must be a mapping")
    unknown = sorted(set(node) - {"code", "system", "label", "source"})
    if unknown:
        raise DataFileError(path, node.line, f"unknown key(s) {', '.join(unknown)}")
    raw = str(node.get("code", "")).strip()
    try:
        system = System(node.get("system", System.ICD10CM.value))
    except ValueError:
        raise DataFileError(
            path,
            node.line,
            f"code {raw}: system {node.get('system')!r} not one of "
            + ", ".join(s.value for s in System),
        ) from None
    try:
        if system is System.ICD10CM:
            code = icd10cm.require(raw)
        else:
            code = table.require(raw).code
            if cpt.system_of(code) is not system:
                raise CodeError(code, f"is not a {system} code")
    except CodeError as exc:
        raise DataFileError(path, node.line, f"invalid code {raw!r}: {exc.problem}") from None
    return CategoryEntry(
        code,
        system,
        group,
        _required_text(path, node, "label"),
        _required_text(path, node, "source"),
        node.line,
    )


def load_category(path: str | Path, table: cpt.ProcedureTable | None = None) -> Category:
    """Load and validate one category file; errors name the file, line and code."""
    path = Path(path)
    table = table or cpt.procedure_table()
    data = load_yaml(path)
    if not isinstance(data, LineDict):
        raise DataFileError(path, None, "expected a mapping with name, label, source, groups")
    name = _required_text(path, data, "name")
    if name != path.stem:
        raise DataFileError(
            path, data.line, f"name {name!r} must equal the file name {path.stem!r}"
        )
    groups = data.get("groups")
    if not isinstance(groups, LineDict) or not groups:
        raise DataFileError(path, data.line, "missing 'groups' mapping")
    entries: list[CategoryEntry] = []
    seen: dict[tuple[System, str], int] = {}
    for group, items in groups.items():
        if group not in GROUPS:
            raise DataFileError(
                path, groups.line, f"unknown group {group!r}; one of {', '.join(GROUPS)}"
            )
        if not isinstance(items, list) or not items:
            raise DataFileError(path, groups.line, f"group {group!r} must be a non-empty list")
        for node in items:
            entry = _entry(path, group, node, table)
            key = (entry.system, entry.code)
            if key in seen:
                raise DataFileError(
                    path, entry.line, f"code {entry.code} already listed on line {seen[key]}"
                )
            seen[key] = entry.line
            entries.append(entry)
    return Category(
        name=name,
        label=_required_text(path, data, "label"),
        description=_required_text(path, data, "description"),
        source=_required_text(path, data, "source"),
        entries=tuple(entries),
        path=str(path),
    )


def load_categories(
    paths: Iterable[str | Path] | None = None, table: cpt.ProcedureTable | None = None
) -> dict[str, Category]:
    """Load category files (default: every file shipped in ``data/categories``)."""
    if paths is None:
        paths = sorted(package_data("categories").glob("*.yaml"))
    categories = [load_category(path, table) for path in paths]
    return {category.name: category for category in categories}


@cache
def shipped_categories() -> dict[str, Category]:
    """The shipped categories, loaded once."""
    return load_categories()


@dataclass(frozen=True, slots=True)
class Membership:
    """Why a code belongs to a category: the matching entry, or the HCC flag for chronic."""

    category: str
    group: str
    label: str
    source: str


def memberships(code: str, system: System) -> list[Membership]:
    """Every category a code belongs to, including ``hcc`` (V28 payment HCC) and ``chronic``
    (listed in chronic.yaml, or mapping to an HCC that CMS flags as chronic)."""
    found = [
        Membership(name, entry.group, entry.label, entry.source)
        for name, category in shipped_categories().items()
        if (entry := category.match(code, system)) is not None
    ]
    if system is System.ICD10CM:
        for item in hcc.hccs(code):
            found.append(Membership("hcc", "payment", str(item), hcc.SOURCE))
            if item.chronic and not any(m.category == "chronic" for m in found):
                found.append(Membership("chronic", "hcc", f"chronic HCC {item.number}", hcc.SOURCE))
    return found


def category_names(code: str, system: System) -> list[str]:
    """Sorted names of the categories a code belongs to."""
    return list(_category_names(code, system))


@lru_cache(maxsize=500_000)
def _category_names(code: str, system: System) -> tuple[str, ...]:
    return tuple(sorted({membership.category for membership in memberships(code, system)}))
