import json
from pathlib import Path

import pytest

from medcode.policy import code
from medcode.policy.engine import emittable_codes
from medcode.policy.rules import RULES
from medcode.records import Encounter, RecordError, System
from medcode.terminology import cpt, icd10cm

ASSETS = Path(__file__).parents[1] / "assets"
EXAMPLE = json.loads((ASSETS / "encounter_example.json").read_text())


def encounter(**changes) -> Encounter:
    return Encounter.from_dict(EXAMPLE | changes)


def test_issue_example_codes_in_rule_order():
    result = code(encounter())
    assert result.code_list == [
        "E11.22",
        "N18.31",
        "I12.9",
        "R05.9",
        "R50.9",
        "J01.00",
        "N30.00",
        "B96.20",
        "Z85.3",
        "Z80.0",
        "Z79.4",
        "Z79.84",
        "99214",
        "93000",
    ]
    assert result.warnings == ()


def test_each_code_carries_rule_source_and_description():
    for item in code(encounter()).codes:
        assert item.rule in RULES
        assert item.source and item.description
    first = code(encounter()).codes[0]
    assert (first.rule, first.system) == ("combination.diabetes", System.ICD10CM)
    assert "I.A.15" in first.source


def test_json_output_shape():
    data = code(encounter()).to_dict()
    assert set(data) == {"id", "codes", "warnings"}
    assert set(data["codes"][0]) == {"code", "system", "description", "rule", "source"}


@pytest.mark.parametrize(
    ("problems", "where"),
    [
        ([{"code": "E11.99", "status": "active"}], "encounter.problems[0].code"),
        ([{"code": "I10", "status": "maybe"}], "encounter.problems[0].status"),
        (
            [{"code": "J18.9", "status": "uncertain", "symptoms": ["XX"]}],
            "encounter.problems[0].symptoms[0]",
        ),
        (
            [{"code": "N39.0", "status": "active", "organism": "E11.9"}],
            "encounter.problems[0].organism",
        ),
        ([{"code": "M25.569", "status": "active", "laterality": "up"}], "encounter.problems[0]"),
    ],
)
def test_malformed_encounter_rejected_with_path(problems, where):
    with pytest.raises(RecordError) as caught:
        code(Encounter.from_dict(EXAMPLE | {"problems": problems}))
    assert caught.value.where == where


def test_unknown_procedure_and_medication_rejected():
    with pytest.raises(RecordError, match=r"procedures\[0\]\.code"):
        code(encounter(procedures=[{"code": "12345"}]))
    with pytest.raises(RecordError, match=r"medications\[0\]\.class"):
        code(encounter(medications=[{"class": "unicorn_tears"}]))


def test_every_code_the_tables_can_emit_is_billable():
    emittable = emittable_codes()
    assert {"I13.2", "Z00.129", "Z79.4", "F02.80", "E08.22"} <= emittable
    not_billable = sorted(c for c in emittable if not icd10cm.is_billable(c))
    assert not_billable == []
    table = cpt.procedure_table()
    for entry in table.em_codes():
        assert entry.code in table


def test_walk_tabular_defaults_are_billable():
    """Every category the engine may be handed resolves to a billable code or a clear error."""
    from medcode.errors import CodeError
    from medcode.policy.specificity import resolve

    for category in [c for c in icd10cm.all_codes() if len(c) == 3]:
        try:
            result = resolve(category)
        except CodeError:
            continue
        assert all(icd10cm.is_billable(c) for c in result.codes), category


def test_packaged_example_is_the_documented_example():
    from medcode.datafiles import load_yaml, package_data

    packaged = Encounter.from_dict(load_yaml(package_data("examples/encounter.yaml")))
    assert packaged == encounter()


def test_each_code_lists_the_facts_behind_it():
    result = code(encounter())
    facts = dict(zip(result.code_list, result.facts, strict=True))
    assert facts["E11.22"] == ("problems[0]", "problems[1]")
    assert facts["I12.9"] == ("problems[2]", "problems[1]")
    assert facts["R05.9"] == ("problems[3].symptoms[0]",)
    assert facts["B96.20"] == ("problems[5]",)
    assert facts["Z79.84"] == ("medications[1]",)
    assert facts["99214"] == ("visit",)
    assert facts["93000"] == ("procedures[0]",)
    assert all(result.facts)
