"""MDM levels worked by hand from the AMA 2023 table of MDM elements (two of three)."""

import pytest

from medcode.policy.mdm import (
    Data,
    DiagnosticTest,
    Elements,
    Problem,
    ProblemKind,
    Risk,
    RiskKind,
    assess,
    data_level,
    mdm_level,
    problems_level,
    risk_level,
)
from medcode.records import MDM

K = ProblemKind
SF, LOW, MOD, HIGH = MDM.STRAIGHTFORWARD, MDM.LOW, MDM.MODERATE, MDM.HIGH


def problems(*kinds):
    return tuple(Problem(k) for k in kinds)


def reviewed(*names):
    return tuple(DiagnosticTest(n, reviewed=True) for n in names)


def risk(*kinds):
    return tuple(Risk(k) for k in kinds)


@pytest.mark.parametrize(
    ("kinds", "level"),
    [
        ((), SF),
        ((K.SELF_LIMITED,), SF),
        ((K.SELF_LIMITED, K.SELF_LIMITED), LOW),  # 2 or more self-limited or minor problems
        ((K.STABLE_CHRONIC,), LOW),
        ((K.ACUTE_UNCOMPLICATED,), LOW),
        ((K.STABLE_ACUTE,), LOW),
        ((K.ACUTE_UNCOMPLICATED_HOSPITAL,), LOW),
        ((K.STABLE_CHRONIC, K.STABLE_CHRONIC), MOD),  # 2 or more stable chronic illnesses
        ((K.STABLE_CHRONIC, K.ACUTE_UNCOMPLICATED), LOW),  # two low problems stay low
        ((K.CHRONIC_EXACERBATION,), MOD),
        ((K.UNDIAGNOSED_NEW,), MOD),
        ((K.ACUTE_SYSTEMIC,), MOD),
        ((K.ACUTE_COMPLICATED_INJURY,), MOD),
        ((K.CHRONIC_EXACERBATION, K.CHRONIC_EXACERBATION), MOD),  # two moderate: not high
        ((K.CHRONIC_SEVERE_EXACERBATION,), HIGH),
        ((K.THREAT_TO_LIFE, K.SELF_LIMITED), HIGH),
    ],
)
def test_problem_levels(kinds, level):
    assert problems_level(problems(*kinds)).level is level


def test_problem_reason_counts_what_set_the_level():
    assert (
        problems_level(problems(K.STABLE_CHRONIC, K.STABLE_CHRONIC)).reason
        == "2 stable chronic illnesses"
    )
    found = problems_level(problems(K.CHRONIC_EXACERBATION, K.STABLE_CHRONIC))
    assert found.reason.startswith("1 chronic illness with exacerbation")


@pytest.mark.parametrize(
    ("data", "level"),
    [
        (Data(), SF),
        (Data(tests=reviewed("CBC")), SF),  # one test: still minimal
        (Data(tests=reviewed("CBC", "TSH")), LOW),  # category 1: 2 tests
        (Data(tests=reviewed("CBC"), external_notes=("cardiology",)), LOW),  # test + note
        (Data(historian="daughter"), LOW),  # category 2 of the limited level
        (Data(tests=reviewed("CBC"), historian="daughter"), LOW),  # 2 items, historian in cat 1
        (Data(tests=reviewed("CBC", "TSH"), historian="daughter"), MOD),  # 3 incl. historian
        (Data(tests=reviewed("CBC", "TSH", "lipid panel")), MOD),  # 3 unique tests
        (Data(interpretations=("ECG",)), MOD),  # independent interpretation alone
        (Data(discussions=("cardiology",)), MOD),  # discussion alone
        (Data(tests=reviewed("CBC", "TSH", "BNP"), interpretations=("ECG",)), HIGH),
        (Data(interpretations=("chest X-ray",), discussions=("surgery",)), HIGH),
        # one test + historian (2 items of category 1) + discussion (category 3): 1 category
        (Data(tests=reviewed("CBC"), historian="EMS", discussions=("hospitalist",)), MOD),
        (
            Data(
                tests=reviewed("CBC", "troponin"),
                historian="EMS",
                discussions=("hospitalist",),
            ),
            HIGH,
        ),
    ],
)
def test_data_levels(data, level):
    assert data_level(data).level is level


def test_a_panel_is_one_test():
    # sodium, potassium and creatinine resulted in one basic metabolic panel: one test
    bmp = tuple(
        DiagnosticTest(name, reviewed=True, panel="basic metabolic panel")
        for name in ("sodium", "potassium", "creatinine")
    )
    data = Data(tests=bmp)
    assert data.unique_tests() == ("basic metabolic panel",)
    assert data_level(data).level is SF
    assert data_level(Data(tests=(*bmp, DiagnosticTest("TSH", reviewed=True)))).level is LOW


def test_a_test_ordered_and_reviewed_counts_once():
    tests = (
        DiagnosticTest("lipid panel", ordered=True),
        DiagnosticTest("Lipid  Panel", reviewed=True),
    )
    assert Data(tests=tests).unique_tests() == ("lipid panel",)
    assert data_level(Data(tests=tests)).level is SF
    both = (
        DiagnosticTest("troponin", ordered=True, reviewed=True),
        DiagnosticTest("CBC", ordered=True),
    )
    assert data_level(Data(tests=both)).level is LOW


