"""Evidence spans: character offsets in step with the lexicon's words; direct, history,
combination and category evidence; cues."""

from __future__ import annotations

import pytest

from medcode.model.retriever import Lexicon, words
from medcode.serve.evidence import EvidenceFinder, token_offsets


@pytest.mark.parametrize(
    "text",
    [
        "Type 2 diabetes; CKD stage 3a. HTN!\nPlan: follow up.",
        "  leading space, trailing.  ",
        "İstanbul trip; Straße. ﬁne ligature İİ diabetes",
        "",
        "no words here: ... ;;; !!!",
    ],
)
def test_token_offsets_follow_the_lexicon_tokens(text):
    offsets = token_offsets(text)
    from medcode.model.retriever import _SENTENCE

    expected = [w for line in _SENTENCE.split(text) for w in words(line)]
    assert len(offsets) == len(expected)
    for (start, end), word in zip(offsets, expected, strict=True):
        piece = words(text[start:end])
        assert piece == [word] or "".join(piece) == word


def test_direct_evidence_with_cues(lexicon):
    finder = EvidenceFinder(lexicon)
    text = "Type 2 diabetes with chronic kidney disease stage 3a. No chest pain. HTN."
    found = finder.find(text, ["E11.22", "N18.31", "R07.9", "I10", "99214"])
    (e1122,) = found["E11.22"]
    assert text[e1122.start : e1122.end] == "Type 2 diabetes with chronic kidney disease"
    assert e1122.relation == "direct" and e1122.source == "catalog"
    assert found["N18.31"][0].text == "chronic kidney disease stage 3a"
    assert found["R07.9"][0].cues == ("negated",)
    assert found["I10"][0].text == "HTN"
    assert found["99214"] == []


def test_shorter_spans_inside_longer_ones_are_dropped(lexicon):
    found = EvidenceFinder(lexicon).find("Type 2 diabetes mellitus, stable.", ["E11.9"])
    assert [s.text for s in found["E11.9"]] == ["Type 2 diabetes mellitus"]


def test_history_combination_and_category_evidence():
    from medcode.policy.tables import shipped_tables

    lexicon = Lexicon()
    lexicon.add("type 2 diabetes", ["E11.9"])
    lexicon.add("chronic kidney disease stage 3a", ["N18.31"])
    lexicon.add("breast cancer", ["C50.911"])
    lexicon.tables = shipped_tables()
    finder = EvidenceFinder(lexicon)
    text = "History of breast cancer. Type 2 diabetes. Chronic kidney disease stage 3a."
    history = lexicon._history_of("C50.911", False)
    assert history is not None
    found = finder.find(text, [history, "E11.22", "E11.65"])
    assert found[history][0].relation == "history" and found[history][0].text == "breast cancer"
    assert {s.text for s in found["E11.22"]} == {
        "Type 2 diabetes",
        "Chronic kidney disease stage 3a",
    }
    assert all(s.relation == "combination" for s in found["E11.22"])
    assert found["E11.65"][0].relation == "category"


def test_no_codes_no_matches(lexicon):
    finder = EvidenceFinder(lexicon)
    assert finder.find("anything", []) == {}
    assert finder.find("nothing matches here", ["I10"]) == {"I10": []}
