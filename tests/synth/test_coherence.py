"""Clinical coherence: a 2,000-note sample (both profiles) breaks no rule, and each rule
catches a hand-made incoherent scenario."""

import copy
import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest

from medcode.errors import DataFileError
from medcode.policy import code as policy_code
from medcode.policy.engine import CodingResult
from medcode.records import Episode, Problem, Procedure, Status, VisitKind
from medcode.synth import clinical, coherence
from medcode.synth.catalog import shipped_catalog
from medcode.synth.generate import SynthConfig, _world, generate_scenarios
from medcode.synth.sampler import _NORMAL_EXAM
from medcode.synth.scenario import MedicationChange, MedicationFact, ProblemFact, Result

N_PER_PROFILE = 1000


@pytest.fixture(scope="module")
def sample():
    """1,000 notes per profile, generated in-process as ``medcode synth`` generates them
    (about 25 s on the 2-core development machine)."""
    notes = {}
    started = time.perf_counter()
    for profile in ("primary_care", "hospital_ed"):
        config = SynthConfig(profile=profile, n=N_PER_PROFILE, seed=13)
        notes[profile] = [(s, r, t) for s, r, t, _ in generate_scenarios(config, 0)]
    elapsed = time.perf_counter() - started
    assert sum(len(v) for v in notes.values()) == 2 * N_PER_PROFILE
    notes["seconds"] = elapsed
    return notes


def test_a_2000_note_sample_breaks_no_rule(sample):
    found = []
    for profile in ("primary_care", "hospital_ed"):  # patient ids repeat across profiles
        found += coherence.check_corpus(sample[profile])
    assert found == [], "\n".join(str(v) for v in found[:20])


def test_the_sample_exercises_the_rules(sample):
    every = sample["primary_care"] + sample["hospital_ed"]
    kinds = {s.encounter.visit.kind for s, _, _ in every}
    assert {VisitKind.EMERGENCY, VisitKind.HOSPITAL_DISCHARGE, VisitKind.ANNUAL_WELLNESS} <= kinds
    assert any(f.control == "uncontrolled" for s, _, _ in every for f in s.problems)
    assert any(f.control == "exacerbation" for s, _, _ in every for f in s.problems)
    assert any(s.medication_changes for s, _, _ in every)
    assert any(f.episode is Episode.INITIAL for s, _, _ in every for f in s.problems)
    assert any('"' in t for _, _, t in every)  # the patient's words, quoted
    patients = {}
    for profile in ("primary_care", "hospital_ed"):
        for s, _, _ in sample[profile]:
            patients.setdefault((profile, s.patient_id), []).append(s)
    assert sum(len(v) > 1 for v in patients.values()) > 100
    for notes in patients.values():  # the same patient keeps clinic, hospital and history
        assert len({(s.patient.name, s.patient.dob) for s in notes}) == 1


# -- hand-made incoherent scenarios -------------------------------------------------------


def _pick(sample, predicate, profile=None):
    profiles = [profile] if profile else ["primary_care", "hospital_ed"]
    for name in profiles:
        for scenario, result, text in sample[name]:
            if predicate(scenario):
                return copy.deepcopy(scenario), result, text
    pytest.skip("no scenario of that kind in the sample")


def _fact(concept_id, status=Status.CHRONIC, code=None, **extra):
    world = _world(SynthConfig())
    concept = shipped_catalog().concepts[concept_id]
    form = next((f for f in concept.forms if f.code == code), concept.forms[0])
    phrases = world.sampler.phrases[concept.id, form.code]
    return ProblemFact(concept, form.code, status, phrases, **extra)


def _with_problems(scenario, facts):
    scenario.problems = list(facts)
    problems = tuple(
        Problem(f.code, f.status, f.symptoms, episode=f.episode, laterality=f.side) for f in facts
    )
    scenario.encounter = dataclasses.replace(scenario.encounter, problems=problems)
    return scenario


def _vital(scenario, key, value):
    scenario.vitals = [
        Result(r.measure, value, r.flag) if r.measure.key == key else r for r in scenario.vitals
    ]
    return scenario


def _empty(scenario):
    return CodingResult(scenario.encounter.id, (), (), ())


def _rules(found):
    return {v.rule for v in found}


def _office(s):
    return s.encounter.visit.kind is VisitKind.OFFICE and not s.encounter.visit.new_patient


def _ed(s):
    return s.encounter.visit.kind is VisitKind.EMERGENCY


def test_an_emergency_visit_is_not_for_a_stable_chronic_problem_or_a_screening(sample):
    scenario, _, _ = _pick(sample, _ed)
    _with_problems(
        scenario, [_fact("essential_hypertension"), _fact("screening_lipid", Status.ACTIVE)]
    )
    found = coherence.check_visit_reason(scenario, _empty(scenario))
    assert any("stable chronic" in v.message for v in found)
    assert any("screening" in v.message for v in found)


