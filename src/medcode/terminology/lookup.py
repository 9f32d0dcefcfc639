"""One entry point over all code sets: resolve user input to codes and describe them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from medcode.errors import CodeError
from medcode.records import System
from medcode.terminology import cpt, hcc, icd10cm
from medcode.terminology.categories import Membership, memberships

NOTE_KINDS = ("excludes1", "excludes2", "code_first", "use_additional_code", "code_also")


def resolve(text: str, system: System | None = None) -> list[tuple[System, str]]:
    """The codes ``text`` can mean, as ``(system, normalised code)``.

    Dotted input is ICD-10-CM. Undotted input can be both (``J1100`` is HCPCS J1100 and
    ICD-10-CM J11.00); both are returned then. Raises :class:`CodeError` when nothing matches,
    saying whether the spelling is wrong or the code is unknown.
    """
    raw = str(text).strip()
    if not raw:
        raise CodeError(raw, "empty code")
    want_icd = system in (None, System.ICD10CM)
    want_proc = system in (None, System.CPT, System.HCPCS) and "." not in raw
    found: list[tuple[System, str]] = []
    problems: list[str] = []
    if want_icd and icd10cm.looks_like(raw):
        dotted = icd10cm.normalize(raw)
        if icd10cm.is_valid(dotted):
            found.append((System.ICD10CM, dotted))
        else:
            problems.append(f"not an ICD-10-CM code ({icd10cm.RELEASE} tabular)")
    if want_proc and cpt.looks_like(raw):
        table = cpt.procedure_table()
        code = cpt.normalize(raw)
        if code in table and (system is None or table[code].system is system):
            found.append((table[code].system, code))
        else:
            try:
                table.require(code)
            except CodeError as exc:
                problems.append(exc.problem)
    if found:
        return found
    if not problems:
        expected = {
            None: "ICD-10-CM like E11.22, CPT like 99214 or HCPCS like G0438",
            System.ICD10CM: "ICD-10-CM like E11.22",
        }.get(system, "CPT like 99214 or HCPCS like G0438")
        problems.append(f"malformed code: expected {expected}")
    raise CodeError(raw, "; ".join(problems))


@dataclass(frozen=True)
class CodeInfo:
    """Everything medcode knows about one code, for display or JSON."""

    code: str
    system: System
    description: str
    billable: bool
    kind: str = ""
    parents: list[tuple[str, str]] = field(default_factory=list)
    children: list[tuple[str, str]] = field(default_factory=list)
    notes: dict[str, list[icd10cm.Note]] = field(default_factory=dict)
    seventh_characters: dict[str, str] = field(default_factory=dict)
    categories: list[Membership] = field(default_factory=list)
    hccs: list[hcc.HCC] = field(default_factory=list)
    em: cpt.EvaluationAndManagement | None = None

    def to_dict(self) -> dict[str, object]:
        em = self.em
        return {
            "code": self.code,
            "system": self.system.value,
            "description": self.description,
            "billable": self.billable,
            "kind": self.kind,
            "parents": [{"code": c, "description": d} for c, d in self.parents],
            "children": [{"code": c, "description": d} for c, d in self.children],
            "notes": {
                kind: [{"text": n.text, "at": n.at} for n in items]
                for kind, items in self.notes.items()
            },
            "seventh_characters": self.seventh_characters,
            "categories": sorted({m.category for m in self.categories}),
            "category_detail": [asdict(m) for m in self.categories],
            "hcc": [
                {"number": h.number, "label": h.label, "chronic": h.chronic} for h in self.hccs
            ],
            "em": None
            if em is None
            else {
                "setting": em.setting.value,
                "patient": em.patient.value,
                "level": em.level,
                "mdm": em.mdm.value if em.mdm else None,
                "time_min": em.time_min,
                "age_range": list(em.age_range) if em.age_range else None,
            },
        }


def describe(system: System, code: str) -> CodeInfo:
    """Full information on a resolved code (see :func:`resolve`)."""
    if system is System.ICD10CM:
        return CodeInfo(
            code=code,
            system=system,
            description=icd10cm.description(code),
            billable=icd10cm.is_billable(code),
            kind="diagnosis",
            parents=[(p, icd10cm.description(p)) for p in icd10cm.parents(code)],
            children=[(c, icd10cm.description(c)) for c in icd10cm.children(code)],
            notes={kind: found for kind in NOTE_KINDS if (found := icd10cm.notes(code, kind))},
            seventh_characters=icd10cm.seventh_characters(code),
            categories=memberships(code, system),
            hccs=hcc.hccs(code),
        )
    entry = cpt.procedure_table().require(code)
    return CodeInfo(
        code=entry.code,
        system=entry.system,
        description=entry.description,
        billable=True,
        kind=entry.kind.value,
        categories=memberships(entry.code, entry.system),
        em=entry.em,
    )
