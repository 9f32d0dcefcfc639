import json

import pytest

from medcode.baselines.tfidf import BaselineConfig, TfidfCoder
from medcode.errors import MedcodeError
from medcode.model.prompt import Candidate
from medcode.model.retriever import (
    COMBINATION,
    FAMILY,
    FEATURES,
    HISTORY,
    HYPOTHETICAL,
    NEGATED,
    UNCERTAIN,
    Lexicon,
    Merge,
    Retriever,
    RetrieverConfig,
    note_age,
    recall_at_k,
    recall_of,
)
from medcode.terminology import cpt, icd10cm

CATALOG = """\
domain: tiny
concepts:
  - id: hyperlipidemia
    label: Hyperlipidemia
    forms:
      - {code: E78.5, weight: 2, attributes: {type: hyperlipidemia, abbr: HLD}}
      - {code: E78.2, weight: 1, attributes: {type: mixed hyperlipidemia, abbr: mixed HLD}}
    phrases:
      formal: ["{type}", "lipid disorder: {type}"]
      abbreviated: ["{abbr}"]
    statuses: {chronic: 1}
    prevalence: {"65-79": 0.3}
    source: test
  - id: osteoarthritis_hip
    label: Primary osteoarthritis of hip
    forms:
      - {code: M16.10, weight: 1, attributes: {}}
    phrases:
      formal: ["osteoarthritis of the {side} hip"]
      abbreviated: ["{side} hip OA"]
    laterality: [right, left]
    statuses: {chronic: 1}
    prevalence: {"65-79": 0.05}
    source: test
  - id: type2_diabetes
    label: Type 2 diabetes mellitus
    forms:
      - {code: E11.9, weight: 1, attributes: {}}
    phrases:
      formal: [type 2 diabetes mellitus]
      abbreviated: [T2DM]
    medications:
      - {name: metformin 500 mg daily, class: oral_hypoglycemic, probability: 0.5}
    statuses: {chronic: 1}
    prevalence: {"65-79": 0.2}
    source: test
  - id: ckd
    label: Chronic kidney disease
    forms:
      - {code: N18.31, weight: 1, attributes: {stage: 3a}}
    phrases:
      formal: ["chronic kidney disease stage {stage}"]
      abbreviated: ["CKD {stage}"]
    statuses: {chronic: 1}
    prevalence: {"65-79": 0.1}
    source: test
"""
TABULAR = ["L57.0", "J45.909", "J45.90", "I10"]
TEXTS = [
    "Assessment: mixed hyperlipidemia, on statin. Actinic keratosis of the scalp.",
    "T2DM and CKD 3a, metformin 500 mg daily",
    "essential hypertension, stable on lisinopril",
    "HTN, well controlled. Mother with asthma.",
    "type 2 diabetes mellitus, A1c 7.2",
    "hypertension and type 2 diabetes mellitus; right hip OA",
] * 4
LABELS = [
    ["E78.2", "L57.0"],
    ["E11.22", "N18.31", "Z79.84"],
    ["I10"],
    ["I10", "Z82.5"],
    ["E11.9"],
    ["I10", "E11.9", "M16.11"],
] * 4


@pytest.fixture(scope="module")
def lexicon(tmp_path_factory) -> Lexicon:
    from medcode.synth.catalog import load_catalog

    path = tmp_path_factory.mktemp("catalog") / "tiny.yaml"
    path.write_text(CATALOG)
    return Lexicon.build(TABULAR, catalog=load_catalog([path], check_references=False))


@pytest.fixture(scope="module")
def coder() -> TfidfCoder:
    config = BaselineConfig(min_code_count=2, char_ngrams=(3, 4))
    return TfidfCoder(config).fit(TEXTS, LABELS)


@pytest.fixture(scope="module")
def retriever(coder, lexicon) -> Retriever:
    return Retriever(coder, lexicon, k=5)