def test_a_discharge_summary_comes_from_a_hospital(sample):
    scenario, result, _ = _pick(
        sample, lambda s: s.encounter.visit.kind is VisitKind.HOSPITAL_DISCHARGE
    )
    assert coherence.check_visit_reason(scenario, result) == []
    scenario.facility = "Springfield Family Medicine"
    assert "visit_reason" in _rules(coherence.check_visit_reason(scenario, result))


def test_z68_and_screening_codes_are_not_first_listed_out_of_place(sample):
    scenario, result, _ = _pick(sample, _office)
    z68 = dataclasses.replace(result.codes[0], code="Z68.35")
    first = dataclasses.replace(result, codes=(z68, *result.codes[1:]))
    assert any("Z68" in v.message for v in coherence.check_visit_reason(scenario, first))
    screening = dataclasses.replace(result.codes[0], code="Z12.31")
    first = dataclasses.replace(result, codes=(screening, *result.codes[1:]))
    assert any("screening" in v.message for v in coherence.check_visit_reason(scenario, first))


def test_well_controlled_hypertension_is_not_154_over_95(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("essential_hypertension", control="controlled")])
    _vital(_vital(scenario, "bp_systolic", "154"), "bp_diastolic", "95")
    found = coherence.check_vitals(scenario, _empty(scenario))
    assert any("controlled with bp_systolic 154" in v.message for v in found)


def _reports_pressure(s):
    from medcode.policy.procedures import shipped_procedure_rules

    codes = {p.code for p in s.encounter.procedures}
    return bool(codes & shipped_procedure_rules().blood_pressure_codes)


def test_the_bp_quality_code_goes_with_the_measure(sample):
    """Round 4 of the audit: coders report 3074F-3080F at every outpatient visit of a
    hypertensive adult (HEDIS CBP), so the gold does, and nowhere else."""
    scenario, result, _ = _pick(sample, _reports_pressure, "primary_care")
    assert any(c.code.startswith("I1") for c in result.codes)
    assert not any("BP quality" in v.message for v in coherence.check_vitals(scenario, result))
    kept = tuple(p for p in scenario.encounter.procedures if not p.code.endswith("F"))
    scenario.encounter = dataclasses.replace(scenario.encounter, procedures=kept)
    found = coherence.check_vitals(scenario, result)
    assert any("BP quality code missing" in v.message for v in found)
    scenario, result, _ = _pick(sample, lambda s: _office(s) and not _reports_pressure(s))
    scenario.encounter = dataclasses.replace(
        scenario.encounter, procedures=(*scenario.encounter.procedures, Procedure("3074F"))
    )
    found = coherence.check_vitals(scenario, result)
    assert any("does not cover" in v.message for v in found)


def test_the_encounter_record_carries_the_printed_values(sample):
    scenario, result, _ = _pick(sample, _office)
    scenario.encounter = dataclasses.replace(scenario.encounter, vitals=None, date=None)
    assert "vitals" in _rules(coherence.check_vitals(scenario, result))
    assert "age" in _rules(coherence.check_age(scenario, result))


def test_obesity_class_and_bmi_code_follow_the_measured_bmi(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("obesity", code="E66.812")])
    _vital(scenario, "bmi", "31.2")
    result = policy_code(scenario.encounter)  # the record still holds the sampled BMI
    found = coherence.check_bmi(scenario, result)
    assert any("E66.812 with BMI 31.2" in v.message for v in found)
    assert any(v.message.startswith("Z68") for v in found)


def test_an_exam_does_not_contradict_itself_or_the_diagnoses(sample):
    scenario, result, _ = _pick(sample, _office)
    scenario.exam = [
        "end-expiratory wheezes bilaterally",
        "lungs clear to auscultation bilaterally",
    ]
    assert any("lungs" in v.message for v in coherence.check_exam(scenario, result))
    _with_problems(scenario, [_fact("unspecified_dementia", code="F03.B0")])
    scenario.exam = ["alert and oriented x3"]
    found = coherence.check_exam(scenario, _empty(scenario))
    assert any("normal orientation" in v.message for v in found)
    scenario.exam = ["regular rate and rhythm"]
    _vital(scenario, "heart_rate", "124")
    assert any(
        "heart_rate 124" in v.message for v in coherence.check_exam(scenario, _empty(scenario))
    )


def test_function_agrees_with_cognition(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("unspecified_dementia", code="F03.C0")])
    scenario.function = "independent in ADLs and IADLs"
    scenario.living = "lives alone and manages independently"
    found = coherence.check_function(scenario, _empty(scenario))
    assert len(found) == 2 and _rules(found) == {"function"}


