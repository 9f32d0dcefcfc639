import pytest

from medcode.terminology import hcc


@pytest.mark.parametrize(
    ("code", "number"), [("E11.22", 37), ("I50.22", 226), ("N18.6", 326), ("J44.9", 280)]
)
def test_known_v28_payment_hccs(code, number):
    found = hcc.hccs(code)
    assert [h.number for h in found] == [number]
    assert found[0].label


def test_spelling_does_not_matter():
    assert hcc.hccs("e1122") == hcc.hccs("E11.22")


def test_codes_without_hcc():
    assert hcc.hccs("I10") == []  # hypertension carries no V28 payment HCC
    assert hcc.hccs("J06.9") == []


def test_code_mapping_to_two_hccs():
    assert [h.number for h in hcc.hccs("E08.311")] == [37, 298]


def test_chronic_flag():
    assert hcc.hccs("E11.22")[0].chronic
