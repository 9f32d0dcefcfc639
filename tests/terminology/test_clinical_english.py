"""Word variants of clinical English (data/terminology/clinical_english.yaml)."""

from __future__ import annotations

import pytest

from medcode.errors import DataFileError
from medcode.model.retriever import ORDER_FREE_WEIGHT, Lexicon
from medcode.terminology.clinical_english import (
    load_clinical_english,
    load_word_map,
    shipped_word_map,
)

SOURCE = "source: pairs from a dictionary of clinical English words\n"


def _file(
    tmp_path, spellings: str, variants: str, acronyms: str = "    DKA: diabetic ketoacidosis\n"
):
    path = tmp_path / "clinical_english.yaml"
    path.write_text(
        f"spellings:\n  {SOURCE}  words:\n{spellings}"
        f"variants:\n  {SOURCE}  words:\n{variants}"
        f"acronyms:\n  {SOURCE}  words:\n{acronyms}"
    )
    return path


def test_spellings_then_variants_compose(tmp_path):
    path = _file(
        tmp_path,
        "    oesophageal: esophageal\n    oedema: edema\n",
        "    esophageal: esophagus\n    renal: kidney\n",
    )
    assert load_word_map(path) == {
        "oesophageal": "esophagus",
        "oedema": "edema",
        "esophageal": "esophagus",
        "renal": "kidney",
    }


@pytest.mark.parametrize(
    ("variants", "problem"),
    [
        ("    renal: Kidney\n", "'Kidney' is not a lower-case word"),
        ("    renal: kidney\n    kidney: organ\n", "a canonical word is not mapped"),
        ("    renal: renal\n", "a canonical word is not mapped"),
    ],
)
def test_a_bad_pair_names_file_line_and_problem(tmp_path, variants, problem):
    path = _file(tmp_path, "    oedema: edema\n", variants)
    with pytest.raises(DataFileError) as error:
        load_word_map(path)
    assert problem in str(error.value) and f"{path}:" in str(error.value)


def test_a_section_without_its_source_is_refused(tmp_path):
    path = tmp_path / "clinical_english.yaml"
    path.write_text(
        "spellings:\n  source: see\n  words: {oedema: edema}\n"
        f"variants:\n  {SOURCE}  words: {{renal: kidney}}\n"
        f"acronyms:\n  {SOURCE}  words: {{DKA: diabetic ketoacidosis}}\n"
    )
    with pytest.raises(DataFileError, match="cite where the words come from"):
        load_word_map(path)


@pytest.mark.parametrize(
    ("acronyms", "problem"),
    [
        ("    D-K-A: diabetic ketoacidosis\n", "is not an acronym"),
        ("    DKA: Diabetic ketoacidosis\n", "is not a lower-case phrase"),
        ("    DKA: diabetic ketoacidosis\n    dka: ketoacidosis\n", "dka is listed twice"),
    ],
)
def test_a_bad_acronym_names_file_line_and_problem(tmp_path, acronyms, problem):
    path = _file(tmp_path, "    oedema: edema\n", "    renal: kidney\n", acronyms)
    with pytest.raises(DataFileError) as error:
        load_clinical_english(path)
    assert problem in str(error.value) and f"{path}:" in str(error.value)


def test_acronyms_take_the_codes_of_the_phrase_they_stand_for():
    lexicon = Lexicon()
    lexicon.add("diabetic ketoacidosis", ["E11.10"])
    assert lexicon.add_acronyms({"dka": "diabetic ketoacidosis", "xyz": "no such phrase"}) == [
        "xyz"
    ]
    assert lexicon.matches("Admitted in DKA.")[0].codes == ("E11.10",)


def test_shipped_map_reads_adjectives_as_organs_and_british_spellings():
    words = shipped_word_map()
    assert words["renal"] == "kidney" and words["hepatic"] == "liver"
    assert words["oedema"] == "edema" and words["oesophageal"] == "esophagus"


def test_lexicon_reads_variants_in_phrase_and_note_alike():
    lexicon = Lexicon(shipped_word_map())
    lexicon.add("chronic kidney disease", ["N18.9"])
    lexicon.add("oesophageal varices", ["I85.00"])
    assert "N18.9" in lexicon.scores("Known chronic renal disease.")
    assert "I85.00" in lexicon.scores("Esophageal varices on EGD.")
    assert "N18.9" not in Lexicon().scores("chronic renal disease")  # without the map


def test_short_phrases_are_found_in_any_order_at_a_lower_weight():
    lexicon = Lexicon(free_order=True)
    lexicon.add("kidney disease", ["N28.9"])
    reordered = lexicon.matches("Disease of the kidney. Kidney disease, stable.")
    assert [(m.start, m.end) for m in reordered] == [(4, 6)]  # "of the" breaks the window
    assert lexicon.matches("disease kidney")[0].weight == pytest.approx(
        reordered[0].weight * ORDER_FREE_WEIGHT
    )
    assert not Lexicon().matches("disease kidney")