def test_medications_fit_the_problems(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("coronary_artery_disease")])
    scenario.medications = [
        MedicationFact(name, None)
        for name in (
            "lisinopril 20 mg daily",
            "losartan 50 mg daily",
            "sertraline 50 mg daily",
            "escitalopram 10 mg daily",
            "sertraline 100 mg daily",
            "aspirin 81 mg daily",
            "wonderdrug 5 mg daily",
        )
    ]
    messages = [v.message for v in coherence.check_medications(scenario, _empty(scenario))]
    assert any("ACE inhibitor with angiotensin II receptor blocker" in m for m in messages)
    assert any("two selective serotonin reuptake inhibitors" in m for m in messages)
    assert any("sertraline twice" in m for m in messages)
    assert any("without HMG-CoA reductase inhibitor" in m for m in messages)
    assert any("no drug class" in m for m in messages)


def test_age_follows_the_dates_and_wellness_visits_are_for_65_and_over(sample):
    scenario, result, _ = _pick(
        sample, lambda s: s.encounter.visit.kind is VisitKind.ANNUAL_WELLNESS
    )
    assert coherence.check_age(scenario, result) == []
    scenario.patient = dataclasses.replace(scenario.patient, dob="1990-01-01")
    patient = dataclasses.replace(scenario.encounter.patient, age=60)
    scenario.encounter = dataclasses.replace(scenario.encounter, patient=patient)
    messages = [v.message for v in coherence.check_age(scenario, result)]
    assert any("born 1990-01-01" in m for m in messages)
    assert any("annual wellness visit at age 60" in m for m in messages)


def test_injuries_belong_to_injury_visits(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(
        scenario,
        [
            _fact("type2_diabetes"),
            _fact("hip_fracture", Status.CHRONIC, side="right", episode=Episode.INITIAL),
            _fact("accidental_fall", Status.ACTIVE, episode=Episode.INITIAL),
        ],
    )
    messages = [v.message for v in coherence.check_injury(scenario, _empty(scenario))]
    assert any("chronic problem" in m for m in messages)
    assert any("in a visit for E11.9" in m for m in messages)
    ed, _, _ = _pick(sample, _ed)
    _with_problems(
        ed, [_fact("ankle_sprain", Status.ACTIVE, side="left", episode=Episode.SUBSEQUENT)]
    )
    messages = [v.message for v in coherence.check_injury(ed, _empty(ed))]
    assert any("subsequent encounter in a emergency visit" in m for m in messages)
    _with_problems(ed, [_fact("syncope", Status.ACTIVE), _fact("accidental_fall", Status.ACTIVE)])
    assert any("no injury" in v.message for v in coherence.check_injury(ed, _empty(ed)))


def test_acute_problems_are_not_chronic(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("pneumonia", Status.CHRONIC)])
    assert "acute_chronic" in _rules(coherence.check_acute_chronic(scenario, _empty(scenario)))
    found = coherence.check_acute_chronic(scenario, _empty(scenario), "chronic acute bronchitis")
    assert any("text says" in v.message for v in found)


def test_exclusive_conditions_are_not_documented_together(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("obesity"), _fact("cachexia")])
    assert "conditions" in _rules(coherence.check_exclusive_conditions(scenario, _empty(scenario)))


def test_patient_words_are_quoted(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("urinary_incontinence", code="R32")])
    unquoted = "She reports trouble holding my urine.\nA/P: unspecified urinary incontinence."
    quoted = 'She reports "trouble holding my urine".\nA/P: unspecified urinary incontinence.'
    assert "lay_phrases" in _rules(
        coherence.check_lay_phrases(scenario, _empty(scenario), unquoted)
    )
    assert coherence.check_lay_phrases(scenario, _empty(scenario), quoted) == []


def test_new_patient_only_when_the_note_says_so(sample):
    scenario, result, text = _pick(sample, _office)
    assert coherence.check_new_patient(scenario, result, text) == []
    said = coherence.check_new_patient(scenario, result, "New patient visit. " + text)
    assert "new_patient" in _rules(said)
    visit = dataclasses.replace(scenario.encounter.visit, new_patient=True)
    scenario.encounter = dataclasses.replace(scenario.encounter, visit=visit)
    assert "new_patient" in _rules(coherence.check_new_patient(scenario, result, text))