def test_lexicon_finds_catalog_phrasings_and_tabular_terms(lexicon):
    scores = lexicon.scores(TEXTS[0])
    assert {"E78.2", "L57.0"} <= set(scores)  # placeholder filled; tabular description
    assert scores["E78.2"] > scores["E78.5"]  # 'hyperlipidemia' lies inside the longer match
    assert "J45.909" in lexicon.scores("Asthma NOS since childhood")  # an inclusion term
    assert "J45.909" in lexicon.scores("late onset asthma")  # a parent's term, completed
    assert "M16.11" in lexicon.scores("right hip OA, worse on stairs")
    assert {"M16.11", "M16.12"} <= set(lexicon.scores("osteoarthritis of the hip"))
    assert "Z79.84" in lexicon.scores("metformin 1000 mg twice daily")
    assert "99214" not in lexicon.scores("office visit")  # CPT terms are whole descriptions


def test_placeholders_never_reach_the_index(lexicon):
    assert not any("{" in phrase or "}" in phrase for phrase in lexicon._phrases)
    empty = Lexicon()
    empty.add("{type}", ["I10"])
    empty.add("{side} knee pain", ["M25.561"])
    assert len(empty) == 1 and empty.scores("Left knee pain")["M25.561"] > 0


def test_phrases_by_code_lists_each_codes_phrases_as_matched():
    lexicon = Lexicon()
    lexicon.add("Essential hypertension", ["I10"])
    lexicon.add("high blood pressures", ["I10", "R03.0"])
    assert lexicon.phrases_by_code() == {
        "I10": ["essential hypertension", "high blood pressure"],
        "R03.0": ["high blood pressure"],
    }


def test_lexicon_reads_cues_and_derives_codes(lexicon):
    evidence = lexicon.evidence("Denies actinic keratosis. Mother with asthma.")
    assert evidence["L57.0"].context & NEGATED and not evidence["L57.0"].plain
    assert evidence["J45.909"].context & FAMILY
    assert evidence["Z82.5"].derived & FAMILY  # family history of asthma
    combined = lexicon.evidence("T2DM with CKD 3a")
    assert combined["E11.22"].derived & COMBINATION


def test_slash_shorthand_reads_as_the_cue_it_stands_for():
    lexicon = Lexicon()
    lexicon.add("asthma", ["J45.909"])

    def flags(text: str) -> list[int]:
        return [m.context for m in lexicon.matches(text)]

    assert flags("w/o asthma") == flags("without asthma") == [NEGATED]
    assert flags("w/o a b c d asthma") == [NEGATED]  # the shorthand cut by the window's edge
    assert flags("h/o asthma") == flags("history of asthma") == [HISTORY]
    assert flags("w/ asthma") == [0]


def test_candidates_are_unique_valid_described_and_ordered(retriever):
    table = cpt.procedure_table()
    found = retriever.candidates(TEXTS[:6])
    assert len(found) == 6
    for row in found:
        codes = [c.code for c in row]
        assert 0 < len(row) <= 5 and len(set(codes)) == len(codes)
        assert all(c in table or icd10cm.is_billable(c) for c in codes)
        assert all(c.description for c in row)
        scores = [c.score for c in row]
        assert scores == sorted(scores, reverse=True)
    assert len(retriever.candidates(TEXTS[:1], k=2)[0]) == 2
    asthma = retriever.candidates(["Asthma NOS, stable"])[0]
    assert "J45.909" in [c.code for c in asthma]  # a code the coder never learned


def test_lexicon_reserve_keeps_places_for_lexicon_matches(coder, lexicon):
    weights = [10.0 if name == "tfidf" else 0.0 for name in FEATURES]
    merge = Merge(weights, 0.0, [0.0] * len(coder.codes), [1.0] * len(coder.codes))

    def top(reserve: float) -> list[Candidate]:
        config = RetrieverConfig(reserve=reserve)
        retriever = Retriever(coder, lexicon, k=4, merge=merge, config=config)
        return retriever.candidates(["Asthma NOS, stable"])[0]

    assert "J45.909" not in [c.code for c in top(0.0)]
    found = top(0.5)
    assert len(found) == 4 and found[-1].code == "J45.909"