def test_separately_reported_and_untouched_tests_do_not_count():
    tests = (
        DiagnosticTest("ECG", ordered=True, reviewed=True, separately_reported=True),
        DiagnosticTest("CBC", reviewed=True),
        DiagnosticTest("TSH"),  # neither ordered nor reviewed
    )
    assert Data(tests=tests).unique_tests() == ("CBC",)
    assert data_level(Data(tests=tests)).level is SF


def test_external_notes_count_once_per_source():
    data = Data(tests=reviewed("CBC"), external_notes=("cardiology", "cardiology"))
    assert data.unique_sources() == ("cardiology",)
    assert data_level(data).level is LOW
    three = Data(tests=reviewed("CBC"), external_notes=("cardiology", "hospital discharge"))
    assert data_level(three).level is MOD


@pytest.mark.parametrize(
    ("kinds", "level"),
    [
        ((), SF),
        ((RiskKind.MINIMAL,), SF),
        ((RiskKind.OTC_DRUGS,), LOW),
        ((RiskKind.MINOR_SURGERY, RiskKind.THERAPY), LOW),
        ((RiskKind.PRESCRIPTION_DRUG_MANAGEMENT, RiskKind.OTC_DRUGS), MOD),
        ((RiskKind.SOCIAL_DETERMINANTS,), MOD),
        ((RiskKind.INTENSIVE_MONITORING,), HIGH),
        ((RiskKind.PRESCRIPTION_DRUG_MANAGEMENT, RiskKind.HOSPITALIZATION), HIGH),
        ((RiskKind.DNR_OR_DEESCALATION,), HIGH),
    ],
)
def test_risk_levels(kinds, level):
    assert risk_level(risk(*kinds)).level is level


@pytest.mark.parametrize(
    ("elements", "level"),
    [
        # 99212: a cold (minimal), no data, OTC advice (low): two of three at least minimal
        (Elements(problems(K.SELF_LIMITED), Data(), risk(RiskKind.OTC_DRUGS)), SF),
        # 99213: one stable chronic illness (low), refill with monitoring (moderate), one lab
        (
            Elements(
                problems(K.STABLE_CHRONIC),
                Data(tests=reviewed("TSH")),
                risk(RiskKind.PRESCRIPTION_DRUG_MANAGEMENT),
            ),
            LOW,
        ),
        # 99214: two stable chronic illnesses (moderate) and prescription drug management
        (
            Elements(
                problems(K.STABLE_CHRONIC, K.STABLE_CHRONIC),
                Data(),
                risk(RiskKind.PRESCRIPTION_DRUG_MANAGEMENT),
            ),
            MOD,
        ),
        # 99214 by data and risk: one stable chronic illness, CMP + A1c + UACR reviewed
        (
            Elements(
                problems(K.STABLE_CHRONIC),
                Data(tests=reviewed("CMP", "hemoglobin A1c", "urine albumin")),
                risk(RiskKind.PRESCRIPTION_DRUG_MANAGEMENT),
            ),
            MOD,
        ),
        # moderate problems but minimal data and OTC risk: low (the lowest two decide)
        (Elements(problems(K.ACUTE_SYSTEMIC), Data(), risk(RiskKind.OTC_DRUGS)), LOW),
        # 99215: severe exacerbation and a decision regarding hospitalization
        (
            Elements(
                problems(K.CHRONIC_SEVERE_EXACERBATION),
                Data(tests=reviewed("BNP")),
                risk(RiskKind.HOSPITALIZATION),
            ),
            HIGH,
        ),
        # high problems, extensive data, moderate risk: high
        (
            Elements(
                problems(K.THREAT_TO_LIFE),
                Data(
                    tests=reviewed("CBC", "BMP", "troponin"),
                    interpretations=("ECG",),
                ),
                risk(RiskKind.PRESCRIPTION_DRUG_MANAGEMENT),
            ),
            HIGH,
        ),
        # high problems and high risk need not wait for data
        (
            Elements(problems(K.THREAT_TO_LIFE), Data(), risk(RiskKind.HOSPITALIZATION)),
            HIGH,
        ),
    ],
)
def test_mdm_is_two_of_three(elements, level):
    assert mdm_level(elements) is level


def test_the_line_names_each_element_and_its_reason():
    found = assess(
        Elements(
            problems(K.STABLE_CHRONIC, K.STABLE_CHRONIC),
            Data(
                tests=(
                    DiagnosticTest("sodium", reviewed=True, panel="BMP"),
                    DiagnosticTest("potassium", reviewed=True, panel="BMP"),
                    DiagnosticTest("TSH", ordered=True),
                )
            ),
            risk(RiskKind.PRESCRIPTION_DRUG_MANAGEMENT),
        )
    )
    assert found.level is MOD
    assert found.line() == (
        "MDM: moderate (problems moderate: 2 stable chronic illnesses; data limited: "
        "2 unique tests (BMP, TSH); risk moderate: prescription drug management)"
    )
