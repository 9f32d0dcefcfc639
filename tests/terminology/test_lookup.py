import pytest

from medcode.errors import CodeError
from medcode.records import System
from medcode.terminology.lookup import describe, resolve


def test_resolve_icd_and_cpt():
    assert resolve("e1122") == [(System.ICD10CM, "E11.22")]
    assert resolve("99214") == [(System.CPT, "99214")]
    assert resolve("g0438") == [(System.HCPCS, "G0438")]


def test_undotted_codes_resolve_by_table():
    # E0100 is the HCPCS cane and not an ICD-10-CM code (E01.00 does not exist).
    assert resolve("E0100") == [(System.HCPCS, "E0100")]
    with pytest.raises(CodeError, match="not an ICD-10-CM code"):
        resolve("E01.00")  # dotted input is never HCPCS
    # J1100 is a HCPCS drug code and also ICD-10-CM J11.00 (influenza with pneumonia); only
    # the ICD reading is in medcode's tables, so only it is returned.
    assert (System.ICD10CM, "J11.00") in resolve("J1100")


def test_system_restriction():
    assert resolve("E1122", System.ICD10CM) == [(System.ICD10CM, "E11.22")]
    with pytest.raises(CodeError):
        resolve("E11.22", System.CPT)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("XYZ", "not an ICD-10-CM code"),
        ("E1!", "malformed code"),
        ("E11.99", "not an ICD-10-CM code"),
        ("27447", "not in medcode's CPT table"),
        ("", "empty code"),
    ],
)
def test_resolve_errors(text, problem):
    with pytest.raises(CodeError, match=problem):
        resolve(text)


def test_describe_not_billable_lists_children():
    info = describe(System.ICD10CM, "E11.2")
    assert not info.billable
    assert [code for code, _ in info.children] == ["E11.21", "E11.22", "E11.29"]
    assert info.to_dict()["billable"] is False


def test_describe_em_code():
    info = describe(System.CPT, "99214")
    data = info.to_dict()
    assert data["kind"] == "em" and data["em"]["level"] == 4 and data["em"]["mdm"] == "moderate"
    assert "office" in data["description"].lower()


def test_describe_icd_json_has_notes_categories_hcc():
    data = describe(System.ICD10CM, "E11.22").to_dict()
    assert data["description"] == "Type 2 diabetes mellitus with diabetic chronic kidney disease"
    assert data["hcc"][0]["number"] == 37
    assert "chronic" in data["categories"]
    assert data["notes"]["use_additional_code"][0]["at"] == "E11.22"
