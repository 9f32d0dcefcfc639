"""The coder-reviewed index synonyms of catalog conditions (data/synth/index_synonyms.csv)."""

from __future__ import annotations

import pytest

from medcode.errors import DataFileError
from medcode.synth.index_synonyms import load_index_synonyms, shipped_index_synonyms

HEADER = "code,phrase,decision,reason,index_path\n"


def _file(tmp_path, *rows: str):
    path = tmp_path / "index_synonyms.csv"
    path.write_text(HEADER + "".join(f"{row}\n" for row in rows))
    return path


def test_only_accepted_rows_are_used(tmp_path):
    path = _file(
        tmp_path,
        "E78.5,dyslipidemia,accept,common clinical synonym,Dyslipidemia",
        "E78.5,lipoproteinemia,reject,archaic,Lipoproteinemia",
        "E03.9,myxedema,pending,,Myxedema",
    )
    assert load_index_synonyms(path) == {"E78.5": ("dyslipidemia",)}


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("E78.5,dyslipidemia,maybe,unsure,Dyslipidemia", "decision 'maybe'"),
        ("E78.5,dyslipidemia,accept,,Dyslipidemia", "needs its reason"),
        ("E78,dyslipidemia,accept,x,Dyslipidemia", "billable"),
        ("E78.5,Dyslipidemia,accept,x,Dyslipidemia", "lower-case"),
        # the index sends "hypothyroidism" to E03.9, not E78.5: the gold would not follow
        ("E78.5,hypothyroidism,accept,x,Hypothyroidism", "the index gives E03.9"),
    ],
)
def test_a_bad_row_names_file_line_and_problem(tmp_path, row, problem):
    path = _file(tmp_path, "E03.9,myxedema,pending,,Myxedema", row)
    with pytest.raises(DataFileError) as error:
        load_index_synonyms(path)
    assert problem in str(error.value)
    assert f"{path}:3" in str(error.value)


def test_a_pair_listed_twice_is_refused(tmp_path):
    row = "E78.5,dyslipidemia,reject,too vague,Dyslipidemia"
    with pytest.raises(DataFileError, match="listed twice"):
        load_index_synonyms(_file(tmp_path, row, row))


def test_accepted_synonyms_are_formal_phrases_of_the_forms_with_that_code():
    from medcode.synth.generate import SynthConfig, _world

    synonyms = shipped_index_synonyms()
    assert synonyms, "the shipped file accepts some synonyms"
    phrases = _world(SynthConfig()).sampler.phrases
    for code, accepted in synonyms.items():
        forms = [styles for (_, form_code), styles in phrases.items() if form_code == code]
        assert forms, f"{code} is no catalog form's code"
        for styles in forms:
            written = {p.lower() for p in styles["formal"]}
            assert set(accepted) <= written, code
