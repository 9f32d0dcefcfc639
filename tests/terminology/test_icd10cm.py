import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcode.errors import CodeError
from medcode.terminology import icd10cm


@pytest.mark.parametrize("spelling", ["e11.22", "E1122", " E11.22 ", "e 11.22", "E11.22"])
def test_normalize_spellings(spelling):
    assert icd10cm.normalize(spelling) == "E11.22"


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [("i10", "I10"), ("t360x5a", "T36.0X5A"), ("w19.xxxa", "W19.XXXA"), ("U071", "U07.1")],
)
def test_normalize_other_shapes(spelling, expected):
    assert icd10cm.normalize(spelling) == expected


@pytest.mark.parametrize("bad", ["XY", "E1", "11.22", "E11.2.2", "E1.122", "E11.22345", "E-11", ""])
def test_malformed_codes_raise(bad):
    with pytest.raises(CodeError, match="malformed"):
        icd10cm.normalize(bad)


def test_valid_and_unknown():
    assert icd10cm.is_valid("E11.22") and icd10cm.is_valid("e1122")
    assert not icd10cm.is_valid("E11.99")
    assert not icd10cm.is_valid("XYZ")
    with pytest.raises(CodeError, match="not an ICD-10-CM code"):
        icd10cm.require("E11.99")


def test_billable_versus_category():
    assert icd10cm.is_billable("E11.22")
    assert icd10cm.is_billable("I10")
    assert not icd10cm.is_billable("E11.2")
    assert not icd10cm.is_billable("E11")
    assert not icd10cm.is_billable("S72.001")  # needs its 7th character
    assert icd10cm.is_billable("S72.001A")
    assert not icd10cm.is_billable("E11.99")


def test_description_and_hierarchy():
    assert icd10cm.description("e1122") == (
        "Type 2 diabetes mellitus with diabetic chronic kidney disease"
    )
    assert icd10cm.parents("E11.22") == ["E11.2", "E11", "E08-E13", "4"]
    assert icd10cm.children("E11.2") == ["E11.21", "E11.22", "E11.29"]
    assert icd10cm.children("E11.22") == []
    assert icd10cm.description("E08-E13") == "Diabetes mellitus (E08-E13)"


def test_category_named_like_its_block_is_not_its_own_parent():
    assert icd10cm.parents("Z66") == ["21"]
    assert "Z66" in icd10cm.all_codes()
    assert icd10cm.all_codes().count("B20") == 1


def test_excludes1_inherited_from_category():
    texts = [note.text for note in icd10cm.excludes1("E11.22")]
    assert "type 1 diabetes mellitus (E10.-)" in texts
    assert all(n.at != "E11.22" for n in icd10cm.excludes1("E11.22"))
    assert icd10cm.excludes1("E11.22", inherited=False) == []
    refs = [ref for note in icd10cm.excludes1("E11") for ref in note.references()]
    assert ("E10", "E10") in refs


def test_excludes2():
    texts = [note.text for note in icd10cm.excludes2("J44.9")]
    assert "chronic bronchitis NOS (J42)" in texts


def test_use_additional_code_and_code_first():
    uses = icd10cm.use_additional_code("E11.22")
    assert uses[0].at == "E11.22"
    assert uses[0].references() == [("N18.1", "N18.6")]
    assert any(("Z79.4", "Z79.4") in note.references() for note in uses)
    first = icd10cm.code_first("N18.3")
    assert any(("E11.22", "E11.22") in note.references() for note in first)


def test_referenced_codes_parses_ranges_and_dashes():
    assert icd10cm.referenced_codes("stage (N18.1-N18.6), (O24.4-) and (E10.-)") == [
        ("N18.1", "N18.6"),
        ("O24.4", "O24.4"),
        ("E10", "E10"),
    ]
    assert icd10cm.referenced_codes("hypertensive CKD (I12.-, I13.-)") == [
        ("I12", "I12"),
        ("I13", "I13"),
    ]


def test_in_range():
    assert icd10cm.in_range("N18.31", "N18.1", "N18.6")
    assert icd10cm.in_range("N18.6", "N18.1", "N18.6")
    assert not icd10cm.in_range("N18.9", "N18.1", "N18.6")
    assert icd10cm.in_range("E10.22", "E10", "E10")


def test_seventh_character_definitions_walk_up_the_hierarchy():
    fracture = icd10cm.seventh_characters("S72.001")
    assert fracture["A"] == "initial encounter for closed fracture"
    assert "K" in fracture and fracture["S"] == "sequela"
    assert icd10cm.seventh_characters("T36.0X5") == {
        "A": "initial encounter",
        "D": "subsequent encounter",
        "S": "sequela",
    }
    assert icd10cm.seventh_characters("E11.22") == {}


@pytest.mark.parametrize(
    ("code", "char", "full"),
    [
        ("S72.001", "A", "S72.001A"),
        ("T36.0X5", "A", "T36.0X5A"),
        ("t360x5", "d", "T36.0X5D"),
        ("W19", "A", "W19.XXXA"),
        ("S06.0X0", "S", "S06.0X0S"),
    ],
)
def test_with_seventh_pads_with_placeholder_x(code, char, full):
    assert icd10cm.with_seventh(code, char) == full
    assert icd10cm.is_billable(full)


@pytest.mark.parametrize(
    ("code", "char", "problem"),
    [
        ("S72.001", "Z", "not allowed"),
        ("E11.22", "A", "takes no 7th character"),
        ("S72.0", "A", "needs more characters"),
        ("S72.001A", "A", "already has 7 characters"),
    ],
)
def test_with_seventh_rejects(code, char, problem):
    with pytest.raises(CodeError, match=problem):
        icd10cm.with_seventh(code, char)


def test_letter_in_second_position_april_2026():
    # QA0: neurodevelopmental disorders related to genetic variants, new in the 2026 tabular.
    assert icd10cm.normalize("qa00101") == "QA0.0101"
    assert icd10cm.is_billable("QA0.0101")
    assert icd10cm.parents("QA0.01") == ["QA0.0", "QA0", "17"]
    assert not icd10cm.is_valid("XYZ")


def test_referenced_codes_ignore_abbreviations_in_parentheses():
    assert icd10cm.referenced_codes("anaemia (NOS) in AIDS (B20) and (QA0.-)") == [
        ("B20", "B20"),
        ("QA0", "QA0"),
    ]


_SAMPLE = icd10cm.all_codes()[::97]


@settings(max_examples=300, deadline=None)
@given(
    code=st.sampled_from(_SAMPLE),
    lower=st.booleans(),
    drop_dot=st.booleans(),
    pad=st.sampled_from(["", " ", "  ", "\t"]),
)
def test_any_spelling_normalises_back(code, lower, drop_dot, pad):
    spelled = code.lower() if lower else code
    spelled = spelled.replace(".", "") if drop_dot else spelled
    assert icd10cm.normalize(f"{pad}{spelled}{pad}") == code
    assert icd10cm.is_valid(f"{pad}{spelled}{pad}")
