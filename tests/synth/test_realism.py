"""The realism metrics against hand-computed values on tiny hand-written notes."""

import subprocess
import sys
from pathlib import Path

import pytest

from medcode.errors import DataFileError, MedcodeError
from medcode.synth.realism import (
    card_lines,
    classify,
    clinician_lines,
    load_rules,
    measure,
    percentile,
    repeat_thresholds,
    split_sentences,
    summary_rows,
)

ASSETS = Path(__file__).parents[1] / "assets" / "synth"


def note(index: int, *lines: str) -> str:
    """A note with a registration header, a heading alone and a signature around ``lines``."""
    return "\n".join(
        [
            "Riverside Family Practice",
            f"Patient: Test Person {index}    MRN: 1000{index:03d}",
            "Provider: A. Clinician",
            "",
            "ASSESSMENT AND PLAN:",
            *lines,
            "-- A. Clinician",
        ]
    )


# 17 clinician lines; "return if worse." is in 4 notes and "stable on metformin." in 2.
NOTES = [
    note(1, "Return if worse.", "Cough for three days.", "Likely viral bronchitis."),
    note(
        2, "Return if worse.", "Knee pain after a fall.", "Sprain of the knee, initial encounter."
    ),
    note(
        3,
        "Return if worse.",
        "Type 2 diabetes mellitus without complications.",
        "Stable on metformin.",
        "Flu vaccine given today.",
    ),
    note(4, "Return if worse.", "Rash on both arms.", "Contact dermatitis due to a new soap."),
    note(
        5,
        "Follow up in one week.",
        "Headache, unspecified. Migraine NOS suspected.",
        "Stable on metformin.",
        "Biopsy tolerated without complications.",
    ),
]


@pytest.fixture(scope="module")
def report():
    return measure({"text": text, "note_type": "office"} for text in NOTES)


def test_registration_headings_and_signature_are_left_out():
    text = "\n".join(
        [
            "Lakeside Clinic",
            "Progress Note",
            "Jane Roe | DOB 1950-01-01 | MRN 12345678",
            "Visit type: follow-up visit",
            "Modality: video. Identity confirmed with name and date of birth.",
            "",
            "HISTORY OF PRESENT ILLNESS",
            "Assessment and plan:",
            "A/P:",
            "1. Cough, improving.",
            "----------",
            "Electronically signed by Sam Doe",
            "-- Sam Doe",
        ]
    )
    assert clinician_lines(text) == [
        "Modality: video. Identity confirmed with name and date of birth.",
        "1. Cough, improving.",
    ]


def test_sentences_keep_abbreviations_and_drop_list_markers():
    line = "1. Mr. Smith is a 65 y.o. man. He has no pain! Is it better? Yes"
    assert split_sentences(line) == [
        "Mr. Smith is a 65 y.o. man.",
        "He has no pain!",
        "Is it better?",
        "Yes",
    ]
    assert split_sentences("#2 known asthma") == ["known asthma"]
    assert split_sentences("- lungs clear") == ["lungs clear"]


def test_repeat_thresholds_follow_both_rules():
    assert repeat_thresholds(5) == {"per_1000": 2, "issue_10_of_400": 2}
    assert repeat_thresholds(400) == {"per_1000": 4, "issue_10_of_400": 10}
    assert repeat_thresholds(1000) == {"per_1000": 10, "issue_10_of_400": 25}


def test_repeated_lines(report):
    assert report.notes == 5 and report.clinician_lines == 17
    # per note: facility, patient, provider, heading, signature (the blank line is not counted)
    assert report.excluded_lines == 5 * 5
    for rule in ("per_1000", "issue_10_of_400"):
        item = report.repeated_lines[rule]
        assert item["threshold_notes"] == 2
        assert item["distinct_lines"] == 2
        assert item["occurrences"] == 4 + 2
        assert item["share"] == pytest.approx(6 / 17)
    assert report.repeated_lines["top"][:2] == [
        ["return if worse.", 4],
        ["stable on metformin.", 2],
    ]


def test_sentence_openings(report):
    openings = report.openings
    # 18 sentences; "Headache, unspecified." has two words and no opening
    assert report.leakage["sentences"] == 18
    assert openings["sentences"] == 17
    # return if worse (4), stable on metformin (2) and 11 others once
    assert openings["distinct"] == 13
    assert openings["per_1000_sentences"] == pytest.approx(1000 * 13 / 17)
    assert openings["top"][:2] == [["return if worse", 4], ["stable on metformin", 2]]


