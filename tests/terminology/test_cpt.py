from pathlib import Path

import pytest

from medcode.errors import CodeError, DataFileError
from medcode.records import MDM, System
from medcode.terminology import cpt

ASSETS = Path(__file__).parent.parent / "assets"


@pytest.fixture(scope="module")
def table() -> cpt.ProcedureTable:
    return cpt.load_table()


def test_normalize():
    assert cpt.normalize(" g0438 ") == "G0438"
    assert cpt.system_of("99214") is System.CPT
    assert cpt.system_of("E0100") is System.HCPCS
    for bad in ("9921", "992145", "Z9999", "W0100", "E11.22", ""):
        with pytest.raises(CodeError, match="malformed"):
            cpt.normalize(bad)


@pytest.mark.parametrize(
    "codes",
    [
        [f"9920{i}" for i in range(2, 6)] + [f"9921{i}" for i in range(1, 6)],
        ["99221", "99222", "99223", "99231", "99232", "99233", "99238", "99239"],
        [f"9928{i}" for i in range(1, 6)],
        [f"9938{i}" for i in range(1, 8)] + [f"9939{i}" for i in range(1, 8)],
        ["G0438", "G0439", "99497", "99495", "99496", "99490"],
    ],
)
def test_required_em_codes_present(table, codes):
    for code in codes:
        assert table[code].kind is cpt.Kind.EM, code
        assert table[code].em is not None


def test_office_em_levels_and_mdm(table):
    em = table["99214"].em
    assert (em.setting, em.patient, em.level, em.mdm, em.time_min) == (
        cpt.EMSetting.OFFICE,
        cpt.EMPatient.ESTABLISHED,
        4,
        MDM.MODERATE,
        30,
    )
    assert table["99205"].em.patient is cpt.EMPatient.NEW
    assert table["99205"].em.mdm is MDM.HIGH
    assert table["99211"].em.mdm is None
    assert table["99238"].em.patient is cpt.EMPatient.DISCHARGE
    assert table["99385"].em.age_range == (18, 39)
    assert table["99397"].em.age_range == (65, None)


def test_other_kinds_and_frailty_devices(table):
    kinds = {entry.kind for entry in table.values()}
    assert kinds == set(cpt.Kind)
    common = [
        e
        for e in table.values()
        if e.kind in (cpt.Kind.PROCEDURE, cpt.Kind.LAB, cpt.Kind.IMAGING, cpt.Kind.IMMUNISATION)
    ]
    assert len(common) >= 30
    for device in ("E0100", "E0143", "K0001", "E0250", "E1390"):
        assert table[device].kind is cpt.Kind.DEVICE
        assert table[device].system is System.HCPCS


def test_require_unknown_code(table):
    with pytest.raises(CodeError, match="not in medcode's CPT table"):
        table.require("27447")


def test_licensed_file_adds_and_replaces(table):
    merged = table.with_licensed(ASSETS / "licensed_cpt.csv")
    assert merged["99214"].description == "LICENSED TEXT FOR 99214"
    assert merged["99214"].licensed_description
    assert merged["99214"].em == table["99214"].em  # E/M facts kept
    assert merged["27447"].kind is cpt.Kind.PROCEDURE  # from the public CPT section ranges
    assert merged["0001F"].system is System.CPT
    assert "27447" not in table  # the original is untouched
    assert len(merged) == len(table) + 2


def test_licensed_file_with_bad_code_names_file_and_line(table):
    with pytest.raises(DataFileError) as caught:
        table.with_licensed(ASSETS / "licensed_cpt_bad.csv")
    assert caught.value.line == 3
    assert "licensed_cpt_bad.csv:3" in str(caught.value) and "'9921'" in str(caught.value)


def test_table_with_bad_code_names_file_and_line():
    with pytest.raises(DataFileError) as caught:
        cpt.load_table(ASSETS / "cpt_table_bad.csv")
    assert caught.value.line == 3 and "G04X8" in str(caught.value)


def test_procedure_table_reads_env(monkeypatch):
    monkeypatch.setenv(cpt.LICENSED_ENV, str(ASSETS / "licensed_cpt.csv"))
    assert "27447" in cpt.procedure_table()
    monkeypatch.delenv(cpt.LICENSED_ENV)
    assert "27447" not in cpt.procedure_table()


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("27447", cpt.Kind.PROCEDURE),
        ("71046", cpt.Kind.IMAGING),
        ("80053", cpt.Kind.LAB),
        ("90686", cpt.Kind.IMMUNISATION),
        ("99214", cpt.Kind.EM),
        ("0001F", cpt.Kind.SERVICE),
    ],
)
def test_kind_from_public_ranges(code, kind):
    assert cpt.kind_from_range(code) is kind