def test_recall_at_k_by_hand():
    class Fixed:
        def candidates(self, texts, k):
            ranked = [["A", "B", "C"], ["D", "E", "F"]]
            return [[Candidate(code) for code in row[:k]] for row in ranked]

    gold = [["B", "X"], ["F", "D", "D"]]  # 4 distinct gold pairs
    assert recall_at_k(Fixed(), ["n1", "n2"], gold, ks=(1, 2, 3)) == {
        1: 1 / 4,  # D
        2: 2 / 4,  # B, D
        3: 3 / 4,  # B, D, F
    }
    assert recall_of([["A"]], [[]], (1,)) == {1: 0.0}


def test_fitted_merge_and_save_load_round_trip(coder, lexicon, tmp_path):
    retriever = Retriever(coder, lexicon, k=6)
    retriever.fit_merge(TEXTS, LABELS, TEXTS * 3, LABELS * 3)
    assert retriever.merge.weights != Retriever(coder, lexicon).merge.weights
    assert recall_at_k(retriever, TEXTS, LABELS, ks=(6,))[6] > 0.9
    retriever.save(tmp_path / "r")
    state = json.loads((tmp_path / "r" / "retriever.json").read_text())
    assert state["kind"] == "retriever" and (tmp_path / "r" / "coder" / "model.joblib").is_file()
    again = Retriever.load(tmp_path / "r", lexicon=lexicon)
    assert again.candidates(TEXTS) == retriever.candidates(TEXTS)
    with pytest.raises(MedcodeError, match="no retriever"):
        Retriever.load(tmp_path)


def test_fit_on_a_few_dozen_notes(lexicon):
    texts, labels = TEXTS * 2, LABELS * 2
    retriever = Retriever.fit(texts, labels, k=8, lexicon=lexicon)
    assert retriever.k == 8 and "I10" in retriever.coder.codes
    found = retriever.candidates(["HTN and T2DM with CKD 3a"])[0]
    assert {"I10", "E11.22"} <= {c.code for c in found}


def test_note_age():
    assert note_age("Mr. Ellis is a 76-year-old man") == 76
    assert note_age("Age: 67    Sex: Female") == 67
    assert note_age("DOB 1983-12-21  42M") == 42
    assert note_age("T 98.6 F, no age given") is None


def test_every_shipped_acronym_stands_for_a_phrase_of_the_lexicon():
    from medcode.terminology.clinical_english import shipped_clinical_english

    acronyms = shipped_clinical_english().acronyms
    assert Lexicon.build().add_acronyms(acronyms) == []


def test_an_unfamiliar_note_gives_the_lexicon_every_place(coder, lexicon):
    from dataclasses import replace

    from medcode.model.retriever import RetrieverConfig

    familiar = Retriever(coder, lexicon, k=3, config=RetrieverConfig(k=3, reserve=0.0))
    assert familiar.unfamiliar_share("essential hypertension, stable") == 0.0
    assert familiar.unfamiliar_share("zorbly hypertension") == 0.5
    assert not familiar.unfamiliar("zorbly quantish flemming hypertension")  # no threshold
    guarded = Retriever(
        coder,
        lexicon,
        k=3,
        merge=replace(familiar.merge, unfamiliar_above=0.5),
        config=RetrieverConfig(k=3, reserve=0.0),
    )
    note = "Zorbly quantish flemming grobnar wibbel tronk: hypertension and actinic keratosis."
    assert guarded.unfamiliar(note) and not guarded.unfamiliar(TEXTS[2])
    plain = {"I10", "L57.0"}
    assert plain <= set(lexicon.scores(note))
    assert not plain <= {c.code for c in familiar.candidates([note], k=2)[0]}
    assert plain <= {c.code for c in guarded.candidates([note], k=2)[0]}


