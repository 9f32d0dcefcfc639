"""Walk every code in every shipped data file and check it exists in its code set."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from medcode.datafiles import load_yaml, package_data, read_csv_rows
from medcode.errors import CodeError
from medcode.records import System
from medcode.terminology.lookup import resolve

DATA = package_data("")
# Files that hold codes; examples/ holds encounters (checked by coding them, in
# tests/policy/test_engine.py); templates/, profiles/ and synth/ hold none, nor does the
# lexicon's clinical English (words and acronyms, checked in tests/terminology).
FILES = sorted(
    p
    for p in DATA.rglob("*")
    if p.suffix in {".csv", ".yaml", ".yml"}
    and not {"examples", "templates", "profiles", "synth"} & set(p.relative_to(DATA).parts)
    and p.name not in ("clinical_english.yaml", "context_cues.yaml")  # words, not codes
)


# Keys whose values are codes (or FIRST-LAST ranges of categories) in the data files.
CODE_KEYS = {
    "code",
    "codes",
    "documented",
    "diagnosis",
    "symptoms",
    "range",
    "base",
    "with",
    "etiology",
    "manifestation",
    "family",
    "not_with",
}


def codes_in_yaml(node: object, system: str | None = None) -> Iterator[tuple[str, str | None]]:
    if isinstance(node, dict):
        system = node.get("system", system)
        for key, value in node.items():
            if key in CODE_KEYS and isinstance(value, str | int):
                yield from ((end, system) for end in str(value).split("-"))
            elif key in CODE_KEYS and isinstance(value, list):
                for item in value:
                    if isinstance(item, str | int):
                        yield from ((end, system) for end in str(item).split("-"))
                    else:
                        yield from codes_in_yaml(item, system)
            else:
                yield from codes_in_yaml(value, system)
    elif isinstance(node, list):
        for item in node:
            yield from codes_in_yaml(item, system)


def codes_in_catalog(data: dict) -> Iterator[tuple[str, str | None]]:
    """Form codes, symptom codes (ICD-10-CM) and procedure codes (CPT/HCPCS) of concepts."""
    for concept in data["concepts"]:
        for form in concept["forms"]:
            yield str(form["code"]), None
        for symptom in concept.get("symptoms") or []:
            yield str(symptom), None
        for procedure in concept.get("procedures") or []:
            code = str(procedure["code"])
            yield code, "CPT" if code[0].isdigit() else "HCPCS"


PROCEDURE_KEYS = {"code", "codes", "replaced_by", "panel", "components", "not_with", "replace"}


def procedure_codes_in(node: object, key: str | None = None) -> Iterator[str]:
    """Every CPT/HCPCS code of policy/procedures.yaml (codes under PROCEDURE_KEYS)."""
    if isinstance(node, dict):
        for name, value in node.items():
            if key in PROCEDURE_KEYS and key == "replace":
                yield str(name)
            yield from procedure_codes_in(value, name if name in PROCEDURE_KEYS else key)
    elif isinstance(node, list):
        for item in node:
            yield from procedure_codes_in(item, key)
    elif key in PROCEDURE_KEYS and isinstance(node, str | int):
        yield str(node)


def codes_in(path: Path) -> list[tuple[str, str | None, str]]:
    if path.name == "procedures.yaml":
        return [
            (code, "CPT" if code[0].isdigit() else "HCPCS", path.name)
            for code in procedure_codes_in(load_yaml(path))
        ]
    if path.parent.name == "conditions":
        return [(code, system, path.name) for code, system in codes_in_catalog(load_yaml(path))]
    if path.suffix == ".csv":
        return [
            (row["code"], row.get("system") or None, f"{path.name}:{line}")
            for line, row in read_csv_rows(path, ("code",))
        ]
    return [(code, system, path.name) for code, system in codes_in_yaml(load_yaml(path))]


def test_data_files_exist():
    names = {p.name for p in FILES}
    assert {"cpt_hcpcs.csv", "advanced_illness.yaml", "frailty.yaml", "chronic.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(DATA)))
def test_every_code_is_valid(path):
    entries = codes_in(path)
    assert entries, f"{path} lists no codes"
    invalid = []
    for code, system, where in entries:
        try:
            found = resolve(code, System(system) if system else None)
        except CodeError as exc:
            invalid.append(f"{where}: {exc}")
            continue
        # An unqualified code in these files is ICD-10-CM.
        if system is None and all(s is not System.ICD10CM for s, _ in found):
            invalid.append(f"{where}: {code} is not an ICD-10-CM code")
    assert not invalid, "\n".join(invalid)


def test_an_item_cut_at_a_comma_in_a_flow_list_is_an_error(tmp_path):
    """'[lipid panel (HDL, LDL)]' reads as two items; the loader names the file and line."""
    from medcode.errors import DataFileError

    path = tmp_path / "cut.yaml"
    path.write_text('ok: ["quoted (a, b)", plain (c)]\ncut:\n  - [lipid panel (HDL, LDL)]\n')
    with pytest.raises(DataFileError, match=r"cut\.yaml:3: .*unbalanced brackets in 'lipid"):
        load_yaml(path)
    path.write_text("map: {source: WHO ATC C09AA (ACE inhibitors, plain)}\n")
    with pytest.raises(DataFileError, match=r":1: .*quote the item"):
        load_yaml(path, strings=True)
    path.write_text('ok: ["quoted (a, b)", plain (c)]\nblock:\n  - a (b, c)\n')
    assert load_yaml(path)["block"] == ["a (b, c)"]
