"""The claim rules of data/policy/procedures.yaml and the organism/BMI tables: loading,
validation with file and line, and the rules on hand-made encounters."""

import datetime as dt

import pytest

from medcode.datafiles import package_data
from medcode.errors import DataFileError
from medcode.policy.procedures import load_procedure_rules, procedure_lines
from medcode.policy.tables import load_organisms, shipped_tables
from medcode.records import Encounter


def encounter(**extra):
    data = {
        "id": "e1",
        "setting": "outpatient",
        "patient": {"age": 50, "sex": "F"},
        "visit": {"kind": "office", "mdm": "low"},
    }
    return Encounter.from_dict(data | extra)


def test_shipped_rules_load():
    rules = load_procedure_rules()
    assert rules.validity["90686"].replaced_by == "90656"
    assert rules.validity["90686"].valid_until == dt.date(2024, 6, 30)
    assert {"93005", "93010"} <= next(b for b in rules.bundles if b.panel == "93000").components


def test_unknown_code_names_file_and_line(tmp_path):
    path = tmp_path / "procedures.yaml"
    text = package_data("policy/procedures.yaml").read_text()
    path.write_text(text.replace('panel: "80061"', 'panel: "99999"'))
    with pytest.raises(DataFileError) as caught:
        load_procedure_rules(path)
    message = str(caught.value)
    assert "procedures.yaml" in message and "99999" in message
    line = text.splitlines().index('  - panel: "80061"') + 1
    assert f":{line}" in message


def test_product_kept_before_the_season_change():
    before = encounter(date="2024-03-01", procedures=[{"code": "90686"}, {"code": "90471"}])
    after = encounter(date="2024-09-15", procedures=[{"code": "90686"}, {"code": "90471"}])
    undated = encounter(procedures=[{"code": "90686"}])
    assert [line.code for line in procedure_lines(before, "99213").kept] == ["90686", "90471"]
    assert [line.code for line in procedure_lines(after, "99213").kept] == ["90656", "90471"]
    assert [line.code for line in procedure_lines(undated, "99213").kept] == ["90686"]
    assert procedure_lines(after, "99213").immunization


def test_blood_pressure_bands_edges():
    def codes(systolic, diastolic):
        e = encounter(
            vitals={"systolic": systolic, "diastolic": diastolic},
            procedures=[{"code": "3074F"}, {"code": "3078F"}],
        )
        return [line.code for line in procedure_lines(e, "99213").kept]

    assert codes(129, 79) == ["3074F", "3078F"]
    assert codes(130, 80) == ["3075F", "3079F"]
    assert codes(139, 89) == ["3075F", "3079F"]
    assert codes(140, 90) == ["3077F", "3080F"]


def test_blood_pressure_code_without_vitals_warns():
    outcome = procedure_lines(encounter(procedures=[{"code": "3074F"}]), "99213")
    assert outcome.kept == [] and [kind for kind, _ in outcome.warnings] == ["quality"]


def test_obesity_counselling_needs_bmi_30():
    low = encounter(vitals={"bmi": 28.0}, procedures=[{"code": "G0447"}])
    high = encounter(vitals={"bmi": 30.0}, procedures=[{"code": "G0447"}])
    assert procedure_lines(low, "99213").kept == []
    assert [line.code for line in procedure_lines(high, "99213").kept] == ["G0447"]


def test_organism_table_rejects_non_b_codes(tmp_path):
    path = tmp_path / "organisms.yaml"
    path.write_text("- infection: [J18]\n  organism: [A41.9]\n  code: J15.0\n  source: x\n")
    with pytest.raises(DataFileError, match=r"organisms.yaml:1.*B95-B97"):
        load_organisms(path)


def test_bmi_bands_from_the_tabular():
    bmi = shipped_tables().bmi
    assert bmi.adult_code(19.9) == "Z68.1"
    assert bmi.adult_code(30.0) == "Z68.30"
    assert bmi.adult_code(39.9) == "Z68.39"
    assert bmi.adult_code(40.0) == "Z68.41"
    assert bmi.adult_code(44.9) == "Z68.41"
    assert bmi.adult_code(72.3) == "Z68.45"
