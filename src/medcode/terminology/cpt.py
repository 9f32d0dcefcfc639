"""CPT and HCPCS Level II codes: the project's own table, plus a licensed CPT file if supplied.

CPT descriptors are AMA-copyrighted, so ``data/cpt_hcpcs.csv`` holds code numbers with
descriptions written in this project's own words. A user holding a CPT licence can point
``MEDCODE_CPT_FILE`` (or ``--cpt-file``) at a CSV with columns ``code,description``: its
codes are added and its descriptions replace ours. HCPCS Level II is public domain.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from medcode.datafiles import package_data, read_csv_rows
from medcode.errors import CodeError, DataFileError
from medcode.records import MDM, System

LICENSED_ENV = "MEDCODE_CPT_FILE"
COLUMNS = (
    "code",
    "system",
    "kind",
    "description",
    "em_setting",
    "em_patient",
    "em_level",
    "mdm",
    "time_min",
    "age_range",
)

_CPT = re.compile(r"^(?:\d{5}|\d{4}[FTU])$")
_HCPCS = re.compile(r"^[A-V]\d{4}$")


class Kind(StrEnum):
    EM = "em"
    PROCEDURE = "procedure"
    LAB = "lab"
    IMAGING = "imaging"
    IMMUNISATION = "immunisation"
    DEVICE = "device"
    SERVICE = "service"


class EMSetting(StrEnum):
    OFFICE = "office"
    HOSPITAL = "hospital"
    EMERGENCY = "emergency"
    PREVENTIVE = "preventive"
    ANNUAL_WELLNESS = "annual_wellness"
    CARE_MANAGEMENT = "care_management"
    CONSULT = "consult"


class EMPatient(StrEnum):
    NEW = "new"
    ESTABLISHED = "established"
    INITIAL = "initial"
    SUBSEQUENT = "subsequent"
    DISCHARGE = "discharge"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class EvaluationAndManagement:
    """What an E/M code stands for: setting, patient type, level and what qualifies it."""

    setting: EMSetting
    patient: EMPatient
    level: int
    mdm: MDM | None = None
    time_min: int | None = None
    age_range: tuple[int, int | None] | None = None


@dataclass(frozen=True, slots=True)
class ProcedureCode:
    """One CPT or HCPCS code with its kind and description (E/M details when it is E/M)."""

    code: str
    system: System
    kind: Kind
    description: str
    em: EvaluationAndManagement | None = None
    licensed_description: bool = False


def _compact(code: str) -> str:
    return str(code).strip().upper().replace(" ", "")


def looks_like(code: str) -> bool:
    """Whether ``code`` is spelled like a CPT or HCPCS code."""
    compact = _compact(code)
    return bool(_CPT.match(compact) or _HCPCS.match(compact))


def normalize(code: str) -> str:
    """Upper-case, stripped form of a CPT/HCPCS code; raise :class:`CodeError` if malformed."""
    compact = _compact(code)
    if not looks_like(compact):
        raise CodeError(
            str(code).strip(),
            "malformed CPT/HCPCS code: CPT is 5 digits (99214) or 4 digits and F/T/U, "
            "HCPCS a letter and 4 digits (G0438)",
        )
    return compact


def system_of(code: str) -> System:
    """CPT for numeric codes and category II/III, HCPCS for letter-first codes."""
    return System.HCPCS if normalize(code)[0].isalpha() else System.CPT


# Public CPT section ranges (AMA CPT code-range structure) used to classify licensed codes.
_CPT_SECTIONS: tuple[tuple[str, str, Kind], ...] = (
    ("00100", "01999", Kind.PROCEDURE),  # anaesthesia
    ("10004", "69990", Kind.PROCEDURE),  # surgery
    ("70010", "79999", Kind.IMAGING),  # radiology
    ("80047", "89398", Kind.LAB),  # pathology and laboratory
    ("90281", "90399", Kind.PROCEDURE),  # immune globulins
    ("90460", "90749", Kind.IMMUNISATION),  # vaccine administration and products
    ("90750", "99199", Kind.PROCEDURE),  # medicine
    ("99202", "99499", Kind.EM),  # evaluation and management
    ("99500", "99607", Kind.SERVICE),  # home health and medication management
)


def kind_from_range(code: str) -> Kind:
    """Kind of a CPT code from the public section ranges; SERVICE when outside them."""
    code = normalize(code)
    if not code.isdigit():
        return Kind.SERVICE
    for first, last, kind in _CPT_SECTIONS:
        if first <= code <= last:
            return kind
    return Kind.SERVICE


class ProcedureTable(Mapping[str, ProcedureCode]):
    """The CPT/HCPCS codes medcode knows, by normalised code."""

    def __init__(self, entries: Mapping[str, ProcedureCode]) -> None:
        self._entries = dict(entries)

    def __getitem__(self, code: str) -> ProcedureCode:
        return self._entries[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def require(self, code: str) -> ProcedureCode:
        """The entry for ``code``, or :class:`CodeError` when malformed or unknown."""
        compact = normalize(code)
        if compact not in self._entries:
            raise CodeError(compact, f"not in medcode's {system_of(compact)} table{_LICENCE_HINT}")
        return self._entries[compact]

    def em_codes(self) -> list[ProcedureCode]:
        """All E/M codes of the table."""
        return [entry for entry in self._entries.values() if entry.em is not None]

    def with_licensed(self, path: str | Path) -> ProcedureTable:
        """A copy with a licensed CPT file (CSV ``code,description``) merged in."""
        entries = dict(self._entries)
        for line, row in read_csv_rows(path, ("code", "description")):
            code = _checked_code(path, line, row["code"])
            if not row["description"]:
                raise DataFileError(path, line, f"code {code}: empty description")
            if code in entries:
                entries[code] = replace(
                    entries[code], description=row["description"], licensed_description=True
                )
            else:
                entries[code] = ProcedureCode(
                    code=code,
                    system=system_of(code),
                    kind=kind_from_range(code),
                    description=row["description"],
                    licensed_description=True,
                )
        return ProcedureTable(entries)


_LICENCE_HINT = f" (add licensed CPT codes with {LICENSED_ENV}=path/to/cpt.csv)"


def _checked_code(path: str | Path, line: int, raw: str) -> str:
    try:
        return normalize(raw)
    except CodeError as exc:
        raise DataFileError(path, line, f"invalid code {raw!r}: {exc.problem}") from None


def _parse_age_range(text: str) -> tuple[int, int | None]:
    low, _, high = text.partition("-")
    return int(low), (int(high) if high else None)


def _row_to_entry(path: str | Path, line: int, row: dict[str, str]) -> ProcedureCode:
    code = _checked_code(path, line, row["code"])

    def choice(enum: type[StrEnum], column: str) -> StrEnum:
        try:
            return enum(row[column])
        except ValueError:
            allowed = ", ".join(member.value for member in enum)
            raise DataFileError(
                path, line, f"code {code}: {column} {row[column]!r} not one of {allowed}"
            ) from None

    system = choice(System, "system")
    if system is System.ICD10CM or system is not system_of(code):
        raise DataFileError(path, line, f"code {code}: system {system} does not fit the code")
    kind = choice(Kind, "kind")
    if not row["description"]:
        raise DataFileError(path, line, f"code {code}: empty description")
    em_columns = ("em_setting", "em_patient", "em_level", "mdm", "time_min", "age_range")
    em = None
    if kind is Kind.EM:
        try:
            em = EvaluationAndManagement(
                setting=choice(EMSetting, "em_setting"),
                patient=choice(EMPatient, "em_patient"),
                level=int(row["em_level"]),
                mdm=choice(MDM, "mdm") if row["mdm"] else None,
                time_min=int(row["time_min"]) if row["time_min"] else None,
                age_range=_parse_age_range(row["age_range"]) if row["age_range"] else None,
            )
        except ValueError as exc:
            raise DataFileError(path, line, f"code {code}: bad E/M value ({exc})") from None
    elif any(row[column] for column in em_columns):
        raise DataFileError(path, line, f"code {code}: E/M columns filled for kind {kind}")
    return ProcedureCode(code, system, kind, row["description"], em)


def load_table(path: str | Path | None = None) -> ProcedureTable:
    """Load and validate a CPT/HCPCS table (default: the one shipped with medcode)."""
    path = path or package_data("cpt_hcpcs.csv")
    entries: dict[str, ProcedureCode] = {}
    for line, row in read_csv_rows(path, COLUMNS):
        entry = _row_to_entry(path, line, row)
        if entry.code in entries:
            raise DataFileError(path, line, f"code {entry.code} listed twice")
        entries[entry.code] = entry
    return ProcedureTable(entries)


_cached: dict[str | None, ProcedureTable] = {}


def procedure_table(licensed: str | Path | None = None) -> ProcedureTable:
    """The shipped table, merged with a licensed CPT file from ``licensed`` or
    ``$MEDCODE_CPT_FILE`` when given; cached per licensed path."""
    licensed = licensed or os.environ.get(LICENSED_ENV) or None
    key = str(licensed) if licensed else None
    if key not in _cached:
        table = _cached.get(None) or load_table()
        _cached[None] = table
        _cached[key] = table.with_licensed(licensed) if licensed else table
    return _cached[key]