def test_vaccines_fit_the_date_and_come_with_their_administration_and_z23(sample):
    scenario, _, _ = _pick(sample, _office)
    _with_problems(scenario, [_fact("essential_hypertension")])
    scenario.visit_date = "2024-10-01"
    procedures = tuple(Procedure(c) for c in ("90686", "90471", "G0008"))
    scenario.encounter = dataclasses.replace(
        scenario.encounter, procedures=procedures, date=dt.date(2024, 10, 1)
    )
    messages = [v.message for v in coherence.check_vaccines(scenario, _empty(scenario))]
    assert any("after 2024-06-30: 90656" in m for m in messages)
    assert any("without an immunization problem" in m for m in messages)
    scenario.encounter = dataclasses.replace(scenario.encounter, procedures=(Procedure("90656"),))
    messages = [v.message for v in coherence.check_vaccines(scenario, _empty(scenario))]
    assert any("without administration" in m for m in messages)


def test_one_patient_stays_the_same_patient(sample):
    scenario, result, _ = _pick(sample, _office)
    later = copy.deepcopy(scenario)
    later.visit_date = "2099-01-01"
    later.facility = "Elsewhere Primary Care"
    listed = {m.name for m in scenario.medications}
    drug = next(
        d
        for d in ("atorvastatin 40 mg daily", "ezetimibe 10 mg daily", "famotidine 20 mg daily")
        if d not in listed
    )
    later.medications = [*later.medications, MedicationFact(drug, None)]
    history = _fact("breast_cancer", Status.FAMILY_HISTORY, relative="mother")
    _with_problems(scenario, [*scenario.problems, history])
    _with_problems(later, [*later.problems, dataclasses.replace(history, relative="sister")])
    messages = [v.message for v in coherence.check_patient([(scenario, result), (later, result)])]
    assert any("Elsewhere Primary Care" in m for m in messages)
    assert any(f"{drug}' on the list with no documented start" in m for m in messages)
    assert any("family history of breast_cancer in sister" in m for m in messages)
    later.facility = scenario.facility
    later.medication_changes = [MedicationChange("start", drug, 0)]
    later.problems[-1] = history
    assert coherence.check_patient([(scenario, result), (later, result)]) == []


# -- the data ---------------------------------------------------------------------------


def test_the_tables_cover_the_catalog():
    rules = clinical.load_rules()
    catalog = shipped_catalog()
    for concept in catalog.concepts.values():
        for option in concept.medications:
            assert rules.drugs.match(option.name), (concept.id, option.name)
    for filler in _NORMAL_EXAM:
        assert rules.exam.classify(filler), filler
    for concept_id, control in rules.controls.items():
        concept = catalog.concepts[concept_id]
        codes = {f.code for f in concept.forms}
        for state in control.states.values():
            assert set(state.forms) <= codes and set(state.forms.values()) <= codes, concept_id
    for therapy in rules.drugs.therapy:
        assert therapy.concept in catalog.concepts
    for group, _ in rules.encounters.exclusive:
        assert group <= set(catalog.concepts), group - set(catalog.concepts)


@pytest.mark.parametrize(
    ("name", "loader", "text", "line", "message"),
    [
        (
            "drugs.yaml",
            clinical.load_drugs,
            "classes:\n  - {id: statin, label: statin, drugs: [atorvastatin], source: x}\n"
            "exclusive_groups:\n  - {classes: [statin, nonesuch], source: x}\nroutes: {}\n",
            4,
            "nonesuch",
        ),
        (
            "control.yaml",
            clinical.load_controls,
            "controls:\n  - concept: essential_hypertension\n    source: x\n    states:\n"
            "      calm:\n        cues: ['{x}']\n",
            6,
            "calm",
        ),
        (
            "findings.yaml",
            clinical.load_findings,
            "thresholds:\n  - {codes: [E66.811], measure: bmi, range: [35, 30], source: x}\n",
            2,
            "[low, high]",
        ),
        (
            "encounters.yaml",
            clinical.load_encounter_facts,
            "facilities: []\ninjury:\n  ranges: [S00-T99]\n  episodes: {}\n",
            3,
            "T99",
        ),
    ],
)
def test_a_bad_table_names_its_file_and_line(tmp_path: Path, name, loader, text, line, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFileError) as caught:
        loader(path)
    assert caught.value.line == line and message in str(caught.value)
    assert f"{name}:{line}" in str(caught.value)


def test_a_family_history_names_a_relative_of_the_conditions_sex_and_no_side(sample):
    """Found reading generated notes: "FHx rt ovarian cancer in brother"."""
    from medcode.synth.render import shipped_cues

    relatives = shipped_cues().relatives
    seen = 0
    for profile in ("primary_care", "hospital_ed"):
        for scenario, _, _ in sample[profile]:
            for fact in scenario.problems:
                if fact.status is not Status.FAMILY_HISTORY:
                    continue
                seen += 1
                assert fact.side is None, (fact.concept.id, fact.side)
                sex = relatives[fact.relative]
                assert fact.concept.sex.get(sex, 1) > 0, (fact.concept.id, fact.relative)
    assert seen > 100