def test_on_an_unfamiliar_note_cued_matches_come_before_the_tfidf_picks(coder, lexicon):
    from dataclasses import replace

    from medcode.model.retriever import RetrieverConfig

    weights = [10.0 if name == "tfidf" else 0.0 for name in FEATURES]
    merge = Merge(weights, 0.0, [0.0] * len(coder.codes), [1.0] * len(coder.codes))
    note = "Zorbly quantish flemming grobnar wibbel: hypertension. No asthma."
    assert lexicon.scores(note)["J45.909"] < lexicon.scores(note)["I10"]  # asthma is negated
    found = {}
    for threshold in (None, 0.5):
        retriever = Retriever(
            coder,
            lexicon,
            k=2,
            merge=replace(merge, unfamiliar_above=threshold),
            config=RetrieverConfig(k=2, reserve=0.0),
        )
        found[threshold] = {c.code for c in retriever.candidates([note])[0]}
    assert "J45.909" not in found[None]  # the TF-IDF's picks fill a familiar note's list
    assert found[0.5] == {"I10", "J45.909"}  # the lexicon's, cued or not, an unfamiliar one's


def test_fitting_sets_the_unfamiliar_threshold_from_held_out_notes(lexicon):
    retriever = Retriever.fit(TEXTS * 2, LABELS * 2, k=8, lexicon=lexicon)
    assert 0.0 <= retriever.merge.unfamiliar_above < 0.5


def test_a_long_problem_list_gets_more_candidates(coder, lexicon):
    from medcode.model.retriever import RetrieverConfig

    retriever = Retriever(coder, lexicon, k=4, config=RetrieverConfig(k=4, k_max=8))
    assert [retriever.note_k(4, plain) for plain in (0, 2, 3, 5, 6, 20)] == [4, 4, 5, 7, 8, 8]
    retriever = Retriever(coder, lexicon, k=2, config=RetrieverConfig(k=2, k_max=4))
    short = "Essential hypertension, stable."
    long = "Problems: essential hypertension; asthma; actinic keratosis."
    assert sum(item.plain for item in lexicon.evidence(long).values()) == 3
    found = retriever.candidates([short, long])
    assert [len(found[0]), len(found[1])] == [2, 4]  # 1 + 2 // 2 -> 2; 3 + 1 -> 4
    assert {"I10", "J45.909", "L57.0"} <= {c.code for c in found[1]}
    assert len(Retriever(coder, lexicon, k=2).candidates([long])[0]) == 2  # k_max 0: k each


@pytest.mark.parametrize(
    ("sentence", "target", "flags"),
    [
        ("Denies fever but reports cough.", "cough", 0),  # the negation ends at "but"
        ("Denies fever but reports cough.", "fever", NEGATED),
        ("Gram negative sepsis, on cefepime.", "sepsis", 0),  # a pseudo-negation
        ("No change in her chronic gout.", "gout", 0),
        ("Pneumonia ruled out on CT.", "pneumonia", NEGATED),
        ("UTI - resolved after nitrofurantoin.", "uti", HISTORY),
        ("Admit to rule out pneumonia.", "pneumonia", UNCERTAIN),
        ("Return if fever develops.", "fever", HYPOTHETICAL),
        ("Enoxaparin for DVT prophylaxis.", "dvt", HYPOTHETICAL),
        ("History of present illness: pneumonia since Monday.", "pneumonia", 0),
        ("Mother had asthma.", "asthma", FAMILY),
    ],
)
def test_context_cues_reach_as_far_as_their_scope(sentence, target, flags):
    from medcode.model.retriever import shipped_lexicon

    lexicon = shipped_lexicon()
    codes = set(lexicon.evidence(target))
    found = [item for code, item in lexicon.evidence(sentence).items() if code in codes]
    assert found, f"{target!r} not read in {sentence!r}"
    assert found[0].context == flags
