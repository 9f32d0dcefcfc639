"""The prompt's note context: the setting and patient, as the API, a notes file or a corpus
give them."""

import json

import pytest

from medcode.errors import MedcodeError
from medcode.model.prompt import (
    ANSWER_HEADER,
    INSTRUCTION,
    Candidate,
    NoteContext,
    build_prompt,
    left_out,
    ordered,
)


def test_the_context_is_read_from_the_api_s_fields_and_a_corpus_encounter():
    assert NoteContext.of("inpatient", {"age": 67, "sex": "female"}) == NoteContext(
        "inpatient", 67, "female"
    )
    # a corpus encounter writes the sex as F/M; other and unknown are left unsaid
    encounter = {"setting": "emergency", "patient": {"age": 4, "sex": "M"}, "visit": {}}
    assert NoteContext.of_encounter(encounter) == NoteContext("emergency", 4, "male")
    assert NoteContext.of_encounter(json.dumps(encounter)) == NoteContext("emergency", 4, "male")
    assert NoteContext.of(None, {"sex": "unknown"}) is None
    assert NoteContext.of("Outpatient", {"sex": "other"}) == NoteContext("outpatient")
    assert NoteContext.of_encounter(None) is None


@pytest.mark.parametrize(
    ("setting", "patient", "problem"),
    [
        ("ward", None, "setting 'ward'"),
        (None, {"age": "67"}, "patient age '67'"),
        (None, {"age": 200}, "patient age 200"),
        (None, {"sex": "x"}, "patient sex 'x'"),
        (None, ["age", 67], "patient: expected an object"),
    ],
)
def test_a_wrong_context_field_is_named(setting, patient, problem):
    with pytest.raises(MedcodeError, match=problem):
        NoteContext.of(setting, patient)


def test_the_prompt_states_the_context_between_the_instruction_and_the_note():
    context = NoteContext("inpatient", 67, "female")
    prompt = build_prompt("Pneumonia, likely aspiration.", context=context)
    assert prompt == (
        f"{INSTRUCTION}\n\nSetting: inpatient\nPatient: 67-year-old female\n\n"
        f"Note:\nPneumonia, likely aspiration.\n{ANSWER_HEADER}"
    )
    assert NoteContext(sex="male").lines() == ["Patient: male"]
    assert NoteContext(age=3).lines() == ["Patient: 3-year-old"]
    # without a context the prompt is the one every earlier adapter was trained on
    assert build_prompt("HTN.") == f"{INSTRUCTION}\n\nNote:\nHTN.\n{ANSWER_HEADER}"


def test_the_notes_left_without_context_are_a_fixed_share():
    ids = [f"n5-{i:08d}" for i in range(4000)]
    chosen = [i for i in ids if left_out(i, 0.2)]
    assert 0.18 < len(chosen) / len(ids) < 0.22
    assert chosen == [i for i in ids if left_out(i, 0.2)]  # the same notes every time
    assert not any(left_out(i, 0.0) for i in ids) and all(left_out(i, 1.0) for i in ids)


def test_candidates_are_listed_by_score_or_by_code():
    found = [Candidate("I10", score=0.9), Candidate("E11.9", score=0.5), Candidate("E11.22")]
    assert ordered(found, "score") == found
    assert [c.code for c in ordered(found, "code")] == ["E11.22", "E11.9", "I10"]
    prompt = build_prompt("HTN, DM2.", "candidates", ordered(found, "code"))
    assert prompt.index("E11.22") < prompt.index("E11.9") < prompt.index("I10")
    with pytest.raises(ValueError, match="unknown candidate order 'rank'"):
        ordered(found, "rank")
