"""The policy's completion of a predicted code list (hand-worked cases)."""

import pytest

from medcode.model.backends import CodeValidator
from medcode.model.retriever import Lexicon
from medcode.policy.completion import complete, partner_rules
from medcode.policy.tables import shipped_tables


@pytest.fixture(scope="module")
def tables():
    return shipped_tables()


def named_as(code):
    return lambda family: code


def test_codes_listed_apart_are_combined(tables):
    # I.C.9.a: hypertension with heart failure is I11.0, the failure's type kept after it
    done = complete(["I10", "E78.5", "I50.22", "99214"], [0.9, 0.8, 0.7, 0.6], tables)
    assert done.codes == ["I11.0", "I50.22", "E78.5", "99214"]
    assert done.scores == [0.9, 0.7, 0.8, 0.6]  # the combination takes the base's score
    assert done.added == ["I11.0 (combines I10 and I50.22)"]
    assert done.dropped == ["I10 (combined into I11.0)"]
    # diabetes with CKD (combinations.yaml, partner: keep): E11.22 then the stage
    assert complete(["E11.9", "N18.4"], None, tables).codes == ["E11.22", "N18.4"]
    # both at once: the stage is a partner of each combination, listed once
    assert complete(["E11.9", "I10", "N18.31"], None, tables).codes == [
        "E11.22",
        "N18.31",
        "I12.9",
    ]
    # hyperglycemia (partner: drop) is said by E11.65 and goes
    done = complete(["E11.9", "R73.9"], None, tables)
    assert done.codes == ["E11.65"] and done.dropped == [
        "E11.9 (combined into E11.65)",
        "R73.9 (combined into E11.65)",
    ]
    # a complication of an already specific diabetes code adds the combination beside it
    assert complete(["E11.42", "N18.4"], None, tables).codes == ["E11.42", "E11.22", "N18.4"]


def test_a_combination_code_gets_its_partner(tables):
    # E11.22: "use additional code to identify stage of CKD": the stage the note names ...
    done = complete(["E11.22", "99214"], [0.5, 0.4], tables, named=named_as("N18.4"))
    assert done.codes == ["E11.22", "N18.4", "99214"] and done.scores == [0.5, 0.5, 0.4]
    assert done.added == ["N18.4 (use additional code with E11.22, named in the note)"]
    # ... else the unspecified stage
    assert complete(["E11.22"], None, tables).added == [
        "N18.9 (use additional code with E11.22, unspecified)"
    ]
    # a named code outside the family is not taken
    assert complete(["E11.22"], None, tables, named=named_as("I50.9")).codes == [
        "E11.22",
        "N18.9",
    ]
    # a listed member of the family is enough
    assert complete(["E11.22", "N18.30"], None, tables).codes == ["E11.22", "N18.30"]
    # I11.0 asks for the type of heart failure
    done = complete(["I11.0"], None, tables)
    assert done.codes == ["I11.0", "I50.9"]
    assert done.added == ["I50.9 (use additional code with I11.0, unspecified)"]
    # I12.0 (stage 5 or ESRD) has no unspecified stage: nothing is added unless named
    assert complete(["I12.0"], None, tables).codes == ["I12.0"]
    assert complete(["I12.0"], None, tables, named=named_as("N18.6")).codes == ["I12.0", "N18.6"]
    # outside the code set nothing is added
    assert complete(["E11.22"], None, tables, code_set={"E11.22"}).codes == ["E11.22"]


def test_the_hypertensive_ckd_code_agrees_with_the_stage(tables):
    done = complete(["I12.0", "N18.4"], None, tables)
    assert done.codes == ["I12.9", "N18.4"]
    assert done.added == ["I12.9 (agrees with CKD N18.4, replaces I12.0)"]
    assert done.dropped == ["I12.0 (disagrees with CKD N18.4)"]
    assert complete(["I13.0", "I50.32", "N18.6"], None, tables).codes == [
        "I13.2",
        "I50.32",
        "N18.6",
    ]
    # a stage the note names decides it as well
    assert complete(["I12.0"], None, tables, named=named_as("N18.31")).codes == [
        "I12.9",
        "N18.31",
    ]
    assert complete(["I12.9", "N18.31"], None, tables).added == []


def test_partner_rules_come_from_the_combination_tables(tables):
    rules = partner_rules(tables)
    (diabetic_ckd,) = rules["E11.22"]
    assert diabetic_ckd.default == "N18.9" and [s.text for s in diabetic_ckd.family] == ["N18"]
    (foot_ulcer,) = rules["E11.621"]
    assert foot_ulcer.default is None  # L97.4-/L97.5- have no single unspecified code
    assert {r.default for r in rules["I13.0"]} == {"I50.9", "N18.9"}
    assert [r.default for r in rules["I13.2"]] == ["I50.9", None]
    assert "E11.42" not in rules  # partner: drop


def test_the_validator_names_the_partner_from_the_note():
    lexicon = Lexicon()
    lexicon.add("chronic kidney disease stage 4", ["N18.4"])
    lexicon.add("chronic kidney disease stage 3a", ["N18.31"])
    validate = CodeValidator(lexicon=lexicon)
    note = "A/P: 1. type 2 diabetes. 2. chronic kidney disease stage 4, stable."
    assert validate(["E11.22"], [0.7], note).codes == ["E11.22", "N18.4"]
    # a negated mention names nothing: the unspecified stage
    note = "A/P: type 2 diabetes; no chronic kidney disease stage 4."
    assert validate(["E11.22"], None, note).codes == ["E11.22", "N18.9"]
    # without the note, the unspecified stage; with the completion off, nothing
    assert validate(["E11.22"]).codes == ["E11.22", "N18.9"]
    assert CodeValidator(policy=False)(["E11.22"]).codes == ["E11.22"]


def test_the_validator_reports_what_the_completion_replaced_in_the_reason():
    codes, scores, dropped, added = CodeValidator()(["I10", "I50.22", "XYZ"], [0.6, 0.5, 0.1])
    assert codes == ["I11.0", "I50.22"] and scores == [0.6, 0.5]
    assert dropped == ["XYZ"]  # invalid output only: I10 is named in the reason instead
    assert added == ["I11.0 (combines I10 and I50.22)"]


def test_hypertensive_heart_disease_without_failure(tables):
    # I.C.9.a.1: hypertension with cardiomegaly is I11.9; the I51.7 code is not kept
    done = complete(["I10", "I51.7"], None, tables)
    assert done.codes == ["I11.9"]
    # I11.9 asks for no heart-failure partner; I13.10 only for the CKD stage
    assert "I11.9" not in partner_rules(tables)
    assert [r.default for r in partner_rules(tables)["I13.10"]] == ["N18.9"]
    assert complete(["I10", "I51.7", "N18.4"], None, tables).codes == ["I13.10", "N18.4"]