def test_code_title_leakage(report):
    leakage = report.leakage
    assert leakage["leaking_sentences"] == 4
    assert leakage["notes_with_leakage"] == 3
    found = {item["qualifier"]: item for item in leakage["top"]}
    assert set(found) == {
        "initial encounter",
        "without complications (after a diagnosis)",
        "unspecified",
        "NOS",
    }
    assert all(item["sentences"] == 1 for item in found.values())
    assert found["NOS"]["example"] == "Migraine NOS suspected."
    assert found["unspecified"]["example"] == "Headache, unspecified."
    # "Biopsy tolerated without complications." is what clinicians write: not counted
    assert "Biopsy" not in found["without complications (after a diagnosis)"]["example"]


def test_leakage_spares_what_clinicians_write():
    ordinary = [
        "The procedure was performed without complications.",
        "Other medical history: none.",
        "Other complications included anemia.",
        "Uncomplicated urinary tract infection.",
        "Personal history of breast cancer.",
        "Sequelae of stroke with left weakness.",
        "Other specified anxiety disorder.",
        "NEC in the neonatal period.",
    ]
    assert measure(ordinary).leakage["leaking_sentences"] == 0
    leaking = [
        "other specified localized connective tissue disorders",
        "encounter for screening mammogram",
        "fracture of the left wrist, subsequent encounter for fracture with routine healing",
        "nonrheumatic mitral (valve) regurgitation",
        "other cholelithiasis with obstruction",
        "low back pain, NEC",
    ]
    assert measure(leaking).leakage["leaking_sentences"] == len(leaking)


def test_reasoning_language(report):
    reasoning = report.reasoning
    # notes 1 (likely), 4 (due to), 5 (suspected); "vaccine given today" is not reasoning
    assert reasoning["notes_with_reasoning"] == 3
    assert reasoning["share"] == pytest.approx(0.6)
    assert reasoning["by_cue"] == {
        "likely / unlikely": 1,
        "due to": 1,
        "suspect / suspected": 1,
    }


def test_words_per_note_type():
    rows = [{"text": " ".join(["word"] * n), "note_type": "x"} for n in (2, 4, 6, 8, 10)] + [
        {"text": "one two three", "note_type": "y"}
    ]
    words = measure(rows).words
    assert words["x"] == {"notes": 5, "mean": 6.0, "median": 6.0, "p10": 2.8, "p90": 9.2}
    assert words["y"] == {"notes": 1, "mean": 3.0, "median": 3.0, "p10": 3.0, "p90": 3.0}
    total = words["all notes"]
    assert total["notes"] == 6 and total["mean"] == 5.5 and total["median"] == 5.0
    assert total["p10"] == pytest.approx(2.5) and total["p90"] == pytest.approx(9.0)
    assert percentile([], 50) == 0.0


def _row(text: str, *codes: tuple[str, str, str, str]) -> dict:
    """A corpus row; each code is (system, code, rule, phrase found in the text)."""
    return {
        "text": text,
        "note_type": "office",
        "codes": [
            {
                "system": system,
                "code": code,
                "rule": rule,
                "evidence": [{"start": text.index(said), "end": text.index(said) + len(said)}],
            }
            for system, code, rule, said in codes
        ],
    }


def test_phrasings_per_code():
    names = ["high blood pressure", "hypertension", "HTN", "Hypertension", "hypertension."]
    rows = []
    for i, name in enumerate(names):
        text = f"Seen for {name}\nlipid panel ordered\nrash noted\noffice visit"
        codes = [
            ("ICD-10-CM", "I10", "diagnosis.documented", name),
            ("CPT", "80061", "procedure.documented", "lipid panel"),
            ("CPT", "99213", "em.office", "office visit"),  # E/M: not a name
        ]
        if i < 4:  # in 4 notes only: below the 5-note minimum
            codes.append(("ICD-10-CM", "R21", "diagnosis.documented", "rash"))
        rows.append(_row(text, *codes))
    phrasings = measure(rows).phrasings
    # I10: "high blood pressure", "hypertension", "htn"; 80061: "lipid panel"
    assert phrasings["codes"] == 2
    assert phrasings["median"] == 2.0 and phrasings["p10"] == pytest.approx(1.2)
    assert phrasings["by_system"] == {
        "CPT": {"codes": 1, "median": 1.0, "p10": 1.0},
        "ICD-10-CM": {"codes": 1, "median": 3.0, "p10": 3.0},
    }
    assert phrasings["fewest"][0] == {
        "code": "80061",
        "system": "CPT",
        "notes": 5,
        "phrasings": 1,
        "example": "lipid panel",
    }


