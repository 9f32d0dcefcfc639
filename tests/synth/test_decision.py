"""E/M elements read from a scenario's facts (synth/decision.py): worked examples with a
workload of 0/1 probabilities, so every step is deterministic."""

import dataclasses
import random

import pytest

from medcode.records import Setting, Status, VisitKind
from medcode.synth.catalog import shipped_catalog
from medcode.synth.decision import decide, drug_class, drug_name, shipped_rules
from medcode.synth.profiles import Workload, load_profile, profile_path
from medcode.synth.scenario import MedicationFact, ProblemFact, Result

NEVER = Workload(
    also_addressed=0,
    worsening=0,
    severe=0,
    drug_change=1,
    monitoring=1,
    order_tests=0,
    external_records=0,
    historian=0,
    interpretation=0,
    discussion=0,
    sdoh=0,
    admission={"straightforward": 0, "low": 0, "moderate": 1, "high": 1},
    explicit_mdm=1,
    time_over=0,
)


@pytest.fixture(scope="module")
def catalog():
    return shipped_catalog()


def profile(time_documented=0.0, **changes):
    base = load_profile(profile_path("primary_care"))
    workload = dataclasses.replace(NEVER, **changes)
    return dataclasses.replace(
        base,
        time_documented=time_documented,
        workload={s.value: workload for s in Setting},
    )


def fact(catalog, concept_id, status):
    concept = catalog.concepts[concept_id]
    return ProblemFact(concept, concept.forms[0].code, status, concept.phrases)


def result(catalog, key, value):
    measure = catalog.labs.get(key) or catalog.vitals[key]
    return Result(measure, value, "")


def run(prof, facts, labs=(), vitals=(), medications=(), procedures=(), **visit):
    options = {
        "kind": VisitKind.OFFICE,
        "setting": Setting.OUTPATIENT,
        "new_patient": False,
        "age": 50,
    }
    options.update(visit)
    return decide(
        random.Random(0),
        prof,
        facts=list(facts),
        labs=list(labs),
        vitals=list(vitals),
        medications=[MedicationFact(m, None) for m in medications],
        procedures=list(procedures),
        **options,
    )


def test_blood_pressure_above_goal_is_an_exacerbation_and_the_plan_says_why(catalog):
    hypertension = fact(catalog, "essential_hypertension", Status.CHRONIC)
    decision = run(
        profile(),
        [hypertension],
        vitals=[result(catalog, "bp_systolic", "152"), result(catalog, "bp_diastolic", "84")],
        medications=["lisinopril 20 mg daily"],
    )
    # chronic illness not at goal (moderate), no data (minimal), dose adjusted (moderate)
    assert (decision.problems_level, decision.data_level, decision.risk_level) == (
        "moderate",
        "straightforward",
        "moderate",
    )
    assert decision.level == "moderate"
    assert decision.courses == ("worse",)
    assert decision.plans[0] == "SBP 152 mmHg, above goal; adjust lisinopril dose"
    assert decision.management == "Prescription drug management: adjust lisinopril dose"
    assert decision.explicit and decision.line.startswith("MDM: moderate (problems moderate: 1")


def test_the_same_pressure_is_at_goal_from_age_60(catalog):
    hypertension = fact(catalog, "essential_hypertension", Status.CHRONIC)
    decision = run(
        profile(),
        [hypertension],
        vitals=[result(catalog, "bp_systolic", "145"), result(catalog, "bp_diastolic", "84")],
        medications=["lisinopril 20 mg daily"],
        age=70,
    )
    # JNC 8: below 150/90 at 60 and over; a stable chronic illness with its drug continued
    assert decision.courses == ("",)
    assert (decision.problems_level, decision.risk_level, decision.level) == (
        "low",
        "moderate",
        "low",
    )
    assert "continue lisinopril; tolerating well" in decision.plans[0]


def test_a_metabolic_panel_is_one_test_and_a_bmp_with_liver_tests_one_cmp(catalog):
    hypertension = fact(catalog, "essential_hypertension", Status.CHRONIC)
    labs = [result(catalog, k, v) for k, v in (("sodium", "139"), ("potassium", "4.1"))]
    decision = run(profile(), [hypertension], labs=labs)
    assert decision.data_items == ("reviewed BMP",) and decision.data_level == "straightforward"
    labs.append(result(catalog, "alt", "30"))
    decision = run(profile(), [hypertension], labs=labs)
    assert decision.data_items == ("reviewed CMP",) and decision.data_level == "straightforward"
    labs.append(result(catalog, "hemoglobin", "13.1"))
    decision = run(profile(), [hypertension], labs=labs)
    assert decision.data_items == ("reviewed CMP and CBC",) and decision.data_level == "low"


