import json
from pathlib import Path

import pytest

from medcode.records import (
    MDM,
    Code,
    CodedNote,
    Encounter,
    Evidence,
    RecordError,
    Setting,
    Status,
    System,
    VisitKind,
)

ASSETS = Path(__file__).parent / "assets"


def example() -> dict:
    return json.loads((ASSETS / "encounter_example.json").read_text())


def test_encounter_contract_parses_every_field():
    encounter = Encounter.from_dict(example())
    assert encounter.setting is Setting.OUTPATIENT
    assert encounter.visit.kind is VisitKind.OFFICE and encounter.visit.mdm is MDM.MODERATE
    assert encounter.patient.age == 67
    assert [p.status for p in encounter.problems][:4] == [
        Status.ACTIVE,
        Status.ACTIVE,
        Status.ACTIVE,
        Status.UNCERTAIN,
    ]
    assert encounter.problems[3].symptoms == ("R05.9", "R50.9")
    assert encounter.problems[5].organism == "B96.20"
    assert [m.drug_class for m in encounter.medications] == ["insulin", "oral_hypoglycemic"]
    assert encounter.procedures[0].code == "93000"


def test_encounter_round_trips_through_json():
    encounter = Encounter.from_dict(example())
    again = Encounter.from_dict(json.loads(json.dumps(encounter.to_dict())))
    assert again == encounter


@pytest.mark.parametrize(
    ("patch", "where"),
    [
        ({"setting": "home"}, "encounter.setting"),
        ({"visit": {"kind": "office", "mdm": "extreme"}}, "encounter.visit.mdm"),
        ({"patient": {"age": -1, "sex": "F"}}, "encounter.patient.age"),
        ({"problems": [{"code": "I10", "status": "maybe"}]}, "encounter.problems[0].status"),
        ({"problems": [{"code": "I10", "colour": "red"}]}, "encounter.problems[0]"),
        ({"procedures": "93000"}, "encounter.procedures"),
    ],
)
def test_bad_encounter_names_the_field(patch, where):
    data = example() | patch
    with pytest.raises(RecordError) as caught:
        Encounter.from_dict(data)
    assert caught.value.where == where


def test_missing_required_field():
    data = example()
    del data["visit"]
    with pytest.raises(RecordError, match=r"encounter\.visit: missing"):
        Encounter.from_dict(data)


def test_coded_note_round_trip_and_span_check():
    note = CodedNote(
        id="n1",
        text="Type 2 DM with CKD 3a.",
        codes=(Code("E11.22", System.ICD10CM, rule="I.A.15", source="ICD-10-CM guidelines"),),
        evidence=(Evidence("E11.22", 0, 9, "problems[0]"),),
        metadata={"note_type": "office_progress", "split": "train"},
    )
    assert CodedNote.from_dict(json.loads(json.dumps(note.to_dict()))) == note
    bad = note.to_dict() | {"evidence": [{"code": "E11.22", "start": 0, "end": 99}]}
    with pytest.raises(RecordError, match="past the text"):
        CodedNote.from_dict(bad)