def test_summary_and_card_lines(report):
    rows = summary_rows(report)
    keys = [key for key, *_ in rows]
    assert keys == [
        "repeated.per_1000",
        "repeated.issue_10_of_400",
        "openings",
        "leakage",
        "reasoning",
        "words.office",
        "words.all notes",
        "phrasings",
        "abbreviations",
        "artefacts",
    ]
    card = "\n".join(card_lines(report))
    assert card.startswith("## Realism")
    assert "| repeated lines (in >= 10 of 400 notes) | 35.3% |" in card
    assert "Migraine NOS suspected." in card


def test_classifier_separates_different_writing():
    synthetic = [f"Pt seen today, stable on meds, plan continue, visit {i}." for i in range(12)]
    reference = [
        f"The patient was admitted after the {word} and was discharged home."
        for word in ("fall", "surgery", "fever", "injury", "crash", "burn")
    ]
    result = classify(synthetic, reference, seed=1)
    assert result.notes_per_class == 6 and result.folds == 5
    assert result.auc == pytest.approx(1.0)
    assert len(result.fold_auc) == 5
    top_synthetic = {feature for feature, _ in result.synthetic_features}
    top_real = {feature for feature, _ in result.reference_features}
    assert {"stable", "continue"} & top_synthetic
    assert {"admitted", "discharged"} & top_real
    with pytest.raises(MedcodeError, match="at least 2 notes"):
        classify(synthetic, reference[:1])


def test_bad_rules_name_the_file_and_line(tmp_path):
    with pytest.raises(DataFileError, match=r"bad_realism\.yaml:13: .*'broken': bad pattern"):
        load_rules(ASSETS / "bad_realism.yaml")
    text = (ASSETS / "bad_realism.yaml").read_text()
    no_source = tmp_path / "no_source.yaml"
    no_source.write_text(text.replace("    source: residual titles\n", ""))
    with pytest.raises(DataFileError, match=r"no_source\.yaml:11: .*without source"):
        load_rules(no_source)
    missing = tmp_path / "missing.yaml"
    missing.write_text("reasoning_cues: []\n")
    with pytest.raises(DataFileError, match=r"missing .*code_title_qualifiers"):
        load_rules(missing)


def test_shipped_rules_load_and_are_read_lazily():
    rules = load_rules()
    assert rules.qualifiers and rules.cues and rules.registration and rules.headings
    assert all(rule.source for rule in rules.qualifiers)
    code = (
        "import medcode.synth.realism as r, medcode.synth.card, medcode.synth.commands; "
        "print(r._default_rules.cache_info().currsize)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


def test_abbreviations_per_100_words():
    text = note(1, "Pt c/o cough x3 days, w/o fever.", "BP 120/80 mg/dL, f/u PRN.")
    found = measure([text]).abbreviations
    # pt, c/o, w/o, BP, f/u, PRN of 12 words; "mg/dL", "x3" and "days" are not abbreviations
    assert found["words"] == 12 and found["abbreviations"] == 6
    assert found["per_100_words"] == pytest.approx(50.0)
    assert dict(map(tuple, found["top"]))["pt"] == 1


def test_typos_and_dictation_artefacts():
    from medcode.synth.realism import artefacts_in

    assert artefacts_in("Plan reveiwed with the patient.") == {"misspelling"}
    assert artefacts_in("Discussed the the plan.") == {"doubled_word"}
    assert artefacts_in("Hear for follow-up; check-in in 1 week.") == {"homophone"}
    assert artefacts_in("Plan reviewed; check-in in 1 week. Here for follow-up.") == set()
    notes = [note(1, "Plan reveiwed."), note(2, "Plan reviewed."), note(3, "Seen the the day.")]
    found = measure(notes).artefacts
    assert found["notes_with_artefact"] == 2 and found["share"] == pytest.approx(2 / 3)
    assert found["by_kind"] == {"misspelling": 1, "doubled_word": 1}


def test_summary_rows_show_abbreviations_and_artefacts(report):
    rows = {key: (metric, value) for key, metric, value, _ in summary_rows(report)}
    assert rows["abbreviations"][0] == "abbreviations per 100 words"
    assert rows["artefacts"] == ("notes with a typo or dictation artefact", "0.0%")
    assert any("abbreviations per 100 words" in line for line in card_lines(report))
