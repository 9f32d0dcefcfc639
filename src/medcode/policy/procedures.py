"""The procedure lines of a professional claim (``data/policy/procedures.yaml``): vaccine
products valid for the date of service, NCCI panel bundling, the professional component in
facility settings, screening codes only where they apply, CPT II blood-pressure codes from
the printed values, and Z23 with vaccine administration."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from medcode.datafiles import LineDict, load_yaml, package_data
from medcode.errors import CodeError, DataFileError
from medcode.policy.tables import parse_spec
from medcode.records import Encounter, RecordError
from medcode.terminology import cpt


@dataclass(frozen=True, slots=True)
class ProductValidity:
    code: str
    valid_until: dt.date
    replaced_by: str
    source: str


@dataclass(frozen=True, slots=True)
class Bundle:
    panel: str
    components: frozenset[str]
    source: str


@dataclass(frozen=True, slots=True)
class Screening:
    code: str
    settings: frozenset[str]
    not_with: frozenset[str]
    min_bmi: float | None
    source: str


# preventive medicine and wellness visits: no problem-oriented E/M for an add-on to go with
_PREVENTIVE_EM = re.compile(r"993[89]\d|G043[89]")


@dataclass(frozen=True, slots=True)
class ProcedureRules:
    vaccine_administration: frozenset[str]
    vaccine_diagnosis: str
    vaccine_source: str
    validity: dict[str, ProductValidity]
    bundles: tuple[Bundle, ...]
    facility_settings: frozenset[str]
    facility_replace: dict[str, str]
    facility_drop: frozenset[str]
    facility_source: str
    facility_drop_kinds: frozenset[str]
    # visit kind -> codes not on that visit's claim (the discharge-day claim holds the
    # discharging physician's services, not tests others read during the stay)
    facility_drop_at: dict[str, frozenset[str]]
    bundled_into_em: frozenset[str]
    with_em_replace: dict[str, str]
    with_em_source: str
    bundled_source: str
    screening: dict[str, Screening]
    systolic: tuple[tuple[int, str], ...]
    diastolic: tuple[tuple[int, str], ...]
    blood_pressure_source: str
    # when a BP quality code is reported (HEDIS Controlling High Blood Pressure): an
    # outpatient visit of a patient in the age range with one of these diagnoses coded
    pressure_reported_with: tuple = ()
    pressure_ages: tuple[int, int] = (18, 85)
    pressure_settings: frozenset[str] = frozenset()

    def reports_pressure(self, codes, age: int, setting: str) -> bool:
        """Whether a visit with these coded diagnoses reports its BP quality codes."""
        from medcode.policy.facts import matches_any

        low, high = self.pressure_ages
        return (
            setting in self.pressure_settings
            and low <= age <= high
            and any(matches_any(code, self.pressure_reported_with) for code in codes)
        )

    @property
    def blood_pressure_codes(self) -> frozenset[str]:
        return frozenset(code for _, code in (*self.systolic, *self.diastolic))


@dataclass(frozen=True, slots=True)
class ProcedureLine:
    """A procedure kept on the claim, or changed/dropped, with the rule and why."""

    code: str
    index: int  # the encounter's procedures[index] it comes from (-1: derived from vitals)
    rule: str
    source: str
    message: str = ""
    vaccine: bool = False  # a vaccine administration code (gives Z23)


def _cpt(path: Path, line: int, value: object) -> str:
    try:
        return cpt.procedure_table().require(str(value)).code
    except CodeError as exc:
        raise DataFileError(path, line, f"invalid code {exc.code!r}: {exc.problem}") from None


def _text(path: Path, item: object, key: str) -> str:
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, str) or not value.strip():
        line = getattr(item, "line", None)
        raise DataFileError(path, line, f"missing or empty {key!r}")
    return value.strip()


def _section(path: Path, data: object, key: str) -> LineDict:
    node = data.get(key) if isinstance(data, dict) else None
    if not isinstance(node, dict):
        raise DataFileError(path, getattr(data, "line", None), f"missing section {key!r}")
    return node


def _list(path: Path, node: object, key: str) -> list:
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, list):
        raise DataFileError(path, getattr(node, "line", None), f"{key!r} must be a list")
    return value


def _bands(path: Path, node: LineDict, key: str) -> tuple[tuple[int, str], ...]:
    bands = []
    for item in _list(path, node, key):
        below = item.get("below") if isinstance(item, dict) else None
        if not isinstance(below, int):
            raise DataFileError(path, getattr(item, "line", None), "'below' must be a number")
        bands.append((below, _cpt(path, item.line, item.get("code"))))
    if [b for b, _ in bands] != sorted(b for b, _ in bands):
        raise DataFileError(path, node.line, f"{key} bands must be in increasing order")
    return tuple(bands)


def load_procedure_rules(path: str | Path | None = None) -> ProcedureRules:
    """Load and validate ``procedures.yaml`` (default: the shipped one)."""
    path = Path(path) if path else package_data("policy/procedures.yaml")
    data = load_yaml(path)
    vaccine = _section(path, data, "vaccine_administration")
    validity = {}
    for item in _list(path, data, "product_validity"):
        until = item.get("valid_until")
        if not isinstance(until, dt.date):
            raise DataFileError(path, item.line, "valid_until must be a date YYYY-MM-DD")
        code = _cpt(path, item.line, item.get("code"))
        validity[code] = ProductValidity(
            code, until, _cpt(path, item.line, item.get("replaced_by")), _text(path, item, "source")
        )
    bundles = tuple(
        Bundle(
            _cpt(path, item.line, item.get("panel")),
            frozenset(_cpt(path, item.line, c) for c in _list(path, item, "components")),
            _text(path, item, "source"),
        )
        for item in _list(path, data, "bundles")
    )
    facility = _section(path, data, "facility_professional")
    replace = facility.get("replace") or {}
    screening = {}
    for item in _list(path, data, "screening"):
        code = _cpt(path, item.line, item.get("code"))
        min_bmi = item.get("min_bmi")
        if min_bmi is not None and not isinstance(min_bmi, int | float):
            raise DataFileError(path, item.line, "min_bmi must be a number")
        screening[code] = Screening(
            code,
            frozenset(item.get("settings") or ()),
            frozenset(_cpt(path, item.line, c) for c in item.get("not_with") or ()),
            min_bmi,
            _text(path, item, "source"),
        )
    pressure = _section(path, data, "blood_pressure")
    bundled = _section(path, data, "bundled_into_em")
    with_em = _section(path, data, "with_em_replace")
    with_em_codes = with_em.get("codes")
    if not isinstance(with_em_codes, dict):
        raise DataFileError(path, with_em.line, "with_em_replace.codes must map code to code")
    return ProcedureRules(
        vaccine_administration=frozenset(
            _cpt(path, vaccine.line, c) for c in _list(path, vaccine, "codes")
        ),
        vaccine_diagnosis=_text(path, vaccine, "diagnosis"),
        vaccine_source=_text(path, vaccine, "source"),
        validity=validity,
        bundles=bundles,
        facility_settings=frozenset(_list(path, facility, "settings")),
        facility_replace={
            _cpt(path, facility.line, k): _cpt(path, facility.line, v) for k, v in replace.items()
        },
        facility_drop=frozenset(_cpt(path, facility.line, c) for c in facility.get("drop") or ()),
        facility_source=_text(path, facility, "source"),
        facility_drop_kinds=frozenset(facility.get("drop_kinds") or ()),
        facility_drop_at={
            str(kind): frozenset(_cpt(path, facility.line, c) for c in codes)
            for kind, codes in (facility.get("drop_at") or {}).items()
        },
        bundled_into_em=frozenset(
            _cpt(path, bundled.line, c) for c in _list(path, bundled, "codes")
        ),
        bundled_source=_text(path, bundled, "source"),
        with_em_replace={
            _cpt(path, with_em.line, k): _cpt(path, with_em.line, v)
            for k, v in with_em_codes.items()
        },
        with_em_source=_text(path, with_em, "source"),
        screening=screening,
        systolic=_bands(path, pressure, "systolic"),
        diastolic=_bands(path, pressure, "diastolic"),
        blood_pressure_source=_text(path, pressure, "source"),
        pressure_reported_with=tuple(
            parse_spec(path, pressure.line, v) for v in _list(path, pressure, "reported_with")
        ),
        pressure_ages=_ages(path, pressure),
        pressure_settings=frozenset(_list(path, pressure, "settings")),
    )


def _ages(path: Path, node: LineDict) -> tuple[int, int]:
    ages = node.get("ages")
    if not (isinstance(ages, list) and len(ages) == 2 and all(isinstance(a, int) for a in ages)):
        raise DataFileError(path, node.line, "'ages' must be [lowest, highest] in years")
    return ages[0], ages[1]


@cache
def shipped_procedure_rules() -> ProcedureRules:
    """The shipped procedure rules, loaded once."""
    return load_procedure_rules()


def _band(bands: tuple[tuple[int, str], ...], value: int) -> str:
    return next(code for below, code in bands if value < below)


@dataclass
class ProcedureOutcome:
    """The procedure lines kept (in order) and what happened to the others."""

    kept: list[ProcedureLine]
    removed: list[ProcedureLine]
    immunization: bool
    warnings: list[tuple[str, str]]


def procedure_lines(
    encounter: Encounter, em_code: str | None, rules: ProcedureRules | None = None
) -> ProcedureOutcome:
    """Apply the claim rules to the encounter's documented procedures, in documented order."""
    rules = rules or shipped_procedure_rules()
    table = cpt.procedure_table()
    lines: list[ProcedureLine] = []
    removed: list[ProcedureLine] = []
    warnings: list[tuple[str, str]] = []
    setting = encounter.setting.value
    bmi = encounter.vitals.bmi if encounter.vitals else None
    pressure_done = False
    for index, procedure in enumerate(encounter.procedures):
        try:
            code = table.require(procedure.code).code
        except CodeError as exc:
            raise RecordError(f"encounter.procedures[{index}].code", str(exc)) from None
        validity = rules.validity.get(code)
        if validity and encounter.date and encounter.date > validity.valid_until:
            removed.append(
                ProcedureLine(
                    code,
                    index,
                    "procedure.product_date",
                    validity.source,
                    f"{code} not valid after {validity.valid_until}: {validity.replaced_by}",
                )
            )
            code = validity.replaced_by
            lines.append(ProcedureLine(code, index, "procedure.product_date", validity.source))
            continue
        if em_code and code in rules.with_em_replace and not _PREVENTIVE_EM.match(em_code):
            new = rules.with_em_replace[code]
            removed.append(
                ProcedureLine(
                    code,
                    index,
                    "procedure.with_em",
                    rules.with_em_source,
                    f"{code} with an E/M visit is reported as the add-on {new}",
                )
            )
            lines.append(ProcedureLine(new, index, "procedure.with_em", rules.with_em_source))
            continue
        if em_code and code in rules.bundled_into_em:
            removed.append(
                ProcedureLine(
                    code,
                    index,
                    "procedure.bundled",
                    rules.bundled_source,
                    f"{code} is bundled into the E/M visit",
                )
            )
            continue
        if setting in rules.facility_settings:
            dropped_here = rules.facility_drop_at.get(encounter.visit.kind.value, frozenset())
            if (
                code in rules.facility_drop
                or code in dropped_here
                or table[code].kind in rules.facility_drop_kinds
            ):
                removed.append(
                    ProcedureLine(
                        code,
                        index,
                        "procedure.facility",
                        rules.facility_source,
                        f"{code} was read by another physician during the stay: not on the "
                        "discharge-day claim"
                        if code in dropped_here
                        else f"{code} is the facility's technical part: not on the professional "
                        "claim",
                    )
                )
                continue
            if code in rules.facility_replace:
                new = rules.facility_replace[code]
                removed.append(
                    ProcedureLine(
                        code,
                        index,
                        "procedure.facility",
                        rules.facility_source,
                        f"{code} in a facility setting: the professional component {new}",
                    )
                )
                lines.append(ProcedureLine(new, index, "procedure.facility", rules.facility_source))
                continue
        screening = rules.screening.get(code)
        if screening:
            why = None
            if screening.settings and setting not in screening.settings:
                why = f"{code} applies only in {', '.join(sorted(screening.settings))} settings"
            elif em_code in screening.not_with:
                why = f"{code} is not billed with {em_code}"
            elif screening.min_bmi is not None and (bmi is None or bmi < screening.min_bmi):
                why = f"{code} needs a documented BMI of {screening.min_bmi:g} or more"
            if why:
                removed.append(
                    ProcedureLine(code, index, "procedure.screening", screening.source, why)
                )
                continue
        if code in rules.blood_pressure_codes:
            vitals = encounter.vitals
            if vitals is None or vitals.systolic is None:
                warnings.append(("quality", f"{code}: no blood pressure documented, not reported"))
                removed.append(
                    ProcedureLine(
                        code,
                        index,
                        "procedure.blood_pressure",
                        rules.blood_pressure_source,
                        "no blood pressure documented",
                    )
                )
                continue
            if not pressure_done:
                pressure_done = True
                for derived in (
                    _band(rules.systolic, vitals.systolic),
                    _band(rules.diastolic, vitals.diastolic),
                ):
                    lines.append(
                        ProcedureLine(
                            derived,
                            index,
                            "procedure.blood_pressure",
                            rules.blood_pressure_source,
                            f"{vitals.systolic}/{vitals.diastolic} mmHg",
                        )
                    )
            continue
        lines.append(ProcedureLine(code, index, "procedure.documented", ""))
    # NCCI: a component billed with the panel that contains it is billed once (the panel).
    present = {line.code for line in lines}
    kept = []
    seen: set[str] = set()
    for line in lines:
        panel = next(
            (b for b in rules.bundles if line.code in b.components and b.panel in present), None
        )
        if panel is not None:
            removed.append(
                ProcedureLine(
                    line.code,
                    line.index,
                    "procedure.bundled",
                    panel.source,
                    f"{line.code} is part of {panel.panel}: billed once",
                )
            )
            continue
        if line.code in seen:
            continue
        seen.add(line.code)
        kept.append(line)
    kept = [
        ProcedureLine(line.code, line.index, line.rule, line.source, line.message, True)
        if line.code in rules.vaccine_administration
        else line
        for line in kept
    ]
    immunization = any(line.vaccine for line in kept)
    return ProcedureOutcome(kept, removed, immunization, warnings)