def test_a_lab_done_in_clinic_counts_an_ecg_billed_with_its_reading_does_not(catalog):
    diabetes = fact(catalog, "type2_diabetes", Status.CHRONIC)
    decision = run(
        profile(),
        [diabetes],
        labs=[result(catalog, "a1c", "7.1")],
        procedures=["83036", "93000"],
    )
    # the A1c result and the A1c done today are one test; the ECG is separately reported
    assert decision.data_items == ("A1c done in clinic today and reviewed",)
    assert decision.data_level == "straightforward"


def test_an_ed_admission_is_a_decision_regarding_hospitalization(catalog):
    pneumonia = fact(catalog, "pneumonia", Status.ACTIVE)
    decision = run(
        profile(),
        [pneumonia],
        vitals=[result(catalog, "temperature", "101.8")],
        medications=["ceftriaxone 1 g IV daily"],
        kind=VisitKind.EMERGENCY,
        setting=Setting.EMERGENCY,
    )
    # acute illness with systemic symptoms (fever) -> moderate; admission decided -> high
    assert decision.problems_level == "moderate" and decision.risk_level == "high"
    assert decision.risk_statement == "decision regarding hospitalization"
    assert decision.management.startswith("Decision regarding hospitalization: admit")
    assert "with systemic symptoms (T 101.8 F)" in decision.plans[0]


def test_only_problems_addressed_count(catalog):
    facts = [
        fact(catalog, "essential_hypertension", Status.CHRONIC),
        fact(catalog, "hypothyroidism", Status.CHRONIC),
    ]
    listed = run(profile(also_addressed=0), facts)
    addressed = run(profile(also_addressed=1), facts)
    assert listed.problems_level == "low" and addressed.problems_level == "moderate"
    assert "not" in listed.plans[1] or "managed elsewhere" in listed.plans[1]


def test_documented_time_falls_in_the_band_of_the_level(catalog):
    hypertension = fact(catalog, "essential_hypertension", Status.CHRONIC)
    for seed in range(20):
        decision = decide(
            random.Random(seed),
            profile(time_documented=1.0),
            kind=VisitKind.OFFICE,
            setting=Setting.OUTPATIENT,
            new_patient=False,
            age=50,
            facts=[hypertension],
            labs=[],
            vitals=[result(catalog, "bp_systolic", "150")],
            medications=[MedicationFact("lisinopril 20 mg daily", None)],
            procedures=[],
        )
        assert decision.level == "moderate" and 30 <= decision.minutes <= 39  # 99214's band


def test_drug_names_and_classes():
    rules = shipped_rules()
    assert drug_name("metformin 1000 mg twice daily") == "metformin"
    assert drug_name("insulin glargine 24 units at bedtime") == "insulin glargine"
    assert drug_name("heparin infusion per ACS protocol") == "heparin infusion"
    assert drug_class(rules, "acetaminophen 650 mg every 6 hours as needed") == "otc"
    assert drug_class(rules, "ibuprofen 600 mg every 6 hours as needed") == "rx"
    assert drug_class(rules, "warfarin 5 mg daily") == "intensive"
    assert drug_class(rules, "wrist splint at night") == "none"


def test_a_cmp_done_today_owns_the_printed_bmp_results(catalog):
    hypertension = fact(catalog, "essential_hypertension", Status.CHRONIC)
    labs = [result(catalog, k, v) for k, v in (("sodium", "139"), ("potassium", "4.1"))]
    decision = run(profile(), [hypertension], labs=labs, procedures=["80053"])
    assert decision.data_items == ("CMP done in clinic today and reviewed",)
    assert decision.data_level == "straightforward"  # one unique test


def test_minor_surgery_is_numeric_cpt_in_the_surgery_section():
    rules = shipped_rules()
    assert rules.is_minor("20610") and rules.is_minor("10060") and rules.is_minor("17000")
    # category II quality codes, endoscopy, the bladder scan and E/M are not minor surgery
    for code in ("1123F", "3008F", "43239", "45378", "51798", "99213", "93000"):
        assert not rules.is_minor(code), code


def test_an_office_e_m_beside_a_minor_procedure_counts_only_the_other_problems(catalog):
    """Audit round 8: a knee injection and a 99214 for the same knee. The decision to inject
    is in 20610's package: the E/M is levelled on the other problem alone, with no
    minor-surgery risk, and the note documents no E/M time."""
    knee = fact(catalog, "osteoarthritis_knee", Status.CHRONIC)
    thyroid = fact(catalog, "hypothyroidism", Status.CHRONIC)
    prof = profile(time_documented=1.0, also_addressed=0)
    alone = run(prof, [thyroid])
    injected = run(prof, [knee, thyroid], procedures=["20610"])
    assert injected.minutes is None
    assert injected.problems_level == alone.problems_level  # the thyroid only
    assert "minor surgery" not in injected.risk_statement
    assert injected.plans[1] and "not" not in injected.plans[1]  # the thyroid is addressed
    # the same visit without the injection counts both problems
    both = run(profile(also_addressed=1), [knee, thyroid])
    assert both.problems_level == "moderate"
